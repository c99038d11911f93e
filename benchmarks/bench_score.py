"""Scoring throughput: `evaluate.score.score` on 100 samples at 256x256, LPIPS off (goal < 10 s on 2 cores).

    python benchmarks/bench_score.py                 # 25 scenes x 4 lightings, one prediction method
    python benchmarks/bench_score.py --n 200 --size 512 --methods 2

Builds a synthetic render folder in the layout of `python -m render` plus predictions (untimed),
then times the whole `score()` call: reading ground truth and predictions, every metric column
under the three alignments, illumination invariance, bootstrap CIs and writing the files. Also
prints the metric-only cost per sample (`score_pair` on in-memory arrays) to show where time goes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluate.metrics import score_pair  # noqa: E402
from evaluate.score import score  # noqa: E402
from render.imageio import write_exr, write_png_encoded, write_png_srgb  # noqa: E402


def build(root: Path, n: int, size: int, n_methods: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    mask = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.16
    lightings = ("key", "rim", "top", "warm")
    entries, preds = [], {f"method{k}": [] for k in range(n_methods)}
    for i in range(n):
        scene, light = f"scene{i // 4:03d}", lightings[i % 4]
        sid = f"{scene}__{light}"
        albedo = np.empty((size, size, 3), np.float32)
        albedo[:] = rng.uniform(0.1, 0.9, 3)
        albedo[:, size // 2:] = rng.uniform(0.1, 0.9, 3)
        shading = (0.2 + 0.8 * xx * (1 - 0.3 * yy))[..., None].astype(np.float32)
        d = root / "data" / sid
        write_exr(d / "image_linear.exr", albedo * shading)
        write_png_srgb(d / "image_srgb.png", albedo * shading)
        write_exr(d / "albedo_linear.exr", albedo)
        write_exr(d / "shading_linear.exr", np.repeat(shading, 3, -1))
        write_exr(d / "residual_linear.exr", np.zeros_like(albedo))
        write_exr(d / "normal.exr", np.dstack([np.zeros_like(xx), np.zeros_like(xx), np.ones_like(xx)]), channels="XYZ")
        write_exr(d / "depth.exr", np.full((size, size), 3.0, np.float32), channels="Z")
        write_png_encoded(d / "mask.png", mask.astype(np.float32))
        write_png_encoded(d / "object_index.png", mask.astype(np.float32) / 255.0)
        entries.append({"id": sid, "scene": scene, "lighting": light, "description": sid,
                        "image": f"{sid}/image_linear.exr", "image_srgb": f"{sid}/image_srgb.png",
                        "albedo": f"{sid}/albedo_linear.exr", "shading": f"{sid}/shading_linear.exr",
                        "residual": f"{sid}/residual_linear.exr", "normal": f"{sid}/normal.exr",
                        "depth": f"{sid}/depth.exr", "mask": f"{sid}/mask.png",
                        "object_index": f"{sid}/object_index.png", "width": size, "height": size})
        for m in preds:
            p = np.clip(albedo * rng.uniform(0.6, 1.2) + rng.normal(0, 0.05, albedo.shape), 0, 1).astype(np.float32)
            write_exr(root / "pred" / m / f"{sid}_albedo_linear.exr", p)
            write_png_srgb(root / "pred" / m / f"{sid}_albedo_srgb.png", p)
            preds[m].append({"sample": sid, "albedo_linear": f"{sid}_albedo_linear.exr",
                             "albedo_srgb": f"{sid}_albedo_srgb.png"})
    (root / "data" / "manifest.json").write_text(json.dumps({"format": "ray-plantain-render/1", "samples": entries}))
    for m, e in preds.items():
        (root / "pred" / m / "manifest.json").write_text(json.dumps({"method": m, "predictions": e}))
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="samples")
    ap.add_argument("--size", type=int, default=256, help="image side")
    ap.add_argument("--methods", type=int, default=1, help="prediction methods")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--goal", type=float, default=10.0, help="seconds for 100 samples x 1 method")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp), a.n, a.size, a.methods)
        timings = {}
        cpu = {}
        for w in (None, 1):  # default threads, then one thread for comparison
            t0, c0 = time.perf_counter(), time.process_time()
            res = score(root / "data", root / "pred", root / f"out{w}", n_boot=a.n_boot, lpips="off",
                        workers=w, progress=False)
            timings[w], cpu[w] = time.perf_counter() - t0, time.process_time() - c0
        workers = json.loads((root / "outNone" / "score_config.json").read_text())["workers"]
        # metric cost alone, on one in-memory pair
        rng = np.random.default_rng(1)
        g = rng.uniform(0.1, 0.9, (a.size, a.size, 3)).astype(np.float32)
        p = np.clip(g * 0.8 + rng.normal(0, 0.05, g.shape), 0, 1).astype(np.float32)
        yy, xx = np.mgrid[0:a.size, 0:a.size] / a.size
        m = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.16
        score_pair(g, p, m)
        reps = 20
        t1 = time.perf_counter()
        for _ in range(reps):
            score_pair(g, p, m)
        per_pair = (time.perf_counter() - t1) / reps
    pairs = res.n_rows
    total = timings[None]
    print(f"bench_score: {a.n} samples x {a.methods} method(s) at {a.size}x{a.size}, LPIPS off, "
          f"n_boot={a.n_boot}, cpus={os.cpu_count()}")
    print(f"  score(), {workers} threads    {total:7.2f} s   ({pairs / total:6.1f} pairs/s, {1000 * total / pairs:6.1f} ms/pair; "
          f"{res.n_ok} ok, {res.n_errors} errors)")
    print(f"  score(), 1 thread     {timings[1]:7.2f} s   ({pairs / timings[1]:6.1f} pairs/s)  "
          f"threads speed-up {timings[1] / total:.2f}x")
    print(f"  CPU time of the process: {cpu[None]:.2f} s ({workers} threads), {cpu[1]:.2f} s (1 thread): the steadier "
          "number on a shared machine, and the wall time one idle core would take")
    print(f"  metrics only          {1000 * per_pair:7.1f} ms/pair (score_pair: 18 columns, 3 alignments, 1 thread)")
    if a.n == 100 and a.size == 256 and a.methods == 1:
        verdict = "PASS" if total < a.goal else "FAIL"
        print(f"  goal < {a.goal:.0f} s for 100 samples at 256^2: {verdict} ({total:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
