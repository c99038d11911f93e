"""Colour variants of a scene: the same geometry, camera and lightings, other surface colours. No bpy.

    from render.recolor import with_variants, recolor_scene, RECOLOR_RANGE, CHROMA_RANGE
    scenes = with_variants(scenes, k=2, seed=0)     # each scene, then its variants ~c1, ~c2 (mode "hsv")
    scenes = with_variants(scenes, k=2, seed=0, mode="chroma")   # ~c1, ~c2 with every luminance kept
    scenes = with_variants(scenes, k=2, seed=0, mode="both")     # ~c1, ~c2 hsv, then ~c3, ~c4 chroma
    v = recolor_scene(scene, 1, seed=0)              # id "<scene>~c1"

Two modes (`RECOLOR_MODES`, `python -m render --recolor K --recolor-mode MODE`):
- `hsv` (the default, and every variant made before the modes existed): hue, saturation and value are drawn,
  so a variant changes the surfaces' brightness as well as their hue (RECOLOR_RANGE below).
- `chroma`: hue and saturation are drawn and each colour keeps the Rec.709 luminance of the colour it replaces
  (CHROMA_RANGE below). Every base colour is a convex mix of its declared colours (render.materials) and luminance
  is linear in linear RGB, so every pixel of a chroma variant's albedo has its original's luminance (within
  `CHROMA_RANGE["luminance_tolerance"]`, tested pixel for pixel on the rendered albedo): only chromaticity changes.
  Variants record `"mode": "chroma"` and every colour's luminance before and after in their `recolor` record.
  `both` gives K hsv variants (~c1..~cK) and then K chroma variants (~c(K+1)..~c(2K)).

What changes: every colour that makes a surface's base colour, i.e. each constant `base_color`
and every colour of a texture (`color1`, `color2`, ... of checker, stripes, noise and the
procedural textures). Nothing else: roughness, metallic, IOR, specular, texture type, scale and
pattern parameters, geometry, camera, world and lights are copied unchanged, so a variant's mask,
object index, normals and depth equal the original's pixel for pixel and only albedo (and through
it, the image) differs.

How colours are drawn (`RECOLOR_RANGE`, recorded in every variant's sample.json and the manifest):
each distinct colour of the scene (in the order objects list them) gets one new colour, so
surfaces that shared a colour still share one and surfaces that differed still differ. A new
colour is hue ~ U[0, 1), saturation ~ U[0.10, 0.90], value ~ U[0.20, 0.95] in HSV of the
sRGB-encoded colour, decoded to linear Rec.709 and rounded to 4 decimals (so linear components lie
in [0.0033, 0.89]: the range of real diffuse reflectances), redrawn until it differs from the colour
it replaces and from every other new colour by at least 0.05 (max over channels, linear). The draw
depends only on (seed, scene id, k): a scene's variants are the same whichever other scenes,
shards or lightings a run selects.
"""
from __future__ import annotations

import colorsys
import dataclasses
import zlib
from typing import Iterable, Sequence

import numpy as np

from render.scene import Material, Object, Scene, SceneError, Texture, Vec3, variant_id

__all__ = ["RECOLOR_RANGE", "CHROMA_RANGE", "RECOLOR_MODES", "recolor_scene", "with_variants", "recolor_record",
           "scene_colours", "recolor_mode", "rec709_luminance"]

RECOLOR_MODES = ("hsv", "chroma", "both")
REC709 = (0.2126, 0.7152, 0.0722)

RECOLOR_RANGE = {
    "space": "HSV of the sRGB-encoded colour (IEC 61966-2-1), decoded to linear Rec.709, rounded to 4 decimals",
    "hue": [0.0, 1.0],
    "saturation": [0.10, 0.90],
    "value": [0.20, 0.95],
    "min_change": 0.05,        # max-channel linear distance from the replaced colour
    "min_separation": 0.05,    # ... and from every other new colour of the scene
    "mapping": "one new colour per distinct original colour of the scene (equal colours stay equal)",
    "rng": "numpy default_rng([seed, k, crc32(scene id)])",
}
_MAX_TRIES = 10_000
CHROMA_RANGE = {
    "space": "hue and saturation in HSV of the sRGB-encoded colour at value 1, decoded to linear Rec.709, then scaled "
             "in linear RGB to the Rec.709 luminance of the colour it replaces; rounded to 4 decimals, then the green "
             "channel (the largest luminance weight) corrected for the rounding",
    "hue": [0.0, 1.0],
    "saturation": [0.10, 0.90],
    "max_channel": 1.0,
    "luminance": "Y = 0.2126 R + 0.7152 G + 0.0722 B of the linear colour",
    "luminance_tolerance": 1e-4,          # |Y(new) - Y(old)| per colour, and so per albedo pixel
    "min_chroma_change": 0.05,            # max over channels of |c / sum(c) - old / sum(old)|
    "draws": 2000,
    "fallback": "when no draw reaches min_chroma_change within max_channel (near-white or near-black colours), the "
                "draw with the largest chromaticity change is used; every colour's change is recorded",
    "mapping": "one new colour per distinct original colour of the scene (equal colours stay equal)",
    "rng": "numpy default_rng([seed, k, crc32(scene id), 1])",
}


def rec709_luminance(c: Sequence[float]) -> float:
    """Rec.709 luminance of a linear RGB colour."""
    return float(sum(w * x for w, x in zip(REC709, c)))


def recolor_mode(record: dict | None) -> str | None:
    """The mode of a variant's `recolor` record ("hsv" when the record predates modes); None for an original."""
    if not record:
        return None
    return str(record.get("mode", "hsv"))


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _draw(rng: np.random.Generator) -> Vec3:
    r = RECOLOR_RANGE
    h = rng.uniform(*r["hue"])
    s = rng.uniform(*r["saturation"])
    v = rng.uniform(*r["value"])
    return tuple(round(_srgb_to_linear(x), 4) for x in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _texture_colour_fields(t: Texture) -> list[str]:
    return [f.name for f in dataclasses.fields(t) if f.name.startswith("color") and getattr(t, f.name) is not None]


def scene_colours(scene: Scene) -> list[Vec3]:
    """Every distinct surface colour of `scene`, in the order the objects list them."""
    seen: dict[Vec3, None] = {}
    for o in scene.objects:
        bc = o.material.base_color
        if isinstance(bc, Texture):
            for name in _texture_colour_fields(bc):
                seen.setdefault(tuple(getattr(bc, name)), None)
        else:
            seen.setdefault(tuple(bc), None)
    return list(seen)


def _far(a: Sequence[float], b: Sequence[float], d: float) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) >= d


def _new_colours(scene: Scene, k: int, seed: int) -> dict[Vec3, Vec3]:
    rng = np.random.default_rng([seed, k, zlib.crc32(scene.id.encode("utf-8"))])
    mapping: dict[Vec3, Vec3] = {}
    for old in scene_colours(scene):
        for _ in range(_MAX_TRIES):
            new = _draw(rng)
            if _far(new, old, RECOLOR_RANGE["min_change"]) and all(
                    _far(new, other, RECOLOR_RANGE["min_separation"]) for other in mapping.values()):
                break
        else:  # pragma: no cover - only with absurdly many distinct colours in one scene
            raise SceneError(f"scene {scene.id!r}: cannot draw {len(mapping) + 1} distinct variant colours")
        mapping[old] = new
    return mapping


def _chromaticity(c: Sequence[float]) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    s = c.sum()
    return c / s if s > 0 else np.full(3, 1 / 3)


def _chroma_colours(scene: Scene, k: int, seed: int) -> tuple[dict[Vec3, Vec3], list[dict]]:
    """One luminance-preserving new colour per distinct colour of the scene, and their record."""
    r = CHROMA_RANGE
    rng = np.random.default_rng([seed, k, zlib.crc32(scene.id.encode("utf-8")), 1])
    mapping: dict[Vec3, Vec3] = {}
    record = []
    for old in scene_colours(scene):
        y = rec709_luminance(old)
        best, best_change = tuple(old), -1.0
        for _ in range(r["draws"]):
            h, s = rng.uniform(*r["hue"]), rng.uniform(*r["saturation"])
            c0 = [_srgb_to_linear(x) for x in colorsys.hsv_to_rgb(h, s, 1.0)]
            c = [x * y / rec709_luminance(c0) for x in c0]
            if max(c) > r["max_channel"]:
                continue
            c = [round(x, 4) for x in c]
            c[1] = round(min(max(c[1] + (y - rec709_luminance(c)) / REC709[1], 0.0), r["max_channel"]), 4)
            if abs(rec709_luminance(c) - y) > r["luminance_tolerance"] or any(
                    float(np.abs(_chromaticity(c) - _chromaticity(o)).max()) < r["min_chroma_change"]
                    for o in mapping.values()):
                continue
            change = float(np.abs(_chromaticity(c) - _chromaticity(old)).max())
            if change > best_change:
                best, best_change = tuple(c), change
            if change >= r["min_chroma_change"]:
                break
        mapping[tuple(old)] = best   # type: ignore[assignment]
        record.append({"old": list(old), "new": list(best), "luminance_old": round(y, 6),
                       "luminance_new": round(rec709_luminance(best), 6), "chroma_change": round(max(best_change, 0), 4)})
    return mapping, record


def _recolor_material(m: Material, mapping: dict[Vec3, Vec3]) -> Material:
    bc = m.base_color
    if isinstance(bc, Texture):
        new_bc: Vec3 | Texture = dataclasses.replace(
            bc, **{name: mapping[tuple(getattr(bc, name))] for name in _texture_colour_fields(bc)})
    else:
        new_bc = mapping[tuple(bc)]
    return dataclasses.replace(m, base_color=new_bc)


def recolor_scene(scene: Scene, k: int, seed: int = 0, mode: str = "hsv") -> Scene:
    """Colour variant k (>= 1) of `scene` (which must be an original, not itself a variant); mode "hsv" or "chroma"."""
    if k < 1:
        raise ValueError(f"variant number must be >= 1, got {k}")
    if mode not in ("hsv", "chroma"):
        raise SceneError(f"a variant's recolour mode is 'hsv' or 'chroma', got {mode!r}")
    if scene.variant:
        raise SceneError(f"scene {scene.id!r} is already a colour variant; recolour its original "
                         f"{scene.base_id!r} instead")
    colours = None
    if mode == "chroma":
        mapping, colours = _chroma_colours(scene, k, seed)
        what = "every surface colour replaced by one of another hue and saturation and the same luminance"
    else:
        mapping = _new_colours(scene, k, seed)
        what = "every surface colour replaced by a random one"
    objects = tuple(dataclasses.replace(o, material=_recolor_material(o.material, mapping)) for o in scene.objects)
    desc = f"{scene.description} (colour variant {k}: {what}; shapes, materials and layout unchanged)"
    return dataclasses.replace(scene, id=variant_id(scene.id, k), description=desc, objects=objects, source=None,
                               recolor=recolor_record(seed, k, mode, colours))


def with_variants(scenes: Iterable[Scene], k: int, seed: int = 0, mode: str = "hsv") -> list[Scene]:
    """Each scene followed by its colour variants (k = 0: the scenes unchanged): 1..k in `mode` "hsv" or "chroma",
    or with "both" 1..k hsv then k+1..2k chroma.

    Scenes that already are variants (ids ending in ~c<n>, e.g. loaded from an exported folder) are
    kept as they are and not recoloured again.
    """
    if k < 0:
        raise SceneError(f"--recolor needs K >= 0, got {k}")
    if seed < 0:
        raise SceneError(f"--recolor-seed needs S >= 0, got {seed}")
    if mode not in RECOLOR_MODES:
        raise SceneError(f"--recolor-mode must be one of {', '.join(RECOLOR_MODES)}, got {mode!r}")
    plan = ([(i, "hsv") for i in range(1, k + 1)] + [(k + i, "chroma") for i in range(1, k + 1)] if mode == "both"
            else [(i, mode) for i in range(1, k + 1)])
    out: list[Scene] = []
    for s in scenes:
        out.append(s)
        if not s.variant:
            out.extend(recolor_scene(s, i, seed, m) for i, m in plan)
    return out


def recolor_record(seed: int, k: int, mode: str = "hsv", colours: list[dict] | None = None) -> dict:
    """How a variant's colours were made (kept in its spec, its sample.json and the manifest). An hsv record keeps
    the keys it had before modes existed (no "mode": absent means hsv), so earlier renders still resume."""
    if mode == "hsv":
        return {"seed": seed, "variant": k, "range": RECOLOR_RANGE}
    return {"seed": seed, "variant": k, "range": CHROMA_RANGE, "mode": mode, "colours": colours or []}

