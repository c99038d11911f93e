"""Baseline albedo predictions, written in the prediction layout so `evaluate score` scores them alike.

    from evaluate.baselines import write_baselines
    write_baselines("runs/render", "runs/evaluate/pred")       # image_as_albedo/ and retinex_color/

Methods (no model, no torch):
- `image_as_albedo`: the rendered linear image itself (MIT's "everything is reflectance" baseline).
- `retinex_color`: Grosse et al. 2009's colour Retinex, as in the MIT intrinsic images benchmark
  code (`color_retinex`): log-image gradients are kept as reflectance gradients when their
  chromatic part or their grey part exceeds a threshold, the grey log-reflectance is integrated by
  least squares (a Poisson solve on the mask), shading = grey image / grey reflectance, and the
  colour albedo = image / shading (grey-light assumption; MIT's code stops at a grey reflectance).
- `marigold_intrinsics` (optional, `write_marigold`): diffusers' MarigoldIntrinsicsPipeline, only
  from weights already on disk; never downloads.

Layout per method: PRED/<method>/<sample>_albedo_linear.exr (float32 linear RGB),
<sample>_albedo_srgb.png (8-bit sRGB of the same values clipped to [0, 1]), <sample>.json (the
sidecar, written last: the done marker) and manifest.json rebuilt from the sidecars, so shards
writing into one folder never collide. Finished predictions whose files read back are skipped.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "BASELINE_METHODS", "RetinexConfig", "image_as_albedo", "color_retinex", "poisson_integrate",
    "prediction_paths", "prediction_finished", "write_prediction", "write_method_manifest",
    "write_baselines", "WeightsUnavailableError", "marigold_weights_dir", "write_marigold",
]

BASELINE_METHODS = ("image_as_albedo", "retinex_color")
COLOUR_SPACE = {"albedo_linear": "linear-light RGB, float32 EXR",
                "albedo_srgb": "IEC 61966-2-1 sRGB, 8-bit PNG of albedo_linear clipped to [0, 1]"}


@dataclass(frozen=True)
class RetinexConfig:
    """Colour Retinex parameters. The thresholds are points of the MIT benchmark's own search grid
    (logspace(-1.5, 0, 5)); they were not tuned on our renders."""

    threshold_gray: float = 0.075     # |grey log-gradient| above this: reflectance edge
    threshold_color: float = 0.178    # norm of the chromatic log-gradient above this: reflectance edge
    floor: float = 3.0 / 255.0        # MIT clips intensities at 3 on its 0-255 scale; here relative to the max
    ridge: float = 1e-9               # fixes the free constant of each connected mask region (mean log = 0)


# ---------------------------------------------------------------------------------------------
# the methods


def image_as_albedo(image_linear: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The rendered linear image taken as the albedo (float32 [H, W, 3]); the mask is not used."""
    return np.asarray(image_linear, dtype=np.float32)[..., :3].copy()


def _gradients(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MIT's get_gradients: g_y[i] = a[i] - a[i-1] (row 0 is 0), g_x likewise along columns."""
    gy = np.zeros_like(a)
    gy[1:] = a[1:] - a[:-1]
    gx = np.zeros_like(a)
    gx[:, 1:] = a[:, 1:] - a[:, :-1]
    return gy, gx


def poisson_integrate(t_y: np.ndarray, t_x: np.ndarray, mask: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """The image x (on the mask, 0 elsewhere) minimising, over gradients with both pixels in the mask,
        sum (x[i,j] - x[i-1,j] - t_y[i,j])^2 + (x[i,j] - x[i,j-1] - t_x[i,j])^2,
    MIT's poisson.solve. The solution is defined up to one constant per connected mask region; a
    tiny ridge picks the one with zero mean in each region. Sparse direct solve (SuperLU).
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    mask = np.asarray(mask, bool)
    h, w = mask.shape
    idx = -np.ones((h, w), dtype=np.int64)
    n = int(mask.sum())
    idx[mask] = np.arange(n)
    rows, cols, vals, rhs = [], [], [], []
    e = 0
    # horizontal pairs (i, j-1) -> (i, j), target t_x[i, j]; vertical pairs likewise with t_y
    for a_idx, b_idx, t in ((idx[:, :-1], idx[:, 1:], t_x[:, 1:]), (idx[:-1, :], idx[1:, :], t_y[1:, :])):
        ok = (a_idx >= 0) & (b_idx >= 0)
        k = int(ok.sum())
        r = np.arange(e, e + k)
        rows += [r, r]
        cols += [b_idx[ok], a_idx[ok]]
        vals += [np.ones(k), -np.ones(k)]
        rhs.append(t[ok])
        e += k
    x = np.zeros((h, w))
    if n == 0:
        return x
    if e == 0:
        return x  # isolated pixels: every constant is a solution, take 0
    d = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(e, n))
    lap = (d.T @ d + ridge * sp.identity(n, format="csr")).tocsc()
    sol = spsolve(lap, d.T @ np.concatenate(rhs), permc_spec="MMD_AT_PLUS_A")
    x[mask] = sol
    return x


def color_retinex(image_linear: np.ndarray, mask: np.ndarray, config: RetinexConfig = RetinexConfig()) -> np.ndarray:
    """Grosse et al. 2009 colour Retinex (MIT benchmark `color_retinex`, L2 solve), colour albedo out.

    1. I = image / max(image over mask), clipped below at `floor` (MIT: clip at 3 on 0-255).
    2. Per-channel log gradients; grey part = their channel mean, chromatic part = the rest.
       A gradient is a reflectance gradient when |grey| > threshold_gray or ||chromatic|| > threshold_color.
    3. Integrate the kept gradients of log(mean_c I) (the grey image) on the mask -> log R_grey.
    4. Shading S = grey / R_grey; colour albedo A_c = I_c / S. A is defined up to one scale per
       connected mask region; it is divided by its maximum over the mask (so it lies in [0, 1]).
    Pixels outside the mask are 0. Returns float32 linear [H, W, 3].
    """
    img = np.asarray(image_linear, dtype=np.float64)[..., :3]
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(img.shape, np.float32)
    peak = float(img[mask].max())
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros(img.shape, np.float32)
    img = np.clip(img / peak, config.floor, None)
    gy, gx = _gradients(np.log(img))
    gy_grey, gx_grey = gy.mean(-1), gx.mean(-1)
    gy_col = np.sqrt(((gy - gy_grey[..., None]) ** 2).sum(-1))
    gx_col = np.sqrt(((gx - gx_grey[..., None]) ** 2).sum(-1))
    grey = np.clip(img.mean(-1), config.floor, None)
    ty, tx = _gradients(np.log(grey))
    ty = np.where((np.abs(gy_grey) > config.threshold_gray) | (gy_col > config.threshold_color), ty, 0.0)
    tx = np.where((np.abs(gx_grey) > config.threshold_gray) | (gx_col > config.threshold_color), tx, 0.0)
    refl_grey = np.exp(poisson_integrate(ty, tx, mask, config.ridge))
    shading = grey / refl_grey
    albedo = np.where(mask[..., None], img / shading[..., None], 0.0)
    top = float(albedo[mask].max())
    if top > 0:
        albedo /= top
    return albedo.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the layout


def prediction_paths(pred_dir: str | os.PathLike, method: str, sample_id: str) -> dict[str, Path]:
    d = Path(pred_dir) / method
    return {"albedo_linear": d / f"{sample_id}_albedo_linear.exr", "albedo_srgb": d / f"{sample_id}_albedo_srgb.png",
            "sidecar": d / f"{sample_id}.json"}


def prediction_finished(pred_dir: str | os.PathLike, method: str, sample_id: str) -> bool:
    """Done = sidecar, EXR and PNG all exist and read back."""
    from render.imageio import read_exr, read_png_srgb

    p = prediction_paths(pred_dir, method, sample_id)
    if not all(q.is_file() for q in p.values()):
        return False
    try:
        read_exr(p["albedo_linear"])
        read_png_srgb(p["albedo_srgb"])
        return json.loads(p["sidecar"].read_text()).get("sample") == sample_id
    except Exception:
        return False


def write_prediction(pred_dir: str | os.PathLike, method: str, sample_id: str, albedo_linear: np.ndarray,
                     **extra) -> dict:
    """Write one prediction (EXR, PNG, then the sidecar as the done marker); returns the sidecar dict."""
    from render.imageio import atomic_path, write_exr, write_png_srgb

    p = prediction_paths(pred_dir, method, sample_id)
    a = np.asarray(albedo_linear, dtype=np.float32)
    write_exr(p["albedo_linear"], a)
    write_png_srgb(p["albedo_srgb"], a)
    side = {"sample": sample_id, "albedo_linear": p["albedo_linear"].name, "albedo_srgb": p["albedo_srgb"].name,
            "size": [int(a.shape[1]), int(a.shape[0])], **extra}
    with atomic_path(p["sidecar"]) as tmp:
        tmp.write_text(json.dumps(side, indent=2, default=str))
    return side


def write_method_manifest(pred_dir: str | os.PathLike, method: str, extra: dict | None = None) -> Path:
    """Rebuild PRED/<method>/manifest.json from the sidecars present now (sorted by sample)."""
    from render.imageio import atomic_path

    d = Path(pred_dir) / method
    preds = []
    for side in sorted(d.glob("*.json")):
        if side.name in ("manifest.json", "config.json"):
            continue
        try:
            rec = json.loads(side.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if isinstance(rec, dict) and "sample" in rec:
            preds.append(rec)
    manifest = {"method": method, "colour_space": COLOUR_SPACE,
                "colour_space_note": "albedo_linear is linear RGB; albedo_srgb is its sRGB encoding",
                **(extra or {}), "predictions": preds}
    with atomic_path(d / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
    return d / "manifest.json"


def _select(data_dir, shard) -> tuple[object, list]:
    from evaluate.score import open_dataset
    from render.shard import Shard

    ds = open_dataset(data_dir)
    sh = shard if isinstance(shard, Shard) else Shard.parse(shard)
    return ds, sh.select(ds.samples)


def write_baselines(data_dir: str | os.PathLike, pred_dir: str | os.PathLike,
                    methods: Sequence[str] = BASELINE_METHODS, shard=None,
                    retinex: RetinexConfig = RetinexConfig(), resume: bool = True,
                    progress: bool = True) -> dict[str, dict]:
    """Write the baseline predictions of every sample (this shard's share) for `methods`.

    Returns {method: {"written": n, "skipped_finished": n, "manifest": path}}. Resumable: a sample
    whose three files exist and read back is skipped (resume=False redoes it).
    """
    from tqdm.auto import tqdm

    unknown = [m for m in methods if m not in BASELINE_METHODS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {BASELINE_METHODS} "
                         "(Marigold: write_marigold)")
    ds, samples = _select(data_dir, shard)
    params = {"image_as_albedo": {}, "retinex_color": asdict(retinex)}
    desc = {"image_as_albedo": "the rendered linear image taken as albedo (MIT 'reflectance' baseline)",
            "retinex_color": "Grosse et al. 2009 colour Retinex (MIT intrinsic images benchmark), L2 Poisson "
                             "solve; colour albedo = image / grey shading, scaled to max 1 over the mask"}
    report = {m: {"written": 0, "skipped_finished": 0} for m in methods}
    for m in methods:
        (Path(pred_dir) / m).mkdir(parents=True, exist_ok=True)
    try:
        for s in tqdm(samples, desc="baselines", unit="sample", disable=not progress):
            todo = [m for m in methods if not (resume and prediction_finished(pred_dir, m, s.id))]
            for m in set(methods) - set(todo):
                report[m]["skipped_finished"] += 1
            if not todo:
                continue
            gt = ds.load(s.id, image=True)
            for m in todo:
                t0 = time.perf_counter()
                if m == "image_as_albedo":
                    a = image_as_albedo(gt.image_linear)
                else:
                    a = color_retinex(gt.image_linear, gt.mask, retinex)
                write_prediction(pred_dir, m, s.id, a, scene=s.scene, lighting=s.lighting,
                                 seconds=round(time.perf_counter() - t0, 4), params=params[m])
                report[m]["written"] += 1
    finally:
        for m in methods:
            report[m]["manifest"] = str(write_method_manifest(
                pred_dir, m, {"description": desc[m], "params": params[m], "source": "evaluate.baselines",
                              "data": str(data_dir)}))
    return report


# ---------------------------------------------------------------------------------------------
# Marigold intrinsics (optional, local weights only)


class WeightsUnavailableError(FileNotFoundError):
    """Model weights are not on disk; nothing is downloaded."""


def marigold_weights_dir(weights: str | os.PathLike | None) -> Path:
    """The local diffusers folder of a Marigold intrinsics model, or WeightsUnavailableError.

    `weights` must be a folder holding model_index.json (e.g. a saved
    prs-eth/marigold-iid-appearance-v1-1); hub ids are not resolved, so nothing is fetched.
    """
    if weights is None or str(weights) == "":
        raise WeightsUnavailableError(
            "Marigold intrinsics weights not given: pass the local folder of a diffusers "
            "MarigoldIntrinsicsPipeline (with model_index.json), e.g. a snapshot of "
            "prs-eth/marigold-iid-appearance-v1-1; nothing is downloaded here")
    p = Path(weights).expanduser()
    if not (p / "model_index.json").is_file():
        raise WeightsUnavailableError(
            f"Marigold intrinsics weights not found on disk at {p} (no model_index.json); download a "
            "snapshot of prs-eth/marigold-iid-appearance-v1-1 or -lighting-v1-1 where a network is available "
            "and pass its folder; nothing is downloaded here")
    return p


def write_marigold(data_dir: str | os.PathLike, pred_dir: str | os.PathLike, weights: str | os.PathLike | None,
                   method: str = "marigold_intrinsics", shard=None, device: str | None = None,
                   steps: int | None = None, ensemble_size: int = 1, seed: int = 0, resume: bool = True,
                   progress: bool = True) -> dict:
    """Marigold intrinsics albedo of every sample, from local weights only (else WeightsUnavailableError).

    The pipeline gets the rendered sRGB PNG (as klein does). Its albedo is converted to linear
    according to the model's own `target_properties["albedo"]["prediction_space"]` ("srgb" is
    decoded with the IEC sRGB curve, "linear" kept); an unstated space is an error, not a guess.
    """
    path = marigold_weights_dir(weights)
    import torch
    from diffusers import MarigoldIntrinsicsPipeline
    from tqdm.auto import tqdm

    from render.imageio import read_png_srgb, srgb_to_linear

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = MarigoldIntrinsicsPipeline.from_pretrained(str(path), local_files_only=True).to(device)
    props = pipe.target_properties or {}
    names = list(props.get("target_names", []))
    if "albedo" not in names:
        raise ValueError(f"{path}: this Marigold model predicts {names}, not albedo")
    space = props.get("albedo", {}).get("prediction_space")
    if space not in ("srgb", "linear"):
        raise ValueError(f"{path}: target_properties does not state the albedo colour space ({space!r})")
    k = names.index("albedo")
    ds, samples = _select(data_dir, shard)
    (Path(pred_dir) / method).mkdir(parents=True, exist_ok=True)
    done = skipped = 0
    try:
        for s in tqdm(samples, desc=method, unit="sample", disable=not progress):
            if resume and prediction_finished(pred_dir, method, s.id):
                skipped += 1
                continue
            e = ds.entry(s.id)
            ref = read_png_srgb(Path(data_dir) / e["image_srgb"])
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = pipe(ref, num_inference_steps=steps, ensemble_size=ensemble_size,
                           generator=torch.Generator(device="cpu").manual_seed(seed), output_type="np")
            pred = np.asarray(out.prediction[k], dtype=np.float32)  # [H, W, 3] in [0, 1]
            lin = srgb_to_linear(pred) if space == "srgb" else pred
            write_prediction(pred_dir, method, s.id, lin, scene=s.scene, lighting=s.lighting,
                             seconds=round(time.perf_counter() - t0, 3), seed=seed, steps=steps,
                             ensemble_size=ensemble_size, prediction_space=space, weights=str(path))
            done += 1
    finally:
        manifest = write_method_manifest(pred_dir, method, {"description": "diffusers MarigoldIntrinsicsPipeline "
                                                            "albedo", "weights": str(path),
                                                            "albedo_prediction_space": space})
    return {"written": done, "skipped_finished": skipped, "manifest": str(manifest)}
