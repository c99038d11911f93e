"""python -m probe: the paired per-head test (rendered photograph A vs albedo B).

    python -m probe --model tiny                           # dry run on a random-weight model
    python -m probe run --model black-forest-labs/FLUX.2-klein-base-4B --out runs/probe
    python -m probe run --model black-forest-labs/FLUX.2-klein-base-4B --randomize transformer --randomize-seeds 0-18 --out runs/population
    python -m probe compare runs/probe --population runs/population --out runs/compare   # trained vs 19 untrained networks
    python -m probe run --protocol card --out runs/probe-card   # the published card's protocol
    python -m probe run --stimuli images --data runs/render --out runs/probe-images   # no words: rendered pixels
    python -m probe stats --from runs/probe/captures.npz --out runs/probe-restat   # no model, no torch
    python -m probe run --shard auto --out runs/probe ...   # one share of the pairs per SLURM task / torchrun rank
    python -m probe merge runs/probe                        # check the shards, then statistics and report
    python -m probe prompts --scenes my_scenes/ --out pairs.jsonl --control control.jsonl --vocabulary vocab.jsonl --shuffled shuffled.jsonl
    python -m probe prompts --from-pairs prompts/pairs.jsonl --vocabulary prompts/vocabulary.jsonl --shuffled prompts/shuffled.jsonl

`run` is the default subcommand. Outputs (in --out): captures.npz, units.csv, summary.json,
config.json, report.md and figures/. Runs resume: finished stimuli are cached in
partial_captures.npz and reused only when the model revision, dtype, device type, randomisation,
capture settings and library versions are the same (otherwise the run starts fresh and says why).
"""
from __future__ import annotations

import argparse
import sys

from probe.io.helpformat import HelpFormatter

SUBCOMMANDS = ("run", "stats", "prompts", "compare", "merge", "known")


MERGE_DESCRIPTION = """Merge the shards of `python -m probe run --shard K/N|auto` into one run.

Every finished shard file must share one configuration (capture settings, model revision,
randomisation, dtype, device type, library versions, design, unit set), and every pair of the
design must be in one of them: a pair held twice counts once when its values are identical,
different values are an error. Then captures.npz, units.csv, summary.json, config.json and the
report, exactly as an unsharded `probe run` writes them (no model is loaded, no GPU needed)."""

MERGE_EPILOG = """examples:
  python -m probe merge runs/probe                  # every shard wrote into runs/probe: merged in place
  python -m probe merge runs/probe --dry-run        # the pairs still missing, by shard, and what to run again
  python -m probe merge node1/probe node2/probe --out runs/probe

files: each shard (`python -m probe run --shard K/N --out DIR ...`) writes DIR/shards/partial-K-of-N.npz;
a shard that is still capturing (or was stopped) has a file without its finished header and is never
merged. config.json of the merged run lists every shard file, its host, shard source and capture time.

exit status: 0 merged (--dry-run: complete), 2 not mergeable (one paragraph says why; nothing is
written), 3 (--dry-run) pairs missing."""


def _add_stats_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("statistics")
    g.add_argument("--n-perm", type=int, default=None,
                   help="sign-flip permutations for the null (default 10000; 1000 under --protocol card)")
    g.add_argument("--n-splits", type=int, default=100, help="random 50/50 splits for split-half r (default 100)")
    g.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of pairs for block CIs (default 1000)")
    g.add_argument("--stats-seed", type=int, default=0, help="seed of permutations, splits and bootstraps")
    g.add_argument("--magnitude-margin", type=float, default=None, metavar="R",
                   help="image probe: a unit is lighting- (albedo-) selective only when the size of its change under "
                        "the other factor is shown below R times its change under this one (per-scene RMS, "
                        "one-sided test over scenes; units.csv `class`; default 0.5; `stats` keeps the run's own "
                        "unless given)")
    g.add_argument("--equivalence-margin", type=float, default=None, metavar="D",
                   help="image probe: the margin on Cohen's d_z of the signed rule kept for comparison (TOST on the "
                        "other factor's signed mean change; units.csv `class_signed`, `p_equiv_signed_*`; default "
                        "0.5; `stats` keeps the run's own unless given)")
    g.add_argument("--no-report", action="store_true", help="skip report.md and figures")
    g.add_argument("--baseline", default=None, metavar="RUN_DIR",
                   help="a finished random-init run (`probe run --randomize transformer`) to set beside this one in "
                        "the report, with the test of trained > random (see `probe compare`)")


def build_parser() -> argparse.ArgumentParser:
    from probe.klein.model import DEFAULT_MODEL, add_model_arguments, add_randomize_arguments  # light: no torch

    parser = argparse.ArgumentParser(
        prog="python -m probe", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", metavar="{run,stats,prompts,compare,merge,known}")

    run = sub.add_parser("run", help="capture with the model, then statistics and report (default)",
                         formatter_class=HelpFormatter)
    add_model_arguments(run, DEFAULT_MODEL)
    add_randomize_arguments(run)
    g = run.add_argument_group("prompts")
    g.add_argument("--pairs", default=None, help="pair file (JSON lines id,a,b); default: the shipped prompts/pairs.jsonl")
    g.add_argument("--control", action="append", default=None, metavar="SET",
                   help="a control set, repeatable: a shipped set's name (paraphrase: A vs a lighting-neutral "
                        "paraphrase of A; vocabulary: B's own words turned to mean a lit photograph; shuffled: B's "
                        "words in a random order), NAME=PATH for a control file of your own, or 'none'. Default: the "
                        "three shipped sets with the shipped pairs; with --pairs, the vocabulary and shuffled controls "
                        "derived from that file. Each set gets a direct "
                        "test (control prompt minus albedo prompt, same noise): t_vs_SET, p_fwer_vs_SET, "
                        "selective_vs_SET in units.csv")
    g.add_argument("--limit", type=int, default=None,
                   help="use only the first N pairs (image probe: the first N base scenes) for quick checks")
    g = run.add_argument_group(
        "image stimuli", "--stimuli images: no words change. Each image of a render folder is one klein editing call "
        "(the image as reference, one fixed text, the noise of its base scene), as evaluate generate makes it; three "
        "contrasts, each a paired test over base scenes: render_vs_albedo (a render vs its ground-truth albedo image), "
        "lighting (one scene and colours under two lightings), albedo (original vs variant colours, same lighting)")
    g.add_argument("--stimuli", choices=("text", "images"), default="text",
                   help="text: prompt pairs (A photograph vs B albedo); images: the render folder's images (--data)")
    g.add_argument("--data", default=None, metavar="RENDER_DIR",
                   help="render folder (python -m render; --recolor K for the albedo contrast)")
    g.add_argument("--image-prompt", default=None, metavar="TEXT",
                   help="the editing text of every call (default: the first instruction of "
                        "prompts/edit_instructions.json, what evaluate generate uses)")
    g.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="references are prepared as evaluate generate prepares them: downscaled when a side is over "
                        "N (default 1024; 64 for --model tiny, as evaluate), then padded to multiples of 16")
    g.add_argument("--pairs-over", choices=("scenes", "samples"), default="scenes",
                   help="scenes: one pair per base scene, its lightings and variants averaged first (independent); "
                        "samples: every sample-level pair (CLUSTERED, flagged in every output)")
    g.add_argument("--contrasts", default=None, metavar="LIST",
                   help="comma-separated subset of render_vs_albedo,lighting,albedo,luminance (default: all four, "
                        "luminance when the render has hsv colour variants; the albedo contrast uses the chroma variants "
                        "when there are any; the unit classes need lighting and albedo)")
    g.add_argument("--albedo-order", choices=("luminance", "chroma"), default="luminance",
                   help="which colour set is A in an albedo contrast of hsv variants: the one with the higher "
                        "ground-truth albedo luminance, or chroma; chroma variants (render --recolor-mode chroma|both), "
                        "which keep luminance, are always ordered by chroma (the lighting contrast's A is the lighting "
                        "with the higher shading contrast)")
    g = run.add_argument_group("noise")
    g.add_argument("--seed", type=int, default=0,
                   help="run seed: each pair's noise seed is derived from it and the pair id (the same for A, B and "
                        "the pair's control prompts)")
    g.add_argument("--seeds-per-pair", type=int, default=1, metavar="N",
                   help="noise samples per pair: each prompt's unit values are averaged over N draws")
    g.add_argument("--noise", choices=("per-pair", "shared"), default="per-pair",
                   help="per-pair: a seed per pair (default); shared: every pair uses --seed (the earlier design)")
    g = run.add_argument_group("capture")
    g.add_argument("--protocol", choices=("heads", "card"), default="heads",
                   help="heads: 24 real heads per site, padding masked; card: the published protocol as we "
                        "reconstruct it (16-channel slices, 1 step, guidance 1.0, the pipeline's default "
                        "resolution, 1,000 permutations, t = B - A)")
    g.add_argument("--slice-layout", choices=("contiguous", "strided"), default="contiguous",
                   help="card protocol: a 16-channel 'head' is 16 consecutive channels (contiguous) or every "
                        "(C/16)-th channel (strided); both give 5 x 192 + 20 x 768 = 16,320 units")
    g.add_argument("--steps", type=int, default=None, help="inference steps of the sampling run (default 50; card: 1)")
    g.add_argument("--capture-steps", default=None,
                   help="comma-separated step indices to capture (default: 4 spread over the schedule; card: 0)")
    g.add_argument("--guidance", type=float, default=None,
                   help="CFG scale (default 4.0, the base model's; card: 1.0). With CFG the conditional forward is captured")
    g.add_argument("--height", type=int, default=None,
                   help="image height (default 512, 64 for --model tiny; card: the pipeline's default, 1024 for klein)")
    g.add_argument("--width", type=int, default=None,
                   help="image width (default 512, 64 for --model tiny; card: the pipeline's default, 1024 for klein)")
    g.add_argument("--batch-size", type=int, default=5,
                   help="prompts of one pair per pipeline call (a call never mixes pairs; 5 = A, B and the three "
                        "shipped control prompts: one call per pair); part of the resume key (on CUDA in bf16 another "
                        "batch size can pick other kernels), so a cache made with another batch size is not reused")
    g.add_argument("--reducer", choices=("rms", "mean_abs", "mean", "l2"), default="rms",
                   help="per-unit scalar over real tokens and channels (heads protocol)")
    g.add_argument("--change-dim", type=int, default=512, metavar="D",
                   help="image probe: numbers kept per head's whole output over its region's tokens, for the change "
                        "classes (class_change: the head's gain for light against its gain for colour, each per unit "
                        "of change of the transformer's input; probe/stats/change.py). Exact when tokens x head_dim "
                        "<= D (the known-answer models at 64 px: 512), else a count sketch (relative sd of a squared "
                        "distance ~sqrt(2/D)); stored once per image in partial_captures_change/ (klein at 1024 px: "
                        "~10 MB per image at 512). 0: no change vectors (and no change classes)")
    g.add_argument("--single-tokens", choices=("img", "txt", "both"), default="img",
                   help="token set of single-block units (img keeps 720 units per step at klein scale)")
    g.add_argument("--max-sequence-length", type=int, default=None,
                   help="text length klein pads prompts to (default: the model's own: 512 for klein and tiny, the "
                        "recorded length of a known-answer model)")
    g.add_argument("--text-tokens", choices=("prompt", "all"), default="prompt",
                   help="text tokens of the .txt units (heads protocol): prompt = the prompt's own tokens, leaving out "
                        "klein's chat template (about a dozen fixed tokens around every prompt) and the padding; all = "
                        "the template's tokens too (the definition of runs made before this option)")
    run.add_argument("--out", default="runs/probe", help="output folder")
    run.add_argument("--no-resume", action="store_true", help="ignore partial_captures.npz and recapture everything")
    run.add_argument("--shard", default=None, metavar="K/N|auto",
                     help="capture only shard K of N (K = 0..N-1) of the pairs: the sorted pair ids round robin, a "
                          "pair's A, B, controls and noise draws together; 'auto' reads K/N from a SLURM array or "
                          "torchrun (with --device auto each torchrun process takes cuda:LOCAL_RANK). Each shard "
                          "writes OUT/shards/partial-K-of-N.npz and no statistics: `python -m probe merge OUT` "
                          "checks and combines the shards")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_stats_arguments(run)

    st = sub.add_parser("stats", help="recompute statistics and report from captures.npz (no model, no torch)",
                        formatter_class=HelpFormatter)
    st.add_argument("--from", dest="captures", required=True, help="captures.npz written by `probe run`")
    st.add_argument("--out", required=True, help="output folder")
    _add_stats_arguments(st)

    pr = sub.add_parser("prompts", help="write pair (and control) files for any scene set",
                        formatter_class=HelpFormatter)
    from probe.jobs.prompts import add_prompts_arguments

    add_prompts_arguments(pr)

    cp = sub.add_parser("compare", help="finished runs side by side (within-network test of run 1 > run k), and "
                                        "a run ranked among untrained networks with --population (no model, no torch)",
                        formatter_class=HelpFormatter)
    from probe.jobs.compare import add_compare_arguments

    add_compare_arguments(cp)

    mg = sub.add_parser("merge", help="check the shards of a split run (`run --shard`), then captures.npz, statistics "
                                      "and report (no model, no GPU)",
                        description=MERGE_DESCRIPTION,
                        epilog=MERGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from probe.jobs.merge import add_merge_arguments

    add_merge_arguments(mg)
    _add_stats_arguments(mg)
    from probe.jobs.known import KNOWN_DESCRIPTION, add_known_arguments

    kn = sub.add_parser("known", help="train a known-answer model here (a check of the tool), or list the shipped ones",
                        description=KNOWN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_known_arguments(kn)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prompts":
            from probe.jobs.prompts import main_prompts

            return main_prompts(args)
        if args.command == "stats":
            from probe.jobs.stats import main_stats

            return main_stats(args)
        if args.command == "compare":
            from probe.jobs.compare import main_compare

            return main_compare(args)
        if args.command == "merge":
            from probe.jobs.merge import main_merge

            return main_merge(args)
        if args.command == "known":
            from probe.jobs.known import main_known

            return main_known(args)
        if getattr(args, "randomize_seeds", None):
            from probe.jobs.population import main_population

            return main_population(args)
        from probe.jobs.run import main_run

        return main_run(args)
    except KeyboardInterrupt:
        print("interrupted: finished prompts are cached; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors print one paragraph, not a traceback
        from probe.jobs.errors import USER_ERRORS

        if isinstance(e, USER_ERRORS):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
