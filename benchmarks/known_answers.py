"""The known-answer models on the held-out default scenes: does evaluate find the albedo model right and the
photo model not? (issue 16, points 1 and 2)

    python -m render --resolution 64 --recolor 1 --out runs/render64          # the 25 default scenes, held out
    python benchmarks/known_answers.py --data runs/render64 --out runs/known-eval

For each model (default: the shipped known-albedo and known-photo) this runs, as a user would,
`python -m evaluate generate --model M --data DATA --out OUT/M` (baselines image_as_albedo and retinex_color
beside it, the same inputs) and `python -m evaluate score`, then prints one table: each metric's mean with its
scene-cluster 95% CI for the model and the baselines, and the paired difference model - baseline with its
cluster-bootstrap CI (evaluate's own `paired_differences`). The pre-declared criterion (issue 16):
- known-albedo: lmse_linear_scalar and mse_srgb_scalar lower than image_as_albedo AND retinex_color, each paired
  CI entirely below 0;
- known-photo: must NOT beat image_as_albedo (its paired CI on those metrics is not entirely below 0).
The rows end with PASS / FAIL; the output goes into benchmarks/RESULTS.md. Generation resumes (evaluate's keys).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("lmse_linear_scalar", "mse_srgb_scalar")
BASELINES = ("image_as_albedo", "retinex_color")
EXPECT = {"known-albedo": "beats", "known-photo": "does not beat image_as_albedo"}


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def verdict(model: str, diffs: dict) -> str:
    """PASS / FAIL of the pre-declared criterion from evaluate's paired differences (model - baseline)."""
    below = {(m, b): (diffs.get(b, {}).get(m) or {}).get("ci95_high", float("nan")) < 0 for m in METRICS
             for b in BASELINES}
    if EXPECT.get(model) == "beats":
        return "PASS" if all(below.values()) else "FAIL"
    if model in EXPECT:
        return "FAIL" if any(below[(m, "image_as_albedo")] for m in METRICS) else "PASS"
    return "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--data", required=True, help="a render of the 25 default scenes at the models' resolution (64)")
    ap.add_argument("--out", default="runs/known-eval")
    ap.add_argument("--models", default="known-albedo,known-photo", help="comma-separated --model values")
    ap.add_argument("--steps", type=int, default=None, help="inference steps (default: the model's own, 50)")
    ap.add_argument("--n-boot", type=int, default=2000)
    a = ap.parse_args()
    py = sys.executable
    rows, times = [], {}
    for model in a.models.split(","):
        out = Path(a.out) / Path(model).name
        cmd = [py, "-m", "evaluate", "generate", "--model", model, "--data", a.data, "--out", str(out), "--quiet"]
        if a.steps:
            cmd += ["--steps", str(a.steps)]
        times[model] = run(cmd)
        run([py, "-m", "evaluate", "score", "--data", a.data, "--out", str(out), "--n-boot", str(a.n_boot)])
        s = json.loads((out / "score_summary.json").read_text())
        diffs = {b: s.get("paired_differences", {}).get(b) or {} for b in BASELINES}
        rows.append((model, s, diffs))
    print()
    print(f"held-out default scenes: {a.data}; {rows[0][1]['n_samples']} samples in {rows[0][1]['n_clusters']} scene "
          f"clusters; 95% CIs resample scenes; paired = model - baseline on the same samples")
    for model, s, diffs in rows:
        print(f"\n{model} (generation {times[model]:.0f} s wall): {verdict(model, diffs)}  "
              f"(criterion: {EXPECT.get(model, 'none')})")
        print(f"  {'metric':22s} {'model':>26s} " + " ".join(f"{b:>26s}" for b in BASELINES)
              + " " + " ".join(f"{'model - ' + b:>30s}" for b in BASELINES))
        for m in METRICS:
            cell = lambda rec: (f"{rec['mean']:.4f} [{rec['ci95_low']:.4f}, {rec['ci95_high']:.4f}]"  # noqa: E731
                                if rec and rec.get("mean") is not None else "n/a")
            mets = [s["methods"].get(k, {}).get("metrics", {}).get(m) for k in ("klein",) + BASELINES]
            d = [cell(diffs.get(b, {}).get(m)) for b in BASELINES]
            print(f"  {m:22s} {cell(mets[0]):>26s} " + " ".join(f"{cell(x):>26s}" for x in mets[1:]) + " "
                  + " ".join(f"{x:>30s}" for x in d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
