"""Fake render folders in the exact layout of `python -m render`, for tests that need no Blender."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from render.imageio import write_exr, write_png_encoded, write_png_srgb

H, W = 32, 40


def write_synthetic_render(root: Path, scenes=("alpha", "beta"), lightings=("key", "rim"), h=H, w=W, seed=0) -> Path:
    """The render output layout (manifest.json + one folder per <scene>__<lighting>) with simple content:
    piecewise-constant albedo per scene, a smooth shading per lighting, an elliptic object mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    mask = ((yy - 0.4) ** 2 / 0.12 + (xx - 0.5) ** 2 / 0.2) < 1.0
    entries = []
    for si, scene in enumerate(scenes):
        albedo = np.empty((h, w, 3), np.float32)
        albedo[:] = rng.uniform(0.2, 0.9, 3)
        albedo[:, w // 2:] = rng.uniform(0.1, 0.8, 3)
        albedo[h // 2:, : w // 3] = rng.uniform(0.1, 0.9, 3)
        for li, light in enumerate(lightings):
            shading = (0.25 + 0.75 * (xx if li % 2 == 0 else 1 - xx) * (1 - 0.4 * yy))[..., None] * np.ones(3)
            shading = shading.astype(np.float32) * (1.0 + 0.5 * li)
            image = albedo * shading
            sid = f"{scene}__{light}"
            d = root / sid
            write_exr(d / "image_linear.exr", image)
            write_png_srgb(d / "image_srgb.png", image)
            write_exr(d / "albedo_linear.exr", albedo)
            write_exr(d / "shading_linear.exr", shading)
            write_exr(d / "residual_linear.exr", np.zeros_like(image))
            write_exr(d / "normal.exr", np.dstack([np.zeros((h, w)), np.zeros((h, w)), np.ones((h, w))]), channels="XYZ")
            write_exr(d / "depth.exr", np.full((h, w), 3.0, np.float32), channels="Z")
            write_png_encoded(d / "mask.png", mask.astype(np.float32))
            write_png_encoded(d / "object_index.png", mask.astype(np.float32) / 255.0)
            entries.append({"id": sid, "scene": scene, "lighting": light, "description": f"{scene} under {light}",
                            "image": f"{sid}/image_linear.exr", "image_srgb": f"{sid}/image_srgb.png",
                            "albedo": f"{sid}/albedo_linear.exr", "shading": f"{sid}/shading_linear.exr",
                            "residual": f"{sid}/residual_linear.exr", "normal": f"{sid}/normal.exr",
                            "depth": f"{sid}/depth.exr", "mask": f"{sid}/mask.png",
                            "object_index": f"{sid}/object_index.png", "width": w, "height": h})
    (root / "manifest.json").write_text(json.dumps({"format": "ray-plantain-render/1", "samples": entries}, indent=2))
    return root


def write_synthetic_render_variants(root: Path, scenes=("alpha", "beta"), lightings=("key", "rim"), variants=1,
                                    albedo_png=True, legacy_manifest=False, h=H, w=W, seed=0) -> Path:
    """A render folder in the layout of `python -m render --recolor K` (CONTRACTS C1): per base scene the
    original (`<scene>__<lighting>`) and `variants` colour variants (`<scene>~c<k>__<lighting>`, other random
    albedo, same shading), manifest entries with `variant` and `base_scene`, and `albedo_srgb.png` in every
    sample folder (encoded as image_srgb.png is). albedo_png=False leaves the PNG out (a render made before
    it existed); legacy_manifest=True also leaves out the `variant` / `base_scene` keys."""
    from render.imageio import read_exr

    ids = [s if k == 0 else f"{s}~c{k}" for s in scenes for k in range(variants + 1)]
    write_synthetic_render(root, scenes=ids, lightings=lightings, h=h, w=w, seed=seed)
    manifest = json.loads((root / "manifest.json").read_text())
    for e in manifest["samples"]:
        base, _, k = e["scene"].partition("~c")
        if not legacy_manifest:
            e["variant"], e["base_scene"] = int(k or 0), base
        if albedo_png:
            write_png_srgb(root / e["id"] / "albedo_srgb.png", read_exr(root / e["albedo"]))
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
