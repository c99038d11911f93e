"""The MIT intrinsic images benchmark's own protocol and baselines, on a folder from `render import-mit`.

    python -m evaluate mit --data runs/mit --out runs/evaluate-mit     # OUT/mit_protocol.json, mit_protocol.csv
    from evaluate.mit_protocol import run_protocol, load_objects, score_image, BASELINES

The protocol as the benchmark's code defines it (Grosse, Johnson, Adelson, Freeman, ICCV 2009: intrinsic.py,
comparison.py, poisson.py; reimplemented here, not copied):

- input: the object's diffuse photograph under its default light (diffuse.png), in the benchmark's units
  (the 16-bit value / 255; the import's linear values divided by exposure.scale, times 65535 / 255), grey =
  mean of the three channels (colour Retinex gets it in colour); mask = mask.png > 0;
- truth: shading.png (grey) and reflectance.png converted to grey (mean of channels);
- an estimate is a grey (shading, reflectance) pair, and
  score = 1/2 LMSE(shading) + 1/2 LMSE(reflectance),  LMSE = the benchmark's local_error: 20 x 20 windows
  stepped by 10, in each window the estimate scaled by its least-squares factor over the window's mask pixels
  (factor 0 when the window's masked estimate energy is <= 1e-5), sum of squared errors over all windows /
  sum of squared truth over all windows (evaluate.metrics.lmse on one channel);
- per object, and the mean over the objects given.

Baselines (L2 Poisson solves, the benchmark's default USE_L1 = False; evaluate.poisson):
  BAS      each image entirely shading (reflectance = 1 on the mask) or entirely reflectance (shading = 1)
  GR-RET   grayscale Retinex: log of the grey input clipped below at 3, gradients with |g| > threshold kept as
           reflectance gradients, integrated on the mask; shading = clipped input / reflectance
  COL-RET  colour Retinex: a gradient of the grey log input is kept when |grey part of the colour log-gradient|
           > threshold_gray or the norm of its chromatic part > threshold_color; shading = grey input / reflectance
  W        Weiss (2001): per-pixel median over the ten single-light photographs (light01-10, grey, clipped at 3) of
           their log-gradients, integrated; shading = grey input / reflectance
  W+RET    Weiss + Retinex: W's median gradients with |g| <= threshold set to 0
Parameter grids (the benchmark's): BAS {shading, refl}; GR-RET and W+RET threshold in logspace(-3, 1, 15);
COL-RET threshold_gray x threshold_color in logspace(-1.5, 0, 5)^2; W none. Hold-one-out: for each object the
setting with the smallest summed score over the other objects given (ties: the first in grid order), and the
object's score with it.

Our methods beside them (evaluate's predictions in PRED/<method>/, the default-light sample of each object):
the estimated reflectance is the mean over channels of the predicted albedo (linear), the estimated shading the
grey diffuse input divided by it (0 where it is <= 0), scored the same way. They saw what `evaluate generate`
and `baselines` give every method, the sRGB PNG of the photograph (original.png, 8-bit) and not the 16-bit
diffuse image: the `input` field says so for every row.
"""
from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["BASELINES", "Baseline", "MitObject", "MitProtocolError", "load_objects", "score_image", "hold_one_out",
           "baseline_grid", "method_scores", "run_protocol", "report_parts", "is_mit_import", "main_mit",
           "JSON_NAME", "CSV_NAME",
           "bas", "grey_retinex", "colour_retinex", "weiss", "weiss_retinex"]

JSON_NAME = "mit_protocol.json"
CSV_NAME = "mit_protocol.csv"
WINDOW, SHIFT, EPS = 20, 10, 1e-5          # local_error's window, its step, and the no-energy rule
FLOOR = 3.0                                 # the benchmark clips intensities at 3 on its (16-bit / 255) scale
BENCH_UNITS = 65535.0 / 255.0               # raw / 65535 -> raw / 255
DEFAULT_LIGHT = "original"
N_LIGHTS = 10
SOURCE = ("Grosse, Johnson, Adelson, Freeman: Ground truth dataset and baseline evaluations for intrinsic image "
          "algorithms, ICCV 2009; the benchmark's Python code (intrinsic.py, comparison.py, poisson.py), "
          "reimplemented")


class MitProtocolError(ValueError):
    """The folder cannot be scored with the MIT protocol (one paragraph)."""


@dataclass(frozen=True)
class MitObject:
    """One object's protocol inputs, in the benchmark's units (16-bit value / 255)."""
    name: str
    sample_id: str               # the default-light sample (<object>__original)
    mask: np.ndarray             # [H, W] bool
    diffuse: np.ndarray          # [H, W, 3] float64, the input in colour
    true_shading: np.ndarray     # [H, W] float64 (any scale: LMSE does not depend on the truth's scale)
    true_reflectance: np.ndarray  # [H, W] float64, mean of the reflectance's channels
    lights: np.ndarray | None    # [H, W, 10] float64 grey single-light photographs, or None

    @property
    def grey(self) -> np.ndarray:
        return self.diffuse.mean(axis=-1)


# ------------------------------------------------------------------------------------------ the estimators

def bas(image: np.ndarray, mask: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """BAS: (shading, reflectance) = (image, 1 on the mask) for mode 'shading', (1 on the mask, image) for 'refl'."""
    ones = mask.astype(np.float64)
    return (image, ones) if mode == "shading" else (ones, image)


def _retinex_targets(g_y, g_x, keep_y, keep_x):
    return np.where(keep_y, g_y, 0.0), np.where(keep_x, g_x, 0.0)


def grey_retinex(image: np.ndarray, mask: np.ndarray, threshold: float, solver) -> tuple[np.ndarray, np.ndarray]:
    """GR-RET on a grey image in the benchmark's units: (shading, reflectance), both 0 off the mask."""
    from evaluate.poisson import gradients

    img = np.clip(image, FLOOR, None)
    g_y, g_x = gradients(np.where(mask, np.log(img), 0.0))
    log_r = solver.solve(*_retinex_targets(g_y, g_x, np.abs(g_y) > threshold, np.abs(g_x) > threshold))
    refl = mask * np.exp(log_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mask, img / np.where(mask, refl, 1.0), 0.0), refl


def colour_retinex(image: np.ndarray, mask: np.ndarray, threshold_gray: float, threshold_color: float,
                   solver) -> tuple[np.ndarray, np.ndarray]:
    """COL-RET on a colour image [H, W, 3] in the benchmark's units: grey (shading, reflectance)."""
    from evaluate.poisson import gradients

    img = np.clip(image, FLOOR, None)
    c_y, c_x = gradients(np.log(img))
    grey_y, grey_x = c_y.mean(-1), c_x.mean(-1)
    chroma_y = np.sqrt(((c_y - grey_y[..., None]) ** 2).sum(-1))
    chroma_x = np.sqrt(((c_x - grey_x[..., None]) ** 2).sum(-1))
    grey = np.clip(img.mean(-1), FLOOR, None)
    g_y, g_x = gradients(np.log(grey))
    keep_y = (chroma_y > threshold_color) | (np.abs(grey_y) > threshold_gray)
    keep_x = (chroma_x > threshold_color) | (np.abs(grey_x) > threshold_gray)
    refl = np.exp(solver.solve(*_retinex_targets(g_y, g_x, keep_y, keep_x)))
    return grey / refl, refl


def _weiss(image: np.ndarray, lights: np.ndarray, mask: np.ndarray, solver, threshold: float | None):
    from evaluate.poisson import gradients

    l_y, l_x = gradients(np.log(np.clip(lights, FLOOR, None)))
    r_y, r_x = np.median(l_y, axis=2), np.median(l_x, axis=2)
    if threshold is not None:
        r_y, r_x = r_y * (np.abs(r_y) > threshold), r_x * (np.abs(r_x) > threshold)
    refl = np.where(mask, np.exp(solver.solve(r_y, r_x)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mask, image / np.where(mask, refl, 1.0), 0.0), refl


def weiss(image: np.ndarray, lights: np.ndarray, mask: np.ndarray, solver) -> tuple[np.ndarray, np.ndarray]:
    """W: reflectance from the median log-gradients of the ten lights; shading = grey input / reflectance."""
    return _weiss(image, lights, mask, solver, None)


def weiss_retinex(image: np.ndarray, lights: np.ndarray, mask: np.ndarray, threshold: float,
                  solver) -> tuple[np.ndarray, np.ndarray]:
    """W+RET: W with median gradients of magnitude <= threshold set to 0."""
    return _weiss(image, lights, mask, solver, threshold)


@dataclass(frozen=True)
class Baseline:
    key: str                       # BAS, GR-RET, COL-RET, W, W+RET
    label: str                     # the benchmark's own name
    grid: tuple[dict, ...]         # parameter settings, in the benchmark's order
    run: Callable                  # (object, params, solver) -> (shading, reflectance)
    needs_lights: bool = False


def _thresholds(lo: float, hi: float, n: int) -> list[float]:
    return [float(t) for t in np.logspace(lo, hi, n)]


BASELINES: dict[str, Baseline] = {b.key: b for b in (
    Baseline("BAS", "Baseline (BAS)", tuple({"mode": m} for m in ("shading", "refl")),
             lambda o, p, s: bas(o.grey, o.mask, p["mode"])),
    Baseline("GR-RET", "Grayscale Retinex (GR-RET)", tuple({"threshold": t} for t in _thresholds(-3.0, 1.0, 15)),
             lambda o, p, s: grey_retinex(o.grey, o.mask, p["threshold"], s)),
    Baseline("COL-RET", "Color Retinex (COL-RET)",
             tuple({"threshold_gray": g, "threshold_color": c} for g in _thresholds(-1.5, 0.0, 5)
                   for c in _thresholds(-1.5, 0.0, 5)),
             lambda o, p, s: colour_retinex(o.diffuse, o.mask, p["threshold_gray"], p["threshold_color"], s)),
    Baseline("W", "Weiss's Algorithm (W)", ({},), lambda o, p, s: weiss(o.grey, o.lights, o.mask, s), True),
    Baseline("W+RET", "Weiss + Retinex (W+RET)", tuple({"threshold": t} for t in _thresholds(-3.0, 1.0, 15)),
             lambda o, p, s: weiss_retinex(o.grey, o.lights, o.mask, p["threshold"], s), True),
)}


# ------------------------------------------------------------------------------------------ scoring

def local_error(truth: np.ndarray, estimate: np.ndarray, mask: np.ndarray) -> float:
    """The benchmark's local_error (LMSE) of grey images, 20 x 20 windows stepped by 10."""
    from evaluate.metrics import lmse

    return lmse(np.asarray(truth, np.float64)[..., None], np.asarray(estimate, np.float64)[..., None], mask,
                alignment="per_channel", window=WINDOW, stride=SHIFT, eps=EPS)


def score_image(true_shading, true_refl, est_shading, est_refl, mask) -> tuple[float, float, float]:
    """(score, LMSE of the shading, LMSE of the reflectance), score = the mean of the two."""
    ls, lr = local_error(true_shading, est_shading, mask), local_error(true_refl, est_refl, mask)
    return 0.5 * ls + 0.5 * lr, ls, lr


def hold_one_out(scores: np.ndarray) -> list[int | None]:
    """Per object (row) the grid index (column) with the smallest summed score over the other objects
    (np.argmin: the first of equal ones); None with fewer than two objects (nothing to choose on)."""
    scores = np.asarray(scores, np.float64)
    n = scores.shape[0]
    if n < 2:
        return [None] * n
    return [int(np.argmin(np.sum(scores[[j for j in range(n) if j != i]], axis=0))) for i in range(n)]


# ------------------------------------------------------------------------------------------ reading

def is_mit_import(data: str | os.PathLike) -> bool:
    """True when `data` is a folder written by `python -m render import-mit` (False when unreadable)."""
    from render.dataset import load_manifest

    try:
        manifest = load_manifest(data)
    except (FileNotFoundError, ValueError):
        return False
    return any(e.get("dataset") == "mit-intrinsic" for e in manifest["samples"])


def _exr_bench(root: Path, entry: dict, key: str) -> np.ndarray:
    """A light-carrying EXR of the import in the benchmark's units: linear / exposure.scale * 65535 / 255."""
    from render.imageio import read_exr

    scale = float((entry.get("exposure") or {}).get("scale", 1.0))
    return read_exr(root / entry[key])[..., :3].astype(np.float64) / scale * BENCH_UNITS


def load_objects(data: str | os.PathLike) -> tuple[list[MitObject], dict[str, str]]:
    """The objects of an MIT import with everything the protocol needs, and {object: why left out}."""
    from render.dataset import _png_gray, load_manifest
    from render.imageio import read_exr

    root = Path(data)
    try:
        manifest = load_manifest(root)
    except (FileNotFoundError, ValueError) as e:
        raise MitProtocolError(f"cannot run the MIT protocol on {root}: {e}. The protocol reads a folder written by "
                               f"`python -m render import-mit SRC --out {root}`. Nothing was written.") from None
    entries = [e for e in manifest["samples"] if e.get("dataset") == "mit-intrinsic"]
    if not entries:
        raise MitProtocolError(
            f"{root} is not an import of the MIT intrinsic images (no sample with dataset 'mit-intrinsic' in its "
            f"manifest.json): the benchmark's protocol needs the dataset's measured shading and diffuse image. Make "
            f"one with `python -m render import-mit SRC --out {root}`. Nothing was written.")
    by_obj: dict[str, dict[str, dict]] = {}
    for e in entries:
        by_obj.setdefault(e["base_scene"], {})[e["lighting"]] = e
    objects, skipped = [], {}
    for name, lights in sorted(by_obj.items()):
        e = lights.get(DEFAULT_LIGHT)
        if e is None:
            skipped[name] = f"no default-light sample ({name}__{DEFAULT_LIGHT})"
            continue
        lacking = [k for k in ("diffuse", "shading") if not e.get(k)]
        if lacking:
            skipped[name] = "; ".join(f"no {k}: {(e.get('missing') or {}).get(k, 'not in the manifest')}"
                                      for k in lacking)
            continue
        mask = _png_gray(root / e["mask"]) > 127
        refl = read_exr(root / e["albedo"])[..., :3].astype(np.float64)
        singles = [lights.get(f"light{i:02d}") for i in range(1, N_LIGHTS + 1)]
        stack = (np.stack([_exr_bench(root, s, "image").mean(-1) for s in singles], axis=-1)
                 if all(s is not None for s in singles) else None)
        objects.append(MitObject(name, e["id"], mask, _exr_bench(root, e, "diffuse"),
                                 read_exr(root / e["shading"])[..., 0].astype(np.float64), refl.mean(-1), stack))
    if not objects:
        raise MitProtocolError(f"{root}: no object has what the MIT protocol needs ("
                               + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "). Nothing was written.")
    return objects, skipped


# ------------------------------------------------------------------------------------------ running

def baseline_grid(objects: Sequence[MitObject], baseline: Baseline, solvers: dict | None = None,
                  progress: bool = False) -> np.ndarray:
    """[objects, settings, 3]: (score, shading LMSE, reflectance LMSE) of every grid setting on every object."""
    from tqdm.auto import tqdm

    from evaluate.poisson import PoissonSolver

    solvers = {} if solvers is None else solvers
    out = np.full((len(objects), len(baseline.grid), 3), np.nan)
    for i, o in enumerate(tqdm(objects, desc=baseline.key, unit="object", disable=not progress)):
        if baseline.needs_lights and o.lights is None:
            continue
        if o.name not in solvers and baseline.key != "BAS":
            solvers[o.name] = PoissonSolver(o.mask)
        for j, params in enumerate(baseline.grid):
            s, r = baseline.run(o, params, solvers.get(o.name))
            out[i, j] = score_image(o.true_shading, o.true_reflectance, s, r, o.mask)
    return out


def method_scores(objects: Sequence[MitObject], pred_dir: str | os.PathLike, method: str) -> dict[str, tuple]:
    """{object: (score, shading LMSE, reflectance LMSE)} of one prediction folder (default-light samples)."""
    from evaluate.score import load_prediction_manifest, match_size, read_prediction

    man = load_prediction_manifest(pred_dir, method)
    entries = {str(e.get("sample")): e for e in man.get("predictions") or [] if isinstance(e, dict)}
    out = {}
    for o in objects:
        e = entries.get(o.sample_id)
        if e is None:
            continue
        pred, _ = read_prediction(Path(pred_dir) / method, e)
        pred, _ = match_size(pred, o.mask.shape)
        est_r = np.asarray(pred, np.float64)[..., :3].mean(-1)
        ok = o.mask & (est_r > 0)
        est_s = np.where(ok, o.grey / np.where(ok, est_r, 1.0), 0.0)
        out[o.name] = score_image(o.true_shading, o.true_reflectance, est_s, np.where(o.mask, est_r, 0.0), o.mask)
    return out


def _method_record(pred_dir: Path, method: str) -> dict:
    from evaluate.score import load_prediction_manifest

    man = load_prediction_manifest(pred_dir, method)
    model = man.get("model")
    rnd = bool(man.get("random_weights")) or (isinstance(model, dict) and bool(model.get("random_weights"))) \
        or model == "tiny" or (isinstance(model, dict) and model.get("model") == "tiny")
    inp = man.get("input") or (man.get("params") or {}).get("input")
    return {"input": inp if isinstance(inp, str) else "the sample's image_srgb.png (the photograph original.png, "
                                                    "8-bit sRGB), as evaluate gives every method",
            "random_weights": rnd}


def _mean(values: Sequence[float]) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def run_protocol(data: str | os.PathLike, out: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
                 methods: Sequence[str] | None = None, baselines: Sequence[str] = tuple(BASELINES),
                 n_boot: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    """Every baseline's grid and hold-one-out scores, and every prediction folder's scores, under the MIT
    protocol; writes OUT/mit_protocol.json and OUT/mit_protocol.csv and returns the JSON's content."""
    from evaluate.score import discover_methods
    from evaluate.stats import paired_difference
    from probe.io.jsonio import json_clean, versions, write_json

    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise MitProtocolError(f"unknown MIT baseline(s) {unknown}; choose from {list(BASELINES)}")
    objects, skipped = load_objects(data)
    names = [o.name for o in objects]
    out = Path(out)
    pred_dir = Path(pred_dir) if pred_dir is not None else out / "pred"
    if methods is None:
        methods = [m for m in (discover_methods(pred_dir) if pred_dir.is_dir() else []) if "__ablate_" not in m]
    solvers: dict = {}
    res: dict = {
        "what": "the MIT intrinsic images benchmark's protocol and baselines (" + SOURCE + ")",
        "protocol": {
            "input": "diffuse.png of each object's default light, 16-bit value / 255, grey = mean of channels "
                     "(COL-RET: colour); mask = mask.png > 0",
            "truth": "shading.png (grey); reflectance.png, grey = mean of channels",
            "score": "1/2 LMSE(shading) + 1/2 LMSE(reflectance); LMSE: 20x20 windows stepped by 10, each window's "
                     "estimate scaled by least squares over its mask pixels (0 when its masked energy <= 1e-5), "
                     "summed squared error / summed squared truth",
            "summary": "per object, and the mean over the objects given",
            "hold_one_out": "each object is scored with the grid setting that has the smallest summed score over "
                            "the other objects given (ties: the first in grid order)",
            "solver": "least squares (L2) Poisson integration on the mask (the benchmark's USE_L1 = False), sparse "
                      "direct solve; the free constant per mask region does not change a score",
            "our_methods": "estimated reflectance = mean over channels of the predicted albedo (linear); estimated "
                           "shading = grey diffuse input / estimated reflectance (0 where that is <= 0)",
        },
        "data": str(data), "objects": names, "skipped_objects": skipped, "n_objects": len(objects),
        "baselines": {}, "methods": {}, "paired": {},
    }
    csv_rows = []
    for key in baselines:
        b = BASELINES[key]
        grid = baseline_grid(objects, b, solvers, progress)
        have = [i for i in range(len(objects)) if np.isfinite(grid[i, :, 0]).all()]
        chosen = hold_one_out(grid[have, :, 0]) if have else []
        entry = {"label": b.label, "grid": list(b.grid), "objects": [names[i] for i in have],
                 "grid_scores": {names[i]: grid[i, :, 0].tolist() for i in have},
                 "grid_shading_lmse": {names[i]: grid[i, :, 1].tolist() for i in have},
                 "grid_reflectance_lmse": {names[i]: grid[i, :, 2].tolist() for i in have},
                 "left_out": {names[i]: ("no light01-10 photographs" if b.needs_lights and objects[i].lights is None
                                         else "not scored") for i in range(len(objects)) if i not in have},
                 "hold_one_out": {}}
        for i, c in zip(have, chosen):
            if c is None:
                entry["hold_one_out"][names[i]] = {"params": None, "score": None,
                                                   "note": "hold-one-out needs two or more objects"}
                continue
            sc, ls, lr = grid[i, c]
            entry["hold_one_out"][names[i]] = {"params": b.grid[c], "grid_index": c, "score": sc,
                                               "shading_lmse": ls, "reflectance_lmse": lr}
            csv_rows.append({"kind": "baseline", "method": key, "object": names[i], "params": b.grid[c],
                             "score": sc, "shading_lmse": ls, "reflectance_lmse": lr,
                             "input": "diffuse.png (16-bit linear)"})
        entry["mean"] = _mean([v["score"] for v in entry["hold_one_out"].values()])
        entry["best_single_setting"] = ({"params": b.grid[int(np.argmin(grid[have, :, 0].mean(0)))],
                                         "mean": float(grid[have, :, 0].mean(0).min())} if have else None)
        res["baselines"][key] = entry
    for m in methods:
        rec = _method_record(pred_dir, m)
        got = method_scores(objects, pred_dir, m)
        res["methods"][m] = {**rec, "objects": sorted(got), "n_objects": len(got),
                             "missing_objects": [n for n in names if n not in got],
                             "score": {k: v[0] for k, v in got.items()},
                             "shading_lmse": {k: v[1] for k, v in got.items()},
                             "reflectance_lmse": {k: v[2] for k, v in got.items()},
                             "mean": _mean([v[0] for v in got.values()])}
        for k, v in sorted(got.items()):
            csv_rows.append({"kind": "method", "method": m, "object": k, "params": "", "score": v[0],
                             "shading_lmse": v[1], "reflectance_lmse": v[2], "input": rec["input"]})
        for key, b in res["baselines"].items():
            base = {k: v["score"] for k, v in b["hold_one_out"].items() if v.get("score") is not None}
            res["paired"].setdefault(m, {})[key] = paired_difference(res["methods"][m]["score"], base, None,
                                                                     n_boot, seed)
    res["paired_definition"] = ("per object, the method's score minus the baseline's hold-one-out score (lower is "
                                "better, so < 0 favours the method); mean over the objects both scored, 95 % "
                                f"percentile-bootstrap CI resampling objects ({n_boot} resamples)")
    res["random_weights"] = any(v["random_weights"] for v in res["methods"].values())
    res["config"] = {"data": str(data), "pred_dir": str(pred_dir), "methods": list(methods),
                     "baselines": list(baselines), "n_boot": n_boot, "seed": seed, "window": WINDOW, "step": SHIFT,
                     "eps": EPS, "clip_floor": FLOOR, "versions": versions()}
    res = json_clean(res)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / JSON_NAME, res)
    _write_csv(out / CSV_NAME, csv_rows, res)
    return res


def _write_csv(path: Path, rows: list[dict], res: dict) -> None:
    import json

    from render.imageio import atomic_path

    cols = ["kind", "method", "object", "params", "score", "shading_lmse", "reflectance_lmse", "input"]
    means = [{"kind": "baseline mean", "method": k, "object": f"mean of {len(v['hold_one_out'])}", "score": v["mean"]}
             for k, v in res["baselines"].items()]
    means += [{"kind": "method mean", "method": k, "object": f"mean of {v['n_objects']}", "score": v["mean"],
               "input": v["input"]} for k, v in res["methods"].items()]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in rows + means:
                w.writerow(["" if r.get(c) is None else json.dumps(r[c], sort_keys=True) if isinstance(r.get(c), dict)
                            else repr(r[c]) if isinstance(r.get(c), float) else r.get(c, "") for c in cols])


# ------------------------------------------------------------------------------------------ report

def _fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4f}"


def _params(p) -> str:
    if not p:
        return "—"
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items())


def report_parts(out: str | os.PathLike) -> list[tuple]:
    """The report section of OUT/mit_protocol.json as plain parts: ("h", text), ("p", text), ("note", text),
    ("table", headers, rows); [] when the file is not there (evaluate.report renders them)."""
    import json

    path = Path(out) / JSON_NAME
    if not path.is_file():
        return []
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [("h", "The MIT intrinsic images protocol"), ("note", f"{path} unreadable: {e}")]
    names = res.get("objects") or []
    parts: list[tuple] = [("h", "The MIT intrinsic images protocol (real photographs)")]
    if res.get("random_weights"):
        parts.append(("note", "Rows of methods with random weights (--model tiny) are a dry run, not findings."))
    p = res.get("protocol", {})
    parts.append(("p", f"The benchmark's own error measure and baselines ({SOURCE}) on the {len(names)} objects of "
                       f"`{res.get('data')}`: input {p.get('input')}; truth {p.get('truth')}; score {p.get('score')}; "
                       f"{p.get('summary')}. Baselines with a parameter take it by hold-one-out ({p.get('hold_one_out')}). "
                       f"Our methods: {p.get('our_methods')}. Lower is better. These numbers are on this copy of "
                       "the dataset and these objects; published tables used other objects and image sizes. The "
                       "RGB metrics above use scale-free alignments only on this folder (the dataset's reflectance "
                       "is known up to a factor, so their `none` columns are empty)."))
    keys = list(res.get("baselines", {})) + list(res.get("methods", {}))
    headers = ["object"] + [f"`{k}`" for k in keys]
    rows = []
    for n in names:
        row = [n]
        for k in res.get("baselines", {}):
            row.append(_fmt((res["baselines"][k]["hold_one_out"].get(n) or {}).get("score")))
        for k in res.get("methods", {}):
            row.append(_fmt(res["methods"][k]["score"].get(n)))
        rows.append(row)
    rows.append(["**mean**"] + [_fmt(res["baselines"][k]["mean"]) for k in res.get("baselines", {})]
                + [_fmt(res["methods"][k]["mean"]) for k in res.get("methods", {})])
    parts.append(("table", headers, rows))
    parts.append(("table", ["method", "input", "objects scored", "settings (hold-one-out, per object)"],
                  [[f"`{k}`", "diffuse.png (16-bit linear)", str(len(v["hold_one_out"])),
                    "; ".join(sorted({_params(h.get("params")) for h in v["hold_one_out"].values()}))]
                   for k, v in res.get("baselines", {}).items()]
                  + [[f"`{k}`", v["input"], f"{v['n_objects']} of {len(names)}", "—"]
                     for k, v in res.get("methods", {}).items()]))
    paired = res.get("paired") or {}
    if paired:
        prow = []
        for m, per in paired.items():
            for k, d in per.items():
                ci = (f" [{_fmt(d.get('ci95_low'))}, {_fmt(d.get('ci95_high'))}]"
                      if d.get("ci95_low") is not None else " (no CI: fewer than two objects)")
                prow.append([f"`{m}` − `{k}`", _fmt(d.get("mean")) + ci, str(d.get("n", 0))])
        parts.append(("p", "Paired differences: " + res.get("paired_definition", "")))
        parts.append(("table", ["difference", "mean [95 % CI]", "objects"], prow))
    if res.get("skipped_objects"):
        parts.append(("note", "Left out: " + "; ".join(f"{k} ({v})" for k, v in res["skipped_objects"].items())))
    return parts


def main_mit(args) -> int:
    """`python -m evaluate mit`: run the protocol and print the table's means."""
    res = run_protocol(args.data, args.out, getattr(args, "pred", None),
                       [m for m in args.methods.split(",") if m] if getattr(args, "methods", None) else None,
                       [b for b in args.baselines.split(",") if b] if getattr(args, "baselines", None) else
                       tuple(BASELINES), n_boot=args.n_boot, progress=not getattr(args, "quiet", False))
    if res.get("random_weights"):
        print("note: methods with random weights (--model tiny) are scored too: a dry run, not findings",
              file=sys.stderr)
    parts = [f"{k} {_fmt(v['mean'])}" for k, v in res["baselines"].items()]
    parts += [f"{k} {_fmt(v['mean'])} ({v['n_objects']} objects)" for k, v in res["methods"].items()]
    print(f"MIT protocol, mean over {res['n_objects']} objects (lower is better): " + ", ".join(parts)
          + f" -> {Path(args.out) / JSON_NAME}")
    return 0
