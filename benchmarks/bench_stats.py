"""Time of probe.stats at the card's scale: 16,320 units x 25 pairs x 10,000 sign-flip permutations.

    python benchmarks/bench_stats.py                  # goal: analyse() < 5 s on 2 cores
    python benchmarks/bench_stats.py --repeats 5 --n-boot 1000 --no-control

Prints the median wall time of each part (paired t, sign-flip + tmax null, split-half, per-block
bootstrap) and of the whole `analyse`, without and with a control set of the same size. Data are
Gaussian noise with a few planted units: timings only, no findings.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from probe.stats import StatsConfig, analyse, block_stats, paired_t, sign_flip_null, split_half

GOAL_S = 5.0


def card_units() -> np.ndarray:
    """The card's 16,320 slice16 units: 5 double blocks x 192 slices + 20 single blocks x 768 slices."""
    names = [f"s00/double.{i}/c{j:03d}" for i in range(5) for j in range(192)]
    names += [f"s00/single.{i}/c{j:03d}" for i in range(20) for j in range(768)]
    return np.array(names)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=25)
    ap.add_argument("--n-perm", type=int, default=10_000)
    ap.add_argument("--n-boot", type=int, default=1_000)
    ap.add_argument("--n-splits", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-control", action="store_true", help="skip the with-control timing")
    args = ap.parse_args()

    units = card_units()
    n, u = args.pairs, units.size
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, u)).astype(np.float32)
    b = rng.normal(size=(n, u)).astype(np.float32)
    a[:, :50] += 2.0
    ca = rng.normal(size=(n, u)).astype(np.float32)
    cb = rng.normal(size=(n, u)).astype(np.float32)
    cfg = StatsConfig(n_perm=args.n_perm, n_boot=args.n_boot, n_splits=args.n_splits, seed=0)
    diff = a.astype(np.float64) - b

    print(f"probe.stats benchmark: {u} units x {n} pairs x {args.n_perm} permutations, {args.n_boot} bootstraps, "
          f"{args.n_splits} splits; {os.cpu_count()} CPUs, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
          f"median of {args.repeats}")
    analyse(a[:, :500], b[:, :500], units[:500], config=StatsConfig(n_perm=100, n_boot=10, n_splits=5))  # warm-up
    unit_t, us = timed(lambda: paired_t(a, b), args.repeats)
    rows = [("paired t, d_z, p, BH q", unit_t)]
    rows.append(("sign-flip null + tmax FWER", timed(lambda: sign_flip_null(diff, us.t, cfg, us.degenerate),
                                                     args.repeats)[0]))
    rows.append(("split-half r", timed(lambda: split_half(diff, cfg.n_splits, cfg.seed), args.repeats)[0]))
    rows.append(("per-block stats + bootstrap", timed(lambda: block_stats(diff, np.array(
        [x.rsplit("/", 1)[0] for x in units]), cfg, us), args.repeats)[0]))
    whole, res = timed(lambda: analyse(a, b, units, config=cfg), args.repeats)
    rows.append(("analyse (whole, no control)", whole))
    if not args.no_control:
        rows.append(("analyse (whole, with control)",
                     timed(lambda: analyse(a, b, units, control=(ca, cb), config=cfg), args.repeats)[0]))
    width = max(len(r[0]) for r in rows)
    for name, sec in rows:
        print(f"  {name:<{width}}  {sec:7.3f} s")
    verdict = "meets" if whole < GOAL_S else "MISSES"
    print(f"goal: analyse < {GOAL_S:.0f} s for {u} units x {n} pairs x {args.n_perm} permutations on 2 cores: "
          f"{whole:.2f} s, {verdict} it ({whole / GOAL_S:.2f}x of the budget)")
    s = res.summary()
    print(f"sanity (noise + 50 planted units, not a finding): |t|>3 {s['n_abs_t_gt_3']} vs null p99 "
          f"{s['null_p99_abs_t_gt_3']:.0f}; FWER-significant {s['n_fwer_significant']}")


if __name__ == "__main__":
    main()
