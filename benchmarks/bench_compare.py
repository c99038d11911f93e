"""`probe compare`'s test of "run 1 > run k": false-positive rate, power and time, side by side.

    python benchmarks/bench_compare.py                 # ~2 min on 2 cores
    python benchmarks/bench_compare.py --sims 400

Simulated pairs of runs on the same 25 pairs (prompts shared, so the runs are paired) with units
that are NOT independent: every unit loads on a per-pair factor (strength `--load`), as units of one
network do. Under H0 both runs come from the same process; under H1 run 1 has a shift in 10 % of its
units. For each, the rejection rate at alpha = 0.05 of (a) the bootstrap over pairs that `probe
compare` uses and (b) a Wilcoxon signed-rank test over units of |t1| - |t2|, the test that treats
units as independent. Then the wall time of the test at the card's scale (16,320 units, 2,000
resamples). Synthetic data: calibration and timing only, no findings.
"""
from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import numpy as np
from scipy import stats as sps

from probe.io.captures import Captures
from probe.stats.compare import bootstrap_test


def _run(rng, shared_f, n, n_units, load, shift):
    loading = rng.normal(size=n_units)
    mu = rng.normal(0, 0.4, size=n_units)
    mu[: n_units // 10] += shift
    f = 0.7 * shared_f + 0.7 * rng.normal(size=n)
    diff = f[:, None] * loading[None] * load + mu[None] + rng.normal(size=(n, n_units))
    units = np.array([f"u{i}" for i in range(n_units)])
    caps = Captures(a=diff.astype(np.float32), b=np.zeros((n, n_units), np.float32), units=units,
                    pair_ids=np.array([f"p{i}" for i in range(n)]))
    return SimpleNamespace(captures=caps), units


def rejection(sims, n, n_units, load, shift, n_boot, seed):
    rng = np.random.default_rng(seed)
    boot = naive = 0
    for s in range(sims):
        shared = rng.normal(size=n)
        r1, units = _run(rng, shared, n, n_units, load, shift)
        r2, _ = _run(rng, shared, n, n_units, load, 0.0)
        boot += bootstrap_test(r1, r2, units, n_boot=n_boot, seed=s)["p_run1_greater"] <= 0.05
        t1 = np.abs(sps.ttest_1samp(r1.captures.a, 0).statistic)
        t2 = np.abs(sps.ttest_1samp(r2.captures.a, 0).statistic)
        naive += sps.wilcoxon(t1 - t2, alternative="greater").pvalue <= 0.05
    return boot / sims, naive / sims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--n-boot", type=int, default=400)
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"probe compare test: {args.sims} simulated run pairs x {args.units} correlated units x 25 pairs, "
          f"{args.n_boot} resamples; {os.cpu_count()} CPUs, load average {load:.1f}")
    print("  rejection rate at alpha 0.05          bootstrap over pairs   Wilcoxon over units")
    for label, ld, shift in (("H0, weak unit dependence (load 0.3)", 0.3, 0.0),
                             ("H0, strong unit dependence (load 1.5)", 1.5, 0.0),
                             ("H1: +0.6 in 10% of units, load 0.3", 0.3, 0.6)):
        b, w = rejection(args.sims, 25, args.units, ld, shift, args.n_boot, seed=int(10 * ld + 100 * shift))
        print(f"  {label:<38} {b:>10.3f}             {w:>10.3f}")
    rng = np.random.default_rng(0)
    shared = rng.normal(size=25)
    r1, units = _run(rng, shared, 25, 16_320, 0.3, 0.3)
    r2, _ = _run(rng, shared, 25, 16_320, 0.3, 0.0)
    t0 = time.perf_counter()
    res = bootstrap_test(r1, r2, units, n_boot=2000, seed=0)
    dt = time.perf_counter() - t0
    print(f"time of the test at the card's scale (16,320 units x 25 pairs x 2,000 resamples, both runs): {dt:.2f} s "
          f"(S = {res['S']:.3f}, p = {res['p_run1_greater']:.4g})")


if __name__ == "__main__":
    main()
