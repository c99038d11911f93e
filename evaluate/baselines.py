"""Baseline albedo predictions, written in the prediction layout so `evaluate score` scores them alike.

    from evaluate.baselines import write_baselines
    write_baselines("runs/render", "runs/evaluate/pred")       # image_as_albedo/ and retinex_color/

Every method reads the same input klein reads: the rendered 8-bit `image_srgb.png`, decoded to
linear (IEC 61966-2-1), so a method is never helped by seeing more than the others (the HDR render
keeps highlights that the PNG clips at 1). Reading the HDR linear EXR instead is a different
method with its own name (`*_hdr`), written only on request.

Methods (no model, no torch):
- `image_as_albedo`: the input image itself (MIT's "everything is reflectance" baseline).
- `retinex_color`: Grosse et al. 2009's colour Retinex, as in the MIT intrinsic images benchmark
  code (`color_retinex`), run on the render's ground-truth object mask (`mask.png`: the Poisson solve
  and the albedo's scale use only mask pixels, as MIT's code does; klein and image_as_albedo see the
  full frame, so Retinex gets information they do not): log-image gradients are kept as reflectance gradients when their
  chromatic part or their grey part exceeds a threshold, the grey log-reflectance is integrated by
  least squares (a Poisson solve on the mask), shading = grey image / grey reflectance, and the
  colour albedo = image / shading (grey-light assumption; MIT's code stops at a grey reflectance).
- `image_as_albedo_hdr`, `retinex_color_hdr`: the same on the linear HDR render (image_linear.exr).
- `marigold_intrinsics` (optional, `write_marigold`): diffusers' MarigoldIntrinsicsPipeline, only
  from weights already on disk; never downloads. It gets the same sRGB PNG.

Storage and resume are `evaluate.predictions` (one sidecar per sample with its generation key:
method, parameters, input file and checksum, the mask file and checksum for Retinex, and the versions
of the numerical and image libraries that compute and decode it); a prediction is redone when its key
differs. With
--shard K/N (N > 1) a run writes no file another shard writes (see evaluate.predictions).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from evaluate.poisson import gradients as _gradients, poisson_integrate  # noqa: F401 (importable from here)
# Storage moved to evaluate.predictions; these names stay importable from here for existing callers.
from evaluate.predictions import prediction_finished, write_method_manifest, write_prediction  # noqa: F401
from evaluate.predictions import IMAGE_LIBRARIES, MODEL_LIBRARIES

__all__ = [
    "BASELINE_METHODS", "HDR_BASELINE_METHODS", "RetinexConfig", "image_as_albedo", "color_retinex",
    "poisson_integrate", "write_baselines", "WeightsUnavailableError", "marigold_weights_dir", "write_marigold",
]

BASELINE_METHODS = ("image_as_albedo", "retinex_color")
HDR_BASELINE_METHODS = ("image_as_albedo_hdr", "retinex_color_hdr")
BASELINE_FORMAT = 2          # 2: every baseline reads the sRGB PNG unless named *_hdr
# what computes and decodes a baseline (part of its key): scipy (the solve) and the image libraries
BASELINE_LIBRARIES = ("scipy",) + IMAGE_LIBRARIES
INPUTS = {"srgb": "image_srgb.png (8-bit sRGB, as rendered) decoded to linear: the input every method gets",
          "hdr": "image_linear.exr (the linear HDR render, not clipped): a different input from klein's"}


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
# writing the baselines (storage: evaluate.predictions)


def _select(data_dir, shard) -> tuple[object, list, object]:
    from evaluate.score import open_dataset
    from render.shard import Shard

    ds = open_dataset(data_dir)
    sh = shard if isinstance(shard, Shard) else Shard.parse(shard)
    return ds, sh.select(ds.samples), sh


def _input(data_dir, entry: dict, hdr: bool) -> tuple[np.ndarray, dict]:
    """The linear input image of one sample and its record (file, sha256) for the generation key."""
    from evaluate.predictions import file_sha256
    from render.imageio import read_exr, read_png_srgb

    rel = entry["image"] if hdr else entry["image_srgb"]
    path = Path(data_dir) / rel
    img = read_exr(path)[..., :3] if hdr else read_png_srgb(path, linear=True)
    return np.asarray(img, np.float32), {"file": rel, "sha256": file_sha256(path)}


def write_baselines(data_dir: str | os.PathLike, pred_dir: str | os.PathLike,
                    methods: Sequence[str] = BASELINE_METHODS, shard=None,
                    retinex: RetinexConfig = RetinexConfig(), resume: bool | str = True,
                    progress: bool = True, limit: int | None = None) -> dict[str, dict]:
    """Write the baseline predictions of every sample (this shard's share; with `limit`, its first N
    samples by id, as `evaluate generate --limit` selects klein's) for `methods`.

    Returns {method: {"written": n, "skipped_finished": n, "manifest": path}}. Resumable: a sample
    whose prediction was made with the same key (method, parameters, input and its checksum) is
    kept; resume="strict" raises on a differing one, False/"off" redoes everything.
    """
    from tqdm.auto import tqdm

    from evaluate.predictions import PredictionStore, file_sha256, library_versions

    known = BASELINE_METHODS + HDR_BASELINE_METHODS
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {known} (Marigold: write_marigold)")
    mode = {True: "on", False: "off"}.get(resume, resume)
    ds, samples, shard = _select(data_dir, shard)
    if limit:
        samples = samples[:limit]
    params = {"image_as_albedo": {}, "retinex_color": asdict(retinex)}
    desc = {"image_as_albedo": "the input image taken as albedo (MIT 'reflectance' baseline); full frame, no mask",
            "retinex_color": "Grosse et al. 2009 colour Retinex (MIT intrinsic images benchmark), L2 Poisson "
                             "solve; colour albedo = image / grey shading, scaled to max 1 over the mask. It is "
                             "given the ground-truth object mask (mask.png), which klein is not: the solve and "
                             "the scale use mask pixels only"}
    versions = library_versions(BASELINE_LIBRARIES)
    stores = {m: PredictionStore(pred_dir, m) for m in methods}

    def key(m: str, ref: dict, mask: dict) -> dict:
        base = m.removesuffix("_hdr")
        k = {"format": BASELINE_FORMAT, "kind": "baseline", "method": base, "params": params[base],
             "input": INPUTS["hdr" if m.endswith("_hdr") else "srgb"], "reference": ref, "versions": versions}
        if base == "retinex_color":
            k["mask"] = mask        # its output depends on mask.png
        return k

    def file_record(rel: str | None) -> dict:
        path = Path(data_dir) / rel if rel else None
        return {"file": rel, "sha256": file_sha256(path) if path is not None and path.is_file() else None}

    keys: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for s in samples:
        e = ds.entry(s.id)
        mask = file_record(e.get("mask")) if any(m.startswith("retinex") for m in methods) else {}
        for m in methods:
            keys[m][s.id] = key(m, file_record(e.get("image" if m.endswith("_hdr") else "image_srgb")), mask)
    decisions = {m: stores[m].plan(keys[m], mode) for m in methods}   # strict: raises before any write
    report = {m: {"written": 0, "skipped_finished": 0} for m in methods}
    try:
        for s in tqdm(samples, desc="baselines", unit="sample", disable=not progress):
            todo = [m for m in methods if not decisions[m][s.id].keep]
            for m in set(methods) - set(todo):
                report[m]["skipped_finished"] += 1
            if not todo:
                continue
            e = ds.entry(s.id)
            mask = ds.load(s.id).mask if any(m.startswith("retinex") for m in todo) else None
            inputs = {}
            for m in todo:
                hdr = m.endswith("_hdr")
                if hdr not in inputs:
                    inputs[hdr] = _input(data_dir, e, hdr)
                img, _ = inputs[hdr]
                t0 = time.perf_counter()
                a = image_as_albedo(img) if m.startswith("image_as_albedo") else color_retinex(img, mask, retinex)
                base = m.removesuffix("_hdr")
                stores[m].write(s.id, a, key=keys[m][s.id], scene=s.scene, lighting=s.lighting,
                                seconds=round(time.perf_counter() - t0, 4), params=params[base],
                                input=INPUTS["hdr" if hdr else "srgb"])
                report[m]["written"] += 1
    finally:
        for m in methods:
            base = m.removesuffix("_hdr")
            report[m]["manifest"] = str(stores[m].finish(
                {"description": desc[base] + (" (on the HDR linear render)" if m.endswith("_hdr") else ""),
                 "params": params[base], "source": "evaluate.baselines", "data": str(data_dir)},
                shard=shard, samples=[s.id for s in samples]))
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
                   steps: int | None = None, ensemble_size: int = 1, seed: int = 0, resume: bool | str = True,
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

    from evaluate.predictions import PredictionStore, file_sha256, library_versions
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
    ds, samples, shard = _select(data_dir, shard)
    store = PredictionStore(pred_dir, method)
    from probe.klein.model import folder_fingerprint

    weights_fp = folder_fingerprint(path)       # content, not only the path: weights replaced in place are redone
    keys = {}
    for s in samples:
        rel = ds.entry(s.id)["image_srgb"]
        keys[s.id] = {"format": BASELINE_FORMAT, "kind": "marigold intrinsics", "weights": str(path.resolve()),
                      "weights_fingerprint": weights_fp,
                      "albedo_prediction_space": space, "steps": steps, "ensemble_size": ensemble_size, "seed": seed,
                      "input": INPUTS["srgb"], "reference": {"file": rel, "sha256": file_sha256(Path(data_dir) / rel)},
                      "versions": library_versions(MODEL_LIBRARIES + IMAGE_LIBRARIES)}
    decisions = store.plan(keys, {True: "on", False: "off"}.get(resume, resume))
    done = skipped = 0
    try:
        for s in tqdm(samples, desc=method, unit="sample", disable=not progress):
            if decisions[s.id].keep:
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
            store.write(s.id, lin, key=keys[s.id], scene=s.scene, lighting=s.lighting,
                        seconds=round(time.perf_counter() - t0, 3), seed=seed, steps=steps,
                        ensemble_size=ensemble_size, prediction_space=space, weights=str(path))
            done += 1
    finally:
        manifest = store.finish({"description": "diffusers MarigoldIntrinsicsPipeline albedo", "weights": str(path),
                                 "albedo_prediction_space": space}, shard=shard, samples=[s.id for s in samples])
    return {"written": done, "skipped_finished": skipped, "manifest": str(manifest)}
