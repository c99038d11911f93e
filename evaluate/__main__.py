"""python -m evaluate: klein's albedo at full inference depth, scored against exact ground truth.

    python -m evaluate all --model tiny --data runs/render --probe runs/probe      # everything, dry run
    python -m evaluate generate --data runs/render --model black-forest-labs/FLUX.2-klein-base-4B
    python -m evaluate baselines --data runs/render          # image-as-albedo, colour Retinex (no model)
    python -m evaluate score --data runs/render               # reads predictions back: no GPU
    python -m evaluate ablate --data runs/render --probe runs/probe --k 16,64 --n-random 19
    python -m evaluate link --probe runs/probe                # selectivity vs albedo error
    python -m evaluate report                                 # report.md + report.html
    python -m evaluate mit --data runs/mit                    # MIT benchmark protocol (render import-mit)
    python -m evaluate verdict --evaluate runs/evaluate --probe-images runs/probe-images \
        --population-images runs/population-images          # the card's claims H1-H6, pre-declared criteria
    python -m evaluate study --data runs/render64 --out runs/known-study   # the known-answer study (small kleins)

Every subcommand works in one folder, --out (default runs/evaluate): predictions in OUT/pred/<method>/,
scores.csv, score_summary.json, invariance.csv, link.json, ablation.json, report.md. Generation resumes:
a prediction on disk is reused only when everything that made it (model and revision, prompt, steps,
guidance, seed, reference image, ablated heads, versions) is the same (--resume strict: stop instead of
regenerating); it shards with --shard K/N (K = 0..N-1), and shards may share one --out.
"""
from __future__ import annotations

import argparse
import sys

from probe.io.helpformat import HelpFormatter

SUBCOMMANDS = ("generate", "baselines", "score", "ablate", "link", "report", "all", "mit", "verdict", "study")
MIT_BASELINES = ("BAS", "GR-RET", "COL-RET", "W", "W+RET")     # evaluate.mit_protocol (kept light for --help)
SELECT_CHOICES = ("render_vs_albedo", "lighting", "albedo", "change_albedo", "change_lighting")  # evaluate.selection
MATCH_CHOICES = ("group", "block")                                                            # (light for --help)
RESUME_MODES = ("on", "strict", "off")                           # evaluate.predictions


class Parser(argparse.ArgumentParser):
    """argparse with a one-paragraph error (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _resume_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", choices=RESUME_MODES, default="on",
                   help="on: reuse a prediction only when its generation key matches, regenerate it otherwise; "
                        "strict: stop with an error naming the differing fields; off: regenerate all")
    p.add_argument("--no-resume", action="store_true", help="the same as --resume off")


def _common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--out", default="runs/evaluate", help="evaluation folder (predictions in OUT/pred)")
    if data:
        p.add_argument("--data", default="runs/render", help="render output folder (manifest.json)")


def _generation(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--instruction", type=int, default=0,
                   help="index of the editing instruction in prompts/edit_instructions.json")
    g.add_argument("--instructions-file", default=None, help="another instructions JSON file")
    g.add_argument("--steps", type=positive_int, default=None,
                   help="inference steps (default: the model's own: 50 for klein base, 4 for a distilled klein)")
    g.add_argument("--guidance", type=float, default=None,
                   help="CFG scale (default: the model's own; a distilled klein runs without CFG)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (the same for every sample)")
    g.add_argument("--limit", type=positive_int, default=None, help="only the first N samples (after sharding)")
    g.add_argument("--max-side", type=positive_int, default=None,
                   help="downscale larger references to this side (default 1024; 64 for --model tiny)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _scoring(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs (clusters: base scenes)")
    g.add_argument("--lpips", choices=("auto", "off"), default="auto",
                   help="auto: LPIPS when the lpips package and its backbone weights are present")
    g.add_argument("--workers", type=positive_int, default=None, help="scoring threads (default: min(4, cores))")


def _ablation(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("causal test")
    g.add_argument("--probe", default="runs/probe", help="probe run folder (units.csv, summary.json, ...)")
    g.add_argument("--k", default="8,32", help="comma-separated numbers of heads to ablate")
    g.add_argument("--n-random", type=int, default=19,
                   help="random k-head draws per k from the same blocks (controls); the rank p cannot go below "
                        "1/(1 + draws), so 19 or more reach 0.05")
    g.add_argument("--select", choices=SELECT_CHOICES, default=None,
                   help="contrast whose selective heads are ablated: lighting / albedo need an image probe (its "
                        "`class` column); change_albedo / change_lighting its change classes (`class_change`: heads "
                        "that keep colour and drop light, or the converse, ranked by the bound on the other factor's "
                        "gain); default: the probe's primary contrast (render_vs_albedo, or a text probe's A - B)")
    g.add_argument("--match", choices=MATCH_CHOICES, default="group",
                   help="where random draws come from: group = the other heads of each top-k head's block and token "
                        "region (default); block = of its block, either region (small networks, whose 4-head groups "
                        "allow too few different draws). Draws are all different; where fewer exist than asked, fewer are made "
                        "(said on stderr, recorded in ablation.json, and the rank p's floor follows)")
    g.add_argument("--metric", default=None, help="metric column for the summary (default: lmse_linear_scalar)")


def build_parser() -> argparse.ArgumentParser:
    from probe.klein.model import add_model_arguments, add_randomize_arguments

    parser = Parser(
        prog="python -m evaluate", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", required=True,
                                parser_class=Parser)
    fmt = HelpFormatter

    g = sub.add_parser("generate", help="klein's albedo for every sample (plus baselines)", formatter_class=fmt)
    _common(g)
    add_model_arguments(g)
    add_randomize_arguments(g, population=False)
    _generation(g)
    g.add_argument("--method", default="klein", help="prediction folder name under OUT/pred")
    g.add_argument("--shard", default=None, help="K/N: this job's share of the samples (K = 0..N-1); "
                   "auto: from a SLURM array or torchrun")
    g.add_argument("--no-baselines", action="store_true", help="do not also write the baseline predictions")
    g.add_argument("--status", type=int, metavar="N", default=None,
                   help="load no model: list the predictions still missing from OUT, split N ways as --shard "
                        "K/N splits them, and the shards to run again (exit 0 complete, 3 incomplete)")
    _resume_arg(g)

    b = sub.add_parser("baselines", help="image-as-albedo and colour-Retinex predictions (no model)",
                       formatter_class=fmt)
    _common(b)
    b.add_argument("--shard", default=None, help="K/N share of the samples, or auto (SLURM array / torchrun)")
    b.add_argument("--quiet", action="store_true", help="no progress bars (the summary lines stay)")
    b.add_argument("--marigold", default=None, metavar="DIR",
                   help="also run diffusers' Marigold intrinsics pipeline from this local weights folder")
    b.add_argument("--hdr", action="store_true",
                   help="also write image_as_albedo_hdr and retinex_color_hdr, which read the linear HDR render "
                        "instead of the 8-bit sRGB PNG every other method gets (separately named methods)")
    _resume_arg(b)

    s = sub.add_parser("score", help="score every prediction folder against ground truth (no GPU)",
                       formatter_class=fmt)
    _common(s)
    s.add_argument("--pred", default=None, help="prediction folder (default OUT/pred)")
    s.add_argument("--methods", default=None, help="comma-separated methods (default: every folder in --pred)")
    s.add_argument("--quiet", action="store_true", help="no progress bar (the summary lines stay)")
    _scoring(s)

    a = sub.add_parser("ablate", help="causal test: mean-ablate top-k selective heads vs random k",
                       formatter_class=fmt)
    _common(a)
    add_model_arguments(a)
    add_randomize_arguments(a, population=False)
    _generation(a)
    _ablation(a)
    a.add_argument("--shard", default=None,
                   help="K/N or auto: generate only this share of the samples' ablated (and plain) predictions and "
                        "stop; when every shard has finished, the same command without --shard reuses them and "
                        "scores and summarises")
    _scoring(a)

    l_ = sub.add_parser("link", help="probe selectivity per scene vs albedo error (Spearman, bootstrap CI)",
                        formatter_class=fmt)
    _common(l_, data=False)
    l_.add_argument("--probe", default="runs/probe",
                    help="probe run folder: an image probe (per_sample.npz: direct, per sample) or a text probe "
                         "(captures.npz: indirect, per scene)")
    l_.add_argument("--method", default="klein", help="prediction method whose error is linked")
    l_.add_argument("--metric", default=None, help="metric column (default: lmse_linear_scalar)")
    l_.add_argument("--top-k", type=positive_int, default=50, help="selective units averaged per sample or pair")
    l_.add_argument("--select", choices=SELECT_CHOICES, default=None,
                    help="contrast whose selective units are averaged (default: the probe's primary contrast)")
    l_.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (clusters: base scenes)")

    r = sub.add_parser("report", help="report.md and report.html from what is in OUT", formatter_class=fmt)
    _common(r)
    r.add_argument("--probe", default="runs/probe", help="probe run folder (for the link section)")
    r.add_argument("--max-grid", type=int, default=12, help="samples shown in the image grid (0: none)")

    al = sub.add_parser("all", help="generate, baselines, score, ablate, link and report in one go",
                        formatter_class=fmt)
    _common(al)
    add_model_arguments(al)
    add_randomize_arguments(al, population=False)
    _generation(al)
    _ablation(al)
    al.add_argument("--top-k", type=positive_int, default=50, help="selective units averaged per sample or pair (link)")
    al.add_argument("--no-ablate", action="store_true", help="skip the ablation runs")
    _resume_arg(al)
    al.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    _scoring(al)

    mi = sub.add_parser("mit", help="the MIT intrinsic images benchmark's protocol and baselines on a folder from "
                        "`python -m render import-mit`, beside every prediction folder (no GPU)", formatter_class=fmt)
    _common(mi, data=False)
    mi.add_argument("--data", default="runs/mit", help="a folder written by `python -m render import-mit`")
    mi.add_argument("--pred", default=None, help="prediction folder (default OUT/pred); none: the baselines alone")
    mi.add_argument("--methods", default=None, help="comma-separated prediction folders (default: every one in "
                    "--pred but ablation runs)")
    mi.add_argument("--baselines", default=",".join(MIT_BASELINES),
                    help="comma-separated benchmark baselines, from " + ", ".join(MIT_BASELINES))
    mi.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (objects) for the paired CIs")
    mi.add_argument("--quiet", action="store_true", help="no progress bars")

    v = sub.add_parser("verdict", help="the card's claims as hypotheses H1-H6 with pre-declared criteria, decided from "
                       "an evaluate folder and probe runs (no GPU)", formatter_class=fmt,
                       description="Reads outputs the tool already wrote and states H1 (units separate the photograph "
                       "and albedo prompts), H2 (beyond untrained networks), H3 (beyond wording), H4 (lighting- and "
                       "albedo-selective units in pixels, beyond untrained networks), H5 (the predicted albedo beats "
                       "image-as-albedo and Retinex) and H6 (the selective heads are needed for it), each with its "
                       "test, criterion, power and outcome: supported / not supported / not tested (with the command "
                       "that would test it). The criteria (evaluate/verdict_criteria.py) are printed before any "
                       "outcome and are the same for every model.")
    v.add_argument("--evaluate", required=True, metavar="DIR",
                   help="evaluate folder: score_summary.json (H5), ablation.json (H6), pred/klein/ (the model)")
    v.add_argument("--probe-images", default=None, metavar="RUN", help="image probe run of the model (H4)")
    v.add_argument("--population-images", default=None, metavar="FOLDER",
                   help="untrained networks made with the image run's design (`probe run <its options> --randomize "
                        "transformer --randomize-seeds 0-18`) (H4)")
    v.add_argument("--probe-text", default=None, metavar="RUN", help="text probe run of the model (H1, H3)")
    v.add_argument("--population-text", default=None, metavar="FOLDER",
                   help="untrained networks made with the text run's design (H2)")
    v.add_argument("--out", default=None, help="output folder for verdict.json, verdict.md, config.json "
                   "(default: EVALUATE/verdict)")
    st = sub.add_parser("study", help="the known-answer study: probe, population, evaluate and verdict on a network "
                        "that decomposes, one trained not to and an untrained one (small kleins trained here)",
                        formatter_class=fmt,
                        description="Runs every job of the known-answer study as a user would (one subprocess each, "
                        "each resuming): the image probe, a population of untrained networks, evaluate all "
                        "(generate, score, ablate, link, report), probe compare --population and evaluate verdict, "
                        "for known-albedo (decomposes: H4-H6 must be supported), known-photo (trained to give the "
                        "photograph back: must not) and an untrained network (must not); then study.md / study.json, "
                        "one row per network. A finished step is skipped only when its command was identical. "
                        "The networks were trained here on synthetic renders: a check of the tool, not a finding "
                        "about klein.")
    st.add_argument("--data", required=True, metavar="RENDER_DIR",
                    help="held-out render (the 25 default scenes: `python -m render --resolution 64 --recolor 1`); "
                         "scenes the models were trained on are refused")
    st.add_argument("--out", default="runs/known-study", help="study folder")
    st.add_argument("--decomposing", default="known-albedo", help="the network that decomposes")
    st.add_argument("--reproduce-photo", default="known-photo", help="the network trained not to decompose")
    st.add_argument("--population", type=int, default=19,
                    help="untrained networks ranked against (19: the rank p floor reaches 0.05)")
    st.add_argument("--untrained-seed", type=int, default=1000,
                    help="--randomize-seed of the untrained network (outside the population's seeds)")
    st.add_argument("--steps", type=int, default=10,
                    help="inference steps of every sampling run, probe and evaluate alike")
    st.add_argument("--k", default="4", help="heads ablated (evaluate ablate --k)")
    st.add_argument("--n-random", type=int, default=19, help="random k-head draws (19: rank p floor 0.05)")
    st.add_argument("--select", choices=SELECT_CHOICES, default="change_albedo",
                    help="heads ablated on the decomposing and untrained networks (evaluate ablate --select; default "
                         "change_albedo, the rule the verdict's H6 reads: other rules make H6 `not tested`)")
    st.add_argument("--match", choices=MATCH_CHOICES, default="block",
                    help="where random draws come from (evaluate ablate --match; default block: the small networks' "
                         "4-head groups allow too few different region-matched draws)")
    st.add_argument("--keeps-light", default=None, metavar="FOLDER",
                    help="add the keeps-light network: a model trained to give the shading (`python -m probe known "
                         "train --task light --vae-from known-albedo`; not shipped): the known answer for "
                         "lighting-selective heads (H4's lighting half)")
    st.add_argument("--networks", default=None,
                    help="run the steps of these networks only (the population always); the table has their rows "
                         "(default decomposing,untrained,reproduce-photo, and keeps-light with --keeps-light)")
    st.add_argument("--quiet", action="store_true", help="no progress bars from the jobs (the study's own lines stay)")
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
