"""Read a rendered dataset: the manifest and one sample at a time as float32 arrays. No bpy.

    from render.dataset import load_manifest, sample_ids, load_sample
    ids = sample_ids("runs/render")                        # sorted "<scene>__<lighting>"
    s = load_sample("runs/render", ids[0])
    s.image_linear, s.albedo_linear, s.shading, s.residual  # float32 [H, W, 3], linear Rec.709
    s.normal (camera space), s.depth [H, W] (+inf = background), s.mask [H, W] bool, s.object_index [H, W] int32
    s.meta["objects"]                                       # [{index, name, primitive, base_color}, ...]
    s.variant, s.base_scene, s.albedo_srgb_path             # 0 / k for colour variant k; the cluster id
    infos = list_samples("runs/render")                     # [SampleInfo(id, scene, base_scene, variant, lighting,
                                                            #             image_srgb, albedo_srgb, ...)], no pixels read
    read_albedo_srgb("runs/render", ids[0])                 # float32 [H, W, 3] in [0, 1], sRGB-encoded values

Renders made before colour variants and albedo_srgb.png existed still load: their samples have
variant 0, base_scene = scene, and read_albedo_srgb encodes albedo_linear.exr the way the renderer
writes albedo_srgb.png (identical values).

Definitions of every array are in manifest["definitions"]. Missing or corrupt files raise
FileNotFoundError / ValueError naming the file. A field the dataset does not have (an imported real
dataset, render.mit: e.g. shading under light01-10, normals, depth) is listed in the entry's `missing`
with the reason and loads as None; `sample.missing` says why, and consumers that need it skip.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Sample", "SampleInfo", "load_manifest", "sample_ids", "load_sample", "iter_samples", "sample_entry",
           "list_samples", "read_albedo_srgb", "entry_variant", "entry_base_scene", "entry_recolor_mode"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Sample:
    id: str
    scene: str
    lighting: str
    description: str
    image_linear: np.ndarray   # [H, W, 3] float32, linear Rec.709
    albedo_linear: np.ndarray  # [H, W, 3] float32, linear Rec.709
    shading: np.ndarray | None       # [H, W, 3] float32, diffuse light / albedo
    residual: np.ndarray | None      # [H, W, 3] float32, non-diffuse light
    normal: np.ndarray | None        # [H, W, 3] float32, camera space (x right, y up, z to camera), 0 on background
    depth: np.ndarray | None         # [H, W] float32, planar camera z in metres, +inf on background
    mask: np.ndarray                 # [H, W] bool, valid surface pixels
    object_index: np.ndarray | None  # [H, W] int32, 0 = background, k = meta["objects"][k-1]
    meta: dict                       # the manifest entry
    # None only where the entry lists the field under `missing` (a real dataset without it; see render.mit)

    @property
    def image_srgb_path(self) -> str:
        return self.meta["image_srgb"]

    @property
    def albedo_srgb_path(self) -> str | None:
        """Relative path of albedo_srgb.png, or None for a render made before it existed."""
        return self.meta.get("albedo_srgb")

    @property
    def variant(self) -> int:
        return entry_variant(self.meta)

    @property
    def base_scene(self) -> str:
        return entry_base_scene(self.meta)

    @property
    def missing(self) -> dict:
        """Fields this sample does not have, with the reason ({} for a render)."""
        return dict(self.meta.get("missing") or {})

    def reconstruct(self) -> np.ndarray:
        """albedo * shading + residual (equals image_linear to the recorded identity_error)."""
        for k in ("shading", "residual"):
            if getattr(self, k) is None:
                raise ValueError(f"sample {self.id!r} has no {k}: {self.missing.get(k, 'missing')}")
        return self.albedo_linear * self.shading + self.residual


def entry_variant(entry: dict) -> int:
    """A manifest entry's colour variant (0 when the render predates variants)."""
    if "variant" in entry:
        return int(entry["variant"])
    return _split(entry["scene"])[1]


def _split(scene: str) -> tuple[str, int]:
    from render.scene import split_variant

    try:
        return split_variant(scene)
    except ValueError:          # not a spec id (a hand-made manifest): its own cluster, variant 0
        return scene, 0


def entry_base_scene(entry: dict) -> str:
    """A manifest entry's base scene id, the cluster for statistics (the scene when it predates variants)."""
    if "base_scene" in entry:
        return entry["base_scene"]
    return _split(entry["scene"])[0]


@dataclass(frozen=True)
class SampleInfo:
    """One sample as listed in the manifest: ids and absolute file paths, no pixels read."""
    id: str               # "<scene>__<lighting>", "<scene>~c<k>__<lighting>" for colour variant k
    scene: str            # full scene id (with ~c<k> for variants)
    base_scene: str       # scene id without ~c<k>: the independent unit (cluster)
    variant: int          # 0 = the scene's own colours, k >= 1 = colour variant k
    lighting: str
    description: str
    image_srgb: Path
    albedo_srgb: Path | None  # None for a render made before albedo_srgb.png existed (see read_albedo_srgb)
    image_linear: Path
    albedo_linear: Path
    mask: Path
    meta: dict
    recolor_mode: str | None = None   # a variant's: "hsv" (brightness changes too) or "chroma" (luminance kept); None: original


def entry_recolor_mode(entry: dict) -> str | None:
    """A manifest entry's recolour mode: None for an original, "hsv" for variants made before modes existed."""
    if not entry_variant(entry):
        return None
    from render.recolor import recolor_mode

    return entry.get("recolor_mode") or recolor_mode(entry.get("recolor")) or "hsv"


def list_samples(root: str | os.PathLike, manifest: dict | None = None) -> list[SampleInfo]:
    """Every sample of a render folder, sorted by id, with its variant fields and file paths."""
    root = Path(root)
    manifest = manifest if manifest is not None else load_manifest(root)
    out = []
    for e in sorted(manifest["samples"], key=lambda e: e["id"]):
        out.append(SampleInfo(
            id=e["id"], scene=e["scene"], base_scene=entry_base_scene(e), variant=entry_variant(e),
            lighting=e["lighting"], description=e.get("description", ""), image_srgb=root / e["image_srgb"],
            albedo_srgb=root / e["albedo_srgb"] if e.get("albedo_srgb") else None,
            image_linear=root / e["image"], albedo_linear=root / e["albedo"], mask=root / e["mask"], meta=e,
            recolor_mode=entry_recolor_mode(e)))
    return out


def read_albedo_srgb(root: str | os.PathLike, sample_id: str, manifest: dict | None = None) -> np.ndarray:
    """The sample's albedo_srgb.png as float32 [H, W, 3] sRGB-encoded values in [0, 1].

    For renders made before albedo_srgb.png existed, albedo_linear.exr is encoded and quantised
    exactly as the renderer writes the PNG, so the result is the same either way.
    """
    from render.imageio import linear_to_srgb, read_png_srgb

    root = Path(root)
    e = sample_entry(root, sample_id, manifest)
    if e.get("albedo_srgb"):
        return read_png_srgb(root / e["albedo_srgb"])
    srgb = linear_to_srgb(_exr(root / e["albedo"], 3))
    return (np.round(srgb * 255.0) / 255.0).astype(np.float32)


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
    missing = meta.get("missing") or {}

    def path(key: str) -> Path:
        rel = meta.get(key)
        if not rel:
            raise ValueError(f"{root / MANIFEST}: sample {sample_id!r} has no {key!r} entry")
        return root / rel

    def optional(key: str, read):
        return None if key in missing and not meta.get(key) else read(path(key))

    image = _exr(path("image"), 3)
    arrays = {
        "albedo_linear": _exr(path("albedo"), 3),
        "shading": optional("shading", lambda p: _exr(p, 3)),
        "residual": optional("residual", lambda p: _exr(p, 3)),
        "normal": optional("normal", lambda p: _exr(p, 3)),
        "depth": optional("depth", lambda p: _exr(p, 1)[..., 0]),
        "mask": _png_gray(path("mask")) > 127,
        "object_index": optional("object_index", lambda p: _png_gray(p).astype(np.int32)),
    }
    h, w = image.shape[:2]
    for k, a in arrays.items():
        if a is not None and a.shape[:2] != (h, w):
            key = {"albedo_linear": "albedo"}.get(k, k)
            raise ValueError(f"{path(key)}: size {a.shape[1]}x{a.shape[0]} differs from the image's {w}x{h}")
    return Sample(id=meta["id"], scene=meta["scene"], lighting=meta["lighting"], description=meta["description"],
                  image_linear=image, meta=meta, **arrays)


def iter_samples(root: str | os.PathLike):
    """Yield every sample in manifest order (one manifest read)."""
    manifest = load_manifest(root)
    for e in manifest["samples"]:
        yield load_sample(root, e["id"], manifest)
