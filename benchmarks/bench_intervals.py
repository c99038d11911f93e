"""Coverage of evaluate's cluster-bootstrap intervals, the old (percentile) and the new (studentised) side by side.

    python benchmarks/bench_intervals.py                  # ~2 min on 2 cores
    python benchmarks/bench_intervals.py --sims 500 --clusters 5,25

Every mean evaluate reports (scores, paired differences, the ablation's top-k harm) resamples scenes
(clusters: a scene's lightings and colour variants together) through `evaluate.stats.bootstrap_mean_ci`,
which gives two 95 % intervals: `ci95_low/high` (percentile) and `ci95_studentized_low/high`
(bootstrap-t with the cluster-robust standard error). Each simulated data set has C clusters of 2-6
samples (the lightings x colour variants of a scene), a cluster effect plus per-sample noise, and a
known mean; the table gives how often each interval holds that mean, with its median width. Two
shapes of cluster effect: normal, and lognormal (sigma 1: a skewed error metric where a few scenes are
much worse than the rest, with noise proportional to the effect). Synthetic data: calibration only.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from evaluate.stats import bootstrap_mean_ci


def simulate(n_clusters: int, shape: str, sims: int, n_boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    hits = {"percentile": 0, "studentized": 0}
    widths: dict[str, list[float]] = {"percentile": [], "studentized": []}
    unbounded = 0
    for r in range(sims):
        sizes = rng.integers(2, 7, n_clusters)
        codes = np.repeat(np.arange(n_clusters), sizes)
        if shape == "normal":
            effect, truth = rng.normal(0.0, 1.0, n_clusters), 0.0
            values = effect[codes] + rng.normal(0.0, 0.5, codes.size)
        else:
            effect, truth = rng.lognormal(0.0, 1.0, n_clusters), math.exp(0.5)
            values = effect[codes] * (1.0 + rng.normal(0.0, 0.5, codes.size))
        ci = bootstrap_mean_ci(values, n_boot=n_boot, seed=r, clusters=codes)
        for kind, (lo, hi) in (("percentile", (ci["ci95_low"], ci["ci95_high"])),
                               ("studentized", (ci["ci95_studentized_low"], ci["ci95_studentized_high"]))):
            hits[kind] += lo <= truth <= hi
            widths[kind].append(hi - lo)
        unbounded += not math.isfinite(ci["ci95_studentized_high"] - ci["ci95_studentized_low"])
    return {"coverage": {k: v / sims for k, v in hits.items()},
            "width": {k: float(np.median(v)) for k, v in widths.items()}, "unbounded": unbounded / sims}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sims", type=int, default=1000, help="simulated data sets per row")
    p.add_argument("--boot", type=int, default=999, help="bootstrap resamples per interval")
    p.add_argument("--clusters", default="3,4,5,8,12,25", help="cluster counts")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    counts = [int(c) for c in a.clusters.split(",")]
    print(f"95 % intervals of a clustered mean: coverage of the true mean over {a.sims} simulated data sets, "
          f"{a.boot} resamples each (median width)")
    print(f"{'effects':<10} {'clusters':>8} {'percentile':>20} {'studentised':>20} {'unbounded':>10}")
    t0 = time.perf_counter()
    for shape in ("normal", "lognormal"):
        for c in counts:
            r = simulate(c, shape, a.sims, a.boot, a.seed + 1000 * c)
            cov, w = r["coverage"], r["width"]
            print(f"{shape:<10} {c:>8} {cov['percentile']:>10.3f} ({w['percentile']:>6.2f}) "
                  f"{cov['studentized']:>10.3f} ({w['studentized']:>6.3g}) {r['unbounded']:>10.1%}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s; binomial SE of a coverage near 0.95: "
          f"{math.sqrt(0.95 * 0.05 / a.sims):.3f})")


if __name__ == "__main__":
    main()
