"""Image files with an explicit colour space: linear float EXR and 8/16-bit sRGB PNG.

    from render.imageio import read_exr, write_exr, read_png_srgb, write_png_srgb
    lin = read_exr("albedo_linear.exr")            # float32 [H, W, C], linear
    write_png_srgb("albedo_srgb.png", lin)          # encodes linear -> sRGB, 8 bit

No bpy, no torch: evaluate and users import this freely. Writes are atomic (temp file
then rename), so a killed process never leaves a half-written file under the final name.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

__all__ = [
    "srgb_to_linear", "linear_to_srgb", "shading_display_srgb", "read_exr", "write_exr",
    "read_png_srgb", "write_png_srgb", "atomic_path",
]


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding of values in [0, 1] (float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding; input clipped to [0, 1] first (float32 out)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def shading_display_srgb(shading_linear: np.ndarray) -> np.ndarray:
    """Linear diffuse shading (unbounded, >= 0) shown as an image: s / (1 + s) (Reinhard), then sRGB-encoded
    (float32 in [0, 1]). The contact sheet's shading panel and the known-shading model's training target."""
    s = np.maximum(np.asarray(shading_linear, dtype=np.float32), 0.0)
    return linear_to_srgb(s / (1.0 + s))


class atomic_path:
    """`with atomic_path(final) as tmp:` write to `tmp`; it is renamed to `final` only on success."""

    def __init__(self, final: str | os.PathLike):
        self.final = Path(final)
        # pid and host: shards on several nodes of a shared file system may have equal pids
        host = "".join(c if c.isalnum() else "_" for c in platform.node())[:32]
        self.tmp = self.final.with_name(f".{self.final.stem}.tmp{os.getpid()}-{host}{self.final.suffix}")

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)


def read_exr(path: str | os.PathLike, part: int = 0) -> np.ndarray:
    """Read one part of an EXR as float32 [H, W, C] (C=1 for single channels, kept 3-D).

    Channels are returned in the order R, G, B, A / X, Y, Z / V when present, else sorted.
    """
    import OpenEXR

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EXR file not found: {path}")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = {k: np.asarray(v.pixels) for k, v in f.parts[part].channels.items()}
    except Exception as e:  # OpenEXR raises bare RuntimeError on corrupt files
        raise ValueError(f"cannot read EXR {path}: {e}") from e
    order = ["R", "G", "B", "A", "X", "Y", "Z", "V"]
    names = sorted(channels, key=lambda n: (order.index(n.split(".")[-1]) if n.split(".")[-1] in order else 99, n))
    return np.stack([channels[n].astype(np.float32) for n in names], axis=-1)


def write_exr(path: str | os.PathLike, array: np.ndarray, channels: str | None = None, half: bool = False) -> Path:
    """Write float [H, W] or [H, W, C] as a single-part ZIP-compressed EXR, atomically.

    `channels` names them (default "Y" for 1, "RGB" for 3, "RGBA" for 4, "XYZ" is allowed).
    """
    import OpenEXR

    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    c = a.shape[-1]
    names = channels or {1: "Y", 3: "RGB", 4: "RGBA"}.get(c)
    if names is None or len(names) != c:
        raise ValueError(f"cannot name {c} channels for {path}; pass channels=")
    dtype = np.float16 if half else np.float32
    data = {n: np.ascontiguousarray(a[..., i].astype(dtype)) for i, n in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp:
        OpenEXR.File(header, data).write(str(tmp))
    return Path(path)


def read_png_srgb(path: str | os.PathLike, linear: bool = False) -> np.ndarray:
    """Read an 8- or 16-bit PNG as float32 [H, W, 3] in [0, 1]; sRGB unless `linear=True` decodes it."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PNG file not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"cannot decode image {path} (corrupt or not an image)")
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    img = raw.astype(np.float32) / scale
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3][..., ::-1]  # OpenCV stores BGR(A)
    img = np.ascontiguousarray(img)
    return srgb_to_linear(img) if linear else img


def write_png_srgb(path: str | os.PathLike, linear_rgb: np.ndarray, bits: int = 8) -> Path:
    """Encode linear RGB [H, W, 3] to sRGB and write an 8- or 16-bit PNG, atomically."""
    srgb = linear_to_srgb(linear_rgb)
    return write_png_encoded(path, srgb, bits=bits)


def write_png_encoded(path: str | os.PathLike, rgb01: np.ndarray, bits: int = 8) -> Path:
    """Write values already encoded (e.g. sRGB, or a grey mask) in [0, 1] as a PNG, atomically. NaN (a pixel
    without a value, e.g. outside a prediction's valid region) is written as 0: a PNG has no missing value, and
    casting NaN to an integer is undefined (the EXR beside it keeps the NaN)."""
    import cv2

    a = np.clip(np.nan_to_num(np.asarray(rgb01, dtype=np.float32), nan=0.0), 0.0, 1.0)
    maxv, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    q = np.round(a * maxv).astype(dtype)
    if q.ndim == 3:
        q = q[..., ::-1]
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(q)):
            raise OSError(f"cannot write PNG {path}")
    return Path(path)
