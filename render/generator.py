"""Procedural scenes for `python -m render --generate N`: indoor rooms, tabletop still lifes, outdoor yards.

    from render.generator import generate_scenes
    scenes = generate_scenes(10, seed=0)      # scene k depends only on (seed, k)

Every scene is built from the spec's own parts (render.materials textures, render.assets composites,
Nishita skies, area lights with real sizes and colour temperatures in kelvin), passes the same
validation as a hand-written spec, and comes with a one-sentence `description` of what the camera
sees (objects, colours, materials, setting; no lighting words) and, per lighting, a description of
the light (kind, colour, direction as the camera sees it) for the prompt generator.
Kinds: an indoor room (table, chairs, shelf of books, lamp, things on the table; window and door),
a tabletop still life (a few objects on a table against a wall), an outdoor yard (paving or grass, a
garden wall, furniture, planters, crates). Each has two or three lightings drawn from its own pool.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from render.scene import Camera, Scene, SceneError, parse_scene

__all__ = ["generate_scenes", "KINDS", "direction_words"]

KINDS = ("room", "tabletop", "yard")

# ---------------------------------------------------------------------------------- materials
# linear Rec.709 colours with the names descriptions use
PAINTS = {"white": (0.78, 0.77, 0.73), "cream": (0.74, 0.66, 0.48), "pale blue": (0.45, 0.56, 0.66),
          "sage green": (0.36, 0.44, 0.3), "warm grey": (0.42, 0.39, 0.35), "terracotta": (0.52, 0.2, 0.1),
          "pale yellow": (0.78, 0.7, 0.38), "dark green": (0.05, 0.14, 0.08), "dusty pink": (0.62, 0.38, 0.36)}
WOODS = {"light oak": ((0.55, 0.37, 0.19), (0.33, 0.19, 0.08)), "walnut": ((0.2, 0.11, 0.055), (0.085, 0.04, 0.018)),
         "pine": ((0.64, 0.46, 0.25), (0.43, 0.26, 0.11)), "cherry": ((0.42, 0.17, 0.07), (0.22, 0.08, 0.03)),
         "grey-stained": ((0.34, 0.32, 0.3), (0.17, 0.16, 0.15))}
COLOURS = {"red": (0.6, 0.04, 0.03), "orange": (0.8, 0.28, 0.03), "yellow": (0.8, 0.6, 0.05),
           "green": (0.1, 0.38, 0.08), "teal": (0.03, 0.33, 0.3), "blue": (0.05, 0.14, 0.55),
           "navy": (0.02, 0.04, 0.16), "purple": (0.25, 0.07, 0.4), "pink": (0.78, 0.32, 0.42),
           "white": (0.8, 0.8, 0.78), "black": (0.025, 0.025, 0.025), "grey": (0.35, 0.35, 0.35),
           "mustard": (0.6, 0.42, 0.05), "olive": (0.25, 0.26, 0.06), "sky blue": (0.3, 0.55, 0.8)}
FRUIT = {"orange": (0.8, 0.3, 0.02), "red apple": (0.5, 0.03, 0.03), "green apple": (0.35, 0.55, 0.08),
         "lemon": (0.82, 0.7, 0.06), "plum": (0.2, 0.03, 0.12)}


def _mat(base: Any, rough: Any = 0.5, spec: float = 0.5) -> dict:
    return {"base_color": base, "roughness": rough, "specular": spec}


class _Mats:
    """Material choices with their phrases, drawn from one generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, d: dict) -> tuple[str, Any]:
        name = list(d)[int(self.rng.integers(len(d)))]
        return name, d[name]

    def seed(self) -> int:
        return int(self.rng.integers(1, 10_000))

    def paint(self, avoid: Sequence[str] = ()) -> tuple[str, dict]:
        opts = {k: v for k, v in PAINTS.items() if k not in avoid}
        name, c = self.pick(opts)
        c2 = tuple(round(0.82 * x, 4) for x in c)
        return f"{name} painted", _mat({"type": "plaster", "color1": list(c), "color2": list(c2), "seed": self.seed()},
                                       [0.75, 0.9])

    def wood(self, axis: str = "x") -> tuple[str, dict]:
        name, (c1, c2) = self.pick(WOODS)
        return f"{name} wooden", _mat({"type": "wood", "color1": list(c1), "color2": list(c2), "axis": axis,
                                        "seed": self.seed(), "ring_spacing": round(float(self.rng.uniform(0.004, 0.01)), 4)},
                                       [0.35, 0.55])

    def floor(self) -> tuple[str, dict]:
        k = int(self.rng.integers(4))
        if k == 0:
            name, m = self.wood(axis="y")
            return f"{name.replace(' wooden', '')} plank", m
        if k == 1:
            return "black-and-white chequered tile", _mat(
                {"type": "tile", "color1": [0.8, 0.8, 0.77], "color2": [0.03, 0.03, 0.03], "color3": [0.4, 0.4, 0.38],
                 "tile_size": round(float(self.rng.uniform(0.25, 0.4)), 3), "pattern": "checker", "seed": self.seed()},
                [0.15, 0.8])
        if k == 2:
            return "terracotta tile", _mat(
                {"type": "tile", "color1": [0.45, 0.16, 0.07], "color2": [0.55, 0.24, 0.1], "color3": [0.5, 0.47, 0.42],
                 "tile_size": round(float(self.rng.uniform(0.2, 0.35)), 3), "pattern": "random", "seed": self.seed()},
                [0.55, 0.85])
        return "grey stone", _mat({"type": "stone", "color1": [0.2, 0.2, 0.2], "color2": [0.45, 0.44, 0.42],
                                   "scale": 25.0, "seed": self.seed()}, [0.5, 0.7])

    def fabric(self) -> tuple[str, dict]:
        a, ca = self.pick(COLOURS)
        b, cb = self.pick({k: v for k, v in COLOURS.items() if k != a})
        return f"{a}-and-{b} woven fabric", _mat({"type": "fabric", "color1": list(ca), "color2": list(cb),
                                                  "threads": float(self.rng.choice([80.0, 120.0, 200.0])),
                                                  "seed": self.seed()}, 0.9, 0.3)

    def ceramic(self) -> tuple[str, dict]:
        if self.rng.random() < 0.3:
            a, ca = self.pick(COLOURS)
            b, cb = self.pick({k: v for k, v in COLOURS.items() if k != a})
            return f"{b}-dotted {a} ceramic", _mat({"type": "dots", "color1": list(ca), "color2": list(cb),
                                                     "spacing": 0.025, "radius": 0.25, "seed": self.seed()}, 0.15)
        a, ca = self.pick(COLOURS)
        return f"glossy {a} ceramic", _mat(list(ca), round(float(self.rng.uniform(0.08, 0.25)), 2))

    def solid(self, glossy: bool | None = None) -> tuple[str, dict]:
        a, ca = self.pick(COLOURS)
        gl = self.rng.random() < 0.3 if glossy is None else glossy
        r = round(float(self.rng.uniform(0.1, 0.2) if gl else self.rng.uniform(0.5, 0.85)), 2)
        return ("glossy " if gl else "matte ") + a, _mat(list(ca), r)

    def stone_top(self) -> tuple[str, dict]:
        if self.rng.random() < 0.5:
            return "white marble", _mat({"type": "marble", "color1": [0.78, 0.77, 0.74], "color2": [0.3, 0.3, 0.32],
                                         "seed": self.seed()}, [0.15, 0.25])
        return "speckled granite", _mat({"type": "stone", "color1": [0.08, 0.08, 0.08], "color2": [0.5, 0.48, 0.45],
                                         "seed": self.seed()}, [0.2, 0.35])

    def brick(self) -> tuple[str, dict]:
        if self.rng.random() < 0.6:
            return "red brick", _mat({"type": "brick", "color1": [0.38, 0.1, 0.05], "color2": [0.5, 0.18, 0.08],
                                      "color3": [0.55, 0.53, 0.5], "seed": self.seed()}, [0.75, 0.95])
        return "yellow brick", _mat({"type": "brick", "color1": [0.6, 0.45, 0.22], "color2": [0.5, 0.36, 0.17],
                                     "color3": [0.42, 0.4, 0.37], "seed": self.seed()}, [0.75, 0.95])


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


_NUMBERS = {2: "two", 3: "three", 4: "four"}


def _join(phrases: Sequence[str]) -> str:
    """'a lemon', 'a lemon', 'a plum' -> 'two lemons and a plum' (repeats counted, order kept)."""
    counts: dict[str, int] = {}
    for p in phrases:
        counts[p] = counts.get(p, 0) + 1
    items = [p if n == 1 else f"{_NUMBERS.get(n, str(n))} {p.split(' ', 1)[1]}s" for p, n in counts.items()]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _r(x: float, n: int = 3) -> float:
    return float(round(float(x), n))


def direction_words(light_loc: Sequence[float], cam: Camera) -> str:
    """Where a light sits as the camera sees it: left/right, front/behind, high/low."""
    fwd = np.subtract(cam.look_at, cam.location)
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right = right / (np.linalg.norm(right) + 1e-12)
    d = np.subtract(light_loc, cam.look_at)
    d = d / np.linalg.norm(d)
    elev = math.degrees(math.asin(max(-1.0, min(1.0, d[2]))))
    side, depth = float(d @ right), float(d @ fwd)
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


def _kelvin_word(k: float) -> str:
    return "warm" if k < 3600 else ("neutral white" if k < 5200 else "cool daylight")


def _sky_dir(az: float, el: float) -> list[float]:
    e, a = math.radians(el), math.radians(az)
    return [10 * math.cos(e) * math.sin(a), 10 * math.cos(e) * math.cos(a), 10 * math.sin(e)]


# ------------------------------------------------------------------------------------- kinds
def _table_things(rng, m: _Mats, top_z: float, half: tuple[float, float], centre=(0.0, 0.0), n=None):
    """Small objects standing on a table top: mug, vase, fruit, books, a box; no overlaps."""
    objs, phrases = [], []
    kinds = ["mug", "vase", "fruit", "books", "box", "bowl"]
    n = n or int(rng.integers(2, 5))
    xs = np.linspace(-half[0] * 0.7, half[0] * 0.7, n)
    for i, kind in enumerate(rng.choice(kinds, size=n, replace=False)):
        x = _r(centre[0] + xs[i] + rng.uniform(-0.03, 0.03))
        y = _r(centre[1] + rng.uniform(-half[1] * 0.4, half[1] * 0.4))
        rot = [0.0, 0.0, _r(rng.uniform(0, 360), 1)]
        if kind == "mug":
            ph, mt = m.ceramic()
            objs.append({"name": f"mug_{i}", "primitive": "mug", "location": [x, y, top_z], "rotation_deg": rot,
                         "material": mt})
            phrases.append(_a(f"{ph} mug"))
        elif kind == "vase":
            ph, mt = m.ceramic()
            s = _r(rng.uniform(0.7, 1.1), 2)
            objs.append({"name": f"vase_{i}", "primitive": "vase", "location": [x, y, top_z], "scale": s,
                         "material": mt})
            phrases.append(_a(f"{ph} vase"))
        elif kind == "fruit":
            names = list(FRUIT)
            for j in range(int(rng.integers(1, 4))):
                f = names[int(rng.integers(len(names)))]
                rr = 0.035 if f in ("plum", "lemon") else 0.042
                objs.append({"name": f"fruit_{i}_{j}", "primitive": "sphere",
                             "location": [_r(x + 0.09 * j - 0.09), _r(y + 0.05 * (j % 2)), _r(top_z + rr)],
                             "scale": [rr, rr, rr * 0.95], "material": _mat(list(FRUIT[f]), 0.35)})
                phrases.append(_a(f))
        elif kind == "books":
            k = int(rng.integers(2, 4))
            z = top_z
            for j in range(k):
                c = list(COLOURS.values())[int(rng.integers(len(COLOURS)))]
                hz = _r(rng.uniform(0.012, 0.02))
                objs.append({"name": f"book_{i}_{j}", "primitive": "cube", "bevel": 0.002,
                             "location": [x, y, _r(z + hz)], "rotation_deg": [0, 0, _r(rng.uniform(-20, 20), 1)],
                             "scale": [0.1, 0.075, hz], "material": _mat(list(c), 0.6)})
                z += 2 * hz
            phrases.append(f"a stack of {k} books")
        elif kind == "box":
            ph, mt = m.wood()
            s = _r(rng.uniform(0.04, 0.07))
            objs.append({"name": f"box_{i}", "primitive": "cube", "bevel": 0.004, "location": [x, y, _r(top_z + s)],
                         "rotation_deg": rot, "scale": [s, s, s], "material": mt})
            phrases.append(_a(f"small {ph} box"))
        else:
            ph, mt = m.ceramic()
            objs.append({"name": f"bowl_{i}", "primitive": "vase", "location": [x, y, top_z],
                         "params": {"profile": [[0.04, 0.0], [0.08, 0.03], [0.1, 0.07]], "wall": 0.005},
                         "material": mt})
            phrases.append(_a(f"{ph} bowl"))
    return objs, phrases


def _room(rng: np.random.Generator, m: _Mats) -> dict:
    w, d, h = _r(rng.uniform(3.4, 5.0), 2), _r(rng.uniform(3.8, 6.0), 2), _r(rng.uniform(2.5, 2.9), 2)
    side = "left" if rng.random() < 0.5 else "right"
    sgn = -1.0 if side == "left" else 1.0
    win = {"wall": side, "center": _r(rng.uniform(-d / 5, d / 5), 2),
           "size": [_r(rng.uniform(1.1, 1.8), 2), _r(rng.uniform(1.2, 1.5), 2)], "sill": 0.85}
    has_door = rng.random() < 0.6
    door_x = _r(-sgn * rng.uniform(0.6, w / 2 - 0.7), 2)
    wall_ph, wall_m = (m.brick() if rng.random() < 0.2 else m.paint())
    floor_ph, floor_m = m.floor()
    objects = [{"name": "room", "primitive": "room",
                # the side behind the camera stays open, as in a photographer's set: with all four walls every
                # path stays inside and the same render takes far longer to lose its noise
                "params": {"size": [w, d, h], "window": win, "walls": ["back", "left", "right"],
                           **({"door": {"wall": "back", "center": door_x}} if has_door else {})},
                "material": wall_m,
                "materials": {"floor": floor_m, "ceiling": _mat([0.8, 0.8, 0.78], 0.9),
                              "skirting": _mat([0.8, 0.8, 0.77], 0.35), "frame": _mat([0.8, 0.8, 0.77], 0.35),
                              "door": m.wood()[1]}}]
    tw, td = _r(rng.uniform(1.0, 1.6), 2), _r(rng.uniform(0.7, 0.9), 2)
    tx, ty = _r(rng.uniform(-0.4, 0.4) * (w / 2 - 1)), _r(rng.uniform(0.0, 0.4) * d / 2)
    wood_ph, wood_m = m.wood()
    top_ph, top_m = (m.stone_top() if rng.random() < 0.3 else (wood_ph, wood_m))
    objects.append({"name": "table", "primitive": "table", "location": [tx, ty, 0.0],
                    "rotation_deg": [0, 0, _r(rng.uniform(-8, 8), 1)],
                    "params": {"size": [tw, td, 0.75], "legs": "round" if rng.random() < 0.3 else "square"},
                    "material": wood_m, "materials": {"top": top_m}})
    phrases = [_a(f"{top_ph} table" if top_ph == wood_ph else f"table with a {top_ph} top")]
    fab_ph, fab_m = m.fabric()
    n_ch = int(rng.integers(1, 3))
    for i in range(n_ch):
        cy = ty - td / 2 - 0.25 if i == 0 else ty + td / 2 + 0.25
        objects.append({"name": f"chair_{i}", "primitive": "chair", "location": [_r(tx + rng.uniform(-0.2, 0.2)), _r(cy), 0.0],
                        "rotation_deg": [0, 0, 180.0 if i == 0 else 0.0], "material": wood_m,
                        "materials": {"seat": fab_m}})
    phrases.append(f"{'a chair' if n_ch == 1 else 'two chairs'} with {fab_ph} seats")
    if rng.random() < 0.7:
        shx = _r(-door_x * 0.8 if has_door else rng.uniform(-w / 4, w / 4))
        objects.append({"name": "shelf", "primitive": "shelf", "location": [shx, _r(d / 2 - 0.17), 0.0],
                        "params": {"size": [0.9, 0.3, _r(rng.uniform(1.4, 2.0), 2)], "seed": m.seed(),
                                   "books": _r(rng.uniform(0.5, 0.9), 2)},
                        "material": m.wood()[1]})
        phrases.append("a bookshelf full of books")
    lamp = rng.random() < 0.6
    things, tp = _table_things(rng, m, 0.75, (tw / 2 - 0.15, td / 2 - 0.1), (tx, ty), n=int(rng.integers(2, 4)))
    objects += things
    phrases += [p + " on the table" if i == 0 else p for i, p in enumerate(tp)]
    lamp_at = None
    if lamp:
        lx, ly = _r(tx + sgn * -0.25 * tw), _r(ty + 0.2 * td)
        objects.append({"name": "lamp", "primitive": "lamp", "location": [lx, ly, 0.75],
                        "material": _mat([0.05, 0.05, 0.05], 0.3), "materials": {"shade": _mat([0.8, 0.76, 0.62], 0.8)}})
        lamp_at = [lx, ly, _r(0.75 + 0.5 - 0.18 - 0.02)]
        phrases.append("a table lamp")
    desc = (f"{_join(phrases)}, in a room with {wall_ph} walls, {_a(floor_ph)} floor, white skirting boards and "
            f"a window on the {side}" + (" and a wooden door" if has_door else ""))
    cam = Camera(location=(_r(rng.uniform(-0.3, 0.3) * w / 2), _r(-d / 2 + 0.35), _r(rng.uniform(1.35, 1.6))),
                 look_at=(tx, ty, 0.75), lens_mm=_r(rng.uniform(18, 24), 1))
    # the sun comes in through the window: from the window's side, above
    az = _r((270.0 if side == "left" else 90.0) + rng.uniform(-35, 35), 1)
    pool: dict[str, Callable[[], dict]] = {
        "daylight": lambda: {"description": f"lit by daylight through the window on the {side}, with a bright patch "
                             "of sunlight on the floor and soft bounced light", "lights": [],
                             "world": {"sky": {"sun_elevation_deg": _r(rng.uniform(25, 45), 1), "sun_azimuth_deg": az,
                                               "strength": 0.025, "sun_strength": 3.0}}},
        "overcast": lambda: {"description": f"lit by soft overcast daylight from the window on the {side}, without "
                             "hard shadows", "lights": [], "world": {"color": [0.75, 0.8, 0.9], "strength": 1.0}},
        "ceiling_light": lambda: {"description": "lit by a neutral white rectangular ceiling panel, evenly, with soft "
                                  "shadows", "lights": [{"type": "area", "location": [tx, ty, _r(h - 0.02)],
                                                         "look_at": [tx, ty, 0.0], "shape": "rectangle", "size": 1.2,
                                                         "size_y": 0.6, "strength": 120.0, "temperature_k": 4000}],
                                  "world": {"color": [0.02, 0.025, 0.04], "strength": 1.0}},
    }
    if lamp_at is not None:
        pool["table_lamp"] = lambda: {"description": "lit by the warm table lamp in the evening, with a pool of warm "
                                      "light and dark corners", "lights": [{"type": "point", "location": lamp_at,
                                                                            "strength": 25.0, "size": 0.02,
                                                                            "temperature_k": 2700}],
                                      "world": {"color": [0.02, 0.03, 0.06], "strength": 1.0}}
    return {"objects": objects, "description": desc, "camera": cam, "pool": pool}


def _tabletop(rng: np.random.Generator, m: _Mats) -> dict:
    wall_ph, wall_m = m.paint()
    floor_ph, floor_m = m.floor()
    side = "left" if rng.random() < 0.5 else "right"
    objects = [{"name": "room", "primitive": "room",
                "params": {"size": [3.0, 3.0, 2.6], "walls": ["back", "left", "right"],
                           "window": {"wall": side, "center": 0.6, "size": [1.2, 1.3], "sill": 0.9}},
                "material": wall_m, "materials": {"floor": floor_m, "ceiling": _mat([0.8, 0.8, 0.78], 0.9),
                                                  "skirting": _mat([0.8, 0.8, 0.77], 0.35),
                                                  "frame": _mat([0.8, 0.8, 0.77], 0.35)}}]
    tw, td = _r(rng.uniform(0.9, 1.2), 2), _r(rng.uniform(0.6, 0.75), 2)
    ty = _r(1.5 - td / 2 - 0.1)
    if rng.random() < 0.4:
        top_ph, top_m = m.stone_top()
    else:
        top_ph, top_m = m.wood()
    objects.append({"name": "table", "primitive": "table", "location": [0.0, ty, 0.0],
                    "params": {"size": [tw, td, 0.75]}, "material": top_m})
    surface = f"{top_ph} table"
    z = 0.75
    if rng.random() < 0.35:
        cl_ph, cl_m = m.fabric()
        objects.append({"name": "tablecloth", "primitive": "cube", "location": [0.0, ty, 0.752],
                        "scale": [_r(tw / 2 - 0.05), _r(td / 2 - 0.05), 0.002], "material": cl_m})
        surface = f"{cl_ph} cloth on {_a(surface)}"
        z = 0.754
    things, tp = _table_things(rng, m, z, (tw / 2 - 0.1, td / 2 - 0.08), (0.0, ty))
    objects += things
    desc = f"{_join(tp)} on {_a(surface)} against a {wall_ph} wall"
    cam = Camera(location=(_r(rng.uniform(-0.4, 0.4)), _r(ty - rng.uniform(1.1, 1.5)), _r(rng.uniform(1.05, 1.3))),
                 look_at=(0.0, ty, 0.82), lens_mm=_r(rng.uniform(35, 50), 1))
    sgn = -1.0 if side == "left" else 1.0
    key = [_r(sgn * 0.9), _r(ty - 0.7), 1.6]
    pool = {
        "softbox": lambda: {"description": f"lit by a large softbox {direction_words(key, cam)} and a dim fill light, "
                            "with soft shadows", "lights": [
                                {"type": "area", "location": key, "look_at": [0.0, ty, 0.8], "size": 0.8,
                                 "strength": 60.0, "temperature_k": 5600, "spread_deg": 90.0},
                                {"type": "area", "location": [_r(-key[0]), _r(ty - 1.0), 1.2],
                                 "look_at": [0.0, ty, 0.8], "size": 1.0, "strength": 12.0, "temperature_k": 5600}],
                            "world": {"color": [0.03, 0.03, 0.03], "strength": 1.0}},
        "window": lambda: {"description": f"lit by daylight from a window on the {side}, with sunlight falling across "
                           "the table", "lights": [],
                           "world": {"sky": {"sun_elevation_deg": _r(rng.uniform(25, 40), 1),
                                             "sun_azimuth_deg": _r((270.0 if side == "left" else 90.0)
                                                                   + rng.uniform(-20, 20), 1),
                                             "strength": 0.025, "sun_strength": 3.0}}},
        "warm_lamp": lambda: {"description": f"lit by a warm lamp {direction_words([_r(-sgn * 0.7), ty - 0.3, 1.3], cam)}, "
                              "in a dim room, with long soft shadows", "lights": [
                                  {"type": "point", "location": [_r(-sgn * 0.7), _r(ty - 0.3), 1.3], "strength": 30.0,
                                   "size": 0.05, "temperature_k": 2700}],
                              "world": {"color": [0.02, 0.02, 0.03], "strength": 1.0}},
        "overhead": lambda: {"description": "lit from directly above by a neutral white square panel, with short soft "
                             "shadows", "lights": [{"type": "area", "location": [0.0, ty, 2.55], "look_at": [0.0, ty, 0.0],
                                                    "size": 0.6, "strength": 80.0, "temperature_k": 4500}],
                             "world": {"color": [0.03, 0.03, 0.03], "strength": 1.0}},
    }
    return {"objects": objects, "description": desc, "camera": cam, "pool": pool}


def _yard(rng: np.random.Generator, m: _Mats) -> dict:
    k = int(rng.integers(3))
    if k == 0:
        ground_ph, ground_m = "grass", _mat({"type": "noise", "color1": [0.1, 0.22, 0.04], "color2": [0.05, 0.12, 0.02],
                                            "scale": 3.0, "detail": 6.0,
                                            "offset": [_r(v) for v in rng.uniform(0, 50, 3)], "coords": "world"}, 0.9)
    elif k == 1:
        ground_ph, ground_m = "grey stone paving", _mat(
            {"type": "tile", "color1": [0.38, 0.37, 0.35], "color2": [0.28, 0.27, 0.26], "color3": [0.16, 0.15, 0.13],
             "tile_size": 0.6, "grout": 0.012, "pattern": "random", "coords": "world", "seed": m.seed()}, [0.7, 0.95])
    else:
        ground_ph, ground_m = "brick paving", _mat(
            {"type": "brick", "color1": [0.32, 0.1, 0.05], "color2": [0.42, 0.2, 0.1], "color3": [0.3, 0.28, 0.25],
             "brick_width": 0.2, "brick_height": 0.1, "coords": "world", "seed": m.seed()}, [0.7, 0.95])
    wall_ph, wall_m = m.brick() if rng.random() < 0.6 else m.paint()
    objects = [{"name": "ground", "primitive": "plane", "scale": [15.0, 15.0, 1.0], "material": ground_m},
               {"name": "garden_wall", "primitive": "cube", "bevel": 0.01, "location": [0.0, 3.0, 0.9],
                "scale": [5.0, 0.12, 0.9], "material": wall_m}]
    phrases = []
    slots = [(-1.6, 0.8), (0.0, 1.2), (1.6, 0.6), (-0.7, -0.3), (0.9, -0.4)]
    order = rng.permutation(len(slots))
    used = 0
    choices = ["table", "planter", "crates", "ball", "cone"]
    for kind in rng.choice(choices, size=int(rng.integers(2, 5)), replace=False):
        x, y = slots[int(order[used])]
        used += 1
        x, y = _r(x + rng.uniform(-0.2, 0.2)), _r(y + rng.uniform(-0.2, 0.2))
        if kind == "table":
            ph, mt = m.wood()
            objects.append({"name": "garden_table", "primitive": "table", "location": [x, y, 0.0],
                            "rotation_deg": [0, 0, _r(rng.uniform(-20, 20), 1)],
                            "params": {"size": [1.0, 0.7, 0.72]}, "material": mt})
            objects.append({"name": "garden_chair", "primitive": "chair", "location": [x, _r(y - 0.6), 0.0],
                            "rotation_deg": [0, 0, 180.0], "material": mt})
            phrases.append(f"{_a(ph)} garden table and chair")
        elif kind == "planter":
            ph, mt = (("terracotta", _mat({"type": "plaster", "color1": [0.5, 0.2, 0.09], "color2": [0.4, 0.16, 0.08],
                                           "seed": m.seed()}, 0.8)) if rng.random() < 0.6 else
                      ("grey stone", _mat({"type": "stone", "color1": [0.3, 0.3, 0.29], "color2": [0.5, 0.49, 0.46],
                                           "seed": m.seed()}, 0.7)))
            objects.append({"name": f"planter_{used}", "primitive": "vase", "location": [x, y, 0.0], "scale": 2.2,
                            "material": mt})
            phrases.append(_a(f"large {ph} planter"))
        elif kind == "crates":
            ph, mt = m.wood()
            for j in range(int(rng.integers(1, 3))):
                objects.append({"name": f"crate_{used}_{j}", "primitive": "cube", "bevel": 0.015,
                                "location": [_r(x + 0.05 * j), y, _r(0.22 + 0.44 * j)],
                                "rotation_deg": [0, 0, _r(rng.uniform(-15, 15), 1)], "scale": [0.3, 0.22, 0.22],
                                "material": mt})
            phrases.append(f"{ph} crates")
        elif kind == "ball":
            ph, mt = m.solid()
            objects.append({"name": f"ball_{used}", "primitive": "sphere", "location": [x, y, 0.15], "scale": 0.15,
                            "material": mt})
            phrases.append(_a(f"{ph} ball"))
        else:
            objects.append({"name": f"cone_{used}", "primitive": "cone", "location": [x, y, 0.3],
                            "scale": [0.15, 0.15, 0.3], "material": _mat([0.8, 0.25, 0.02], 0.4)})
            phrases.append("an orange traffic cone")
    desc = f"{_join(phrases)} on {ground_phrase(ground_ph)} in front of a {wall_ph} garden wall, outdoors"
    az0 = float(rng.uniform(0, 360))
    cam = Camera(location=(_r(3.4 * math.sin(math.radians(rng.uniform(-25, 25)))), -3.0, _r(rng.uniform(1.3, 1.7))),
                 look_at=(0.0, 0.5, 0.45), lens_mm=_r(rng.uniform(26, 32), 1))
    hi_az, lo_az = _r(az0, 1), _r((az0 + 130) % 360, 1)
    hi_el, lo_el = _r(rng.uniform(50, 70), 1), _r(rng.uniform(6, 14), 1)
    pool = {
        "midday_sun": lambda: {"description": f"lit by a bright high sun {direction_words(_sky_dir(hi_az, hi_el), cam)} "
                               "under a blue sky, with short crisp shadows", "lights": [],
                               "world": {"sky": {"sun_elevation_deg": hi_el, "sun_azimuth_deg": hi_az,
                                                 "strength": 0.025, "sun_strength": 3.0}}},
        "golden_hour": lambda: {"description": f"lit by a low golden evening sun {direction_words(_sky_dir(lo_az, lo_el), cam)}, "
                                "with long warm shadows", "lights": [],
                                "world": {"sky": {"sun_elevation_deg": lo_el, "sun_azimuth_deg": lo_az,
                                                  "strength": 0.025, "sun_strength": 2.0}}},
        "overcast": lambda: {"description": "lit by a bright overcast sky, soft and shadowless", "lights": [],
                             "world": {"color": [0.8, 0.83, 0.88], "strength": 1.0}},
    }
    return {"objects": objects, "description": desc, "camera": cam, "pool": pool}


def ground_phrase(name: str) -> str:
    return "grass" if name == "grass" else name


_BUILD = {"room": _room, "tabletop": _tabletop, "yard": _yard}


def _generate_one(seed: int, k: int, prefix: str) -> dict:
    rng = np.random.default_rng([seed, k])
    kind = KINDS[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    built = _BUILD[kind](rng, _Mats(rng))
    pool = built["pool"]
    names = list(pool)
    chosen = sorted(int(i) for i in rng.choice(len(names), size=min(len(names), int(rng.integers(2, 4))),
                                              replace=False))
    lightings = [{"name": names[i], **pool[names[i]]()} for i in chosen]
    cam = built["camera"]
    return {"id": f"{prefix}_s{seed}_{k:04d}", "description": built["description"],
            "camera": {"location": list(cam.location), "look_at": list(cam.look_at), "lens_mm": cam.lens_mm},
            "world": {"color": [0.05, 0.05, 0.05], "strength": 1.0},
            "objects": built["objects"], "lightings": lightings}


def generate_scenes(n: int, seed: int = 0, prefix: str = "gen") -> list[Scene]:
    """`n` random valid scenes with descriptions; the same (n, seed) gives the same scenes.

    Scene k depends only on (seed, k), so `generate_scenes(10, s)[:5] == generate_scenes(5, s)`. Kinds are
    drawn 40 % room, 35 % tabletop, 25 % yard; each scene has 2-3 lightings from its kind's pool.
    """
    if n < 0:
        raise SceneError(f"--generate needs N >= 0, got {n}")
    if seed < 0:
        raise SceneError(f"--seed needs S >= 0, got {seed}")
    # through the validator: a generated scene is exactly as valid as a hand-written one
    return [parse_scene(_generate_one(seed, k, prefix), where=f"<generated {prefix}_s{seed}_{k:04d}>")
            for k in range(n)]
