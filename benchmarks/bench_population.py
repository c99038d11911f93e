"""A population of untrained networks on the tiny klein: what making it costs, and whether ranking a network among
it is calibrated (issue 16.3), beside what one random-init control with the within-network test says.

    python benchmarks/bench_population.py                   # 20 tiny networks, ~25 min on 2 shared cores
    python benchmarks/bench_population.py --networks 20 --steps 8 --out runs/bench-population

1. One command (`probe run --model tiny --randomize transformer --randomize-seeds 0-19`) makes 20 untrained
   networks of the tiny klein's architecture, measured with the shipped 25 pairs and both control sets, CFG 4.0,
   `--steps` steps with 4 of them captured (96 units). Its wall time, and each member's capture time: the first
   computes the text encoder's outputs, the others reuse them. Then one network made on its own (`--randomize-seed
   0`, a fresh load and its own encodings) for comparison. The folder is reused when the bench runs again.
2. Calibration at K = 19: each of the 20 networks ranked against the other 19 on every headline statistic of
   `probe compare --population` (rank p = (1 + #{>=}) / 20, floor 0.05): the rate of rank p <= 0.05, over all
   statistics and over the run-level ones, with ties counted against the network (conservative), and the
   Monte-Carlo error of one statistic's rate over 20 networks.
3. The within-network test between untrained networks, as one random-init control would use it: for every ordered
   pair of networks (i, j), p(network i > network j) <= 0.05 (one-sided) and the two-sided p <= 0.05, with the basic
   bootstrap it replaced beside it. It resamples pairs, never networks, so it answers another question.
Random weights: calibration and cost only, never findings.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=20, help="networks made (each is ranked against the others)")
    ap.add_argument("--steps", type=int, default=8, help="sampling steps (4 spread over them are captured)")
    ap.add_argument("--out", default="runs/bench-population")
    ap.add_argument("--n-boot", type=int, default=400, help="resamples of the within-network test")
    args = ap.parse_args()

    from probe.__main__ import main as probe_main
    from probe.io.runs import load_population
    from probe.stats.compare import within_network_test
    from probe.stats.population import calibration, headline_statistics

    out = Path(args.out)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    common = ["--model", "tiny", "--steps", str(args.steps), "--quiet", "--no-report"]
    print(f"population bench: {args.networks} tiny networks, 25 pairs, {args.steps} steps (4 captured), CFG 4.0; "
          f"{os.cpu_count()} CPUs, load average {load:.1f}; RANDOM WEIGHTS: calibration and cost only")
    t0 = time.perf_counter()
    rc = probe_main(["run", *common, "--randomize", "transformer", "--randomize-seeds", f"0-{args.networks - 1}",
                     "--out", str(out / "population")])
    wall_pop = time.perf_counter() - t0
    if rc:
        sys.exit(rc)
    record = json.loads((out / "population" / "population.json").read_text())
    made = [m for m in record["members"] if m.get("seconds_this_process") is not None]
    alone_dir = out / "alone-seed-0"
    t0 = time.perf_counter()
    probe_main(["run", *common, "--randomize", "transformer", "--randomize-seed", "0", "--no-resume", "--out",
                str(alone_dir)])
    wall_alone = time.perf_counter() - t0
    alone_cfg = json.loads((alone_dir / "config.json").read_text())
    sh = record.get("shared_encodings") or {}
    print("\n[cost]")
    if made:
        caps = [m["capture_seconds"] for m in made]
        per = [m["seconds_this_process"] for m in made]
        print(f"  population command: {wall_pop:.0f} s wall for {len(made)} networks made now "
              f"({np.mean(per):.1f} s per network incl. statistics; load + first network included)")
        print(f"  capture per network: first {caps[0]:.1f} s (encodes the prompts), the others median "
              f"{np.median(caps[1:]):.1f} s (reuse them)" if len(caps) > 1 else f"  capture {caps[0]:.1f} s")
    else:
        print(f"  population reused from {out / 'population'} (every network finished earlier): {wall_pop:.0f} s")
    print(f"  one network on its own (fresh load, own encodings, statistics): {wall_alone:.1f} s wall, capture "
          f"{alone_cfg['capture_info']['seconds']:.1f} s")
    if made:
        print(f"  {len(made)} separate runs would take ~{len(made) * wall_alone:.0f} s: the population took "
              f"{wall_pop / (len(made) * wall_alone):.2f}x of that")
    print(f"  text encoder: {sh.get('text_encoder_calls')} calls made, {sh.get('text_encoder_reused')} reused")

    pop = load_population(out / "population")
    rows = [headline_statistics(m) for m in pop.members]
    cal = calibration(rows, alpha=0.05)
    mc = math.sqrt(0.05 * 0.95 / cal["n_members"])
    print(f"\n[calibration at K = {cal['each_against']}: each of {cal['n_members']} networks ranked against the other "
          f"{cal['each_against']}, floor {cal['floor']:.3g}]")
    print(f"  statistics all networks have: {cal['n_statistics']} ({cal['n_statistics_tie_free']} tie-free); "
          f"leave-one-out rank p uniform on {{1/K', ..., 1}} for every tie-free one: {cal['uniform_on_grid']}")
    run_level, tie_free = cal["rate_p_le_alpha_run_level"] or 0, cal["rate_p_le_alpha_tie_free"] or 0
    print(f"  'different at 0.05' (rank p <= 0.05): all statistics {100 * cal['rate_p_le_alpha']:.2f} %, run-level "
          f"{100 * run_level:.2f} %, tie-free {100 * tie_free:.2f} % "
          f"(expected without ties {100 * cal['expected_rate_without_ties']:.2f} %; Monte-Carlo sd of one statistic's "
          f"rate over {cal['n_members']} networks {100 * mc:.1f} %)")

    units = pop.members[0].units
    one = two = basic = n = 0
    for i, a in enumerate(pop.members):
        for j, b in enumerate(pop.members):
            if i == j:
                continue
            res = within_network_test(a, b, units, n_boot=args.n_boot, seed=i * 100 + j)
            one += res["p_run1_greater"] <= 0.05
            two += res["p_two_sided"] <= 0.05
            basic += res["basic_bootstrap"]["p_run1_greater"] <= 0.05
            n += 1
    print(f"\n[the within-network test between untrained networks: {n} ordered pairs of the {len(pop.members)}]")
    print(f"  p(network i > network j) <= 0.05: {100 * one / n:.1f} %   (basic bootstrap: {100 * basic / n:.1f} %); "
          f"two-sided p <= 0.05: {100 * two / n:.1f} %")
    print("  (it resamples pairs, never networks: it measures the noise of the pairs within each network, so "
          "untrained networks differ by it far more often than 5 %; the population rank is the test of training)")


if __name__ == "__main__":
    main()
