"""Scene specs: frozen dataclasses, JSON load + validation, and a seeded scene generator. No bpy.

    from render.scene import load_scenes, load_scene, generate_scenes, scene_to_dict
    scenes = load_scenes("scenes/")                  # every *.json, sorted by id, ids unique
    scene = load_scene("scenes/red_cube_table.json") # SceneError names the file and the field
    extra = generate_scenes(10, seed=0)              # same seed -> same scenes

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

__all__ = [
    "SceneError", "Camera", "World", "Texture", "Material", "Object", "Light", "Lighting", "Scene",
    "PRIMITIVES", "TEXTURES", "LIGHT_TYPES", "load_scene", "load_scenes", "parse_scene",
    "scene_to_dict", "dumps_scene", "save_scene", "generate_scenes", "SPEC_DOC", "split_variant", "variant_id",
]

PRIMITIVES = ("plane", "cube", "sphere", "cylinder", "cone", "torus", "mesh")
TEXTURES = ("checker", "stripes", "noise")
LIGHT_TYPES = ("sun", "point", "area", "spot")
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

SPEC_DOC = """\
Scene spec (JSON). Lengths in metres, angles in degrees, colours linear Rec.709 RGB in [0, 1].
  id            snake_case, unique; folder names are <id>__<lighting name>; "<base>~c<k>" marks colour
                variant k of scene <base> (what --recolor writes; same scene, other colours)
  description   one sentence: objects, colours/patterns, setting; no lighting words
  camera        location [3], look_at [3], lens_mm (35), sensor_mm (36)
  world         color [3] (0.05 grey), strength (1.0): background and ambient light
  objects[]     name (unique), primitive: plane (2x2 m) | cube (2 m) | sphere (r 1) |
                cylinder (r 1, h 2) | cone (r 1, h 2) | torus (R 1, r 0.25) | mesh (file: .obj/.ply/.stl,
                relative to the spec, vertex coordinates used as they are, Z up), location [3], rotation_deg [3] (XYZ Euler), scale [3] or number,
                smooth (true for curved primitives), material
  material      base_color: [3] or a texture {type: checker | stripes | noise, color1 [3], color2 [3],
                scale (cells per unit), coords: object | world, axis (stripes: x|y|z), width (stripes:
                fraction of color1, 0.5), detail (noise, 2), offset [3] (noise)}; roughness (0.5),
                metallic (0), ior (1.5), specular (Principled 'Specular IOR Level', 0.5)
  lightings[]   >= 1 (default scenes have >= 2): name (snake_case, unique), description (the light
                only), lights[] and optional world override
  light         type: sun | point | area | spot, color [3] (1,1,1), strength (sun: W/m^2, others: W),
                location [3], look_at [3] (0,0,0; the sun shines along location -> look_at),
                size (sun: angular diameter in deg, point/spot: radius m, area: side m),
                spot_size_deg (45), spot_blend (0.15)
"""


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
class World:
    color: Vec3 = (0.05, 0.05, 0.05)
    strength: float = 1.0


@dataclass(frozen=True)
class Texture:
    type: str                       # checker | stripes | noise
    color1: Vec3
    color2: Vec3
    scale: float = 4.0
    coords: str = "object"          # object (moves with the object) | world
    axis: str = "x"                 # stripes only
    width: float = 0.5              # stripes only: fraction of each period in color1
    detail: float = 2.0             # noise only
    offset: Vec3 = (0.0, 0.0, 0.0)  # noise only: picks a different patch of the noise field


@dataclass(frozen=True)
class Material:
    base_color: Vec3 | Texture
    roughness: float = 0.5
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
    smooth: bool | None = None      # None: smooth for sphere, cylinder, cone, torus
    file: str | None = None         # primitive "mesh": absolute path after loading

    @property
    def shade_smooth(self) -> bool:
        return self.smooth if self.smooth is not None else self.primitive in ("sphere", "cylinder", "cone", "torus")


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

    @property
    def size_or_default(self) -> float:
        if self.size is not None:
            return self.size
        return {"sun": 2.0, "point": 0.1, "spot": 0.1, "area": 1.0}[self.type]


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


def _world(ctx: _Ctx, d: Any, path: str) -> World:
    _keys(ctx, d, path, [], ["color", "strength"])
    return World(color=_color(ctx, d.get("color", World.color), f"{path}.color"),
                 strength=_num(ctx, d.get("strength", 1.0), f"{path}.strength", lo=0.0))


def _texture(ctx: _Ctx, d: Any, path: str) -> Texture:
    _keys(ctx, d, path, ["type", "color1", "color2"], ["scale", "coords", "axis", "width", "detail", "offset"])
    t = _choice(ctx, d["type"], f"{path}.type", TEXTURES, "texture")
    return Texture(
        type=t, color1=_color(ctx, d["color1"], f"{path}.color1"), color2=_color(ctx, d["color2"], f"{path}.color2"),
        scale=_num(ctx, d.get("scale", 4.0), f"{path}.scale", lo=0.0, lo_open=True),
        coords=_choice(ctx, d.get("coords", "object"), f"{path}.coords", COORDS, "texture coordinates"),
        axis=_choice(ctx, d.get("axis", "x"), f"{path}.axis", ("x", "y", "z"), "stripe axis"),
        width=_num(ctx, d.get("width", 0.5), f"{path}.width", lo=0.0, hi=1.0),
        detail=_num(ctx, d.get("detail", 2.0), f"{path}.detail", lo=0.0, hi=15.0),
        offset=_vec3(ctx, d.get("offset", [0, 0, 0]), f"{path}.offset"),
    )


def _material(ctx: _Ctx, d: Any, path: str) -> Material:
    _keys(ctx, d, path, ["base_color"], ["roughness", "metallic", "ior", "specular"])
    bc = d["base_color"]
    base = _texture(ctx, bc, f"{path}.base_color") if isinstance(bc, dict) else _color(ctx, bc, f"{path}.base_color")
    return Material(
        base_color=base,
        roughness=_num(ctx, d.get("roughness", 0.5), f"{path}.roughness", 0.0, 1.0),
        metallic=_num(ctx, d.get("metallic", 0.0), f"{path}.metallic", 0.0, 1.0),
        ior=_num(ctx, d.get("ior", 1.5), f"{path}.ior", 1.0, 10.0),
        specular=_num(ctx, d.get("specular", 0.5), f"{path}.specular", 0.0, 1.0),
    )


def _object(ctx: _Ctx, d: Any, path: str, base_dir: Path | None) -> Object:
    _keys(ctx, d, path, ["name", "primitive", "material"],
          ["location", "rotation_deg", "scale", "smooth", "file"])
    prim = _choice(ctx, d["primitive"], f"{path}.primitive", PRIMITIVES, "primitive")
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
    return Object(
        name=_text(ctx, d["name"], f"{path}.name"), primitive=prim,
        material=_material(ctx, d["material"], f"{path}.material"),
        location=_vec3(ctx, d.get("location", [0, 0, 0]), f"{path}.location"),
        rotation_deg=_vec3(ctx, d.get("rotation_deg", [0, 0, 0]), f"{path}.rotation_deg"),
        scale=scale, smooth=smooth, file=file,
    )


def _light(ctx: _Ctx, d: Any, path: str) -> Light:
    _keys(ctx, d, path, ["type", "location"],
          ["look_at", "color", "strength", "size", "spot_size_deg", "spot_blend"])
    typ = _choice(ctx, d["type"], f"{path}.type", LIGHT_TYPES, "light type")
    loc = _vec3(ctx, d["location"], f"{path}.location")
    look = _vec3(ctx, d.get("look_at", [0, 0, 0]), f"{path}.look_at")
    if np.linalg.norm(np.subtract(look, loc)) < 1e-6:
        raise ctx.fail(f"{path}.look_at", "must differ from location (it sets the light's direction)")
    size = d.get("size")
    return Light(
        type=typ, location=loc, look_at=look,
        color=_color(ctx, d.get("color", [1, 1, 1]), f"{path}.color"),
        strength=_num(ctx, d.get("strength", 1.0), f"{path}.strength", lo=0.0),
        size=None if size is None else _num(ctx, size, f"{path}.size", lo=0.0),
        spot_size_deg=_num(ctx, d.get("spot_size_deg", 45.0), f"{path}.spot_size_deg", 1.0, 180.0),
        spot_blend=_num(ctx, d.get("spot_blend", 0.15), f"{path}.spot_blend", 0.0, 1.0),
    )


def _lighting(ctx: _Ctx, d: Any, path: str) -> Lighting:
    _keys(ctx, d, path, ["name", "description", "lights"], ["world"])
    lights = d["lights"]
    if not isinstance(lights, list):
        raise ctx.fail(f"{path}.lights", "expected a list of lights")
    world = _world(ctx, d["world"], f"{path}.world") if "world" in d else None
    parsed = tuple(_light(ctx, l, f"{path}.lights[{i}]") for i, l in enumerate(lights))
    if not parsed and (world is None or world.strength == 0):
        raise ctx.fail(f"{path}.lights", "a lighting needs at least one light or a world with strength > 0")
    return Lighting(name=_ident(ctx, d["name"], f"{path}.name"),
                    description=_text(ctx, d["description"], f"{path}.description"),
                    lights=parsed, world=world)


def _recolor_record(ctx: _Ctx, d: dict, sid: str) -> dict | None:
    if "recolor" not in d:
        return None
    rec = _keys(ctx, d["recolor"], "recolor", ["seed", "variant"], ["range"])
    if split_variant(sid)[1] == 0:
        raise ctx.fail("recolor", "only a colour variant (id ending in ~c<k>) records how it was recoloured")
    for k in ("seed", "variant"):
        if not isinstance(rec[k], int) or isinstance(rec[k], bool) or rec[k] < 0:
            raise ctx.fail(f"recolor.{k}", f"expected an integer >= 0, got {rec[k]!r}")
    return dict(rec)


def parse_scene(d: Any, where: str = "<scene>", base_dir: Path | None = None) -> Scene:
    """Validate a decoded spec and build a `Scene`; errors name `where` and the field."""
    ctx = _Ctx(where)
    _keys(ctx, d, "", ["id", "description", "camera", "objects", "lightings"], ["world", "doc", "recolor"])
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
    if len(objs) > 255:
        raise ctx.fail("objects", f"at most 255 objects (object_index.png is 8-bit), got {len(objs)}")
    objects = tuple(_object(ctx, o, f"objects[{i}]", base_dir) for i, o in enumerate(objs))
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
                 world=_world(ctx, d["world"], "world") if "world" in d else World(),
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


def scene_to_dict(scene: Scene) -> dict:
    """The JSON form of a scene (defaults written out), which `parse_scene` reads back unchanged."""

    def tex(t: Texture) -> dict:
        d: dict[str, Any] = {"type": t.type, "color1": t.color1, "color2": t.color2, "scale": t.scale,
                             "coords": t.coords}
        if t.type == "stripes":
            d.update(axis=t.axis, width=t.width)
        if t.type == "noise":
            d.update(detail=t.detail, offset=t.offset)
        return d

    def mat(m: Material) -> dict:
        bc = tex(m.base_color) if isinstance(m.base_color, Texture) else m.base_color
        return {"base_color": bc, "roughness": m.roughness, "metallic": m.metallic, "ior": m.ior,
                "specular": m.specular}

    def obj(o: Object) -> dict:
        d: dict[str, Any] = {"name": o.name, "primitive": o.primitive, "location": o.location,
                             "rotation_deg": o.rotation_deg, "scale": o.scale, "material": mat(o.material)}
        if o.smooth is not None:
            d["smooth"] = o.smooth
        if o.file is not None:
            d["file"] = o.file
        return d

    def light(l: Light) -> dict:
        d: dict[str, Any] = {"type": l.type, "location": l.location, "look_at": l.look_at, "color": l.color,
                             "strength": l.strength}
        if l.size is not None:
            d["size"] = l.size
        if l.type == "spot":
            d.update(spot_size_deg=l.spot_size_deg, spot_blend=l.spot_blend)
        return d

    def lighting(l: Lighting) -> dict:
        d: dict[str, Any] = {"name": l.name, "description": l.description, "lights": [light(x) for x in l.lights]}
        if l.world is not None:
            d["world"] = {"color": l.world.color, "strength": l.world.strength}
        return d

    out = {
        "id": scene.id, "description": scene.description,
        "camera": {"location": scene.camera.location, "look_at": scene.camera.look_at,
                   "lens_mm": scene.camera.lens_mm, "sensor_mm": scene.camera.sensor_mm},
        "world": {"color": scene.world.color, "strength": scene.world.strength},
        "objects": [obj(o) for o in scene.objects],
        "lightings": [lighting(l) for l in scene.lightings],
    }
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


# ------------------------------------------------------------------------------------ generator
# Named colours (linear RGB) so generated descriptions can say what the camera sees.
PALETTE: dict[str, Vec3] = {
    "red": (0.60, 0.03, 0.03), "orange": (0.80, 0.25, 0.02), "yellow": (0.80, 0.62, 0.04),
    "green": (0.08, 0.40, 0.06), "teal": (0.02, 0.35, 0.32), "blue": (0.04, 0.12, 0.60),
    "purple": (0.28, 0.06, 0.45), "pink": (0.80, 0.30, 0.42), "white": (0.80, 0.80, 0.80),
    "light grey": (0.45, 0.45, 0.45), "dark grey": (0.10, 0.10, 0.10), "black": (0.02, 0.02, 0.02),
    "brown": (0.25, 0.11, 0.04), "beige": (0.62, 0.50, 0.33), "cream": (0.80, 0.72, 0.52),
    "lime": (0.35, 0.62, 0.05), "navy": (0.01, 0.03, 0.18), "maroon": (0.25, 0.01, 0.03),
}
GROUND_COLOURS = ("light grey", "beige", "white", "dark grey", "brown", "cream", "green", "blue")
NOUNS = {"cube": "cube", "sphere": "sphere", "cylinder": "cylinder", "cone": "cone", "torus": "torus"}


def _describe_material(m: Material, rng_names: dict[Vec3, str]) -> str:
    if isinstance(m.base_color, Texture):
        t = m.base_color
        a, b = rng_names[t.color1], rng_names[t.color2]
        return {"checker": f"{a}-and-{b} checkered", "stripes": f"{a}-and-{b} striped",
                "noise": f"mottled {a}-and-{b}"}[t.type]
    finish = "glossy " if m.roughness < 0.2 else ("matte " if m.roughness > 0.6 else "")
    return finish + rng_names[m.base_color]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _direction_words(light_loc: Sequence[float], cam: Camera) -> str:
    """Where a light sits as the camera sees it: left/right, front/behind, high/low."""
    fwd = np.subtract(cam.look_at, cam.location)
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right = right / (np.linalg.norm(right) + 1e-12)
    d = np.subtract(light_loc, cam.look_at)
    d = d / np.linalg.norm(d)
    elev = math.degrees(math.asin(max(-1.0, min(1.0, d[2]))))
    side = float(d @ right)
    depth = float(d @ fwd)
    horiz = "left" if side < -0.35 else ("right" if side > 0.35 else "")
    fb = "behind" if depth > 0.5 else ("front" if depth < -0.5 else "")
    if elev > 70:
        return "directly above"
    if fb == "behind":
        where = f"behind, on the {horiz}" if horiz else "behind"
    elif fb == "front":
        where = f"the front {horiz}" if horiz else "the front"
    else:
        where = f"the {horiz}" if horiz else "the front"
    height = "low " if elev < 25 else ("high " if elev > 50 else "")
    return f"{height}from {where}"


def generate_scenes(n: int, seed: int = 0, prefix: str = "gen") -> list[Scene]:
    """`n` random valid scenes with descriptions; the same (n, seed) gives the same scenes.

    Scene k depends only on (seed, k), so `generate_scenes(10, s)[:5] == generate_scenes(5, s)`.
    Objects rest on a ground plane without overlapping; the camera frames them from a random
    azimuth/elevation; 2-3 lightings are drawn from sun / area / point / coloured-point templates.
    """
    if n < 0:
        raise SceneError(f"--generate needs N >= 0, got {n}")
    if seed < 0:
        raise SceneError(f"--seed needs S >= 0, got {seed}")
    scenes = [_generate_one(seed, k, prefix) for k in range(n)]
    # round-trip through the validator: a generated scene is exactly as valid as a hand-written one
    return [parse_scene(scene_to_dict(s), where=f"<generated {s.id}>") for s in scenes]


def _generate_one(seed: int, k: int, prefix: str) -> Scene:
    rng = np.random.default_rng([seed, k])
    names = {v: name for name, v in PALETTE.items()}
    colours = list(PALETTE)

    def pick(exclude: Sequence[str] = ()) -> str:
        opts = [c for c in colours if c not in exclude]
        return opts[int(rng.integers(len(opts)))]

    # ground
    gname = GROUND_COLOURS[int(rng.integers(len(GROUND_COLOURS)))]
    if rng.random() < 0.35:
        other = pick(exclude=(gname,))
        ttype = ["checker", "stripes", "noise"][int(rng.integers(3))]
        gtex = Texture(type=ttype, color1=PALETTE[gname], color2=PALETTE[other],
                       scale=float(rng.choice([2.0, 3.0, 4.0])) if ttype != "noise" else 3.0,
                       axis="x" if rng.random() < 0.5 else "y", offset=tuple(float(x) for x in rng.uniform(0, 50, 3)))
        gmat = Material(base_color=gtex, roughness=float(np.round(rng.uniform(0.4, 0.9), 2)))
    else:
        gmat = Material(base_color=PALETTE[gname], roughness=float(np.round(rng.uniform(0.3, 0.9), 2)))
    ground = Object(name="ground", primitive="plane", material=gmat, scale=(12.0, 12.0, 1.0))

    # objects on the ground, rejection-sampled so footprints don't overlap
    prims = ["cube", "sphere", "cylinder", "cone", "torus"]
    count = int(rng.integers(1, 5))
    placed: list[tuple[float, float, float]] = []
    objects: list[Object] = [ground]
    phrases: list[str] = []
    for i in range(count):
        prim = prims[int(rng.integers(len(prims)))]
        size = float(np.round(rng.uniform(0.3, 0.6), 2))
        for _ in range(100):
            x, y = (float(np.round(v, 2)) for v in rng.uniform(-1.3, 1.3, 2))
            if all(math.hypot(x - px, y - py) > size + pr + 0.1 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((x, y, size))
        if prim == "cube":
            scale, z = (size * 0.75,) * 3, size * 0.75
        elif prim == "sphere":
            scale, z = (size,) * 3, size
        elif prim in ("cylinder", "cone"):
            h = float(np.round(rng.uniform(0.5, 1.2), 2))
            scale, z = (size, size, h), h
        else:  # torus lies flat: minor radius 0.25 * scale
            scale, z = (size, size, size), 0.25 * size
        cname = pick(exclude=(gname,))
        if rng.random() < 0.2:
            other = pick(exclude=(cname,))
            ttype = ["checker", "stripes", "noise"][int(rng.integers(3))]
            base: Vec3 | Texture = Texture(type=ttype, color1=PALETTE[cname], color2=PALETTE[other],
                                           scale=float(rng.choice([3.0, 4.0, 6.0])), axis="z",
                                           offset=tuple(float(v) for v in rng.uniform(0, 50, 3)))
        else:
            base = PALETTE[cname]
        mat = Material(base_color=base, roughness=float(np.round(rng.choice([0.1, 0.35, 0.7, 0.9]), 2)),
                       specular=0.5)
        objects.append(Object(name=f"{prim}_{i}", primitive=prim, material=mat, location=(x, y, float(np.round(z, 4))),
                              rotation_deg=(0.0, 0.0, float(np.round(rng.uniform(0, 90), 1))),
                              scale=tuple(float(np.round(s, 4)) for s in scale)))
        phrases.append(_a(f"{_describe_material(mat, names)} {NOUNS[prim]}"))

    ground_phrase = _a(f"{_describe_material(gmat, names)} ground plane")
    if len(phrases) > 1:
        obj_text = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    else:
        obj_text = phrases[0]
    description = f"{obj_text} on {ground_phrase}"

    az = rng.uniform(0, 2 * math.pi)
    el = math.radians(rng.uniform(20, 45))
    dist = rng.uniform(5.0, 6.5)
    cam = Camera(location=tuple(float(np.round(v, 3)) for v in (dist * math.cos(el) * math.cos(az),
                                                               dist * math.cos(el) * math.sin(az),
                                                               dist * math.sin(el))),
                 look_at=(0.0, 0.0, 0.3), lens_mm=35.0)

    def sun(name_az: float, elev_deg: float, strength: float, color: Vec3 = (1.0, 1.0, 1.0)) -> Light:
        e = math.radians(elev_deg)
        loc = (10 * math.cos(e) * math.cos(name_az), 10 * math.cos(e) * math.sin(name_az), 10 * math.sin(e))
        return Light(type="sun", location=tuple(float(np.round(v, 3)) for v in loc), strength=strength,
                     color=color, size=2.0)

    templates = ["sun_high", "sun_low", "area_overhead", "area_side", "coloured_points"]
    chosen = rng.choice(len(templates), size=int(rng.integers(2, 4)), replace=False)
    lightings: list[Lighting] = []
    for t in sorted(int(c) for c in chosen):
        kind = templates[t]
        if kind == "sun_high":
            l = sun(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(55, 75)), 3.0)
            desc = f"lit by a bright white sun {_direction_words(l.location, cam)}, casting short hard shadows"
            lightings.append(Lighting(kind, desc, (l,), World((0.35, 0.45, 0.6), 0.4)))
        elif kind == "sun_low":
            l = sun(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(10, 22)), 3.0, (1.0, 0.62, 0.32))
            desc = f"lit by a warm orange sun {_direction_words(l.location, cam)}, casting long shadows"
            lightings.append(Lighting(kind, desc, (l,), World((0.25, 0.3, 0.45), 0.25)))
        elif kind == "area_overhead":
            l = Light(type="area", location=(0.0, 0.0, 4.0), look_at=(0.0, 0.0, 0.0), strength=250.0, size=2.5)
            lightings.append(Lighting(kind, "lit by a large soft white area light directly above, with soft shadows",
                                      (l,), World((0.05, 0.05, 0.05), 1.0)))
        elif kind == "area_side":
            a = float(rng.uniform(0, 2 * math.pi))
            loc = (float(np.round(3.5 * math.cos(a), 3)), float(np.round(3.5 * math.sin(a), 3)), 2.5)
            l = Light(type="area", location=loc, look_at=(0.0, 0.0, 0.3), strength=250.0, size=1.5)
            desc = f"lit by a soft white area light {_direction_words(loc, cam)}, with soft shadows"
            lightings.append(Lighting(kind, desc, (l,), World((0.05, 0.05, 0.05), 0.5)))
        else:
            a = float(rng.uniform(0, 2 * math.pi))
            l1 = Light(type="point", location=(float(np.round(3 * math.cos(a), 3)), float(np.round(3 * math.sin(a), 3)), 2.0),
                       strength=400.0, color=(1.0, 0.35, 0.1), size=0.15)
            l2 = Light(type="point", location=(float(np.round(-3 * math.cos(a), 3)), float(np.round(-3 * math.sin(a), 3)), 2.0),
                       strength=400.0, color=(0.1, 0.35, 1.0), size=0.15)
            desc = (f"lit by an orange point light {_direction_words(l1.location, cam)} and a blue point light "
                    f"{_direction_words(l2.location, cam)}, casting coloured shadows")
            lightings.append(Lighting(kind, desc, (l1, l2), World((0.02, 0.02, 0.02), 1.0)))
    return Scene(id=f"{prefix}_s{seed}_{k:04d}", description=description, camera=cam, objects=tuple(objects),
                 lightings=tuple(lightings), world=World((0.05, 0.05, 0.05), 1.0))
