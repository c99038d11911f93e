"""The image probe's class rule: the magnitude test's size and power, and the signed rule's blind spot, side by side.

    python benchmarks/bench_classes.py                 # ~30 s on 2 cores
    python benchmarks/bench_classes.py --units 50000

Three parts, all on simulated per-scene values (calibration only, no findings):

1. Size of `probe.stats.classify.magnitude_equivalence` at the margin (true ratio of mean per-scene changes =
   margin 0.5): how often it wrongly shows the change small, at 10, 25 and 50 scenes, for three models of the
   per-scene sizes: |normal|, log-normal, and the RMS of 4 sample-level pairs with a log-normal scale per scene
   (what a scene with 2 lightings x 2 colour versions gives), with coefficient of variation 0.3, 0.5 and 1.
2. Power at ratio 0 and at half the margin, simulated beside `magnitude_power` (normal model).
3. Units that a colour change moves by +-3 with a scene-dependent sign and the light by +1 (the issue 17 case),
   and units that colour leaves alone: the share called lighting-selective by the signed rule (TOST on the
   albedo d_z, `class_signed`) and by the magnitude rule (`class`), through `analyse_captures`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from probe.stats.classify import magnitude_equivalence, magnitude_power  # noqa: E402


def sizes(model: str, n: int, units: int, cv: float, rng) -> np.ndarray:
    """Per-scene sizes [n, units] with mean 1 and coefficient of variation about cv under `model`."""
    if model == "normal":
        return np.abs(rng.normal(1.0, cv, (n, units)))
    s = np.sqrt(np.log(1 + cv ** 2))
    scale = rng.lognormal(-s * s / 2, s, (n, units))
    if model == "lognormal":
        return scale
    return np.sqrt((rng.normal(size=(4, n, units)) ** 2).mean(axis=0)) * scale        # RMS of 4 pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=20_000, help="simulated units per cell (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    m, alpha = 0.5, 0.05
    t0 = time.perf_counter()
    print(f"class rule benchmark: {args.units} simulated units per cell, margin {m}, alpha {alpha}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print("1. magnitude test, rejection rate at ratio = margin (should be <= 0.05)")
    print("   scenes  cv    |normal|  lognormal  RMS of 4 pairs")
    for n in (10, 25, 50):
        for cv in (0.3, 0.5, 1.0):
            row = []
            for model in ("normal", "lognormal", "rms"):
                y = sizes(model, n, args.units, cv, rng)
                x = sizes(model, n, args.units, cv, rng)
                x *= m * y.mean() / x.mean()
                row.append(np.mean(magnitude_equivalence(x, y, m, alpha).shown))
            print(f"   {n:6d}  {cv:3.1f}   " + "   ".join(f"{r:8.3f}" for r in row))
    print("2. power (normal sizes, both factors with the same cv): simulated vs magnitude_power")
    print("   scenes  cv   ratio  simulated  formula")
    for n in (10, 25):
        for cv in (0.5, 1.0):
            for ratio in (0.0, m / 2):
                y = rng.normal(1.0, cv, (n, args.units))
                x = rng.normal(ratio, cv * ratio, (n, args.units)) if ratio else np.zeros((n, args.units))
                sim = np.mean(magnitude_equivalence(x, y, m, alpha).shown)
                print(f"   {n:6d}  {cv:3.1f}  {ratio:5.2f}  {sim:9.3f}  {magnitude_power(n, m, alpha, ratio, cv):7.3f}")
    from fakes import fake_image_captures
    from probe.stats.analysis import analyse_captures
    from probe.stats.config import StatsConfig

    print("3. lighting-selective by rule (25 scenes, 200 units each; signed = class_signed, magnitude = class)")
    n, k = 25, 200
    light = 1.0 + rng.normal(0, 0.4, (n, 2 * k))
    colour = np.concatenate([3.0 * np.where(rng.uniform(size=(n, k)) < 0.5, 1.0, -1.0) + rng.normal(0, 0.4, (n, k)),
                             rng.normal(0, 0.1, (n, k))], axis=1)
    res = analyse_captures(fake_image_captures(light, colour, n), StatsConfig(n_perm=2000, n_boot=0, n_splits=0))
    t = res.units_table()
    for name, sl in (("colour +-3 (scene-dependent sign), light +1", slice(0, k)),
                     ("colour ~0 (sd 0.1), light +1", slice(k, 2 * k))):
        print(f"   {name:46s} signed {np.mean(t['class_signed'][sl] == 'lighting-selective'):5.2f}   "
              f"magnitude {np.mean(t['class'][sl] == 'lighting-selective'):5.2f}")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
