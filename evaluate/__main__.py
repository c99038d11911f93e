"""python -m evaluate: klein's albedo at full inference depth, scored against exact ground truth.

    python -m evaluate all --model tiny --data runs/render --probe runs/probe      # everything, dry run
    python -m evaluate generate --data runs/render --model black-forest-labs/FLUX.2-klein-base-4B
    python -m evaluate baselines --data runs/render          # image-as-albedo, colour Retinex (no model)
    python -m evaluate score --data runs/render               # reads predictions back: no GPU
    python -m evaluate ablate --data runs/render --probe runs/probe --k 16,64 --n-random 5
    python -m evaluate link --probe runs/probe                # selectivity vs albedo error
    python -m evaluate report                                 # report.md + report.html

Every subcommand works in one folder, --out (default runs/evaluate): predictions in OUT/pred/<method>/,
scores.csv, score_summary.json, invariance.csv, link.json, ablation.json, report.md. Generation resumes
(finished predictions are skipped) and shards with --shard K/N (K = 0..N-1).
"""
from __future__ import annotations

import argparse
import sys

SUBCOMMANDS = ("generate", "baselines", "score", "ablate", "link", "report", "all")


def _common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--out", default="runs/evaluate", help="evaluation folder (predictions in OUT/pred)")
    if data:
        p.add_argument("--data", default="runs/render", help="render output folder (manifest.json)")


def _generation(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--instruction", type=int, default=0,
                   help="index of the editing instruction in prompts/edit_instructions.json")
    g.add_argument("--instructions-file", default=None, help="another instructions JSON file")
    g.add_argument("--steps", type=int, default=None, help="inference steps (default: the model's own, full depth)")
    g.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's own)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (the same for every sample)")
    g.add_argument("--limit", type=int, default=None, help="only the first N samples (after sharding)")
    g.add_argument("--max-side", type=int, default=None,
                   help="downscale larger references to this side (default 1024; 64 for --model tiny)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _scoring(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")
    g.add_argument("--lpips", choices=("auto", "off"), default="auto",
                   help="auto: LPIPS when the lpips package and its backbone weights are present")
    g.add_argument("--workers", type=int, default=None, help="scoring threads (default: all cores)")


def _ablation(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("causal test")
    g.add_argument("--probe", default="runs/probe", help="probe run folder (units.csv, captures.npz)")
    g.add_argument("--k", default="8,32", help="comma-separated numbers of heads to ablate")
    g.add_argument("--n-random", type=int, default=3, help="block-matched random k-head draws per k (controls)")
    g.add_argument("--metric", default=None, help="metric column for the summary (default: LMSE, per-channel)")


def build_parser() -> argparse.ArgumentParser:
    from probe.model import add_model_arguments

    parser = argparse.ArgumentParser(
        prog="python -m evaluate", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    g = sub.add_parser("generate", help="klein's albedo for every sample (plus baselines)", formatter_class=fmt)
    _common(g)
    add_model_arguments(g)
    _generation(g)
    g.add_argument("--method", default="klein", help="prediction folder name under OUT/pred")
    g.add_argument("--shard", default=None, help="K/N: this job's share of the samples (K = 0..N-1); "
                   "auto: from a SLURM array or torchrun")
    g.add_argument("--no-baselines", action="store_true", help="do not also write the baseline predictions")
    g.add_argument("--no-resume", action="store_true", help="regenerate finished predictions")
    g.add_argument("--status", type=int, metavar="N", default=None,
                   help="load no model: list the predictions still missing from OUT, split N ways as --shard "
                        "K/N splits them, and the shards to run again (exit 0 complete, 3 incomplete)")

    b = sub.add_parser("baselines", help="image-as-albedo and colour-Retinex predictions (no model)",
                       formatter_class=fmt)
    _common(b)
    b.add_argument("--shard", default=None, help="K/N share of the samples, or auto (SLURM array / torchrun)")
    b.add_argument("--marigold", default=None, metavar="DIR",
                   help="also run diffusers' Marigold intrinsics pipeline from this local weights folder")

    s = sub.add_parser("score", help="score every prediction folder against ground truth (no GPU)",
                       formatter_class=fmt)
    _common(s)
    s.add_argument("--pred", default=None, help="prediction folder (default OUT/pred)")
    s.add_argument("--methods", default=None, help="comma-separated methods (default: every folder in --pred)")
    _scoring(s)

    a = sub.add_parser("ablate", help="causal test: mean-ablate top-k selective heads vs random k",
                       formatter_class=fmt)
    _common(a)
    add_model_arguments(a)
    _generation(a)
    _ablation(a)
    _scoring(a)

    l_ = sub.add_parser("link", help="probe selectivity per scene vs albedo error (Spearman, bootstrap CI)",
                        formatter_class=fmt)
    _common(l_, data=False)
    l_.add_argument("--probe", default="runs/probe", help="probe run folder (captures.npz, units.csv)")
    l_.add_argument("--method", default="klein", help="prediction method whose error is linked")
    l_.add_argument("--metric", default=None, help="metric column (default: LMSE, per-channel)")
    l_.add_argument("--top-k", type=int, default=50, help="selective units averaged per pair")
    l_.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")

    r = sub.add_parser("report", help="report.md and report.html from what is in OUT", formatter_class=fmt)
    _common(r)
    r.add_argument("--probe", default="runs/probe", help="probe run folder (for the link section)")
    r.add_argument("--max-grid", type=int, default=12, help="samples shown in the image grid")

    al = sub.add_parser("all", help="generate, baselines, score, ablate, link and report in one go",
                        formatter_class=fmt)
    _common(al)
    add_model_arguments(al)
    _generation(al)
    _ablation(al)
    al.add_argument("--top-k", type=int, default=50, help="selective units averaged per pair (link)")
    al.add_argument("--no-ablate", action="store_true", help="skip the ablation runs")
    al.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    _scoring(al)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "shard", None):           # a bad --shard (or `auto` environment) fails before any model loads
        from render.shard import Shard

        try:
            Shard.parse(args.shard)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    from evaluate import jobs

    try:
        return getattr(jobs, f"main_{args.command}")(args)
    except KeyboardInterrupt:
        print("interrupted: finished predictions are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except jobs.USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
