"""Scene specs: frozen dataclasses, JSON load + validation, JSON writing. No bpy.

    from render.scene import load_scenes, load_scene, scene_to_dict
    scenes = load_scenes("scenes/")                  # every *.json, sorted by id, ids unique
    scene = load_scene("scenes/red_cube_table.json") # SceneError names the file and the field
    (render.generator.generate_scenes makes random specs; render.materials and render.assets define
    the textures and composite objects a spec may use)

A spec is one JSON object (scenes/README: see `SPEC_DOC` below):

    {"id": "red_cube_table", "description": "a matte red cube on a light grey table top",
     "camera": {"location": [x, y, z], "look_at": [x, y, z], "lens_mm": 35},
     "world": {"color": [r, g, b], "strength": 1.0},
     "objects": [{"name": "cube", "primitive": "cube", "location": [0, 0, 0.5], "scale": [0.5, 0.5, 0.5],
                  "rotation_deg": [0, 0, 30], "material": {"base_color": [0.6, 0.03, 0.03], "roughness": 0.6}}],
     "lightings": [{"name": "sun_left", "description": "lit by ...",
                    "lights": [{"type": "sun", "location": [-3, 2, 4], "look_at": [0, 0, 0], "strength": 3}]}]}

Colours are linear Rec.709 RGB in [0, 1] (Blender's scene-linear space). Unknown keys are errors,
so a typo never silently falls back to a default.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from render.materials import Param

__all__ = [
    "SceneError", "Camera", "World", "Texture", "Material", "Object", "Light", "Lighting", "Scene",
    "PRIMITIVES", "TEXTURES", "LIGHT_TYPES", "load_scene", "load_scenes", "parse_scene",
    "scene_to_dict", "dumps_scene", "save_scene", "spec_doc", "split_variant", "variant_id",
]

PRIMITIVES = ("plane", "cube", "sphere", "cylinder", "cone", "torus", "lathe", "mesh")
COMPOSITE_NAMES = ("table", "chair", "shelf", "mug", "vase", "lamp", "room")   # render.assets: expanded on load
TEXTURES = ("checker", "stripes", "noise", "wood", "brick", "tile", "marble", "stone", "fabric", "plaster", "dots")
LIGHT_TYPES = ("sun", "point", "area", "spot")
AREA_SHAPES = ("square", "rectangle", "disk", "ellipse")
_PROFILE = Param(None, kind="profile")
COORDS = ("object", "world")
ID_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")  # snake_case; no "__", which separates scene__lighting
# scene ids may end in "~c<k>" (k >= 1): colour variant k of the scene named before it (render.recolor)
SCENE_ID_RE = re.compile(r"^(?P<base>[a-z0-9]+(_[a-z0-9]+)*)(~c(?P<k>[1-9][0-9]*))?$")
VARIANT_SEP = "~c"


def split_variant(scene_id: str) -> tuple[str, int]:
    """'cornell_box~c2' -> ('cornell_box', 2); 'cornell_box' -> ('cornell_box', 0). ValueError otherwise."""
    m = SCENE_ID_RE.match(scene_id)
    if not m:
        raise ValueError(f"not a scene id: {scene_id!r} (snake_case, optionally ending in ~c<k>)")
    return m.group("base"), int(m.group("k") or 0)


def variant_id(base_id: str, k: int) -> str:
    """The id of colour variant k of scene `base_id` (k = 0: the scene itself)."""
    return base_id if k == 0 else f"{base_id}{VARIANT_SEP}{k}"

_SPEC_HEAD = """\
Scene spec (JSON). Lengths in metres, angles in degrees, colours linear Rec.709 RGB in [0, 1].
Unknown fields and out-of-range values are errors that name the field.
  id            snake_case, unique; folder names are <id>__<lighting name>; "<base>~c<k>" marks colour
                variant k of scene <base> (what --recolor writes; same scene, other colours)
  description   one sentence: objects, colours/patterns, setting; no lighting words
  camera        location [3], look_at [3], lens_mm (35), sensor_mm (36)
  world         color [3] (0.05 grey), strength (1.0): background and ambient light; or
                sky {model: nishita | multiple_scattering, sun_elevation_deg (45), sun_azimuth_deg (0: the
                sun towards +y, 90: towards +x), strength (1: multiplier on the sky's radiance), air, aerosol,
                ozone (1), altitude_m (0), sun_strength (100 W/m^2; 0: no sun), sun_angle_deg (0.545),
                sun_temperature_k (default: 2500 K at the horizon rising to 5800 K at 30 deg)}: Blender's
                physical sky without its sun disc, plus a Sun light in the sun's direction (a 0.5-degree disc
                in the background is sampled badly). sun_strength / strength ~ 120 matches Blender's own
                sun disc; the shipped scenes use 3.0 / 0.025.
  objects[]     name (unique), primitive, location [3], rotation_deg [3] (XYZ Euler), scale [3] or number,
                smooth (default true for curved primitives), material; primitives:
                  plane (2x2 m) | cube (2 m; bevel: edge radius in m, < the smallest half-side) | sphere (r 1) |
                  cylinder (r 1, h 2) | cone (r 1, h 2) | torus (R 1, r 0.25) |
                  lathe (profile: [[radius, z], ...] revolved about z, segments (64)) |
                  mesh (file: .obj/.ply/.stl relative to the spec, vertex coordinates as they are, Z up)
                or a composite (below): expanded on load into parts named <name>.<part>, each its own object
                (object index), placed by the composite's location, rotation_deg and uniform scale.
  material      base_color: [3] or a texture (below); roughness (0.5) or [r1, r2] (with a texture: r1 + (r2 -
                r1) * the texture's factor); metallic (0), ior (1.5), specular (Principled 'Specular IOR Level', 0.5)
  lightings[]   >= 1 (default scenes have >= 2): name (snake_case, unique), description (the light
                only), lights[] and optional world override
  light         type: sun | point | area | spot, color [3] (1,1,1), strength (sun: W/m^2, others: W),
                location [3], look_at [3] (0,0,0; the sun shines along location -> look_at),
                size (sun: angular diameter in deg, point/spot: radius m, area: side m), temperature_k
                (1000..40000: the colour is multiplied by this black body's), spot_size_deg (45), spot_blend
                (0.15); area only: shape square | rectangle | disk | ellipse, size_y (rectangle/ellipse), spread_deg
                (180: a bare panel; less: a softbox with a grid)
"""


def spec_doc() -> str:
    """The full `--spec-help` text: the fields above, then every texture and composite with its parameters."""
    from render.assets import COMPOSITES
    from render.materials import texture_doc

    lines = [_SPEC_HEAD, texture_doc(), "",
             "composites (objects[] with primitive: <kind>, params {...}, material (every part), materials {group:",
             "material} per part group; origin on the floor under the object's centre):"]
    for name, c in COMPOSITES.items():
        lines.append(f"  {name:8s} {c.doc}; part groups: {', '.join(c.groups)}")
        for pname, p in c.params.items():
            lines.append(f"           {pname} ({p.default if p.kind not in ('colors', 'profile') else '...'}): {p.doc}")
    return "\n".join(lines)


class SceneError(ValueError):
    """A scene spec is malformed; the message names the file and the field."""


Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Camera:
    location: Vec3
    look_at: Vec3 = (0.0, 0.0, 0.0)
    lens_mm: float = 35.0
    sensor_mm: float = 36.0


@dataclass(frozen=True)
class Sky:
    """Blender's physical sky (Nishita; Blender 5 calls it single scattering) plus a sun lamp in its sun's
    direction. The sky's own sun disc is off: a 0.5-degree disc in the background is sampled poorly and
    brings fireflies, so the sun is a Sun light (same direction) with its own irradiance."""
    sun_elevation_deg: float = 45.0
    sun_azimuth_deg: float = 0.0           # compass angle from +y towards +x
    strength: float = 1.0                  # multiplier on the sky's radiance
    model: str = "nishita"                 # nishita | multiple_scattering
    air: float = 1.0
    aerosol: float = 1.0
    ozone: float = 1.0
    altitude_m: float = 0.0
    sun_strength: float = 100.0            # W/m^2 of the sun lamp (0: sky only)
    sun_angle_deg: float = 0.545
    sun_temperature_k: float | None = None  # None: from elevation (see sun_kelvin)

    @property
    def sun_direction(self) -> Vec3:
        """Unit vector towards the sun."""
        e, a = math.radians(self.sun_elevation_deg), math.radians(self.sun_azimuth_deg)
        return (math.cos(e) * math.sin(a), math.cos(e) * math.cos(a), math.sin(e))

    @property
    def sun_kelvin(self) -> float:
        """The sun's colour temperature: given, or 2500 K at the horizon rising linearly to 5800 K at 30 deg."""
        if self.sun_temperature_k is not None:
            return self.sun_temperature_k
        return 2500.0 + 3300.0 * min(1.0, max(0.0, self.sun_elevation_deg) / 30.0)


@dataclass(frozen=True)
class World:
    color: Vec3 = (0.05, 0.05, 0.05)
    strength: float = 1.0
    sky: Sky | None = None                 # a physical sky replaces the constant colour


@dataclass(frozen=True)
class Texture:
    """A procedural base colour: `type` (render.materials.TEXTURES), its colours, coordinates and parameters.

    Parameters read as attributes (`t.scale`, `t.ring_spacing`); `params` holds every parameter of the
    type with defaults filled in, so equal textures compare equal. Build one with `Texture.make`.
    """
    type: str
    color1: Vec3
    color2: Vec3
    color3: Vec3 | None = None                       # brick / tile: mortar or grout
    coords: str = "object"
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, type: str, color1: Vec3, color2: Vec3, color3: Vec3 | None = None, coords: str | None = None,
             **params: Any) -> "Texture":
        from render.materials import TEXTURES

        tt = TEXTURES[type]
        unknown = sorted(set(params) - set(tt.params))
        if unknown:
            raise TypeError(f"texture {type!r} has no parameter(s) {unknown}")
        full = tuple((k, params.get(k, p.default)) for k, p in tt.params.items())
        return cls(type=type, color1=tuple(color1), color2=tuple(color2),
                   color3=None if color3 is None else tuple(color3), coords=coords or tt.coords, params=full)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from render.materials import TEXTURES

        params = dict(object.__getattribute__(self, "params"))
        if name in params:
            return params[name]
        tt = TEXTURES.get(object.__getattribute__(self, "type"))
        if tt is not None and name in tt.params:
            return tt.params[name].default
        raise AttributeError(f"texture {object.__getattribute__(self, 'type')!r} has no parameter {name!r}")

    @property
    def colors(self) -> tuple[Vec3, ...]:
        return tuple(c for c in (self.color1, self.color2, self.color3) if c is not None)


@dataclass(frozen=True)
class Material:
    base_color: Vec3 | Texture
    roughness: float | tuple[float, float] = 0.5    # a pair: from the texture's factor (materials.py)
    metallic: float = 0.0
    ior: float = 1.5
    specular: float = 0.5

    @property
    def constant_color(self) -> Vec3 | None:
        return None if isinstance(self.base_color, Texture) else self.base_color


@dataclass(frozen=True)
class Object:
    name: str
    primitive: str
    material: Material
    location: Vec3 = (0.0, 0.0, 0.0)
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)
    scale: Vec3 = (1.0, 1.0, 1.0)
    smooth: bool | None = None      # None: smooth for sphere, cylinder, cone, torus, lathe
    file: str | None = None         # primitive "mesh": absolute path after loading
    bevel: float = 0.0              # cube: rounded edges of this radius in metres
    profile: tuple[tuple[float, float], ...] | None = None   # lathe: (radius, z) points, revolved about z
    segments: int = 64              # lathe: steps around the axis
    group: str | None = None        # the composite object (table, room, ...) this part was built from

    @property
    def shade_smooth(self) -> bool:
        return self.smooth if self.smooth is not None else self.primitive in ("sphere", "cylinder", "cone", "torus",
                                                                              "lathe")


@dataclass(frozen=True)
class Light:
    type: str
    location: Vec3
    look_at: Vec3 = (0.0, 0.0, 0.0)
    color: Vec3 = (1.0, 1.0, 1.0)
    strength: float = 1.0
    size: float | None = None
    spot_size_deg: float = 45.0
    spot_blend: float = 0.15
    temperature_k: float | None = None   # colour temperature: the colour is multiplied by this black body's
    shape: str = "square"                # area: square | rectangle | disk | ellipse
    size_y: float | None = None          # area rectangle / ellipse: the second side (m)
    spread_deg: float = 180.0            # area: 180 = bare panel; smaller = a softbox with a grid

    @property
    def size_or_default(self) -> float:
        if self.size is not None:
            return self.size
        return {"sun": 2.0, "point": 0.1, "spot": 0.1, "area": 1.0}[self.type]


@dataclass(frozen=True)
class Portal:
    """A light portal over a window opening (Cycles samples the sky through it: far less noise indoors)."""
    location: Vec3
    look_at: Vec3
    size: float
    size_y: float


@dataclass(frozen=True)
class Lighting:
    name: str
    description: str
    lights: tuple[Light, ...]
    world: World | None = None      # overrides the scene's world for this lighting


@dataclass(frozen=True)
class Scene:
    id: str
    description: str
    camera: Camera
    objects: tuple[Object, ...]
    lightings: tuple[Lighting, ...]
    world: World = field(default_factory=World)
    portals: tuple[Portal, ...] = ()        # from room windows (render.assets)
    source: str | None = field(default=None, compare=False)  # the file it was loaded from
    # provenance of a colour variant (render.recolor): {"seed", "variant", "range"}; None for originals
    recolor: dict | None = field(default=None, compare=False, hash=False)

    def lighting(self, name: str) -> Lighting:
        for lt in self.lightings:
            if lt.name == name:
                return lt
        raise KeyError(f"scene {self.id!r} has no lighting {name!r}; it has {[l.name for l in self.lightings]}")

    def world_for(self, lighting: Lighting) -> World:
        return lighting.world or self.world

    @property
    def base_id(self) -> str:
        """The scene id without a colour-variant suffix ("cornell_box~c1" -> "cornell_box")."""
        return split_variant(self.id)[0]

    @property
    def variant(self) -> int:
        """0 for a scene's own colours, k for its colour variant k (render.recolor)."""
        return split_variant(self.id)[1]


# --------------------------------------------------------------------------------------- parsing
class _Ctx:
    """Carries the file name so every error message says where it came from."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, path: str, msg: str) -> SceneError:
        return SceneError(f"{self.where}: {path}: {msg}" if path else f"{self.where}: {msg}")


def _keys(ctx: _Ctx, d: Any, path: str, required: Sequence[str], optional: Sequence[str]) -> dict:
    if not isinstance(d, dict):
        raise ctx.fail(path, f"expected an object, got {type(d).__name__}")
    for k in required:
        if k not in d:
            raise ctx.fail(path, f"missing required field {k!r}")
    unknown = sorted(set(d) - set(required) - set(optional))
    if unknown:
        raise ctx.fail(f"{path}.{unknown[0]}" if path else unknown[0],
                       f"unknown field (allowed: {', '.join(list(required) + list(optional))})")
    return d


def _num(ctx: _Ctx, v: Any, path: str, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ctx.fail(path, f"expected a finite number, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ctx.fail(path, f"{v!r} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and v > hi:
        raise ctx.fail(path, f"{v!r} must be <= {hi}")
    return float(v)


def _vec3(ctx: _Ctx, v: Any, path: str) -> Vec3:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ctx.fail(path, f"expected a list of 3 numbers, got {v!r}")
    return tuple(_num(ctx, x, f"{path}[{i}]") for i, x in enumerate(v))  # type: ignore[return-value]


def _color(ctx: _Ctx, v: Any, path: str) -> Vec3:
    c = _vec3(ctx, v, path)
    for i, x in enumerate(c):
        if not 0.0 <= x <= 1.0:
            raise ctx.fail(f"{path}[{i}]", f"colour component {x!r} outside [0, 1] (linear RGB)")
    return c


def _text(ctx: _Ctx, v: Any, path: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ctx.fail(path, f"expected a non-empty string, got {v!r}")
    return v.strip()


def _ident(ctx: _Ctx, v: Any, path: str) -> str:
    s = _text(ctx, v, path)
    if not ID_RE.match(s):
        raise ctx.fail(path, f"{s!r} must be snake_case ([a-z0-9] words joined by single '_')")
    return s


def _choice(ctx: _Ctx, v: Any, path: str, options: Sequence[str], what: str) -> str:
    if v not in options:
        raise ctx.fail(path, f"unknown {what} {v!r} (allowed: {', '.join(options)})")
    return v


SKY_MODELS = ("nishita", "multiple_scattering")


def _sky(ctx: _Ctx, d: Any, path: str) -> Sky:
    _keys(ctx, d, path, [], ["model", "sun_elevation_deg", "sun_azimuth_deg", "strength", "air", "aerosol", "ozone",
                             "altitude_m", "sun_strength", "sun_angle_deg", "sun_temperature_k"])
    t = d.get("sun_temperature_k")
    return Sky(
        model=_choice(ctx, d.get("model", "nishita"), f"{path}.model", SKY_MODELS, "sky model"),
        sun_elevation_deg=_num(ctx, d.get("sun_elevation_deg", 45.0), f"{path}.sun_elevation_deg", -10.0, 90.0),
        sun_azimuth_deg=_num(ctx, d.get("sun_azimuth_deg", 0.0), f"{path}.sun_azimuth_deg", -360.0, 360.0),
        strength=_num(ctx, d.get("strength", 1.0), f"{path}.strength", 0.0, 1000.0),
        air=_num(ctx, d.get("air", 1.0), f"{path}.air", 0.0, 10.0),
        aerosol=_num(ctx, d.get("aerosol", 1.0), f"{path}.aerosol", 0.0, 10.0),
        ozone=_num(ctx, d.get("ozone", 1.0), f"{path}.ozone", 0.0, 10.0),
        altitude_m=_num(ctx, d.get("altitude_m", 0.0), f"{path}.altitude_m", 0.0, 60000.0),
        sun_strength=_num(ctx, d.get("sun_strength", 100.0), f"{path}.sun_strength", 0.0, 100000.0),
        sun_angle_deg=_num(ctx, d.get("sun_angle_deg", 0.545), f"{path}.sun_angle_deg", 0.0, 30.0),
        sun_temperature_k=None if t is None else _num(ctx, t, f"{path}.sun_temperature_k", 1000.0, 40000.0),
    )


def _world(ctx: _Ctx, d: Any, path: str) -> World:
    _keys(ctx, d, path, [], ["color", "strength", "sky"])
    return World(color=_color(ctx, d.get("color", World.color), f"{path}.color"),
                 strength=_num(ctx, d.get("strength", 1.0), f"{path}.strength", lo=0.0),
                 sky=_sky(ctx, d["sky"], f"{path}.sky") if d.get("sky") is not None else None)


def _param(ctx: _Ctx, v: Any, path: str, p) -> Any:
    """Validate one parameter of a texture or composite against its render.materials.Param."""
    kind = p.kind
    if kind == "choice":
        return _choice(ctx, v, path, p.choices, "value")
    if kind == "bool":
        if not isinstance(v, bool):
            raise ctx.fail(path, f"expected true or false, got {v!r}")
        return v
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ctx.fail(path, f"expected an integer, got {v!r}")
        _num(ctx, v, path, p.lo, p.hi)
        return int(v)
    if kind == "vec3":
        vec = _vec3(ctx, v, path)
    elif kind == "vec2":
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ctx.fail(path, f"expected a list of 2 numbers, got {v!r}")
        vec = tuple(_num(ctx, x, f"{path}[{i}]") for i, x in enumerate(v))
    elif kind == "number":
        return _num(ctx, v, path, p.lo, p.hi, lo_open=p.lo == 0.0 and p.hi is None)
    elif kind == "colors":
        if not isinstance(v, list) or not v:
            raise ctx.fail(path, "expected a non-empty list of colours")
        return tuple(_color(ctx, c, f"{path}[{i}]") for i, c in enumerate(v))
    elif kind == "profile":
        if not isinstance(v, list) or len(v) < 2:
            raise ctx.fail(path, "expected a list of >= 2 [radius, z] points")
        pts = []
        for i, q in enumerate(v):
            if not isinstance(q, (list, tuple)) or len(q) != 2:
                raise ctx.fail(f"{path}[{i}]", f"expected [radius, z], got {q!r}")
            pts.append((_num(ctx, q[0], f"{path}[{i}][0]", 0.0, 100.0), _num(ctx, q[1], f"{path}[{i}][1]")))
        return tuple(pts)
    elif kind in ("window", "door"):
        return _opening(ctx, v, path, kind)
    elif kind == "walls":
        if not isinstance(v, list):
            raise ctx.fail(path, "expected a list of wall names")
        return tuple(_choice(ctx, x, f"{path}[{i}]", ("back", "front", "left", "right"), "wall")
                     for i, x in enumerate(v))
    else:  # pragma: no cover - a schema typo
        raise ctx.fail(path, f"internal: unknown parameter kind {kind!r}")
    if p.lo is not None or p.hi is not None:
        for i, x in enumerate(vec):
            _num(ctx, x, f"{path}[{i}]", p.lo, p.hi)
    return vec


def _opening(ctx: _Ctx, v: Any, path: str, kind: str) -> dict | None:
    if v is None:
        return None
    opt = ["wall", "center", "size"] + (["sill"] if kind == "window" else [])
    _keys(ctx, v, path, ["wall"], opt)
    size = v.get("size", [1.2, 1.2] if kind == "window" else [0.9, 2.05])
    if not isinstance(size, list) or len(size) != 2:
        raise ctx.fail(f"{path}.size", f"expected [width, height], got {size!r}")
    out = {"wall": _choice(ctx, v["wall"], f"{path}.wall", ("back", "front", "left", "right"), "wall"),
           "center": _num(ctx, v.get("center", 0.0), f"{path}.center", -50.0, 50.0),
           "size": [_num(ctx, size[0], f"{path}.size[0]", 0.2, 20.0), _num(ctx, size[1], f"{path}.size[1]", 0.2, 20.0)]}
    if kind == "window":
        out["sill"] = _num(ctx, v.get("sill", 0.9), f"{path}.sill", 0.0, 20.0)
    return out


def _params(ctx: _Ctx, d: dict, path: str, schema: dict, what: str) -> dict:
    """Validated parameters (defaults filled in) for a texture or composite; unknown names are errors."""
    out = {}
    for name, p in schema.items():
        out[name] = _param(ctx, d[name], f"{path}.{name}", p) if name in d else _default(p)
    return out


def _default(p) -> Any:
    v = p.default
    if p.kind == "colors":
        return tuple(tuple(c) for c in v)
    if p.kind == "profile":
        return tuple(tuple(q) for q in v)
    if p.kind in ("vec2", "vec3", "walls"):
        return tuple(v)
    return v


def _texture(ctx: _Ctx, d: Any, path: str) -> Texture:
    from render.materials import COORDS, TEXTURES as TT

    if not isinstance(d, dict):
        raise ctx.fail(path, f"expected an object, got {type(d).__name__}")
    if "type" not in d:
        raise ctx.fail(path, "missing required field 'type'")
    t = _choice(ctx, d["type"], f"{path}.type", TEXTURES, "texture")
    tt = TT[t]
    _keys(ctx, d, path, ["type", *tt.colors], ["coords", *tt.params])
    colors = [_color(ctx, d[c], f"{path}.{c}") for c in tt.colors]
    params = _params(ctx, d, path, tt.params, f"texture {t!r}")
    return Texture(type=t, color1=colors[0], color2=colors[1], color3=colors[2] if len(colors) > 2 else None,
                   coords=_choice(ctx, d.get("coords", tt.coords), f"{path}.coords", COORDS, "texture coordinates"),
                   params=tuple(params.items()))


def _material(ctx: _Ctx, d: Any, path: str) -> Material:
    _keys(ctx, d, path, ["base_color"], ["roughness", "metallic", "ior", "specular"])
    bc = d["base_color"]
    base = _texture(ctx, bc, f"{path}.base_color") if isinstance(bc, dict) else _color(ctx, bc, f"{path}.base_color")
    r = d.get("roughness", 0.5)
    if isinstance(r, list):
        if len(r) != 2:
            raise ctx.fail(f"{path}.roughness", f"expected a number or [r1, r2], got {r!r}")
        if not isinstance(base, Texture):
            raise ctx.fail(f"{path}.roughness", "a roughness pair [r1, r2] follows a texture's pattern; this "
                                                "base_color is a constant colour")
        rough: float | tuple[float, float] = (_num(ctx, r[0], f"{path}.roughness[0]", 0.0, 1.0),
                                              _num(ctx, r[1], f"{path}.roughness[1]", 0.0, 1.0))
    else:
        rough = _num(ctx, r, f"{path}.roughness", 0.0, 1.0)
    return Material(
        base_color=base, roughness=rough,
        metallic=_num(ctx, d.get("metallic", 0.0), f"{path}.metallic", 0.0, 1.0),
        ior=_num(ctx, d.get("ior", 1.5), f"{path}.ior", 1.0, 10.0),
        specular=_num(ctx, d.get("specular", 0.5), f"{path}.specular", 0.0, 1.0),
    )


def _object(ctx: _Ctx, d: Any, path: str, base_dir: Path | None) -> Object:
    _keys(ctx, d, path, ["name", "primitive", "material"],
          ["location", "rotation_deg", "scale", "smooth", "file", "bevel", "profile", "segments", "group"])
    prim = _choice(ctx, d["primitive"], f"{path}.primitive", PRIMITIVES + COMPOSITE_NAMES, "primitive")
    sc = d.get("scale", [1, 1, 1])
    if isinstance(sc, (int, float)) and not isinstance(sc, bool):
        sc = [sc, sc, sc]
    scale = _vec3(ctx, sc, f"{path}.scale")
    for i, s in enumerate(scale):
        if s <= 0:
            raise ctx.fail(f"{path}.scale[{i}]", f"{s!r} must be > 0")
    smooth = d.get("smooth")
    if smooth is not None and not isinstance(smooth, bool):
        raise ctx.fail(f"{path}.smooth", f"expected true or false, got {smooth!r}")
    file = None
    if prim == "mesh":
        if "file" not in d:
            raise ctx.fail(path, "primitive 'mesh' needs a 'file' (.obj, .ply or .stl, relative to the spec)")
        fp = Path(_text(ctx, d["file"], f"{path}.file"))
        if not fp.is_absolute() and base_dir is not None:
            fp = base_dir / fp
        if fp.suffix.lower() not in (".obj", ".ply", ".stl"):
            raise ctx.fail(f"{path}.file", f"unsupported mesh format {fp.suffix!r} (use .obj, .ply or .stl)")
        if not fp.is_file():
            raise ctx.fail(f"{path}.file", f"mesh file not found: {fp}")
        file = str(fp.resolve())
    elif "file" in d:
        raise ctx.fail(f"{path}.file", "only primitive 'mesh' takes a file")
    bevel = 0.0
    if "bevel" in d:
        if prim != "cube":
            raise ctx.fail(f"{path}.bevel", "only primitive 'cube' takes a bevel")
        bevel = _num(ctx, d["bevel"], f"{path}.bevel", 0.0, 1.0)
        if bevel >= min(scale):
            raise ctx.fail(f"{path}.bevel", f"{bevel!r} m must be smaller than the box's smallest half-side "
                                            f"({min(scale):g} m)")
    profile = None
    if prim == "lathe":
        if "profile" not in d:
            raise ctx.fail(path, "primitive 'lathe' needs a 'profile' ([radius, z] points revolved about z)")
        profile = _param(ctx, d["profile"], f"{path}.profile", _PROFILE)
    elif "profile" in d or "segments" in d:
        raise ctx.fail(f"{path}.profile" if "profile" in d else f"{path}.segments",
                       "only primitive 'lathe' takes a profile and segments")
    segments = d.get("segments", 64)
    if isinstance(segments, bool) or not isinstance(segments, int) or not 3 <= segments <= 512:
        raise ctx.fail(f"{path}.segments", f"expected an integer in 3..512, got {segments!r}")
    group = d.get("group")
    if group is not None:
        group = _text(ctx, group, f"{path}.group")
    return Object(
        name=_text(ctx, d["name"], f"{path}.name"), primitive=prim,
        material=_material(ctx, d["material"], f"{path}.material"),
        location=_vec3(ctx, d.get("location", [0, 0, 0]), f"{path}.location"),
        rotation_deg=_vec3(ctx, d.get("rotation_deg", [0, 0, 0]), f"{path}.rotation_deg"),
        scale=scale, smooth=smooth, file=file, bevel=bevel, profile=profile, segments=segments, group=group,
    )


def _composite(ctx: _Ctx, d: dict, path: str) -> tuple[list[dict], list[Portal]]:
    """Expand a composite object (render.assets) into the JSON dicts of its parts, placed in the scene."""
    from render.assets import COMPOSITES, euler_to_matrix, expand, matrix_to_euler

    kind = d["primitive"]
    ct = COMPOSITES[kind]
    _keys(ctx, d, path, ["name", "primitive", "material"], ["params", "materials", "location", "rotation_deg",
                                                             "scale"])
    name = _text(ctx, d["name"], f"{path}.name")
    params_d = d.get("params", {})
    if not isinstance(params_d, dict):
        raise ctx.fail(f"{path}.params", "expected an object")
    _keys(ctx, params_d, f"{path}.params", [], list(ct.params))
    params = _params(ctx, params_d, f"{path}.params", ct.params, kind)
    base_mat = d["material"]
    _material(ctx, base_mat, f"{path}.material")                 # validated here, so errors name this path
    mats = d.get("materials", {})
    if not isinstance(mats, dict):
        raise ctx.fail(f"{path}.materials", "expected an object {part group: material}")
    for g, m in mats.items():
        if g not in ct.groups:
            raise ctx.fail(f"{path}.materials.{g}", f"unknown part group for a {kind} (allowed: {', '.join(ct.groups)})")
        _material(ctx, m, f"{path}.materials.{g}")
    sc = d.get("scale", 1.0)
    if isinstance(sc, bool) or not isinstance(sc, (int, float)):
        raise ctx.fail(f"{path}.scale", f"a {kind} takes one number (uniform scale), got {sc!r}")
    sc = _num(ctx, sc, f"{path}.scale", 0.0, 100.0, lo_open=True)
    loc = np.array(_vec3(ctx, d.get("location", [0, 0, 0]), f"{path}.location"))
    rot = euler_to_matrix(_vec3(ctx, d.get("rotation_deg", [0, 0, 0]), f"{path}.rotation_deg"))
    try:
        parts, portals = expand(kind, params)
    except (ValueError, IndexError) as e:
        raise ctx.fail(f"{path}.params", f"cannot build this {kind}: {e}") from None
    out = []
    for part in parts:
        mat = json.loads(json.dumps(mats.get(part.group, base_mat)))
        if part.base_color is not None:            # e.g. a book's own colour
            mat["base_color"] = list(part.base_color)
            if isinstance(mat.get("roughness"), list):
                mat["roughness"] = _g6(sum(mat["roughness"]) / 2)
        prot = matrix_to_euler(rot @ euler_to_matrix(part.rotation_deg))
        obj: dict[str, Any] = {
            "name": f"{name}.{part.name}", "primitive": part.primitive, "group": name,
            "location": [_g6(v) for v in loc + rot @ (sc * np.array(part.location))],
            "rotation_deg": [_g6(v) for v in prot], "scale": [_g6(sc * v) for v in part.scale], "material": mat}
        if part.bevel:
            obj["bevel"] = _g6(min(sc * part.bevel, 0.99 * sc * min(part.scale)))
        if part.profile is not None:
            obj["primitive"] = "lathe"
            obj["profile"] = [[_g6(sc * r), _g6(sc * z)] for r, z in part.profile]
            obj["scale"] = [1.0, 1.0, 1.0]
        out.append(obj)
    placed = [Portal(location=tuple(_g6(v) for v in loc + rot @ (sc * np.array(q.location))),
                     look_at=tuple(_g6(v) for v in loc + rot @ (sc * np.array(q.look_at))),
                     size=_g6(sc * q.size), size_y=_g6(sc * q.size_y)) for q in portals]
    return out, placed


def _g6(v: float) -> float:
    """Round to 6 significant digits (what the JSON writer keeps), so an expanded spec reads back equal."""
    v = float(v)
    return 0.0 if abs(v) < 1e-9 else float(f"{v:.6g}")


def _light(ctx: _Ctx, d: Any, path: str) -> Light:
    _keys(ctx, d, path, ["type", "location"],
          ["look_at", "color", "strength", "size", "spot_size_deg", "spot_blend", "temperature_k", "shape", "size_y",
           "spread_deg"])
    typ = _choice(ctx, d["type"], f"{path}.type", LIGHT_TYPES, "light type")
    loc = _vec3(ctx, d["location"], f"{path}.location")
    look = _vec3(ctx, d.get("look_at", [0, 0, 0]), f"{path}.look_at")
    if np.linalg.norm(np.subtract(look, loc)) < 1e-6:
        raise ctx.fail(f"{path}.look_at", "must differ from location (it sets the light's direction)")
    for k in ("shape", "size_y", "spread_deg"):
        if k in d and typ != "area":
            raise ctx.fail(f"{path}.{k}", "only area lights have a shape, size_y and spread_deg")
    shape = _choice(ctx, d.get("shape", "square"), f"{path}.shape", AREA_SHAPES, "area light shape")
    size_y = d.get("size_y")
    if size_y is not None and shape not in ("rectangle", "ellipse"):
        raise ctx.fail(f"{path}.size_y", f"only rectangle and ellipse area lights take size_y (shape is {shape!r})")
    size = d.get("size")
    t = d.get("temperature_k")
    return Light(
        type=typ, location=loc, look_at=look,
        color=_color(ctx, d.get("color", [1, 1, 1]), f"{path}.color"),
        strength=_num(ctx, d.get("strength", 1.0), f"{path}.strength", lo=0.0),
        size=None if size is None else _num(ctx, size, f"{path}.size", lo=0.0),
        spot_size_deg=_num(ctx, d.get("spot_size_deg", 45.0), f"{path}.spot_size_deg", 1.0, 180.0),
        spot_blend=_num(ctx, d.get("spot_blend", 0.15), f"{path}.spot_blend", 0.0, 1.0),
        temperature_k=None if t is None else _num(ctx, t, f"{path}.temperature_k", 1000.0, 40000.0),
        shape=shape, size_y=None if size_y is None else _num(ctx, size_y, f"{path}.size_y", lo=0.0, lo_open=True),
        spread_deg=_num(ctx, d.get("spread_deg", 180.0), f"{path}.spread_deg", 1.0, 180.0),
    )


def _lighting(ctx: _Ctx, d: Any, path: str) -> Lighting:
    _keys(ctx, d, path, ["name", "description", "lights"], ["world"])
    lights = d["lights"]
    if not isinstance(lights, list):
        raise ctx.fail(f"{path}.lights", "expected a list of lights")
    world = _world(ctx, d["world"], f"{path}.world") if "world" in d else None
    parsed = tuple(_light(ctx, l, f"{path}.lights[{i}]") for i, l in enumerate(lights))
    if not parsed and (world is None or (world.strength == 0 and world.sky is None)):
        raise ctx.fail(f"{path}.lights", "a lighting needs at least one light or a world with strength > 0")
    return Lighting(name=_ident(ctx, d["name"], f"{path}.name"),
                    description=_text(ctx, d["description"], f"{path}.description"),
                    lights=parsed, world=world)


def _recolor_record(ctx: _Ctx, d: dict, sid: str) -> dict | None:
    if "recolor" not in d:
        return None
    rec = _keys(ctx, d["recolor"], "recolor", ["seed", "variant"], ["range", "mode", "colours"])
    if rec.get("mode", "hsv") not in ("hsv", "chroma"):
        raise ctx.fail("recolor.mode", f"expected 'hsv' or 'chroma', got {rec['mode']!r}")
    if split_variant(sid)[1] == 0:
        raise ctx.fail("recolor", "only a colour variant (id ending in ~c<k>) records how it was recoloured")
    for k in ("seed", "variant"):
        if not isinstance(rec[k], int) or isinstance(rec[k], bool) or rec[k] < 0:
            raise ctx.fail(f"recolor.{k}", f"expected an integer >= 0, got {rec[k]!r}")
    return dict(rec)


def _list(ctx: _Ctx, v: Any, path: str) -> list:
    if not isinstance(v, list):
        raise ctx.fail(path, f"expected a list, got {type(v).__name__}")
    return v


def _portal(ctx: _Ctx, d: Any, path: str) -> Portal:
    _keys(ctx, d, path, ["location", "look_at", "size", "size_y"], [])
    return Portal(location=_vec3(ctx, d["location"], f"{path}.location"),
                  look_at=_vec3(ctx, d["look_at"], f"{path}.look_at"),
                  size=_num(ctx, d["size"], f"{path}.size", 0.0, lo_open=True),
                  size_y=_num(ctx, d["size_y"], f"{path}.size_y", 0.0, lo_open=True))


def parse_scene(d: Any, where: str = "<scene>", base_dir: Path | None = None) -> Scene:
    """Validate a decoded spec and build a `Scene`; errors name `where` and the field."""
    ctx = _Ctx(where)
    _keys(ctx, d, "", ["id", "description", "camera", "objects", "lightings"], ["world", "doc", "recolor", "portals"])
    cam = d["camera"]
    _keys(ctx, cam, "camera", ["location"], ["look_at", "lens_mm", "sensor_mm"])
    camera = Camera(location=_vec3(ctx, cam["location"], "camera.location"),
                    look_at=_vec3(ctx, cam.get("look_at", [0, 0, 0]), "camera.look_at"),
                    lens_mm=_num(ctx, cam.get("lens_mm", 35.0), "camera.lens_mm", lo=0.0, lo_open=True),
                    sensor_mm=_num(ctx, cam.get("sensor_mm", 36.0), "camera.sensor_mm", lo=0.0, lo_open=True))
    if np.linalg.norm(np.subtract(camera.look_at, camera.location)) < 1e-6:
        raise ctx.fail("camera.look_at", "must differ from camera.location")
    objs = d["objects"]
    if not isinstance(objs, list) or not objs:
        raise ctx.fail("objects", "expected a non-empty list of objects")
    parsed: list[Object] = []
    portals = [_portal(ctx, q, f"portals[{i}]") for i, q in enumerate(_list(ctx, d.get("portals", []), "portals"))]
    for i, o in enumerate(objs):
        if isinstance(o, dict) and o.get("primitive") in COMPOSITE_NAMES:
            parts, more = _composite(ctx, o, f"objects[{i}]")
            parsed += [_object(ctx, q, f"objects[{i}]({q['name']})", base_dir) for q in parts]
            portals += more
        else:
            parsed.append(_object(ctx, o, f"objects[{i}]", base_dir))
    if len(parsed) > 255:
        raise ctx.fail("objects", f"at most 255 objects, composite parts counted (object_index.png is 8-bit), "
                                  f"got {len(parsed)}")
    objects = tuple(parsed)
    seen: set[str] = set()
    for i, o in enumerate(objects):
        if o.name in seen:
            raise ctx.fail(f"objects[{i}].name", f"duplicate object name {o.name!r}")
        seen.add(o.name)
    lts = d["lightings"]
    if not isinstance(lts, list) or not lts:
        raise ctx.fail("lightings", "expected a non-empty list of lightings")
    lightings = tuple(_lighting(ctx, l, f"lightings[{i}]") for i, l in enumerate(lts))
    names: set[str] = set()
    for i, l in enumerate(lightings):
        if l.name in names:
            raise ctx.fail(f"lightings[{i}].name", f"duplicate lighting name {l.name!r}")
        names.add(l.name)
    sid = _text(ctx, d["id"], "id")
    if not SCENE_ID_RE.match(sid):
        raise ctx.fail("id", f"{sid!r} must be snake_case ([a-z0-9] words joined by single '_'), optionally "
                             "followed by ~c<k> for colour variant k")
    return Scene(id=sid, description=_text(ctx, d["description"], "description"),
                 camera=camera, objects=objects, lightings=lightings,
                 world=_world(ctx, d["world"], "world") if "world" in d else World(), portals=tuple(portals),
                 source=None if where.startswith("<") else where, recolor=_recolor_record(ctx, d, sid))


def load_scene(path: str | Path) -> Scene:
    """Load and validate one JSON spec file."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"{path}: scene file not found")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SceneError(f"{path}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SceneError(f"{path}: cannot read: {e}") from None
    scene = parse_scene(d, where=str(path), base_dir=path.parent)
    if scene.id != path.stem:
        raise SceneError(f"{path}: id: {scene.id!r} must equal the file name ({path.stem!r})")
    return scene


def load_scenes(path: str | Path, only: Sequence[str] | None = None) -> list[Scene]:
    """Load a spec file or every *.json in a folder, sorted by id; `only` keeps those ids (in any order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise SceneError(f"{path}: no *.json scene specs in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise SceneError(f"{path}: no such scene file or folder")
    scenes = sorted((load_scene(f) for f in files), key=lambda s: s.id)
    ids = [s.id for s in scenes]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise SceneError(f"{path}: duplicate scene ids {dup}")
    if only:
        missing = [i for i in only if i not in ids]
        if missing:
            raise SceneError(f"{path}: unknown scene id(s) {missing}; available: {', '.join(ids)}")
        scenes = [s for s in scenes if s.id in set(only)]
    return scenes


# ------------------------------------------------------------------------------------- writing
def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.6g}") if v == v else v
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _world_dict(w: World) -> dict:
    d: dict[str, Any] = {"color": w.color, "strength": w.strength}
    if w.sky is not None:
        k = w.sky
        d["sky"] = {"model": k.model, "sun_elevation_deg": k.sun_elevation_deg, "sun_azimuth_deg": k.sun_azimuth_deg,
                    "strength": k.strength, "air": k.air, "aerosol": k.aerosol, "ozone": k.ozone,
                    "altitude_m": k.altitude_m, "sun_strength": k.sun_strength, "sun_angle_deg": k.sun_angle_deg}
        if k.sun_temperature_k is not None:
            d["sky"]["sun_temperature_k"] = k.sun_temperature_k
    return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def scene_to_dict(scene: Scene) -> dict:
    """The JSON form of a scene (defaults written out, composites as their parts), which `parse_scene` reads
    back unchanged."""

    def tex(t: Texture) -> dict:
        from render.materials import TEXTURES as TT

        d: dict[str, Any] = {"type": t.type}
        for c in TT[t.type].colors:
            d[c] = getattr(t, c)
        d["coords"] = t.coords
        d.update({k: _jsonable(v) for k, v in t.params})
        return d

    def mat(m: Material) -> dict:
        bc = tex(m.base_color) if isinstance(m.base_color, Texture) else m.base_color
        r = list(m.roughness) if isinstance(m.roughness, tuple) else m.roughness
        return {"base_color": bc, "roughness": r, "metallic": m.metallic, "ior": m.ior, "specular": m.specular}

    def obj(o: Object) -> dict:
        d: dict[str, Any] = {"name": o.name, "primitive": o.primitive, "location": o.location,
                             "rotation_deg": o.rotation_deg, "scale": o.scale, "material": mat(o.material)}
        if o.smooth is not None:
            d["smooth"] = o.smooth
        if o.file is not None:
            d["file"] = o.file
        if o.bevel:
            d["bevel"] = o.bevel
        if o.primitive == "lathe":
            d["profile"] = [list(q) for q in o.profile or ()]
            d["segments"] = o.segments
        if o.group is not None:
            d["group"] = o.group
        return d

    def light(l: Light) -> dict:
        d: dict[str, Any] = {"type": l.type, "location": l.location, "look_at": l.look_at, "color": l.color,
                             "strength": l.strength}
        if l.size is not None:
            d["size"] = l.size
        if l.type == "spot":
            d.update(spot_size_deg=l.spot_size_deg, spot_blend=l.spot_blend)
        if l.temperature_k is not None:
            d["temperature_k"] = l.temperature_k
        if l.type == "area" and (l.shape != "square" or l.spread_deg != 180.0):
            d.update(shape=l.shape, spread_deg=l.spread_deg)
            if l.size_y is not None:
                d["size_y"] = l.size_y
        return d

    def lighting(l: Lighting) -> dict:
        d: dict[str, Any] = {"name": l.name, "description": l.description, "lights": [light(x) for x in l.lights]}
        if l.world is not None:
            d["world"] = _world_dict(l.world)
        return d

    out = {
        "id": scene.id, "description": scene.description,
        "camera": {"location": scene.camera.location, "look_at": scene.camera.look_at,
                   "lens_mm": scene.camera.lens_mm, "sensor_mm": scene.camera.sensor_mm},
        "world": _world_dict(scene.world),
        "objects": [obj(o) for o in scene.objects],
        "lightings": [lighting(l) for l in scene.lightings],
    }
    if scene.portals:
        out["portals"] = [{"location": q.location, "look_at": q.look_at, "size": q.size, "size_y": q.size_y}
                          for q in scene.portals]
    if scene.recolor is not None:
        out["recolor"] = scene.recolor
    return json.loads(json.dumps(out), parse_float=lambda s: _clean(float(s)))


def dumps_scene(scene: Scene) -> str:
    """Readable JSON: short number lists stay on one line."""
    text = json.dumps(scene_to_dict(scene), indent=2)
    # fold [\n 1,\n 2,\n 3\n] into [1, 2, 3] for readability
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def save_scene(scene: Scene, path: str | Path) -> Path:
    """Write a scene spec as JSON atomically (it reads back to an equal `Scene`)."""
    from render.imageio import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(dumps_scene(scene), encoding="utf-8")
    return Path(path)
