"""Score albedo predictions against the rendered ground truth: no GPU, no torch.

    from evaluate.score import score
    res = score("runs/render", "runs/evaluate/pred", "runs/evaluate")   # every method folder in pred
    print(res.summary["methods"]["klein"]["metrics"]["lmse_linear_per_channel"])

Reads every method folder PRED/<method>/ through `evaluate.predictions` (the per-sample sidecars,
or manifest.json's `predictions` list for folders written by other tools); for each sample of the
render manifest and each method, the prediction is the linear EXR when it exists, else the sRGB PNG
decoded to linear. Writes into `out_dir`:

- scores.csv           one row per (method, sample): status ok/error, the error message, the
                       prediction's source file and size, whether and how scoring resized it
                       (`resized`, `resize_interp`), how the model's input was changed before the
                       model saw it (`reference_scale_mode`, `reference_exact`, `reference_model_hw`,
                       from the sidecar's reference transform; empty for methods without one), the
                       sample's cluster (`base_scene`), then every metric column of
                       `evaluate.metrics` (empty when not computed), shading leakage (signed and
                       magnitude) with the counts of its fit, `degenerate` (zero, constant or
                       near-constant prediction) and `n_nonfinite_outside_mask`;
- invariance.csv       one row per (method, scene): disagreement between the scene's predictions
                       under its different lightings (inv_nmse_linear_*: scale-free; inv_mse_linear_*:
                       the earlier, scale-dependent form); 0 for ground truth;
- score_summary.json   per method: mean and 95% CIs of every column, resampling scenes (cluster
                       bootstrap over `base_scene`: the lightings and colour variants of one scene are
                       not independent; percentile and studentised, see evaluate.stats), over the
                       method's own ok samples (`metrics`) and over the samples every (non-ablation)
                       method scored (`metrics_common`, the headline's); n ok / n errors, the error
                       list, the settings its predictions were made with, LPIPS status and reason;
                       `paired_differences`: klein minus each other method per column, over the
                       samples both scored, with cluster-bootstrap CIs;
- score_config.json    the resolved configuration and library versions.

Scoring first rebuilds each method folder's manifest.json and config.json from its sidecars, so
after a sharded generate (whose ranks write no shared file) the folder's index is complete.

A missing or unreadable prediction is an error row, never a silent skip; so is a prediction whose
sidecar records a reference image other than the one the render folder holds now (the render was
redone: regenerate), and one with a non-finite value inside the mask (non-finite values outside it
are counted and set to 0: they are never scored). A prediction whose size differs from the ground
truth is resized to it (area averaging when shrinking both axes, bilinear otherwise, on linear
values) and the row records it; `evaluate generate` writes predictions at the ground truth's size
(see probe.klein.registration).

A method folder whose predictions were made with different settings (a partial rerun with another
seed, steps or instruction) is refused (ScoreError naming the differing fields) before anything is
written: one method is one setting, never a silent pool.

PSNR is infinite for a perfect prediction: the summary counts such a value as PSNR_CAP (100 dB) and
says how many it capped (`n_capped`); scores.csv keeps `inf`.
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

from probe.io.jsonio import json_clean, versions, write_json
from evaluate.metrics import (COLUMN_DOCS, INVARIANCE_COLUMNS, LEAKAGE_COUNT_COLUMNS, LpipsScorer, LpipsStatus,
                              MetricConfig, all_metric_columns, invariance, score_pair)
from evaluate.stats import CI_DEFINITIONS, PSNR_CAP, bootstrap_mean_ci, paired_difference

__all__ = [
    "ScoreConfig", "ScoreResult", "SampleRef", "Dataset", "open_dataset", "discover_methods",
    "load_prediction_manifest", "read_prediction", "match_size", "bootstrap_mean_ci", "score", "refresh_indexes",
    "add_score_arguments", "main_score", "ROW_COLUMNS", "SCALE_COLUMNS", "ScoreError", "GroundTruth",
    "REFERENCE_COLUMNS", "DIAGNOSTIC_COLUMNS", "check_uniform_settings", "reference_fields",
]

ROW_COLUMNS = ("method", "sample", "scene", "lighting", "base_scene", "variant", "status", "error", "pred_source",
               "pred_hw", "gt_hw", "resized", "resize_interp", "n_valid", "degenerate")
# how the model's input was changed before it saw it (the sidecar's reference_transform; klein only)
REFERENCE_COLUMNS = ("reference_scale_mode", "reference_exact", "reference_model_hw")
DIAGNOSTIC_COLUMNS = LEAKAGE_COUNT_COLUMNS + ("n_nonfinite_outside_mask",)
SCALE_COLUMNS = ("scale_scalar", "scale_per_channel_r", "scale_per_channel_g", "scale_per_channel_b")
INV_ROW_COLUMNS = ("method", "scene", "base_scene", "n_lightings", "n_ok", "n_pairs", "n_degenerate", "note")
BASE_METHOD = "klein"
SUMMARY_WHAT = ("per method: mean and 95% CIs (percentile: ci95_low/high; studentised: ci95_studentized_low/high, "
                "see ci_definitions) of every column, resampling clusters (base scenes: a scene's lightings and colour "
                "variants together) with replacement; `metrics` over the method's own ok samples, `metrics_common` "
                "over the samples every non-ablation method scored (common_samples); invariance: per scene version, "
                "the same over clusters; NaN values left out and counted (n_nonfinite), PSNR's inf (a perfect "
                "prediction) counted as the cap and counted (n_capped). paired_differences: klein minus each other "
                "method per sample (samples both scored), clustered CI")
COUNTS_DEFINITION = ("n_base_scenes: the scenes, the independent units every CI resamples (a scene with its "
                     "lightings and colour variants); n_scene_versions: originals plus colour variants (a colour "
                     "variant is the same scene with other surface colours); n_colour_variants: the variants among "
                     "them; n_scenes (kept for earlier readers) = n_scene_versions; n_clusters = n_base_scenes")


class ScoreError(ValueError):
    """Inputs that cannot be scored at all (missing folders, ids that match nothing)."""


SCALE_UNKNOWN_NOTE = ("samples whose albedo scale is unknown (albedo_scale_known: false, a real dataset such as the "
                      "MIT intrinsic images, render.mit) are scored with scale-free alignments only: their `*_none` "
                      "columns are left empty")


def scale_unknown(entry: dict) -> bool:
    """True when the sample's ground-truth albedo is known only up to a factor (render.mit imports)."""
    return entry.get("albedo_scale_known") is False


# ---------------------------------------------------------------------------------------------
# ground truth


@dataclass(frozen=True)
class SampleRef:
    id: str
    scene: str
    lighting: str
    base_scene: str = ""        # the cluster (C1); the scene id without `~c<k>`; old manifests: = scene
    variant: int = 0


@dataclass(frozen=True)
class GroundTruth:
    albedo_linear: np.ndarray   # float32 [H, W, 3], linear
    mask: np.ndarray            # bool [H, W]
    image_linear: np.ndarray | None = None
    shading: np.ndarray | None = None   # float32 [H, W, 3], linear diffuse shading (None when not rendered)


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
        self.samples = []
        for i in sorted(self._entries):
            e = self._entries[i]
            scene = str(e.get("scene", i.split("__")[0]))
            self.samples.append(SampleRef(i, scene, str(e.get("lighting", i.split("__")[-1])),
                                          str(e.get("base_scene") or scene), int(e.get("variant", 0) or 0)))
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
                               np.asarray(s.image_linear, np.float32)[..., :3] if image else None,
                               None if s.shading is None else np.asarray(s.shading, np.float32)[..., :3])
        from render.imageio import read_exr, read_png_srgb

        e = self._entries[sample_id]
        for key in ("albedo", "mask") + (("image",) if image else ()):
            if key not in e:
                raise ValueError(f"render manifest entry {sample_id} has no `{key}` path")
        albedo = read_exr(self.root / e["albedo"])[..., :3]
        mask = read_png_srgb(self.root / e["mask"]).max(axis=-1) > 0.5  # 0 / 255 PNG; render.dataset's rule
        img = read_exr(self.root / e["image"])[..., :3] if image else None
        shading = read_exr(self.root / e["shading"])[..., :3] if e.get("shading") else None
        if albedo.shape[:2] != mask.shape:
            raise ValueError(f"{sample_id}: albedo {albedo.shape[:2]} and mask {mask.shape} differ in size")
        return GroundTruth(albedo, mask, img, shading)

    def entry(self, sample_id: str) -> dict:
        return dict(self._entries[sample_id])


def open_dataset(data_dir: str | os.PathLike) -> Dataset:
    return Dataset(data_dir)


# ---------------------------------------------------------------------------------------------
# predictions


def discover_methods(pred_dir: str | os.PathLike) -> list[str]:
    """Method folders of PRED (a manifest.json or prediction sidecars), sorted."""
    from evaluate.predictions import PredictionStore

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise ScoreError(f"prediction folder {pred_dir} does not exist: run `python -m evaluate generate` "
                         "or `python -m evaluate baselines` first")
    return sorted(p.name for p in pred_dir.iterdir() if p.is_dir() and PredictionStore(pred_dir, p.name).has_predictions())


def refresh_indexes(pred_dir: str | os.PathLike, methods: Sequence[str]) -> None:
    """Rebuild each method folder's manifest.json / config.json from its sidecars (after sharded runs,
    which write no shared file); folders without sidecars (other tools' manifests) are left alone."""
    from evaluate.predictions import PredictionStore

    for m in methods:
        store = PredictionStore(pred_dir, m)
        if store.sidecars():
            store.rebuild_index()


def load_prediction_manifest(pred_dir: str | os.PathLike, method: str) -> dict:
    """The method's manifest fields with `predictions` read through evaluate.predictions (sidecars
    first, so a manifest left behind by a concurrent writer never hides a finished prediction)."""
    from evaluate.predictions import PredictionStore

    store = PredictionStore(pred_dir, method)
    try:
        entries = store.entries()
    except (FileNotFoundError, ValueError) as e:
        raise ScoreError(str(e)) from e
    return {**store.manifest(), "predictions": entries}


def read_prediction(method_dir: str | os.PathLike, entry: dict, finite: bool = True) -> tuple[np.ndarray, str]:
    """(linear float32 [H, W, 3], source) of one manifest entry; raises with a clear message.

    The linear EXR wins when its file exists; else the sRGB PNG is decoded (IEC 61966-2-1) to
    linear. A grey (1-channel) prediction is repeated to 3 channels; alpha is dropped. finite=True
    raises on any non-finite value; scoring passes False and judges them against the mask itself.
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
        if finite and not np.isfinite(arr).all():
            raise ValueError(f"prediction {path} has non-finite values")
        src = "exr_linear" if key == "albedo_linear" else "png_srgb"
        return arr, src
    if not tried:
        raise ValueError("manifest entry names neither `albedo_linear` nor `albedo_srgb`")
    raise FileNotFoundError(f"missing prediction file(s): {', '.join(tried)}")


def reference_fields(entry: dict) -> dict:
    """scores.csv's REFERENCE_COLUMNS from a prediction's sidecar: how its input was changed before the
    model saw it (probe.klein.registration); empty for predictions without a reference transform."""
    t = entry.get("reference_transform")
    if not isinstance(t, dict):
        t = ((entry.get("key") or {}).get("reference_transform") if isinstance(entry.get("key"), dict) else None)
    if not isinstance(t, dict):
        return {}
    model = t.get("model") or [None, None]
    mode = t.get("scale_mode")
    return {"reference_scale_mode": mode,
            "reference_exact": bool(t["exact"]) if "exact" in t else (mode != "downscale_area" if mode else None),
            "reference_model_hw": f"{model[1]}x{model[0]}" if None not in model else None}


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


def _dotted(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return "<absent>"
        d = d[part]
    return d


def check_uniform_settings(pred_dir: str | os.PathLike, methods: Sequence[str]) -> dict[str, dict | None]:
    """{method: its one generation setting (the key without per-sample fields), None without sidecars}.

    Raises ScoreError naming the method, the differing fields, their values and how many predictions
    each setting made, when a folder holds predictions made with more than one setting."""
    from evaluate.predictions import PredictionStore, key_differences

    out, problems = {}, []
    for m in methods:
        groups = PredictionStore(pred_dir, m).settings_groups()
        if len(groups) <= 1:
            out[m] = groups[0]["key"] if groups else None
            continue
        first = groups[0]
        diffs = []
        for g in groups[1:]:
            for f in key_differences(first["key"], g["key"]):
                a, b = _dotted(first["key"], f), _dotted(g["key"], f)
                diffs.append(f"{f} = {json.dumps(a, default=str)[:60]} ({first['n_predictions']} predictions, e.g. "
                             f"{first['samples'][0]}) vs {json.dumps(b, default=str)[:60]} ({g['n_predictions']}, e.g. "
                             f"{g['samples'][0]})")
        problems.append(f"method {m!r} ({Path(pred_dir) / m}) holds predictions made with {len(groups)} different "
                        f"settings: " + "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""))
    if problems:
        raise ScoreError(" ".join(problems) + ". Scoring them as one method would pool different settings. Rerun "
                         "`python -m evaluate generate` with the settings you want (finished predictions with that "
                         "setting are kept, the others regenerated), write the other setting to its own --method "
                         "folder, or leave the folder out with --methods; nothing was written.")
    return out


def stale_reference(data_dir: Path, entry: dict, cache: dict) -> str:
    """"" when the prediction's sidecar records no reference checksum or the same one the render
    folder's file has now; else the error message for its row."""
    ref = ((entry.get("key") or {}).get("reference") or {}) if isinstance(entry.get("key"), dict) else {}
    rel, want = ref.get("file"), ref.get("sha256")
    if not rel or not want:
        return ""
    from evaluate.predictions import file_sha256

    path = Path(data_dir) / rel
    if path not in cache:
        cache[path] = file_sha256(path) if path.is_file() else None
    if cache[path] == want:
        return ""
    return (f"stale prediction: made from a reference {rel} (sha256 {want[:12]}...) that the render folder no longer "
            f"holds ({'missing' if cache[path] is None else 'sha256 ' + cache[path][:12] + '...'}); regenerate it")


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
    settings = check_uniform_settings(pred_dir, methods)     # before anything is written
    refresh_indexes(pred_dir, methods)
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

    mcols = all_metric_columns()
    sha_cache: dict = {}

    def score_sample(s: SampleRef) -> tuple[list[dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Rows of one sample (one per method) and the usable predictions, for the invariance test."""
        base = {"sample": s.id, "scene": s.scene, "lighting": s.lighting, "base_scene": s.base_scene,
                "variant": s.variant}
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
            stale = stale_reference(Path(data_dir), entry, sha_cache)
            if stale:
                row.update(status="error", error=stale)
                continue
            row.update(reference_fields(entry))
            try:
                pred, src = read_prediction(pred_dir / m, entry, finite=False)
                row["pred_source"] = src
                row["pred_hw"] = f"{pred.shape[0]}x{pred.shape[1]}"
                bad = ~np.isfinite(pred).all(axis=-1)
                if bad.any():
                    pred = np.where(bad[..., None], 0.0, pred).astype(np.float32)
                pred, interp = match_size(pred, gt.mask.shape)
                n_bad = 0
                if bad.any():
                    if interp:      # the pixels the non-finite ones reach after resizing
                        bad = match_size(bad[..., None].astype(np.float32), gt.mask.shape)[0][..., 0] > 0
                    n_in = int((bad & gt.mask).sum())
                    if n_in:
                        raise ValueError(f"prediction has {n_in} pixel(s) with non-finite values inside the mask")
                    n_bad = int(bad.sum())
                row["n_nonfinite_outside_mask"] = n_bad
                row["resized"] = bool(interp)
                row["resize_interp"] = interp
                row.update(score_pair(gt.albedo_linear, pred, gt.mask, metric_config, scorer, shading=gt.shading))
                if scale_unknown(ds.entry(s.id)):
                    row.update({c: float("nan") for c in mcols if c.endswith("_none")})
                row["status"] = "ok"
                kept[m] = (pred, gt.mask, bool(row["degenerate"]))
            except Exception as e:
                row.update(status="error", error=f"{type(e).__name__}: {e}")
        return out_rows, kept

    def scene_invariance(scene: str, n_total: int, kept: dict[str, list]) -> list[dict]:
        out = []
        for m in methods:
            r = {"method": m, "scene": scene, "base_scene": base_of[scene], "n_lightings": n_total,
                 "n_ok": len(kept[m]), "n_degenerate": sum(1 for k in kept[m] if k[2])}
            if len(kept[m]) < 2:
                r.update({c: float("nan") for c in INVARIANCE_COLUMNS}, n_pairs=0,
                         note="fewer than two lightings with a usable prediction")
            else:
                inv = invariance([k[0] for k in kept[m]], [k[1] for k in kept[m]], [k[2] for k in kept[m]])
                r.update({c: inv[c] for c in INVARIANCE_COLUMNS}, n_pairs=inv["n_pairs"])
                notes = []
                if len(kept[m]) < n_total:
                    notes.append(f"{n_total - len(kept[m])} lighting(s) without a usable prediction left out")
                if inv["n_degenerate"]:
                    notes.append(f"{inv['n_degenerate']} degenerate (zero or constant) prediction(s) left out")
                r["note"] = "; ".join(notes)
            out.append(r)
        return out

    # numpy, OpenCV, OpenEXR and scipy.ndimage release the GIL on whole images, so threads over
    # samples use the cores; with LPIPS, torch parallelises itself and one thread is kept
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    workers = 1 if scorer is not None else max(1, int(workers))
    ordered = sorted(ds.samples, key=lambda s: (s.scene, s.id))
    base_of = {s.scene: s.base_scene for s in ds.samples}
    cluster_of = {s.id: s.base_scene for s in ds.samples}
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
    columns = list(ROW_COLUMNS) + list(REFERENCE_COLUMNS) + mcols + list(SCALE_COLUMNS) + list(DIAGNOSTIC_COLUMNS)
    for r in rows:
        if r.get("status") != "ok":
            r.pop("degenerate", None)
    _write_csv(out_dir / "scores.csv", columns, rows)
    _write_csv(out_dir / "invariance.csv", list(INV_ROW_COLUMNS[:-1]) + list(INVARIANCE_COLUMNS) + ["note"], inv_rows)

    lp = {"available": scorer is not None, "reason": lp_status.reason, "net": lp_status.net,
          "backbone_weights": lp_status.backbone_weights}
    n_base = len(set(cluster_of.values()))
    main_methods = [m for m in methods if "__ablate_" not in m]
    ok_by = {m: {r["sample"] for r in rows if r["method"] == m and r.get("status") == "ok"} for m in main_methods}
    common = sorted(set.intersection(*ok_by.values())) if ok_by else []
    summary = {
        "what": SUMMARY_WHAT, "clusters": "base_scene", "ci_definitions": CI_DEFINITIONS,
        "n_samples": len(ds.samples), "n_scenes": len(n_per_scene), "n_clusters": n_base,
        "n_base_scenes": n_base, "n_scene_versions": len(n_per_scene),
        "n_colour_variants": len({s.scene for s in ds.samples if s.variant}), "counts_definition": COUNTS_DEFINITION,
        "common_samples": {"methods": main_methods, "n_samples": len(common),
                           "n_base_scenes": len({cluster_of[i] for i in common}),
                           "definition": "the samples every non-ablation method scored ok (`metrics_common` of each "
                                         "method is over exactly these): the headline compares like with like"},
        "psnr_cap": {"cap_db": PSNR_CAP, "definition": "a perfect prediction's PSNR is infinite; means and "
                                                       "differences count it as the cap (n_capped says how often)"},
        "n_boot": n_boot, "seed": seed,
        "lpips": lp, "columns": {c: COLUMN_DOCS[c] for c in mcols + list(INVARIANCE_COLUMNS)},
        "seconds": round(elapsed, 3), "methods": {},
    }
    if any(scale_unknown(ds.entry(s.id)) for s in ds.samples):
        summary["alignment_note"] = SCALE_UNKNOWN_NOTE
    for m in methods:
        mrows = [r for r in rows if r["method"] == m]
        ok = [r for r in mrows if r.get("status") == "ok"]
        errs = [r for r in mrows if r.get("status") != "ok"]
        msum: dict[str, Any] = {
            "n_samples": len(mrows), "n_ok": len(ok), "n_errors": len(errs),
            "n_base_scenes_ok": len({r["base_scene"] for r in ok}),
            "n_resized": sum(1 for r in ok if r.get("resized")),
            "n_degenerate": sum(1 for r in ok if r.get("degenerate")),
            "n_degenerate_by_kind": {k: sum(1 for r in ok if r.get("degenerate") == k)
                                     for k in ("zero", "constant", "near-constant")},
            "n_reference_transform": sum(1 for r in ok if r.get("reference_scale_mode")),
            "n_reference_downscaled": sum(1 for r in ok if r.get("reference_scale_mode") == "downscale_area"),
            "n_reference_upscaled": sum(1 for r in ok if r.get("reference_scale_mode") == "upscale_nearest"),
            "n_not_pixel_exact": sum(1 for r in ok if r.get("reference_exact") is False),
            "settings": settings.get(m),
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
                if m in main_methods:
                    msum.setdefault("metrics_common", {})[c] = {**msum["metrics"][c], "n_nonfinite": len(common)}
                continue
            cap = PSNR_CAP if c.startswith("psnr") else None
            msum["metrics"][c] = bootstrap_mean_ci([r.get(c, float("nan")) for r in ok], n_boot, seed,
                                                   clusters=[r["base_scene"] for r in ok], cap=cap)
            if m in main_methods:
                cr = [r for r in ok if r["sample"] in set(common)]
                msum.setdefault("metrics_common", {})[c] = bootstrap_mean_ci(
                    [r.get(c, float("nan")) for r in cr], n_boot, seed, clusters=[r["base_scene"] for r in cr], cap=cap)
        minv = [r for r in inv_rows if r["method"] == m]
        msum["invariance"]["n_scenes"] = len(minv)
        msum["invariance"]["n_degenerate"] = sum(r.get("n_degenerate", 0) for r in minv)
        for c in INVARIANCE_COLUMNS:
            msum["invariance"][c] = bootstrap_mean_ci([r.get(c, float("nan")) for r in minv], n_boot, seed,
                                                      clusters=[r["base_scene"] for r in minv])
        summary["methods"][m] = msum
    summary["paired_differences"] = _paired(rows, methods, mcols, cluster_of, n_boot, seed)
    summary = json_clean(summary)
    write_json(out_dir / "score_summary.json", summary)
    config = {**asdict(cfg), "workers": workers, "dataset_reader": ds.reader, "versions": versions(),
              "lpips_status": lp, "columns_order": columns}
    write_json(out_dir / "score_config.json", config)
    n_ok = sum(1 for r in rows if r.get("status") == "ok")
    return ScoreResult(out_dir, out_dir / "scores.csv", out_dir / "invariance.csv", out_dir / "score_summary.json",
                       out_dir / "score_config.json", methods, len(rows), n_ok, len(rows) - n_ok, lp_status, summary)


def _paired(rows: list[dict], methods: Sequence[str], cols: Sequence[str], cluster_of: dict, n_boot: int,
            seed: int) -> dict:
    """klein minus each other (non-ablation) method, per column: mean over common samples, clustered CI."""
    if BASE_METHOD not in methods:
        return {"note": f"no {BASE_METHOD!r} predictions scored: no paired differences"}

    def values(m: str, c: str) -> dict[str, float]:
        out = {}
        for r in rows:
            v = r.get(c)
            if r["method"] == m and r.get("status") == "ok" and isinstance(v, (int, float)):
                out[r["sample"]] = float(v)
        return out

    res: dict[str, Any] = {"definition": f"per sample {BASE_METHOD} minus the other method (same sample, same "
                                         "ground truth); mean over samples both scored; 95% CI resampling base "
                                         "scenes; for errors < 0 favours klein, for PSNR > 0 does; for the signed "
                                         "shading_leakage_linear it is a difference of directions and favours "
                                         "nobody (shading_leakage_abs_linear < 0 favours klein)"}
    for m in methods:
        if m == BASE_METHOD or "__ablate_" in m:
            continue
        res[m] = {c: paired_difference(values(BASE_METHOD, c), values(m, c), cluster_of, n_boot, seed,
                                       cap=PSNR_CAP if c.startswith("psnr") else None) for c in cols}
    return res


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
