"""A tiny synthetic copy of the MIT intrinsic images layout, written by the tests themselves (never the real data).

One folder per object with 16-bit linear PNGs (OpenCV writes them BGR, as the dataset's are): reflectance (three
piecewise-constant colour patches), grey shading (a smooth ramp), diffuse = reflectance x shading, a specular
highlight, original = diffuse + specular, an elliptic mask, and single-light photographs under other ramps. Values
span most of the 16-bit range, so 8-bit reading would show.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

H, W = 24, 30
OBJECTS = ("cup", "frog", "shoe")


def write_png16(path: Path, rgb_or_grey: np.ndarray) -> None:
    """Write a uint16 image as the dataset stores it (RGB given, BGR on disk)."""
    import cv2

    a = np.asarray(rgb_or_grey)
    assert a.dtype == np.uint16
    if a.ndim == 3:
        a = a[..., ::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(a))


def object_arrays(index: int, n_lights: int = 10, h: int = H, w: int = W) -> dict[str, np.ndarray]:
    """The linear float images of one synthetic object (values in [0, 1])."""
    rng = np.random.default_rng(100 + index)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    mask = ((yy - 0.4) ** 2 / 0.1 + (xx - 0.5) ** 2 / 0.2) < 1.0
    refl = np.empty((h, w, 3))
    refl[:] = rng.uniform(0.3, 0.9, 3)
    refl[:, w // 2:] = rng.uniform(0.15, 0.8, 3)
    refl[h // 2:, : w // 3] = rng.uniform(0.2, 0.9, 3)
    refl[~mask] = 0.0

    def shading(k: int) -> np.ndarray:
        ang = 0.7 * k + index
        return 0.2 + 0.8 * np.clip(0.5 + 0.5 * (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.4)) * 2.0, 0, 1)

    sh = shading(0)
    diffuse = refl * sh[..., None] * 0.9
    spec = np.zeros_like(diffuse)
    spec[h // 3: h // 3 + 2, w // 2: w // 2 + 3] = 0.08
    spec[~mask] = 0.0
    out = {"reflectance": refl, "shading": np.where(mask, sh, 0.0) / 1.0, "diffuse": diffuse, "specular": spec,
           "original": diffuse + spec, "mask": mask.astype(np.float64)}
    for k in range(1, n_lights + 1):
        out[f"light{k:02d}"] = refl * shading(k)[..., None] * rng.uniform(0.4, 1.0)
    return out


def write_mit_fixture(root: Path, objects=OBJECTS, n_lights: int = 10, h: int = H, w: int = W,
                      skip: dict | None = None) -> Path:
    """The dataset layout under `root` (one folder per object); `skip` = {object: [file names to leave out]}."""
    root = Path(root)
    skip = skip or {}
    for i, name in enumerate(objects):
        for key, a in object_arrays(i, n_lights, h, w).items():
            fname = f"{key}.png"
            if fname in skip.get(name, ()):
                continue
            if key == "mask":
                raw = np.where(a > 0, 65025, 0).astype(np.uint16)
            else:
                raw = np.round(np.clip(a, 0, 1) * 65535).astype(np.uint16)
            write_png16(root / name / fname, raw)
    (root / "NOTICE.txt").write_text("synthetic test fixture in the layout of the MIT intrinsic images\n")
    return root


def import_fixture(root: Path, n_lights: int = 10, **kw) -> Path:
    """write_mit_fixture under root/src, imported with `python -m render import-mit` into root/data."""
    from render.__main__ import main

    src = write_mit_fixture(Path(root) / "src", n_lights=n_lights, **kw)
    assert main(["import-mit", str(src), "--out", str(Path(root) / "data"), "--no-progress"]) == 0
    return Path(root) / "data"
