"""The MIT intrinsic images benchmark's protocol on a copy of the dataset: the baselines' table, and the cost of
one Poisson factorisation per object against one per solve, side by side in one run.

    .venv/bin/python benchmarks/bench_mit.py                               # ../shared copy (or --src)
    .venv/bin/python benchmarks/bench_mit.py --src /data/MIT-intrinsic/data --objects apple,box

It imports SRC into a temporary folder (render.mit), runs evaluate.mit_protocol on it (BAS, GR-RET, COL-RET,
W, W+RET with the benchmark's grids and hold-one-out) and prints per object and mean scores; then it times
GR-RET's 15-threshold grid on the largest object with the factorisation reused (evaluate.poisson.PoissonSolver)
and with a fresh one per threshold (poisson_integrate). The data is read from SRC and nothing derived from it
is kept (research-only licence).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "mit-berkeley-intrinsic"


def main(argv=None) -> int:
    import numpy as np

    from evaluate import mit_protocol as M
    from evaluate.poisson import PoissonSolver, gradients, poisson_integrate
    from render.mit import import_mit

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", default=str(DEFAULT_SRC if DEFAULT_SRC.is_dir() else "/work/shared/data/mit-berkeley-intrinsic"))
    p.add_argument("--objects", default=None, help="comma-separated objects (default: all in SRC)")
    a = p.parse_args(argv)
    if not Path(a.src).is_dir():
        print(f"no copy of the MIT intrinsic images at {a.src}: pass --src", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rep = import_mit(a.src, Path(tmp) / "data", only=a.objects.split(",") if a.objects else None, progress=False)
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = M.run_protocol(Path(tmp) / "data", Path(tmp) / "eval", pred_dir=Path(tmp) / "none", progress=False)
        t_protocol = time.perf_counter() - t0
        objects, _ = M.load_objects(Path(tmp) / "data")
    keys = list(res["baselines"])
    print(f"import: {len(rep.samples)} samples of {len(rep.objects)} objects in {t_import:.1f} s; protocol "
          f"(5 baselines, {sum(len(M.BASELINES[k].grid) for k in keys)} settings x {len(objects)} objects) in "
          f"{t_protocol:.1f} s")
    print("object      " + "".join(f"{k:>9s}" for k in keys))
    for n in res["objects"]:
        print(f"{n:12s}" + "".join(f"{res['baselines'][k]['hold_one_out'][n]['score']:9.4f}" for k in keys))
    print(f"{'mean':12s}" + "".join(f"{res['baselines'][k]['mean']:9.4f}" for k in keys))
    print("hold-one-out settings: " + "; ".join(
        f"{k}: " + ", ".join(sorted({str(h['params']) for h in res['baselines'][k]['hold_one_out'].values()}))
        for k in keys if len(M.BASELINES[k].grid) > 1))
    big = max(objects, key=lambda o: int(o.mask.sum()))
    grid = M.BASELINES["GR-RET"].grid
    img = np.clip(big.grey, M.FLOOR, None)
    g_y, g_x = gradients(np.where(big.mask, np.log(img), 0.0))
    targets = [(np.where(np.abs(g_y) > q["threshold"], g_y, 0.0), np.where(np.abs(g_x) > q["threshold"], g_x, 0.0))
               for q in grid]
    t0 = time.perf_counter()
    solver = PoissonSolver(big.mask)
    reuse = [solver.solve(ty, tx) for ty, tx in targets]
    t_reuse = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh = [poisson_integrate(ty, tx, big.mask) for ty, tx in targets]
    t_fresh = time.perf_counter() - t0
    diff = max(float(np.abs(r - f).max()) for r, f in zip(reuse, fresh))
    print(f"GR-RET grid on {big.name} ({int(big.mask.sum()):,} mask pixels, {len(grid)} thresholds): one factorisation "
          f"{t_reuse:.2f} s, one per threshold {t_fresh:.2f} s, ratio {t_fresh / t_reuse:.1f}x; max |difference| "
          f"{diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
