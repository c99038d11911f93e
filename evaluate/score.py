"""Score albedo predictions against the rendered ground truth: no GPU, no torch.

    from evaluate.score import score
    res = score("runs/render", "runs/evaluate/pred", "runs/evaluate")   # every method folder in pred
    print(res.summary["methods"]["klein"]["metrics"]["lmse_linear_per_channel"])

Reads PRED/<method>/manifest.json ({"method", "predictions": [{"sample", "albedo_linear",
"albedo_srgb", ...}]}); for each sample of the render manifest and each method, the prediction
is the linear EXR when it exists, else the sRGB PNG decoded to linear. Writes into `out_dir`:

- scores.csv           one row per (method, sample): status ok/error, the error message, the
                       prediction's source file and size, whether and how it was resized, then
                       every metric column of `evaluate.metrics` (empty when not computed);
- invariance.csv       one row per (method, scene): disagreement between the scene's predictions
                       under its different lightings (inv_mse_linear_*; 0 for ground truth);
- score_summary.json   per method: mean and percentile-bootstrap 95% CI over samples of every
                       column, n ok / n errors, the error list, LPIPS status and reason;
- score_config.json    the resolved configuration and library versions.

A missing or unreadable prediction is an error row, never a silent skip. A prediction whose size
differs from the ground truth is resized to it (area averaging when shrinking both axes, bilinear
otherwise, on linear values) and the row records it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from probe.job import json_clean, versions, write_json
from evaluate.metrics import (COLUMN_DOCS, INVARIANCE_COLUMNS, LpipsScorer, LpipsStatus,
                              MetricConfig, invariance, metric_columns, score_pair)

__all__ = [
    "ScoreConfig", "ScoreResult", "SampleRef", "Dataset", "open_dataset", "discover_methods",
    "load_prediction_manifest", "read_prediction", "match_size", "bootstrap_mean_ci", "score",
    "add_score_arguments", "main_score", "ROW_COLUMNS", "SCALE_COLUMNS", "ScoreError", "GroundTruth",
]

ROW_COLUMNS = ("method", "sample", "scene", "lighting", "status", "error", "pred_source", "pred_hw", "gt_hw",
               "resized", "resize_interp", "n_valid")
SCALE_COLUMNS = ("scale_scalar", "scale_per_channel_r", "scale_per_channel_g", "scale_per_channel_b")
INV_ROW_COLUMNS = ("method", "scene", "n_lightings", "n_ok", "n_pairs", "note")


class ScoreError(ValueError):
    """Inputs that cannot be scored at all (missing folders, ids that match nothing)."""


# ---------------------------------------------------------------------------------------------
# ground truth


@dataclass(frozen=True)
class SampleRef:
    id: str
    scene: str
    lighting: str


@dataclass(frozen=True)
class GroundTruth:
    albedo_linear: np.ndarray   # float32 [H, W, 3], linear
    mask: np.ndarray            # bool [H, W]
    image_linear: np.ndarray | None = None


class Dataset:
    """The render output folder: sample list and ground-truth reader.

    Uses `render.dataset` (load_sample) when it imports, else reads the same layout directly
    (manifest.json with `samples`: id, scene, lighting and relative file paths).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        from render.dataset import load_manifest

        try:
            manifest = load_manifest(self.root)
        except (FileNotFoundError, ValueError) as e:
            raise ScoreError(str(e)) from e
        mpath = self.root / "manifest.json"
        entries = manifest.get("samples")
        if not isinstance(entries, list) or not entries:
            raise ScoreError(f"{mpath} lists no samples")
        self._entries = {}
        for e in entries:
            if "id" not in e:
                raise ScoreError(f"{mpath}: a sample entry has no `id`: {e}")
            self._entries[e["id"]] = e
        self.samples = [SampleRef(i, str(self._entries[i].get("scene", i.split("__")[0])),
                                  str(self._entries[i].get("lighting", i.split("__")[-1])))
                        for i in sorted(self._entries)]
        try:
            from render import dataset as _rd

            self._rd = _rd if hasattr(_rd, "load_sample") else None
        except ImportError:
            self._rd = None
        self.reader = "render.dataset.load_sample" if self._rd is not None else "evaluate.score (direct layout reader)"

    def load(self, sample_id: str, image: bool = False) -> GroundTruth:
        """Albedo (linear), mask and optionally the linear rendered image of one sample."""
        if self._rd is not None:
            # a one-entry manifest: load_sample looks the id up by a scan, quadratic over a big run
            s = self._rd.load_sample(self.root, sample_id, {"samples": [self._entries[sample_id]]})
            return GroundTruth(np.asarray(s.albedo_linear, np.float32)[..., :3], np.asarray(s.mask, bool),
                               np.asarray(s.image_linear, np.float32)[..., :3] if image else None)
        from render.imageio import read_exr, read_png_srgb

        e = self._entries[sample_id]
        for key in ("albedo", "mask") + (("image",) if image else ()):
            if key not in e:
                raise ValueError(f"render manifest entry {sample_id} has no `{key}` path")
        albedo = read_exr(self.root / e["albedo"])[..., :3]
        mask = read_png_srgb(self.root / e["mask"]).max(axis=-1) > 0.5  # 0 / 255 PNG; render.dataset's rule
        img = read_exr(self.root / e["image"])[..., :3] if image else None
        if albedo.shape[:2] != mask.shape:
            raise ValueError(f"{sample_id}: albedo {albedo.shape[:2]} and mask {mask.shape} differ in size")
        return GroundTruth(albedo, mask, img)

    def entry(self, sample_id: str) -> dict:
        return dict(self._entries[sample_id])


def open_dataset(data_dir: str | os.PathLike) -> Dataset:
    return Dataset(data_dir)


# ---------------------------------------------------------------------------------------------
# predictions


def discover_methods(pred_dir: str | os.PathLike) -> list[str]:
    """Method folders of PRED that hold a manifest.json, sorted."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise ScoreError(f"prediction folder {pred_dir} does not exist: run `python -m evaluate generate` "
                         "or `python -m evaluate baselines` first")
    return sorted(p.name for p in pred_dir.iterdir() if p.is_dir() and (p / "manifest.json").is_file())


def load_prediction_manifest(pred_dir: str | os.PathLike, method: str) -> dict:
    path = Path(pred_dir) / method / "manifest.json"
    if not path.is_file():
        raise ScoreError(f"no predictions for method {method!r}: {path} not found")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ScoreError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(m.get("predictions"), list):
        raise ScoreError(f"{path} has no `predictions` list")
    return m


def read_prediction(method_dir: str | os.PathLike, entry: dict) -> tuple[np.ndarray, str]:
    """(linear float32 [H, W, 3], source) of one manifest entry; raises with a clear message.

    The linear EXR wins when its file exists; else the sRGB PNG is decoded (IEC 61966-2-1) to
    linear. A grey (1-channel) prediction is repeated to 3 channels; alpha is dropped.
    """
    from render.imageio import read_exr, read_png_srgb

    method_dir = Path(method_dir)
    tried = []
    for key, reader in (("albedo_linear", read_exr), ("albedo_srgb", lambda p: read_png_srgb(p, linear=True))):
        rel = entry.get(key)
        if not rel:
            continue
        path = method_dir / rel
        if not path.is_file():
            tried.append(str(path))
            continue
        try:
            arr = np.asarray(reader(path), dtype=np.float32)
        except Exception as e:
            raise ValueError(f"unreadable prediction {path}: {e}") from e
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        elif arr.shape[-1] >= 3:
            arr = arr[..., :3]
        else:
            raise ValueError(f"prediction {path} has {arr.shape[-1]} channels; expected 1, 3 or 4")
        if not np.isfinite(arr).all():
            raise ValueError(f"prediction {path} has non-finite values")
        src = "exr_linear" if key == "albedo_linear" else "png_srgb"
        return arr, src
    if not tried:
        raise ValueError("manifest entry names neither `albedo_linear` nor `albedo_srgb`")
    raise FileNotFoundError(f"missing prediction file(s): {', '.join(tried)}")


def match_size(pred: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Resize a linear prediction to the ground truth's (H, W); returns (array, interpolation or "").

    Area averaging (cv2.INTER_AREA) when both axes shrink, bilinear (cv2.INTER_LINEAR) otherwise,
    always on linear values so that averaging is physically meaningful.
    """
    if pred.shape[:2] == tuple(hw):
        return pred, ""
    import cv2

    h, w = hw
    shrink = pred.shape[0] >= h and pred.shape[1] >= w
    interp, name = (cv2.INTER_AREA, "area") if shrink else (cv2.INTER_LINEAR, "bilinear")
    out = cv2.resize(np.ascontiguousarray(pred, dtype=np.float32), (w, h), interpolation=interp)
    if out.ndim == 2:
        out = out[..., None]
    return out, name


# ---------------------------------------------------------------------------------------------
# statistics


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, Any]:
    """Mean of the finite values and its percentile-bootstrap CI (resampling values with replacement).

    Non-finite values (NaN: not computed; inf: PSNR of a perfect prediction) are left out and
    counted in n_nonfinite. The same seed gives the same resampling indices for equal n, so CIs of
    different columns of one method are paired.
    """
    v = np.asarray(values, dtype=np.float64)
    fin = v[np.isfinite(v)]
    out: dict[str, Any] = {"mean": None, "ci95_low": None, "ci95_high": None, "n": int(fin.size),
                           "n_nonfinite": int(v.size - fin.size)}
    if fin.size == 0:
        return out
    out["mean"] = float(fin.mean())
    if fin.size == 1 or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // fin.size)  # bounded index memory for big runs
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        means[s:s + k] = fin[rng.integers(0, fin.size, size=(k, fin.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    out["ci95_low"], out["ci95_high"] = float(lo), float(hi)
    return out


# ---------------------------------------------------------------------------------------------
# scoring


@dataclass(frozen=True)
class ScoreConfig:
    data_dir: str
    pred_dir: str
    out_dir: str
    methods: tuple[str, ...] | None = None     # None: every folder of pred_dir with a manifest.json
    n_boot: int = 1000
    seed: int = 0
    lpips: str = "auto"                        # "auto": when the package and weights are on disk; "off"
    metrics: MetricConfig = field(default_factory=MetricConfig)
    resize: str = "area when shrinking both axes, else bilinear (OpenCV), on linear values"


@dataclass(frozen=True)
class ScoreResult:
    out_dir: Path
    scores_csv: Path
    invariance_csv: Path
    summary_json: Path
    config_json: Path
    methods: tuple[str, ...]
    n_rows: int
    n_ok: int
    n_errors: int
    lpips: LpipsStatus
    summary: dict


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest string that reads back to the same float
    return str(v)


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    from render.imageio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(columns)
            for r in rows:
                w.writerow([_fmt(r.get(c)) for c in columns])


def score(data_dir: str | os.PathLike, pred_dir: str | os.PathLike, out_dir: str | os.PathLike,
          methods: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0, *, lpips: str = "auto",
          metric_config: MetricConfig = MetricConfig(), workers: int | None = None,
          progress: bool = True) -> ScoreResult:
    """Score every (sample, method) pair; write scores.csv, invariance.csv, score_summary.json and
    score_config.json into out_dir. See the module docstring for the file contents.

    lpips: "auto" computes the LPIPS columns when `lpips_status()` finds the package and its weights
    on disk (importing torch only then), "off" leaves them empty; either way the reason is recorded.
    workers: threads over samples (default min(4, cpus); 1 when LPIPS runs). Results do not depend on it.
    """
    from tqdm.auto import tqdm

    if lpips not in ("auto", "off"):
        raise ValueError(f"lpips must be 'auto' or 'off', got {lpips!r}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    ds = open_dataset(data_dir)
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    found = discover_methods(pred_dir)
    if methods is None:
        methods = found
        if not methods:
            raise ScoreError(f"no method folder with a manifest.json in {pred_dir}")
    methods = tuple(methods)
    cfg = ScoreConfig(str(data_dir), str(pred_dir), str(out_dir), methods, n_boot, seed, lpips, metric_config)

    manifests = {m: load_prediction_manifest(pred_dir, m) for m in methods}
    by_sample: dict[str, dict[str, dict]] = {}
    unknown: dict[str, list[str]] = {}
    known_ids = {s.id for s in ds.samples}
    for m, man in manifests.items():
        entries = {}
        for e in man["predictions"]:
            if isinstance(e, dict) and "sample" in e:
                entries[str(e["sample"])] = e
        extra = sorted(set(entries) - known_ids)
        if entries and len(extra) == len(entries):
            raise ScoreError(f"none of the {len(entries)} predictions of method {m!r} matches a sample of "
                             f"{data_dir} (e.g. {extra[0]!r}): wrong --data or --pred?")
        if extra:
            warnings.warn(f"method {m!r}: {len(extra)} predictions for samples not in {data_dir} are ignored "
                          f"(e.g. {extra[0]!r})", stacklevel=2)
        unknown[m] = extra
        by_sample[m] = entries

    if lpips == "off":
        scorer, lp_status = None, LpipsStatus(False, "disabled (lpips='off')", metric_config.lpips_net)
    else:
        scorer, lp_status = LpipsScorer.create(metric_config.lpips_net)

    mcols = metric_columns()

    def score_sample(s: SampleRef) -> tuple[list[dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Rows of one sample (one per method) and the usable predictions, for the invariance test."""
        base = {"sample": s.id, "scene": s.scene, "lighting": s.lighting}
        out_rows, kept = [], {}
        try:
            gt = ds.load(s.id)
            gt_err = None if gt.mask.any() else "ground truth mask has no valid pixel"
        except Exception as e:
            gt, gt_err = None, f"ground truth unreadable: {type(e).__name__}: {e}"
        for m in methods:
            row = {"method": m, **base}
            out_rows.append(row)
            if gt_err is not None:
                row.update(status="error", error=gt_err)
                continue
            row["gt_hw"] = f"{gt.mask.shape[0]}x{gt.mask.shape[1]}"
            row["n_valid"] = int(gt.mask.sum())
            entry = by_sample[m].get(s.id)
            if entry is None:
                row.update(status="error", error=f"no prediction for this sample in {pred_dir / m}/manifest.json")
                continue
            try:
                pred, src = read_prediction(pred_dir / m, entry)
                row["pred_source"] = src
                row["pred_hw"] = f"{pred.shape[0]}x{pred.shape[1]}"
                pred, interp = match_size(pred, gt.mask.shape)
                row["resized"] = bool(interp)
                row["resize_interp"] = interp
                row.update(score_pair(gt.albedo_linear, pred, gt.mask, metric_config, scorer))
                row["status"] = "ok"
                kept[m] = (pred, gt.mask)
            except Exception as e:
                row.update(status="error", error=f"{type(e).__name__}: {e}")
        return out_rows, kept

    def scene_invariance(scene: str, n_total: int, kept: dict[str, list]) -> list[dict]:
        out = []
        for m in methods:
            r = {"method": m, "scene": scene, "n_lightings": n_total, "n_ok": len(kept[m])}
            if len(kept[m]) < 2:
                r.update({c: float("nan") for c in INVARIANCE_COLUMNS}, n_pairs=0,
                         note="fewer than two lightings with a usable prediction")
            else:
                inv = invariance([p for p, _ in kept[m]], [k for _, k in kept[m]])
                r.update({c: inv[c] for c in INVARIANCE_COLUMNS}, n_pairs=inv["n_pairs"])
                if len(kept[m]) < n_total:
                    r["note"] = f"{n_total - len(kept[m])} lighting(s) without a usable prediction left out"
            out.append(r)
        return out

    # numpy, OpenCV, OpenEXR and scipy.ndimage release the GIL on whole images, so threads over
    # samples use the cores; with LPIPS, torch parallelises itself and one thread is kept
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    workers = 1 if scorer is not None else max(1, int(workers))
    ordered = sorted(ds.samples, key=lambda s: (s.scene, s.id))
    n_per_scene: dict[str, int] = {}
    for s in ordered:
        n_per_scene[s.scene] = n_per_scene.get(s.scene, 0) + 1
    rows: list[dict] = []
    inv_rows: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(ordered), desc="score", unit="sample", disable=not progress)
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(score_sample, ordered) if pool else map(score_sample, ordered)
        scene, kept_scene = None, {m: [] for m in methods}   # one scene's predictions in memory at a time
        for s, (srows, kept) in zip(ordered, results):
            if s.scene != scene:
                if scene is not None:
                    inv_rows += scene_invariance(scene, n_per_scene[scene], kept_scene)
                scene, kept_scene = s.scene, {m: [] for m in methods}
            rows += srows
            for m, pk in kept.items():
                kept_scene[m].append(pk)
            bar.update(1)
        if scene is not None:
            inv_rows += scene_invariance(scene, n_per_scene[scene], kept_scene)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    elapsed = time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(ROW_COLUMNS) + mcols + list(SCALE_COLUMNS)
    _write_csv(out_dir / "scores.csv", columns, rows)
    _write_csv(out_dir / "invariance.csv", list(INV_ROW_COLUMNS[:-1]) + list(INVARIANCE_COLUMNS) + ["note"], inv_rows)

    lp = {"available": scorer is not None, "reason": lp_status.reason, "net": lp_status.net,
          "backbone_weights": lp_status.backbone_weights}
    summary = {
        "what": "per method: mean and percentile-bootstrap 95% CI over samples (invariance: over scenes); "
                "non-finite values left out and counted",
        "n_samples": len(ds.samples), "n_scenes": len(n_per_scene), "n_boot": n_boot, "seed": seed,
        "lpips": lp, "columns": {c: COLUMN_DOCS[c] for c in mcols + list(INVARIANCE_COLUMNS)},
        "seconds": round(elapsed, 3), "methods": {},
    }
    for m in methods:
        mrows = [r for r in rows if r["method"] == m]
        ok = [r for r in mrows if r.get("status") == "ok"]
        errs = [r for r in mrows if r.get("status") != "ok"]
        msum: dict[str, Any] = {
            "n_samples": len(mrows), "n_ok": len(ok), "n_errors": len(errs),
            "n_resized": sum(1 for r in ok if r.get("resized")),
            "errors": [{"sample": r["sample"], "error": r.get("error")} for r in errs],
            "ignored_prediction_ids": unknown.get(m, []),
            "colour_space": manifests[m].get("colour_space", manifests[m].get("colour_space_note")),
            "metrics": {},
            "invariance": {},
        }
        for c in mcols:
            if c.startswith("lpips") and scorer is None:
                msum["metrics"][c] = {"mean": None, "ci95_low": None, "ci95_high": None, "n": 0,
                                      "n_nonfinite": len(ok), "status": "not computed: " + lp_status.reason}
                continue
            msum["metrics"][c] = bootstrap_mean_ci([r.get(c, float("nan")) for r in ok], n_boot, seed)
        minv = [r for r in inv_rows if r["method"] == m]
        msum["invariance"]["n_scenes"] = len(minv)
        for c in INVARIANCE_COLUMNS:
            msum["invariance"][c] = bootstrap_mean_ci([r.get(c, float("nan")) for r in minv], n_boot, seed)
        summary["methods"][m] = msum
    summary = json_clean(summary)
    write_json(out_dir / "score_summary.json", summary)
    config = {**asdict(cfg), "workers": workers, "dataset_reader": ds.reader, "versions": versions(),
              "lpips_status": lp, "columns_order": columns}
    write_json(out_dir / "score_config.json", config)
    n_ok = sum(1 for r in rows if r.get("status") == "ok")
    return ScoreResult(out_dir, out_dir / "scores.csv", out_dir / "invariance.csv", out_dir / "score_summary.json",
                       out_dir / "score_config.json", methods, len(rows), n_ok, len(rows) - n_ok, lp_status, summary)


# ---------------------------------------------------------------------------------------------
# command line (the lead's `python -m evaluate score` may use these or its own)


def add_score_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data", required=True, help="render output folder (manifest.json)")
    p.add_argument("--pred", required=True, help="prediction folder: one sub-folder per method")
    p.add_argument("--out", default=None, help="where scores.csv etc. go (default: the --pred folder's parent)")
    p.add_argument("--methods", default=None, help="comma-separated method folders (default: all with a manifest)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--lpips", choices=("auto", "off"), default="auto",
                   help="auto: LPIPS when the lpips package and its backbone weights are on disk")
    p.add_argument("--workers", type=int, default=None, help="threads over samples (default min(4, cpus))")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main_score(argv: Sequence[str] | None = None) -> int:
    p = add_score_arguments(argparse.ArgumentParser(prog="python -m evaluate.score", description=__doc__.split("\n")[0]))
    a = p.parse_args(argv)
    out = a.out or str(Path(a.pred).resolve().parent)
    methods = [m for m in a.methods.split(",") if m] if a.methods else None
    try:
        res = score(a.data, a.pred, out, methods, a.n_boot, a.seed, lpips=a.lpips, workers=a.workers,
                    progress=not a.quiet)
    except ScoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"scored {res.n_rows} (method, sample) pairs: {res.n_ok} ok, {res.n_errors} errors -> {res.scores_csv}")
    if not res.lpips.available:
        print(f"LPIPS columns empty: {res.lpips.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_score())
