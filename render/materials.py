"""Procedural textures: their parameters (with defaults, ranges, docs) and their shader graphs. No bpy.

    from render.materials import TEXTURES, texture_graph, texture_doc
    TEXTURES["wood"].params["ring_spacing"]     # Param(default=0.006, lo=0.001, hi=0.05, doc=...)
    graph = texture_graph(texture)              # plain data: nodes, links, the colour and factor outputs

A texture is the `base_color` of a material. Every type mixes its colours (`color1`, `color2`, and
`color3` for the mortar or grout of brick and tile) with factors clamped to [0, 1], so the base colour
is always a convex combination of the declared colours: inside [0, 1], and exactly what the albedo
AOV records (render/blender.py feeds the AOV from the very socket that feeds Base Color). Each graph
also has a `factor` output in [0, 1] (documented per type); a material whose `roughness` is a pair
[r1, r2] gets roughness r1 + (r2 - r1) * factor, so glossiness follows the same pattern (mortar
rougher than brick, veins smoother than stone, ...).

Graphs are plain data (`NodeGraph`) built from Blender shader-node type names; render/blender.py,
the only module that imports bpy, instantiates them one to one. Coordinates:
    object   the object's own coordinates before its scale: the pattern stretches with `scale`
    local    the object's coordinates in metres: moves with the object, sizes are in metres
    world    world coordinates in metres: patterns continue across objects
`seed` (every procedural type) shifts the pattern to another patch of the same texture, so two
objects with the same parameters need not look identical; same seed, same pattern.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

__all__ = ["Param", "TextureType", "TEXTURES", "COORDS", "NodeGraph", "texture_graph", "texture_doc", "seed_offset"]

COORDS = ("object", "local", "world")


@dataclass(frozen=True)
class Param:
    default: Any
    lo: float | None = None
    hi: float | None = None
    doc: str = ""
    choices: tuple[str, ...] = ()           # a string parameter
    kind: str = "number"                    # number | choice | int | vec3


@dataclass(frozen=True)
class TextureType:
    doc: str
    colors: tuple[str, ...]                 # colour fields, with what each is
    color_docs: tuple[str, ...]
    params: dict[str, Param]
    coords: str                             # default coordinates
    factor: str                             # what the factor output (roughness driver) is


def _n(default, lo=None, hi=None, doc=""):
    return Param(default, lo, hi, doc)


_SEED = Param(0, 0, 2**31 - 1, "picks the patch of the pattern (same seed, same pattern)", kind="int")

TEXTURES: dict[str, TextureType] = {
    "checker": TextureType(
        "checkerboard (Blender's Checker texture)", ("color1", "color2"), ("one square colour", "the other"),
        {"scale": _n(4.0, 0.0, None, "cells per coordinate unit")}, "object", "1 on color2 squares"),
    "stripes": TextureType(
        "parallel stripes", ("color1", "color2"), ("stripe colour", "gap colour"),
        {"scale": _n(4.0, 0.0, None, "stripes per coordinate unit"),
         "axis": Param("x", doc="stripes repeat along this axis", choices=("x", "y", "z"), kind="choice"),
         "width": _n(0.5, 0.0, 1.0, "fraction of each period in color1")}, "object", "1 in the gaps (color2)"),
    "noise": TextureType(
        "mottled two-colour Perlin noise", ("color1", "color2"), ("high-noise colour", "low-noise colour"),
        {"scale": _n(4.0, 0.0, None, "noise frequency per coordinate unit"),
         "detail": _n(2.0, 0.0, 15.0, "octaves"),
         "offset": Param((0.0, 0.0, 0.0), doc="moves to another patch of the noise", kind="vec3")},
        "object", "weight of color2"),
    "wood": TextureType(
        "wood grain: growth rings around an axis, distorted, with fine fibres", ("color1", "color2"),
        ("earlywood (light)", "latewood (dark grain lines)"),
        {"axis": Param("x", doc="the trunk's axis (grain runs along it)", choices=("x", "y", "z"), kind="choice"),
         "ring_spacing": _n(0.006, 0.001, 0.05, "metres between growth rings"),
         "distortion": _n(3.0, 0.0, 20.0, "waviness of the rings"),
         "grain": _n(0.3, 0.0, 1.0, "share of fine fibre streaks in the pattern"),
         "seed": _SEED}, "local", "weight of the dark grain (color2)"),
    "brick": TextureType(
        "running-bond brickwork with mortar (Blender's Brick texture, box-mapped)", ("color1", "color2", "color3"),
        ("one end of the brick colour range", "the other end", "mortar"),
        {"brick_width": _n(0.215, 0.01, 2.0, "brick length in metres"),
         "brick_height": _n(0.065, 0.01, 1.0, "brick height in metres"),
         "mortar": _n(0.01, 0.0, 0.05, "mortar joint width in metres"),
         "bias": _n(0.0, -1.0, 1.0, "brick colours lean to color1 (-1) or color2 (+1)"),
         "seed": _SEED}, "local", "1 in the mortar"),
    "tile": TextureType(
        "square tiles with grout, chequered or randomly varied (box-mapped)", ("color1", "color2", "color3"),
        ("tile colour", "second tile colour", "grout"),
        {"tile_size": _n(0.2, 0.01, 2.0, "tile side in metres (grout included)"),
         "grout": _n(0.004, 0.0, 0.05, "grout width in metres"),
         "pattern": Param("checker", doc="checker: tiles alternate color1/color2; random: each tile a random "
                          "mix of them", choices=("checker", "random"), kind="choice"),
         "seed": _SEED}, "local", "1 in the grout"),
    "marble": TextureType(
        "marble: distorted veins through a base stone colour", ("color1", "color2"), ("stone", "veins"),
        {"scale": _n(2.0, 0.0, None, "vein bands per metre"),
         "distortion": _n(8.0, 0.0, 30.0, "how much the veins wander"),
         "sharpness": _n(4.0, 1.0, 20.0, "higher: thinner veins"),
         "seed": _SEED}, "local", "weight of the veins (color2)"),
    "stone": TextureType(
        "granite-like stone: random mineral cells with fine grain", ("color1", "color2"),
        ("one mineral colour", "the other"),
        {"scale": _n(40.0, 0.0, None, "cells per metre"),
         "variation": _n(0.6, 0.0, 1.0, "spread of cell colours between color1 and color2"),
         "seed": _SEED}, "local", "weight of color2"),
    "fabric": TextureType(
        "plain-weave fabric: warp and weft threads crossing over and under (box-mapped)", ("color1", "color2"),
        ("warp threads", "weft threads"),
        {"threads": _n(120.0, 1.0, 2000.0, "threads per metre"),
         "relief": _n(0.15, 0.0, 0.6, "darkening of the thread edges (part of the albedo)"),
         "seed": _SEED}, "local", "1 on weft threads"),
    "plaster": TextureType(
        "painted plaster: paint with low-frequency blotches and fine speckle", ("color1", "color2"),
        ("paint", "the colour it drifts towards"),
        {"scale": _n(1.5, 0.0, None, "blotches per metre"),
         "amount": _n(0.35, 0.0, 1.0, "largest weight of color2"),
         "speckle": _n(0.05, 0.0, 0.5, "fine-grain share"),
         "seed": _SEED}, "local", "weight of color2"),
    "dots": TextureType(
        "printed polka dots (box-mapped)", ("color1", "color2"), ("ground", "dots"),
        {"spacing": _n(0.05, 0.002, 2.0, "metres between dot centres"),
         "radius": _n(0.3, 0.01, 0.5, "dot radius as a fraction of the spacing"),
         "stagger": _n(0.5, 0.0, 1.0, "shift of every other row, in spacings"),
         "seed": _SEED}, "local", "1 on the dots"),
}


def texture_doc() -> str:
    """The texture part of `python -m render --spec-help`, generated from TEXTURES (never out of date)."""
    lines = ["textures (material.base_color = {type, colours, params}; every field optional but type and the",
             "colours; coords: object (unscaled object coordinates) | local (object coordinates in metres) |",
             "world (metres); default per type below):"]
    for name, t in TEXTURES.items():
        lines.append(f"  {name:8s} {t.doc}; coords {t.coords}; factor: {t.factor}")
        lines.append(f"           colours: " + ", ".join(f"{c} ({d})" for c, d in zip(t.colors, t.color_docs)))
        for pname, p in t.params.items():
            if p.kind == "choice":
                rng = " | ".join(p.choices)
            elif p.kind == "vec3":
                rng = "[x, y, z]"
            elif p.kind == "int":
                rng = f"integer {int(p.lo)}..{int(p.hi)}"
            else:
                lo = "" if p.lo is None else f"{p.lo:g}"
                hi = "" if p.hi is None else f"{p.hi:g}"
                rng = f"{lo}..{hi}" if p.hi is not None else f"> {lo}"
            lines.append(f"           {pname} ({p.default}; {rng}): {p.doc}")
    return "\n".join(lines)


def seed_offset(seed: int) -> tuple[float, float, float]:
    """The coordinate shift a texture seed stands for (metres; deterministic, 4 decimals)."""
    if seed == 0:
        return (0.0, 0.0, 0.0)
    v = np.random.default_rng([int(seed), 104729]).uniform(0.0, 100.0, 3)
    return tuple(float(round(x, 4)) for x in v)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ graphs
Ref = tuple[str, Union[str, int]]           # (node key, output socket identifier or index)
Value = Union[float, Ref]


@dataclass
class NodeGraph:
    """A shader node graph as plain data, instantiated by render/blender.py.

    nodes: key -> (Blender node type, {property: value}, {input identifier or index: default value})
    links: (from key, output, to key, input)
    color: the base colour output; factor: the pattern factor output in [0, 1] (drives roughness)
    """
    nodes: dict[str, tuple[str, dict, dict]] = field(default_factory=dict)
    links: list[tuple[str, str | int, str, str | int]] = field(default_factory=list)
    color: Ref | None = None
    factor: Ref | None = None

    # -- building helpers ------------------------------------------------------------------
    def node(self, idname: str, props: dict | None = None, **inputs: Any) -> str:
        key = f"n{len(self.nodes)}"
        self.nodes[key] = (idname, dict(props or {}), {})
        for name, v in inputs.items():
            self.set_input(key, name, v)
        return key

    def set_input(self, key: str, socket: str | int, v: Any) -> None:
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
            self.links.append((v[0], v[1], key, socket))
        else:
            self.nodes[key][2][socket] = v

    def math(self, op: str, a: Value, b: Value = 0.0, clamp: bool = False) -> Ref:
        k = self.node("ShaderNodeMath", {"operation": op, "use_clamp": clamp})
        self.set_input(k, 0, a)
        self.set_input(k, 1, b)
        return (k, 0)

    def vmath(self, op: str, a: Any, b: Any) -> Ref:
        k = self.node("ShaderNodeVectorMath", {"operation": op})
        self.set_input(k, 0, a)
        self.set_input(k, 1, b)
        return (k, 0)

    def xyz(self, v: Ref) -> tuple[Ref, Ref, Ref]:
        k = self.node("ShaderNodeSeparateXYZ", Vector=v)
        return (k, "X"), (k, "Y"), (k, "Z")

    def vec(self, x: Value, y: Value, z: Value = 0.0) -> Ref:
        k = self.node("ShaderNodeCombineXYZ", X=x, Y=y, Z=z)
        return (k, "Vector")

    def mix(self, a: Any, b: Any, factor: Value) -> Ref:
        """RGBA mix: factor 0 -> a, 1 -> b, factor clamped to [0, 1] (a convex combination)."""
        k = self.node("ShaderNodeMix", {"data_type": "RGBA", "blend_type": "MIX", "clamp_factor": True,
                                        "clamp_result": False})
        self.set_input(k, "Factor_Float", factor)
        self.set_input(k, "A_Color", _rgba(a))
        self.set_input(k, "B_Color", _rgba(b))
        return (k, "Result_Color")

    def clamp01(self, v: Value) -> Ref:
        return self.math("ADD", v, 0.0, clamp=True)


def _rgba(c: Any) -> Any:
    if isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], str):
        return c
    return (float(c[0]), float(c[1]), float(c[2]), 1.0)


def _coords(g: NodeGraph, coords: str, unit_scale: tuple[float, float, float], offset=(0.0, 0.0, 0.0)) -> Ref:
    """The texture coordinate vector. Meshes carry their scale in their vertices (blender.py bakes it),
    so Object coordinates are metric ("local"); "object" divides the scale back out."""
    if coords == "world":
        p: Ref = (g.node("ShaderNodeNewGeometry"), "Position")
    else:
        p = (g.node("ShaderNodeTexCoord"), "Object")
        if coords == "object":
            p = g.vmath("MULTIPLY", p, tuple(1.0 / s for s in unit_scale))
    if any(offset):
        p = g.vmath("ADD", p, tuple(offset))
    return p


def _normal(g: NodeGraph, coords: str) -> Ref:
    if coords == "world":
        return (g.node("ShaderNodeNewGeometry"), "Normal")
    return (g.node("ShaderNodeTexCoord"), "Normal")        # object space


def _box_uv(g: NodeGraph, p: Ref, n: Ref) -> tuple[Ref, Ref]:
    """Planar coordinates (u, v) on the face's dominant axis: z-facing -> (x, y), y -> (x, z), x -> (y, z).
    Box mapping, so 2-D patterns (bricks, tiles, weave, dots) lie flat on every face of a box or wall."""
    x, y, z = g.xyz(p)
    nx, ny, nz = (g.math("ABSOLUTE", c) for c in g.xyz(n))
    not_x_over_z = g.math("SUBTRACT", 1.0, g.math("GREATER_THAN", nx, nz))
    not_y_over_z = g.math("SUBTRACT", 1.0, g.math("GREATER_THAN", ny, nz))
    mz = g.math("MULTIPLY", not_x_over_z, not_y_over_z)                       # |nz| >= |nx|, |ny|
    y_ge_x = g.math("SUBTRACT", 1.0, g.math("GREATER_THAN", nx, ny))
    my = g.math("MULTIPLY", g.math("SUBTRACT", 1.0, mz), y_ge_x)
    mx = g.math("SUBTRACT", g.math("SUBTRACT", 1.0, mz), my)
    u = g.math("ADD", g.math("MULTIPLY", x, g.math("ADD", mz, my)), g.math("MULTIPLY", y, mx))
    v = g.math("ADD", g.math("MULTIPLY", y, mz), g.math("MULTIPLY", z, g.math("ADD", my, mx)))
    return u, v


def texture_graph(t: Any, unit_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> NodeGraph:
    """The shader graph of texture `t` (a render.scene.Texture) on an object of scale `unit_scale`."""
    g = NodeGraph()
    build = _BUILDERS[t.type]
    color, factor = build(g, t, unit_scale)
    g.color, g.factor = color, factor
    return g


def _checker(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    k = g.node("ShaderNodeTexChecker", Vector=_coords(g, t.coords, s), Color1=_rgba(t.color1),
               Color2=_rgba(t.color2), Scale=t.scale)
    return (k, "Color"), g.math("SUBTRACT", 1.0, (k, "Fac"))


def _stripes(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    x, y, z = g.xyz(_coords(g, t.coords, s))
    axis = {"x": x, "y": y, "z": z}[t.axis]
    frac = g.math("FRACT", g.math("MULTIPLY", axis, t.scale))
    in_stripe = g.math("LESS_THAN", frac, t.width)
    return g.mix(t.color2, t.color1, in_stripe), g.math("SUBTRACT", 1.0, in_stripe)


def _noise(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    k = g.node("ShaderNodeTexNoise", {"noise_dimensions": "3D"}, Vector=_coords(g, t.coords, s, t.offset),
               Scale=t.scale, Detail=t.detail)
    f = g.node("ShaderNodeMapRange", {"clamp": True}, Value=(k, "Fac"))
    g.nodes[f][2].update({"From Min": 0.3, "From Max": 0.7})
    f1 = (f, "Result")
    return g.mix(t.color2, t.color1, f1), g.math("SUBTRACT", 1.0, f1)


def _wood(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    off = seed_offset(t.seed)
    p = _coords(g, t.coords, s, off)
    # Blender's ring wave is sin(20 * scale * r): rings every 2*pi / (20 * scale) metres
    rings = g.node("ShaderNodeTexWave", {"wave_type": "RINGS", "rings_direction": t.axis.upper(),
                                         "wave_profile": "SIN"},
                   Vector=p, Scale=0.1 * np.pi / t.ring_spacing, Distortion=t.distortion, Detail=2.0,
                   **{"Detail Scale": 1.5, "Phase Offset": float(off[0] % (2 * np.pi))})
    late = g.math("POWER", (rings, "Fac"), 3.0)                                   # thin dark latewood bands
    stretch = {"x": (2.0, 160.0, 160.0), "y": (160.0, 2.0, 160.0), "z": (160.0, 160.0, 2.0)}[t.axis]
    fib = g.node("ShaderNodeTexNoise", {"noise_dimensions": "3D"}, Vector=g.vmath("MULTIPLY", p, stretch),
                 Scale=1.0, Detail=2.0)
    fibre = g.node("ShaderNodeMapRange", {"clamp": True}, Value=(fib, "Fac"))
    g.nodes[fibre][2].update({"From Min": 0.35, "From Max": 0.65})
    fac = g.clamp01(g.math("ADD", g.math("MULTIPLY", late, 1.0 - t.grain), g.math("MULTIPLY", (fibre, "Result"),
                                                                                   t.grain)))
    return g.mix(t.color1, t.color2, fac), fac


def _brick(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    p = _coords(g, t.coords, s, seed_offset(t.seed))
    u, v = _box_uv(g, p, _normal(g, t.coords))
    k = g.node("ShaderNodeTexBrick", {"offset": 0.5, "offset_frequency": 2, "squash": 1.0, "squash_frequency": 2},
               Vector=g.vec(u, v), Color1=_rgba(t.color1), Color2=_rgba(t.color2), Mortar=_rgba(t.color3),
               Scale=1.0, Bias=t.bias)
    g.nodes[k][2].update({"Mortar Size": t.mortar, "Mortar Smooth": 0.1, "Brick Width": t.brick_width + t.mortar,
                          "Row Height": t.brick_height + t.mortar})
    return (k, "Color"), (k, "Fac")


def _tile(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    p = _coords(g, t.coords, s, seed_offset(t.seed))
    u, v = _box_uv(g, p, _normal(g, t.coords))
    su, sv = g.math("DIVIDE", u, t.tile_size), g.math("DIVIDE", v, t.tile_size)
    iu, iv = g.math("FLOOR", su), g.math("FLOOR", sv)
    fu, fv = g.math("SUBTRACT", su, iu), g.math("SUBTRACT", sv, iv)
    half = 0.5 * t.grout / t.tile_size            # grout half-width in tile units
    edge_u = g.math("MINIMUM", fu, g.math("SUBTRACT", 1.0, fu))
    edge_v = g.math("MINIMUM", fv, g.math("SUBTRACT", 1.0, fv))
    grout = g.math("LESS_THAN", g.math("MINIMUM", edge_u, edge_v), half)
    if t.pattern == "checker":
        second = g.math("FLOORED_MODULO", g.math("ADD", iu, iv), 2.0)
    else:
        wn = g.node("ShaderNodeTexWhiteNoise", {"noise_dimensions": "2D"}, Vector=g.vec(iu, iv))
        second = (wn, "Value")
    tiles = g.mix(t.color1, t.color2, second)
    return g.mix(tiles, t.color3, grout), grout


def _marble(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    off = seed_offset(t.seed)
    p = _coords(g, t.coords, s, off)
    # Blender's band wave is sin(10 * scale * (x + y + z)): bands every 2*pi / (10 * scale) / sqrt(3) m
    k = g.node("ShaderNodeTexWave", {"wave_type": "BANDS", "bands_direction": "DIAGONAL", "wave_profile": "SIN"},
               Vector=p, Scale=t.scale * 2 * np.pi / 10.0 / np.sqrt(3.0), Distortion=t.distortion, Detail=4.0,
               **{"Detail Scale": 1.0, "Detail Roughness": 0.55, "Phase Offset": float(off[1] % (2 * np.pi))})
    # veins where the band crosses its middle: 1 - |2 fac - 1|, sharpened
    centred = g.math("ABSOLUTE", g.math("SUBTRACT", g.math("MULTIPLY", (k, "Fac"), 2.0), 1.0))
    vein = g.clamp01(g.math("POWER", g.math("SUBTRACT", 1.0, centred), t.sharpness))
    return g.mix(t.color1, t.color2, vein), vein


def _stone(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    p = _coords(g, t.coords, s, seed_offset(t.seed))
    vor = g.node("ShaderNodeTexVoronoi", {"voronoi_dimensions": "3D", "feature": "F1", "distance": "EUCLIDEAN"},
                 Vector=p, Scale=t.scale, Randomness=1.0)
    cell = (g.node("ShaderNodeSeparateColor", Color=(vor, "Color")), "Red")      # a random value per cell
    grain = g.node("ShaderNodeTexNoise", {"noise_dimensions": "3D"}, Vector=p, Scale=t.scale * 4.0, Detail=2.0)
    spread = g.math("MULTIPLY", g.math("SUBTRACT", cell, 0.5), t.variation)
    fac = g.clamp01(g.math("ADD", g.math("ADD", spread, 0.5),
                           g.math("MULTIPLY", g.math("SUBTRACT", (grain, "Fac"), 0.5), 0.3)))
    return g.mix(t.color1, t.color2, fac), fac


def _fabric(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    p = _coords(g, t.coords, s, seed_offset(t.seed))
    u, v = _box_uv(g, p, _normal(g, t.coords))
    su, sv = g.math("MULTIPLY", u, t.threads), g.math("MULTIPLY", v, t.threads)
    iu, iv = g.math("FLOOR", su), g.math("FLOOR", sv)
    fu, fv = g.math("SUBTRACT", su, iu), g.math("SUBTRACT", sv, iv)
    weft = g.math("FLOORED_MODULO", g.math("ADD", iu, iv), 2.0)           # 1 where the weft passes over
    # a thread is brightest along its middle: warp threads run along v (profile across u), weft along u
    prof_warp = g.math("SINE", g.math("MULTIPLY", fu, float(np.pi)))
    prof_weft = g.math("SINE", g.math("MULTIPLY", fv, float(np.pi)))
    prof = g.clamp01(g.math("ADD", g.math("MULTIPLY", prof_warp, g.math("SUBTRACT", 1.0, weft)),
                            g.math("MULTIPLY", prof_weft, weft)))
    shade = g.math("SUBTRACT", 1.0, g.math("MULTIPLY", g.math("SUBTRACT", 1.0, prof), t.relief))
    cloth = g.mix(t.color1, t.color2, weft)
    return g.mix((0.0, 0.0, 0.0), cloth, shade), weft


def _plaster(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    p = _coords(g, t.coords, s, seed_offset(t.seed))
    low = g.node("ShaderNodeTexNoise", {"noise_dimensions": "3D"}, Vector=p, Scale=t.scale, Detail=3.0,
                 Roughness=0.5)
    fine = g.node("ShaderNodeTexNoise", {"noise_dimensions": "3D"}, Vector=p, Scale=t.scale * 150.0, Detail=1.0)
    blot = g.node("ShaderNodeMapRange", {"clamp": True}, Value=(low, "Fac"))
    g.nodes[blot][2].update({"From Min": 0.35, "From Max": 0.7})
    w = g.math("ADD", g.math("MULTIPLY", (blot, "Result"), t.amount * (1.0 - t.speckle)),
               g.math("MULTIPLY", (fine, "Fac"), t.amount * t.speckle))
    fac = g.clamp01(w)
    return g.mix(t.color1, t.color2, fac), fac


def _dots(g: NodeGraph, t, s) -> tuple[Ref, Ref]:
    p = _coords(g, t.coords, s, seed_offset(t.seed))
    u, v = _box_uv(g, p, _normal(g, t.coords))
    sv = g.math("DIVIDE", v, t.spacing)
    row = g.math("FLOOR", sv)
    su = g.math("ADD", g.math("DIVIDE", u, t.spacing),
                g.math("MULTIPLY", g.math("FLOORED_MODULO", row, 2.0), t.stagger))
    du = g.math("SUBTRACT", g.math("FRACT", su), 0.5)
    dv = g.math("SUBTRACT", g.math("SUBTRACT", sv, row), 0.5)
    r2 = g.math("ADD", g.math("MULTIPLY", du, du), g.math("MULTIPLY", dv, dv))
    dot = g.math("LESS_THAN", r2, t.radius * t.radius)
    return g.mix(t.color1, t.color2, dot), dot


_BUILDERS = {"checker": _checker, "stripes": _stripes, "noise": _noise, "wood": _wood, "brick": _brick,
             "tile": _tile, "marble": _marble, "stone": _stone, "fabric": _fabric, "plaster": _plaster,
             "dots": _dots}
assert set(_BUILDERS) == set(TEXTURES)
