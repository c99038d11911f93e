"""python -m probe compare: finished probe runs side by side, the within-network test of "run 1 > run k", and a
run ranked among a population of untrained networks.

    python -m probe compare runs/probe --population runs/population --out runs/compare     # what training did
    python -m probe compare runs/probe runs/probe-images --units shared --out runs/text-vs-images
    python -m probe compare runs/card runs/card-random runs/card-seed1 --out runs/compare-card --labels a,b,c

Reads each RUN's summary.json, units.csv, config.json and (for the tests) captures.npz, and with
--population the population folder (`probe run --randomize transformer --randomize-seeds 0-18`); writes
OUT/compare.md, OUT/compare.json and OUT/compare_blocks.png (per-block max |t|, runs as bars, the population's
range beside them). No model, no torch. The card's statistics (share of units over |t| > 3, split-half r)
come out nearly as high on random weights, so only untrained networks of the same architecture can say
whether training did anything, and one of them is not enough: the within-network test between two runs
resamples pairs, never networks (two untrained networks differ by it far more often than 5 %). The rank
among K untrained networks is the test of training; the within-network test serves for seeds, heads vs
card runs (`--units any`) and text vs image probes (`--units shared`).

The statistics are `probe.stats.compare` (the within-network test) and `probe.stats.population` (the rank),
compare.md and the figure `probe.report.compare`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probe.io.runs import CompareError
from probe.report.compare import write_compare
from probe.stats.compare import UNIT_MODES, compare_runs

__all__ = ["add_compare_arguments", "main_compare"]


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished probe run folders: two or more (run 1 is the "
                   "reference: the within-network test asks whether its |t| exceed each other run's), or one with "
                   "--population")
    p.add_argument("--out", required=True, help="output folder (compare.md, compare.json, compare_blocks.png)")
    p.add_argument("--labels", default=None, help="comma-separated labels, one per run (default: from each config)")
    p.add_argument("--units", choices=UNIT_MODES, default="same",
                   help="same: the runs must have the same unit set (default); shared: compare on the units they "
                        "share; any: only run-level numbers side by side")
    p.add_argument("--contrast", default=None, metavar="NAME",
                   help="image probes: compare this contrast of every run (render_vs_albedo, lighting, albedo; "
                        "default: each run's primary one), e.g. lighting to ask whether the heads that change with "
                        "light on renders change with light on photographs (render import-mit)")
    p.add_argument("--allow-unequal-pairs", action="store_true",
                   help="compare runs that differ in the number of pairs or in --seeds-per-pair (refused otherwise: "
                        "|t| grows with both): the mean-|t| test is then not run, the scale-free parts are (the signed "
                        "agreement of t, units significant in both, the runs side by side), and compare.md says so")
    p.add_argument("--n-boot", type=int, default=2000, help="resamples of the pairs: the spread of S in the within-network test, the interval of "
                   "the signed agreement")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    p.add_argument("--population", default=None, metavar="FOLDER",
                   help="a population of untrained networks (`probe run --randomize transformer --randomize-seeds "
                        "0-18 --out FOLDER`, made with the run's own options): each headline statistic of every run "
                        "(FWER counts per contrast, class counts, max |t|, per block) is ranked among its K networks, "
                        "rank p = (1 + #{at least as large}) / (1 + K), floor 1 / (1 + K). This, not the "
                        "within-network test, says whether training did anything")


def main_compare(args) -> int:
    if args.n_boot < 1:
        raise CompareError(f"--n-boot must be at least 1, got {args.n_boot}")
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    res = compare_runs(args.runs, labels, args.units, args.n_boot, args.seed, contrast=args.contrast,
                       population=args.population, allow_unequal_pairs=args.allow_unequal_pairs)
    written = write_compare(res, Path(args.out))
    for c in res["comparisons"]:
        t = c["test"]
        msg = (f"S = {t['S']:.3f} [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}], p(run 1 > run {c['run']}) = "
               f"{t['p_run1_greater']:.4g}" if t.get("available") else f"test not run ({t.get('why')})")
        ag = c.get("agreement") or {}
        same = (f"; signed t agree: Spearman rho {ag['rho']:.3f} [{ag['ci'][0]:.3f}, {ag['ci'][1]:.3f}]"
                if "rho" in ag else "")
        print(f"run 1 vs run {c['run']} ({c['label']}): mean delta |t| {c['mean_delta_abs_t']:.3f}; {msg} "
              f"(within-network noise only){same}")
    pop = res.get("population")
    if pop:
        for r in pop["runs"]:
            heads = [row for row in r["statistics"] if row["level"] == "run" and row.get("rank_p") is not None]
            best = sorted(heads, key=lambda row: row["rank_p"])[:3]
            print(f"run {r['run']} ({r['label']}) among K = {pop['K']} untrained networks (rank p floor "
                  f"{pop['floor']:.3g}): " + "; ".join(
                      f"{row['key']} {row['observed']:.4g} vs median {row['population_median']:.4g}, rank p "
                      f"{row['rank_p']:.3g}" for row in best))
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stdout)
    return 0
