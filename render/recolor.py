"""Colour variants of a scene: the same geometry, camera and lightings, other surface colours. No bpy.

    from render.recolor import with_variants, recolor_scene, RECOLOR_RANGE
    scenes = with_variants(scenes, k=2, seed=0)     # each scene, then its variants ~c1, ~c2
    v = recolor_scene(scene, 1, seed=0)              # id "<scene>~c1"

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

__all__ = ["RECOLOR_RANGE", "recolor_scene", "with_variants", "recolor_record", "scene_colours"]

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


def _recolor_material(m: Material, mapping: dict[Vec3, Vec3]) -> Material:
    bc = m.base_color
    if isinstance(bc, Texture):
        new_bc: Vec3 | Texture = dataclasses.replace(
            bc, **{name: mapping[tuple(getattr(bc, name))] for name in _texture_colour_fields(bc)})
    else:
        new_bc = mapping[tuple(bc)]
    return dataclasses.replace(m, base_color=new_bc)


def recolor_scene(scene: Scene, k: int, seed: int = 0) -> Scene:
    """Colour variant k (>= 1) of `scene` (which must be an original, not itself a variant)."""
    if k < 1:
        raise ValueError(f"variant number must be >= 1, got {k}")
    if scene.variant:
        raise SceneError(f"scene {scene.id!r} is already a colour variant; recolour its original "
                         f"{scene.base_id!r} instead")
    mapping = _new_colours(scene, k, seed)
    objects = tuple(dataclasses.replace(o, material=_recolor_material(o.material, mapping)) for o in scene.objects)
    desc = (f"{scene.description} (colour variant {k}: every surface colour replaced by a random one; "
            f"shapes, materials and layout unchanged)")
    return dataclasses.replace(scene, id=variant_id(scene.id, k), description=desc, objects=objects, source=None,
                               recolor=recolor_record(seed, k))


def with_variants(scenes: Iterable[Scene], k: int, seed: int = 0) -> list[Scene]:
    """Each scene followed by its colour variants 1..k (k = 0: the scenes unchanged).

    Scenes that already are variants (ids ending in ~c<n>, e.g. loaded from an exported folder) are
    kept as they are and not recoloured again.
    """
    if k < 0:
        raise SceneError(f"--recolor needs K >= 0, got {k}")
    if seed < 0:
        raise SceneError(f"--recolor-seed needs S >= 0, got {seed}")
    out: list[Scene] = []
    for s in scenes:
        out.append(s)
        if not s.variant:
            out.extend(recolor_scene(s, i, seed) for i in range(1, k + 1))
    return out


def recolor_record(seed: int, k: int) -> dict:
    """How a variant's colours were made (kept in its spec, its sample.json and the manifest)."""
    return {"seed": seed, "variant": k, "range": RECOLOR_RANGE}

