"""`probe compare`'s within-network test of "run 1 > run k": false-positive rate, power and time, side by side with
the basic bootstrap it replaced and a Wilcoxon over units.

    python benchmarks/bench_compare.py                 # ~5 min on 2 shared cores
    python benchmarks/bench_compare.py --sims 400

Simulated pairs of runs on 25 pairs (prompts shared, so the runs are paired unless said otherwise).
1. Units that are NOT independent: every unit loads on a per-pair factor (strength `load`), as units of one
   network do. Under H0 both runs come from the same process; under H1 run 1 has a shift in 10 % of its units.
2. Runs that mix effect sizes differently with equal expected mean |t| (issue 17.2): every unit d_z 0.35 in one
   run, half null and half d_z 0.553 in the other (E mean |t| 1.8406 vs 1.8405 at 25 pairs), independent units.
   A true null for S = mean |t| (run 1) - mean |t| (run 2), in both orders, paired and with different pair ids.
3. The same process on 25 vs 12 pairs: mean |t| grows with the pairs, which is why `probe compare` refuses runs
   that differ in pairs or seeds per pair.
For each, the rejection rate at alpha = 0.05 of (a) the within-network test `probe compare` uses now (S / SE
against Student's t, SE from paired resamples of the pairs or the jackknife), (b) the basic bootstrap it used
before (still computed, under `basic_bootstrap`), (c) a Wilcoxon signed-rank test over units of |t1| - |t2|,
the test that treats units as independent. Then the wall time of the test at the card's scale (16,320 units,
2,000 resamples). Synthetic data: calibration and timing only, no findings.
"""
from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import numpy as np
from scipy import stats as sps

from probe.io.captures import Captures
from probe.stats.compare import within_network_test


def _as_run(diff: np.ndarray, pair_ids) -> SimpleNamespace:
    n, n_units = diff.shape
    units = np.array([f"u{i}" for i in range(n_units)])
    return SimpleNamespace(captures=Captures(a=diff.astype(np.float32), b=np.zeros((n, n_units), np.float32),
                                             units=units, pair_ids=np.array(pair_ids)))


def _run(rng, shared_f, n, n_units, load, shift):
    loading = rng.normal(size=n_units)
    mu = rng.normal(0, 0.4, size=n_units)
    mu[: n_units // 10] += shift
    f = 0.7 * shared_f[:n] + 0.7 * rng.normal(size=n)
    diff = f[:, None] * loading[None] * load + mu[None] + rng.normal(size=(n, n_units))
    run = _as_run(diff, [f"p{i}" for i in range(n)])
    return run, run.captures.units


def _rates(pairs_of_runs, n_boot: int) -> tuple[float, float, float, dict]:
    new = old = naive = 0
    k = 0
    spread = {"S": [], "se_jackknife": [], "se_bootstrap": []}
    for s, (r1, r2) in enumerate(pairs_of_runs):
        units = r1.captures.units
        res = within_network_test(r1, r2, units, n_boot=n_boot, seed=s)
        for key in spread:
            spread[key].append(res[key])
        new += res["p_run1_greater"] <= 0.05
        old += res["basic_bootstrap"]["p_run1_greater"] <= 0.05
        t1 = np.abs(sps.ttest_1samp(r1.captures.a, 0).statistic)
        t2 = np.abs(sps.ttest_1samp(r2.captures.a, 0).statistic)
        naive += sps.wilcoxon(t1 - t2, alternative="greater").pvalue <= 0.05
        k += 1
    sd = float(np.std(spread["S"], ddof=1))
    ratios = {key: float(np.mean(spread[key])) / sd for key in ("se_jackknife", "se_bootstrap")}
    return new / k, old / k, naive / k, ratios


def correlated(sims, n_units, load, shift, seed, n1=25, n2=25):
    rng = np.random.default_rng(seed)
    for _ in range(sims):
        shared = rng.normal(size=max(n1, n2))
        r1, _ = _run(rng, shared, n1, n_units, load, shift)
        r2, _ = _run(rng, shared, n2, n_units, load, 0.0)
        yield r1, r2


def mixed(sims, n_units, seed, uniform_first: bool, paired: bool, n=25):
    rng = np.random.default_rng(seed)
    for _ in range(sims):
        e_uni = np.full(n_units, 0.35)
        e_mix = np.zeros(n_units)
        e_mix[n_units // 2:] = 0.553
        e1, e2 = (e_uni, e_mix) if uniform_first else (e_mix, e_uni)
        ids1 = [f"p{i}" for i in range(n)]
        ids2 = ids1 if paired else [f"q{i}" for i in range(n)]
        yield (_as_run(e1 + rng.normal(size=(n, n_units)), ids1), _as_run(e2 + rng.normal(size=(n, n_units)), ids2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--n-boot", type=int, default=400)
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"probe compare, within-network test: {args.sims} simulated run pairs x {args.units} units x 25 pairs, "
          f"{args.n_boot} resamples; {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"  false 'run 1 > run 2' (H0) or power (H1) at alpha 0.05      within-network   basic bootstrap   "
          f"Wilcoxon over units")
    cases = [
        ("H0, weak unit dependence (load 0.3)", correlated(args.sims, args.units, 0.3, 0.0, 3)),
        ("H0, strong unit dependence (load 1.5)", correlated(args.sims, args.units, 1.5, 0.0, 15)),
        ("H1: +0.6 in 10% of units, load 0.3", correlated(args.sims, args.units, 0.3, 0.6, 63)),
        ("H0 mixed: run 1 uniform 0.35, paired", mixed(args.sims, args.units, 101, True, True)),
        ("H0 mixed: run 1 half 0/half 0.553, paired", mixed(args.sims, args.units, 102, False, True)),
        ("H0 mixed: run 1 uniform, other pairs", mixed(args.sims, args.units, 103, True, False)),
        ("H0 mixed: run 1 half/half, other pairs", mixed(args.sims, args.units, 104, False, False)),
        ("same process, 25 vs 12 pairs (refused)", correlated(max(args.sims // 5, 20), args.units, 0.3, 0.0, 7,
                                                             n1=25, n2=12)),
    ]
    for label, gen in cases:
        t0 = time.perf_counter()
        new, old, naive, ratios = _rates(gen, args.n_boot)
        print(f"  {label:<58} {new:>8.3f}        {old:>8.3f}          {naive:>8.3f}    "
              f"({time.perf_counter() - t0:.0f} s; mean SE / sd of S: jackknife {ratios['se_jackknife']:.2f}, "
              f"bootstrap {ratios['se_bootstrap']:.2f})", flush=True)
    rng = np.random.default_rng(0)
    shared = rng.normal(size=25)
    r1, units = _run(rng, shared, 25, 16_320, 0.3, 0.3)
    r2, _ = _run(rng, shared, 25, 16_320, 0.3, 0.0)
    t0 = time.perf_counter()
    res = within_network_test(r1, r2, units, n_boot=2000, seed=0)
    dt = time.perf_counter() - t0
    print(f"time of the test at the card's scale (16,320 units x 25 pairs x 2,000 resamples, both runs, with the "
          f"jackknife): {dt:.2f} s (S = {res['S']:.3f}, p = {res['p_run1_greater']:.4g})")


if __name__ == "__main__":
    main()
