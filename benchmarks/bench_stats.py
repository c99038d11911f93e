"""Time of probe.stats at the card's scale: 16,320 units x 25 pairs x 10,000 sign-flip permutations.

    python benchmarks/bench_stats.py                  # goal: analyse with two control sets < 3 s on 2 cores
    python benchmarks/bench_stats.py --repeats 5 --n-boot 1000

Prints the median wall time of each part of one contrast (paired t, sign-flip + tmax null,
split-half, per-block bootstrap) and of the whole `analyse` without control sets, with the
paraphrase control, and with two control sets (paraphrase + vocabulary: 3 contrasts and 2 direct
tests, the text probe's default), the last also on one thread, so the threads' gain is measured
side by side. Data are Gaussian noise with a few planted units: timings only, no findings.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from probe.stats.analysis import analyse_text, blocks_from_units
from probe.stats.blocks import block_stats
from probe.stats.config import StatsConfig
from probe.stats.null import sign_flip_null
from probe.stats.paired import paired_t
from probe.stats.splithalf import split_half

GOAL_S = 3.0     # analyse with two control sets


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
    args = ap.parse_args()

    units = card_units()
    n, u = args.pairs, units.size
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, u)).astype(np.float32)
    b = rng.normal(size=(n, u)).astype(np.float32)
    b[:, :50] -= 2.0
    para = rng.normal(size=(n, u)).astype(np.float32)
    vocab = rng.normal(size=(n, u)).astype(np.float32)
    ids = np.array([f"p{i:02d}" for i in range(n)])
    cfg = StatsConfig(n_perm=args.n_perm, n_boot=args.n_boot, n_splits=args.n_splits, seed=0)
    one_thread = StatsConfig(n_perm=args.n_perm, n_boot=args.n_boot, n_splits=args.n_splits, seed=0, threads=1)
    diff = a.astype(np.float64) - b
    two = {"paraphrase": (a, para), "vocabulary": (a, vocab)}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"probe.stats benchmark: {u} units x {n} pairs x {args.n_perm} permutations, {args.n_boot} bootstraps, "
          f"{args.n_splits} splits; {os.cpu_count()} CPUs, load average {load:.1f} at start, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, StatsConfig.threads={cfg.threads}, "
          f"median of {args.repeats}")
    analyse_text(a[:, :500], b[:, :500], units[:500], config=StatsConfig(n_perm=100, n_boot=10, n_splits=5))  # warm-up
    unit_t, us = timed(lambda: paired_t(a, b), args.repeats)
    rows = [("one contrast: paired t, d_z, p, BH q", unit_t)]
    rows.append(("one contrast: sign-flip null + tmax FWER",
                 timed(lambda: sign_flip_null(diff, us.t, cfg, us.degenerate), args.repeats)[0]))
    rows.append(("one contrast: split-half r", timed(lambda: split_half(diff, cfg.n_splits, cfg.seed), args.repeats)[0]))
    rows.append(("one contrast: per-block stats + bootstrap",
                 timed(lambda: block_stats(diff, blocks_from_units(units), cfg, us), args.repeats)[0]))
    rows.append(("analyse, no control set (1 contrast)",
                 timed(lambda: analyse_text(a, b, units, ids, config=cfg), args.repeats)[0]))
    rows.append(("analyse, paraphrase control (2 contrasts + 1 direct)",
                 timed(lambda: analyse_text(a, b, units, ids, {"paraphrase": (a, para)}, config=cfg),
                       args.repeats)[0]))
    t1, _ = timed(lambda: analyse_text(a, b, units, ids, two, config=one_thread), args.repeats)
    rows.append(("analyse, two control sets, 1 thread", t1))
    whole, res = timed(lambda: analyse_text(a, b, units, ids, two, config=cfg), args.repeats)
    rows.append((f"analyse, two control sets (3 contrasts + 2 direct), {cfg.threads} threads", whole))
    width = max(len(r[0]) for r in rows)
    for name, sec in rows:
        print(f"  {name:<{width}}  {sec:7.3f} s")
    print(f"threads: 1 thread / {cfg.threads} threads = {t1 / whole:.2f}x")
    verdict = "meets" if whole < GOAL_S else "MISSES"
    print(f"goal: analyse with two control sets < {GOAL_S:.0f} s for {u} units x {n} pairs x {args.n_perm} "
          f"permutations on 2 cores: {whole:.2f} s, {verdict} it ({whole / GOAL_S:.2f}x of the budget)")
    s = res.summary()
    print(f"sanity (noise + 50 planted units, not a finding): |t|>3 {s['n_abs_t_gt_3']} vs null p99 "
          f"{s['null_p99_abs_t_gt_3']:.0f}; FWER-significant {s['n_fwer_significant']}; selective beyond both "
          f"controls {s['n_selective_beyond_control']}")


if __name__ == "__main__":
    main()
