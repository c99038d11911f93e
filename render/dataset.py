"""Read a rendered dataset: the manifest and one sample at a time as float32 arrays. No bpy.

    from render.dataset import load_manifest, sample_ids, load_sample
    ids = sample_ids("runs/render")                        # sorted "<scene>__<lighting>"
    s = load_sample("runs/render", ids[0])
    s.image_linear, s.albedo_linear, s.shading, s.residual  # float32 [H, W, 3], linear Rec.709
    s.normal (camera space), s.depth [H, W] (+inf = background), s.mask [H, W] bool, s.object_index [H, W] int32
    s.meta["objects"]                                       # [{index, name, primitive, base_color}, ...]

Definitions of every array are in manifest["definitions"]. Missing or corrupt files raise
FileNotFoundError / ValueError naming the file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Sample", "load_manifest", "sample_ids", "load_sample", "iter_samples", "sample_entry"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Sample:
    id: str
    scene: str
    lighting: str
    description: str
    image_linear: np.ndarray   # [H, W, 3] float32, linear Rec.709
    albedo_linear: np.ndarray  # [H, W, 3] float32, linear Rec.709
    shading: np.ndarray        # [H, W, 3] float32, diffuse light / albedo
    residual: np.ndarray       # [H, W, 3] float32, non-diffuse light
    normal: np.ndarray         # [H, W, 3] float32, camera space (x right, y up, z to camera), 0 on background
    depth: np.ndarray          # [H, W] float32, planar camera z in metres, +inf on background
    mask: np.ndarray           # [H, W] bool, valid surface pixels
    object_index: np.ndarray   # [H, W] int32, 0 = background, k = meta["objects"][k-1]
    meta: dict                 # the manifest entry

    @property
    def image_srgb_path(self) -> str:
        return self.meta["image_srgb"]

    def reconstruct(self) -> np.ndarray:
        """albedo * shading + residual (equals image_linear to the recorded identity_error)."""
        return self.albedo_linear * self.shading + self.residual


def load_manifest(root: str | os.PathLike) -> dict:
    """Parse root/manifest.json; FileNotFoundError / ValueError say which file and what is wrong."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise FileNotFoundError(f"render folder not found: {root} (make one with: python -m render --out {root})")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a finished render folder "
                                f"(run python -m render --out {root}, or --manifest-only to rebuild it)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a valid manifest: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise ValueError(f"{path}: not a valid manifest (no 'samples' list)")
    return manifest


def sample_ids(root: str | os.PathLike) -> list[str]:
    return sorted(e["id"] for e in load_manifest(root)["samples"])


def sample_entry(root: str | os.PathLike, sample_id: str, manifest: dict | None = None) -> dict:
    manifest = manifest if manifest is not None else load_manifest(root)
    for e in manifest["samples"]:
        if e["id"] == sample_id:
            return e
    ids = sorted(e["id"] for e in manifest["samples"])
    raise KeyError(f"sample {sample_id!r} is not in {Path(root) / MANIFEST} "
                   f"({len(ids)} samples, e.g. {ids[:3]})")


def _exr(path: Path, channels: int) -> np.ndarray:
    from render.imageio import read_exr

    a = read_exr(path)
    if a.shape[-1] < channels:
        raise ValueError(f"{path}: expected {channels} channel(s), found {a.shape[-1]}")
    return np.ascontiguousarray(a[..., :channels], dtype=np.float32)


def _png_gray(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"PNG file not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"cannot decode image {path} (corrupt or not a PNG)")
    if raw.ndim == 3:
        raw = raw[..., 0]
    return raw


def load_sample(root: str | os.PathLike, sample_id: str, manifest: dict | None = None) -> Sample:
    """Load one sample's arrays (float32; mask bool; object_index int32) and its manifest entry."""
    root = Path(root)
    meta = sample_entry(root, sample_id, manifest)

    def path(key: str) -> Path:
        rel = meta.get(key)
        if not rel:
            raise ValueError(f"{root / MANIFEST}: sample {sample_id!r} has no {key!r} entry")
        return root / rel

    image = _exr(path("image"), 3)
    arrays = {
        "albedo_linear": _exr(path("albedo"), 3),
        "shading": _exr(path("shading"), 3),
        "residual": _exr(path("residual"), 3),
        "normal": _exr(path("normal"), 3),
        "depth": _exr(path("depth"), 1)[..., 0],
        "mask": _png_gray(path("mask")) > 127,
        "object_index": _png_gray(path("object_index")).astype(np.int32),
    }
    h, w = image.shape[:2]
    for k, a in arrays.items():
        if a.shape[:2] != (h, w):
            key = {"albedo_linear": "albedo"}.get(k, k)
            raise ValueError(f"{path(key)}: size {a.shape[1]}x{a.shape[0]} differs from the image's {w}x{h}")
    return Sample(id=meta["id"], scene=meta["scene"], lighting=meta["lighting"], description=meta["description"],
                  image_linear=image, meta=meta, **arrays)


def iter_samples(root: str | os.PathLike):
    """Yield every sample in manifest order (one manifest read)."""
    manifest = load_manifest(root)
    for e in manifest["samples"]:
        yield load_sample(root, e["id"], manifest)
