"""Composite objects (table, chair, shelf with books, mug, vase, lamp, room shell) built from primitives,
and the lathe mesh. Plain data and numpy, no bpy.

    from render.assets import COMPOSITES, expand, lathe_mesh
    parts, portals = expand("table", {"size": [1.2, 0.8, 0.75]})   # parts in the composite's own frame
    verts, faces = lathe_mesh([(0, 0), (0.05, 0), (0.05, 0.1)], segments=48)

A composite in a scene spec is one object (`"primitive": "table"`, with `params`, a `material` for all
its parts and `materials` per part group); loading the spec expands it into ordinary objects named
`<name>.<part>`, each with its own object index (render.scene does the expansion, placing the parts with
the composite's location and rotation). Every part is a bevelled box, cylinder, sphere, torus or
lathe, so the ground truth is exactly as for hand-placed primitives. Frame: metres, z up, the origin
on the floor under the object's centre; a room's origin is the centre of its floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from render.materials import Param

__all__ = ["Part", "PortalSpec", "CompositeType", "COMPOSITES", "expand", "lathe_mesh", "primitive_mesh", "euler_to_matrix",
           "matrix_to_euler", "WALLS", "BOOK_COLORS"]

WALLS = ("back", "front", "left", "right")
# default book spines (linear RGB): muted cloth and paper colours
BOOK_COLORS = ((0.32, 0.05, 0.04), (0.05, 0.12, 0.25), (0.12, 0.22, 0.08), (0.55, 0.42, 0.22),
               (0.62, 0.6, 0.55), (0.05, 0.05, 0.05), (0.45, 0.15, 0.05), (0.22, 0.1, 0.25))


@dataclass
class Part:
    """One primitive of a composite, in the composite's frame."""
    name: str
    group: str                                   # material group
    primitive: str                               # cube | cylinder | sphere | torus | lathe
    location: tuple[float, float, float]
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bevel: float = 0.0
    profile: list[tuple[float, float]] | None = None
    base_color: tuple[float, float, float] | None = None   # overrides the group material's colour (books)


@dataclass
class PortalSpec:
    location: tuple[float, float, float]
    look_at: tuple[float, float, float]
    size: float
    size_y: float


@dataclass(frozen=True)
class CompositeType:
    doc: str
    params: dict[str, Param]
    groups: tuple[str, ...]
    build: Callable[[dict], tuple[list[Part], list[PortalSpec]]] = field(repr=False)


def _p(default, lo=None, hi=None, doc="", kind="number", choices=()):
    return Param(default, lo, hi, doc, choices=tuple(choices), kind=kind)


def _box(name, group, center, half, bevel=0.0) -> Part:
    return Part(name, group, "cube", tuple(center), tuple(half), bevel=bevel)


# ------------------------------------------------------------------------------------ builders
def _table(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    w, d, h = p["size"]
    top, leg, bev = p["top_thickness"], p["leg_width"], p["bevel"]
    inset = min(0.04, 0.1 * min(w, d))
    parts = [_box("top", "top", (0, 0, h - top / 2), (w / 2, d / 2, top / 2), bev)]
    lx, ly = w / 2 - inset - leg / 2, d / 2 - inset - leg / 2
    lh = h - top
    for i, (sx, sy) in enumerate(((-1, -1), (1, -1), (1, 1), (-1, 1))):
        if p["legs"] == "round":
            parts.append(Part(f"leg_{i}", "legs", "cylinder", (sx * lx, sy * ly, lh / 2), (leg / 2, leg / 2, lh / 2)))
        else:
            parts.append(_box(f"leg_{i}", "legs", (sx * lx, sy * ly, lh / 2), (leg / 2, leg / 2, lh / 2), bev / 2))
    ap = p["apron"]
    if ap > 0:
        za = h - top - ap / 2
        t = 0.01
        parts.append(_box("apron_front", "legs", (0, -ly, za), (lx - leg / 2, t, ap / 2)))
        parts.append(_box("apron_back", "legs", (0, ly, za), (lx - leg / 2, t, ap / 2)))
        parts.append(_box("apron_left", "legs", (-lx, 0, za), (t, ly - leg / 2, ap / 2)))
        parts.append(_box("apron_right", "legs", (lx, 0, za), (t, ly - leg / 2, ap / 2)))
    return parts, []


def _chair(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    w, d = p["size"]
    sh, bh, leg, seat, bev = p["seat_height"], p["back_height"], p["leg_width"], p["seat_thickness"], p["bevel"]
    parts = [_box("seat", "seat", (0, 0, sh - seat / 2), (w / 2, d / 2, seat / 2), bev)]
    lx, ly = w / 2 - leg / 2, d / 2 - leg / 2
    front_h = sh - seat
    for i, sx in enumerate((-1, 1)):
        parts.append(_box(f"leg_front_{i}", "frame", (sx * lx, -ly, front_h / 2), (leg / 2, leg / 2, front_h / 2),
                          bev / 2))
        post = sh + bh
        parts.append(_box(f"leg_back_{i}", "frame", (sx * lx, ly, post / 2), (leg / 2, leg / 2, post / 2), bev / 2))
    for j, zc in enumerate((sh + bh - 0.07, sh + bh * 0.45)):
        parts.append(_box(f"back_rail_{j}", "frame", (0, ly, zc), (lx - leg / 2, 0.01, 0.045 if j == 0 else 0.025),
                          bev / 2))
    return parts, []


def _shelf(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    w, d, h = p["size"]
    n, b = int(p["shelves"]), p["board"]
    parts = [_box("side_left", "frame", (-w / 2 + b / 2, 0, h / 2), (b / 2, d / 2, h / 2), 0.002),
             _box("side_right", "frame", (w / 2 - b / 2, 0, h / 2), (b / 2, d / 2, h / 2), 0.002),
             _box("back", "frame", (0, d / 2 - 0.005, h / 2), (w / 2 - b, 0.005, h / 2 - b))]
    gap = (h - b) / n
    for k in range(n + 1):
        z = b / 2 + k * gap
        parts.append(_box(f"board_{k}", "frame", (0, 0, z), (w / 2 - b, d / 2, b / 2), 0.002))
    colors = [tuple(c) for c in p["book_colors"]]
    inner = w - 2 * b
    for k in range(n):
        rng = np.random.default_rng([int(p["seed"]), k])
        x = -w / 2 + b + 0.01
        limit = -w / 2 + b + inner * p["books"]
        i = 0
        while True:
            bw = float(rng.uniform(0.018, 0.05))
            if x + bw > limit or x + bw > w / 2 - b - 0.005:
                break
            bhh = float(rng.uniform(0.62, 0.9)) * (gap - b)
            bd = float(rng.uniform(0.65, 0.85)) * (d - 0.02)
            c = colors[int(rng.integers(len(colors)))]
            z0 = b + k * gap
            parts.append(Part(f"book_{k}_{i}", "books", "cube", (x + bw / 2, -d / 2 + 0.01 + bd / 2, z0 + bhh / 2),
                              (bw / 2 - 0.0005, bd / 2, bhh / 2), bevel=0.002, base_color=c))
            x += bw
            i += 1
    return parts, []


def _mug(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    r, h, t = p["radius"], p["height"], p["wall"]
    e = min(0.004, r / 5)
    body = [(0.0, 0.0), (r - e, 0.0), (r, e), (r, h), (r - t, h), (r - t, t + 0.002), (0.0, t + 0.002)]
    parts = [Part("body", "body", "lathe", (0, 0, 0), profile=body)]
    if p["handle"]:
        hr = 0.3 * h
        # a D-shaped ring (unit torus: R 1, r 0.25, scaled 0.8 across): its inner edge, hr from its centre,
        # stops inside the body's wall, so nothing pokes into the cup
        parts.append(Part("handle", "body", "torus", (r - t / 2 + hr, 0, 0.5 * h), (0.8 * hr, hr, hr),
                          rotation_deg=(90.0, 0.0, 0.0)))
    return parts, []


def _vase(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    outer = [tuple(q) for q in p["profile"]]
    t = p["wall"]
    rim_r, rim_z = outer[-1]
    depth = min(0.12, 0.6 * rim_z)
    inner = [(max(rim_r - t, 0.001), rim_z), (max(rim_r - t, 0.001), rim_z - depth), (0.0, rim_z - depth)]
    prof = [(0.0, 0.0), *outer, *inner]
    return [Part("body", "body", "lathe", (0, 0, 0), profile=prof)], []


def _lamp(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    h, br = p["height"], p["base_radius"]
    r_top, r_bot = p["shade_radius"]
    sh = p["shade_height"]
    base_h = 0.025
    stem_top = h - 0.5 * sh
    parts = [Part("base", "base", "cylinder", (0, 0, base_h / 2), (br, br, base_h / 2)),
             Part("stem", "base", "cylinder", (0, 0, (base_h + stem_top) / 2), (0.008, 0.008, (stem_top - base_h) / 2)),
             Part("shade", "shade", "lathe", (0, 0, 0), profile=[(r_bot, h - sh), (r_top, h)])]
    return parts, []


def _room(p: dict) -> tuple[list[Part], list[PortalSpec]]:
    w, d, h = p["size"]
    t = p["wall_thickness"]
    parts = [_box("floor", "floor", (0, 0, -0.05), (w / 2 + t, d / 2 + t, 0.05)),
             ]
    if p["ceiling"]:
        parts.append(_box("ceiling", "ceiling", (0, 0, h + 0.05), (w / 2 + t, d / 2 + t, 0.05)))
    openings: dict[str, list[dict]] = {k: [] for k in WALLS}
    portals: list[PortalSpec] = []
    if p["window"] is not None:
        win = p["window"]
        openings[win["wall"]].append({"kind": "window", "u": win["center"], "w": win["size"][0],
                                      "z0": win["sill"], "z1": win["sill"] + win["size"][1]})
    if p["door"] is not None:
        door = p["door"]
        openings[door["wall"]].append({"kind": "door", "u": door["center"], "w": door["size"][0], "z0": 0.0,
                                       "z1": door["size"][1]})

    def frame_of(wall: str):
        """(length along u, to-3D for (u, z, offset into the room from the wall's inner face), inward normal)."""
        if wall in ("back", "front"):
            sgn = 1.0 if wall == "back" else -1.0
            return w / 2 + t, (lambda u, z, o: (u, sgn * (d / 2 - o), z)), (0.0, -sgn, 0.0), "y"
        sgn = 1.0 if wall == "right" else -1.0
        return d / 2, (lambda u, z, o: (sgn * (w / 2 - o), u, z)), (-sgn, 0.0, 0.0), "x"

    def box_on(wall, name, group, u0, u1, z0, z1, o0, o1, bevel=0.0):
        """A box on `wall` spanning u0..u1, z0..z1 and o0..o1 (offset into the room; negative = into the wall)."""
        _, to3, _, thick_axis = frame_of(wall)
        cu, cz, co = (u0 + u1) / 2, (z0 + z1) / 2, (o0 + o1) / 2
        c = to3(cu, cz, co)
        hu, hz, ho = abs(u1 - u0) / 2, abs(z1 - z0) / 2, abs(o1 - o0) / 2
        half = (hu, ho, hz) if thick_axis == "y" else (ho, hu, hz)
        return _box(name, group, c, half, bevel)

    for wall in WALLS:
        if wall not in p["walls"]:
            continue
        half_len = frame_of(wall)[0]
        ops = sorted(openings[wall], key=lambda o: o["u"])
        u = -half_len
        k = 0
        for o in ops:
            u0, u1 = o["u"] - o["w"] / 2, o["u"] + o["w"] / 2
            if u0 > u:
                parts.append(box_on(wall, f"wall_{wall}_{k}", "walls", u, u0, 0.0, h, -t, 0.0))
                k += 1
            if o["z0"] > 0:
                parts.append(box_on(wall, f"wall_{wall}_{k}", "walls", u0, u1, 0.0, o["z0"], -t, 0.0))
                k += 1
            if o["z1"] < h:
                parts.append(box_on(wall, f"wall_{wall}_{k}", "walls", u0, u1, o["z1"], h, -t, 0.0))
                k += 1
            u = u1
            fw = 0.05
            if o["kind"] == "window":
                z0, z1 = o["z0"], o["z1"]
                parts += [box_on(wall, f"window_{wall}_jamb_l", "frame", u0, u0 + fw, z0, z1, -t - 0.01, 0.01),
                          box_on(wall, f"window_{wall}_jamb_r", "frame", u1 - fw, u1, z0, z1, -t - 0.01, 0.01),
                          box_on(wall, f"window_{wall}_head", "frame", u0 + fw, u1 - fw, z1 - fw, z1, -t - 0.01, 0.01),
                          box_on(wall, f"window_{wall}_sill", "frame", u0 - 0.05, u1 + 0.05, z0 - 0.03, z0 + 0.01,
                                 -t - 0.02, 0.05, 0.005)]
                _, to3, inward, _ = frame_of(wall)
                c = to3((u0 + u1) / 2, (z0 + z1 - fw + 0.01) / 2, -t - 0.011)
                portals.append(PortalSpec(c, tuple(ci + ni for ci, ni in zip(c, inward)), o["w"] - 2 * fw,
                                          z1 - z0 - fw - 0.01))
            else:
                z1 = o["z1"]
                parts += [box_on(wall, f"door_{wall}_jamb_l", "frame", u0 - 0.07, u0, 0.0, z1 + 0.07, -t - 0.01, 0.02),
                          box_on(wall, f"door_{wall}_jamb_r", "frame", u1, u1 + 0.07, 0.0, z1 + 0.07, -t - 0.01, 0.02),
                          box_on(wall, f"door_{wall}_head", "frame", u0, u1, z1, z1 + 0.07, -t - 0.01, 0.02),
                          box_on(wall, f"door_{wall}_leaf", "door", u0, u1, 0.0, z1, -t / 2 - 0.02, -t / 2 + 0.02,
                                 0.003)]
        if u < half_len:
            parts.append(box_on(wall, f"wall_{wall}_{k}", "walls", u, half_len, 0.0, h, -t, 0.0))
        sk = p["skirting"]
        if sk > 0:
            inner = w / 2 if wall in ("back", "front") else d / 2
            spans = [(-inner, inner)]
            for o in ops:
                if o["kind"] == "door":
                    a, b = o["u"] - o["w"] / 2 - 0.07, o["u"] + o["w"] / 2 + 0.07
                    spans = [s for sp in spans for s in ((sp[0], min(sp[1], a)), (max(sp[0], b), sp[1]))
                             if s[1] - s[0] > 0.01]
            for j, (a, b) in enumerate(spans):
                parts.append(box_on(wall, f"skirting_{wall}_{j}", "skirting", a, b, 0.0, sk, 0.0, 0.012, 0.002))
    closed = p["ceiling"] and set(p["walls"]) == set(WALLS)
    # a portal makes Cycles sample the sky only through it: right for a closed room, wrong for one whose open
    # side also lets the sky in (that light would then be found by chance only, i.e. with more noise)
    return parts, (portals if closed else [])


_OPENING_DOC = "{wall: back|front|left|right, center: m along the wall (x for back/front, y for left/right)"
COMPOSITES: dict[str, CompositeType] = {
    "table": CompositeType(
        "a table: top, four legs, an apron", {
            "size": _p([1.2, 0.8, 0.75], 0.1, 5.0, "width (x), depth (y), height (z) in metres", "vec3"),
            "top_thickness": _p(0.04, 0.01, 0.2, "m"), "leg_width": _p(0.06, 0.01, 0.3, "m"),
            "apron": _p(0.08, 0.0, 0.3, "height of the rails under the top, m (0: none)"),
            "legs": _p("square", doc="leg shape", kind="choice", choices=("square", "round")),
            "bevel": _p(0.006, 0.0, 0.05, "edge radius, m")},
        ("top", "legs"), _table),
    "chair": CompositeType(
        "a chair: seat, four legs, back posts and two back rails (the back faces +y)", {
            "size": _p([0.45, 0.45], 0.2, 2.0, "seat width (x), depth (y), m", "vec2"),
            "seat_height": _p(0.45, 0.1, 1.5, "m"), "back_height": _p(0.45, 0.1, 1.5, "above the seat, m"),
            "leg_width": _p(0.035, 0.01, 0.2, "m"), "seat_thickness": _p(0.03, 0.01, 0.2, "m"),
            "bevel": _p(0.004, 0.0, 0.03, "edge radius, m")},
        ("seat", "frame"), _chair),
    "shelf": CompositeType(
        "a bookshelf: sides, back, boards and seeded rows of books (open side faces -y)", {
            "size": _p([0.8, 0.3, 1.6], 0.1, 5.0, "width, depth, height, m", "vec3"),
            "shelves": _p(4, 1, 12, "compartments", "int"), "board": _p(0.02, 0.005, 0.1, "board thickness, m"),
            "books": _p(0.75, 0.0, 1.0, "fraction of each shelf's width filled with books"),
            "book_colors": _p([list(c) for c in BOOK_COLORS], doc="colours the books are drawn from", kind="colors"),
            "seed": _p(0, 0, 2**31 - 1, "book sizes and colours", "int")},
        ("frame", "books"), _shelf),
    "mug": CompositeType(
        "a mug: a lathed body with a rounded foot, open top and a handle", {
            "radius": _p(0.04, 0.01, 0.3, "m"), "height": _p(0.095, 0.02, 0.5, "m"),
            "wall": _p(0.004, 0.001, 0.02, "m"), "handle": _p(True, doc="with a handle", kind="bool")},
        ("body",), _mug),
    "vase": CompositeType(
        "a vase turned on a lathe from an outer profile, hollow at the top", {
            "profile": _p([[0.05, 0.0], [0.075, 0.05], [0.09, 0.12], [0.06, 0.24], [0.035, 0.3], [0.045, 0.34]],
                          doc="outer (radius, z) points from the foot up to the rim, m", kind="profile"),
            "wall": _p(0.006, 0.001, 0.05, "m")},
        ("body",), _vase),
    "lamp": CompositeType(
        "a table lamp: base, stem and an open shade; light it with a point light of radius <= 0.02 m at the "
        "shade's lower rim, z = height - shade_height - 0.02 above the lamp's location (the room then sees the "
        "bulb directly, which renders with far less noise than light bounced out of the shade)", {
            "height": _p(0.5, 0.1, 2.5, "m"), "base_radius": _p(0.08, 0.02, 0.5, "m"),
            "shade_radius": _p([0.09, 0.14], 0.02, 1.0, "top, bottom radius of the shade, m", "vec2"),
            "shade_height": _p(0.18, 0.03, 1.0, "m")},
        ("base", "shade"), _lamp),
    "room": CompositeType(
        "a room shell: floor, ceiling and thick walls (interior x in +-w/2, y in +-d/2, z in 0..h) with an optional "
        "window opening (frame, sill; in a closed room a light portal is added over it) and door (frame, closed "
        "leaf), and "
        "skirting boards; back wall at +y", {
            "size": _p([4.0, 5.0, 2.7], 0.5, 50.0, "interior width, depth, height, m", "vec3"),
            "wall_thickness": _p(0.12, 0.02, 1.0, "m"),
            "skirting": _p(0.08, 0.0, 0.4, "height of the skirting boards, m (0: none)"),
            "window": _p(None, doc=_OPENING_DOC + ", sill: m above the floor (0.9), size: [width, height] m}",
                         kind="window"),
            "door": _p(None, doc=_OPENING_DOC + ", size: [width, height] m (0.9, 2.05)}", kind="door"),
            "walls": _p(list(WALLS), doc="which walls exist", kind="walls"),
            "ceiling": _p(True, doc="with a ceiling", kind="bool")},
        ("floor", "ceiling", "walls", "skirting", "frame", "door"), _room),
}


def expand(kind: str, params: dict) -> tuple[list[Part], list[PortalSpec]]:
    """The parts (and light portals) of composite `kind` with validated, defaults-filled `params`."""
    return COMPOSITES[kind].build(params)


# ---------------------------------------------------------------------------------- geometry
def euler_to_matrix(deg) -> np.ndarray:
    """Blender's XYZ Euler (degrees) -> 3x3 rotation: R = Rz @ Ry @ Rx."""
    a, b, c = (math.radians(v) for v in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_euler(r: np.ndarray) -> tuple[float, float, float]:
    """3x3 rotation -> Blender XYZ Euler in degrees (the inverse of euler_to_matrix)."""
    sb = -float(np.clip(r[2, 0], -1.0, 1.0))
    b = math.asin(sb)
    if abs(sb) < 1.0 - 1e-9:
        a = math.atan2(r[2, 1], r[2, 2])
        c = math.atan2(r[1, 0], r[0, 0])
    else:                                   # gimbal lock: put everything into x
        a = math.atan2(-r[1, 2], r[1, 1])
        c = 0.0
    return tuple(math.degrees(v) for v in (a, b, c))  # type: ignore[return-value]


def lathe_mesh(profile, segments: int = 64, closed: bool = False) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Revolve (radius, z) points about the z axis: vertices [N, 3] float64 and faces (quads, fans on the axis).

    Points with radius 0 lie on the axis (one vertex); the surface is open where the profile ends off the
    axis unless `closed` joins the last point back to the first (a torus). Faces face the side a
    right-hand turn about +z, then along the profile, points to: outwards for a profile walking up the outside.
    """
    rings: list[list[int]] = []
    verts: list[tuple[float, float, float]] = []
    angles = [2 * math.pi * k / segments for k in range(segments)]
    for r, z in profile:
        if r <= 0:
            rings.append([len(verts)])
            verts.append((0.0, 0.0, float(z)))
        else:
            rings.append(list(range(len(verts), len(verts) + segments)))
            verts.extend((r * math.cos(a), r * math.sin(a), float(z)) for a in angles)
    pairs = list(zip(rings, rings[1:])) + ([(rings[-1], rings[0])] if closed else [])
    faces: list[tuple[int, ...]] = []
    for lo, hi in pairs:
        if len(lo) == 1 and len(hi) == 1:
            continue
        for k in range(segments):
            k1 = (k + 1) % segments
            if len(lo) == 1:
                faces.append((lo[0], hi[k1], hi[k]))
            elif len(hi) == 1:
                faces.append((lo[k], lo[k1], hi[0]))
            else:
                faces.append((lo[k], lo[k1], hi[k1], hi[k]))
    return np.array(verts, dtype=np.float64), faces


def primitive_mesh(primitive: str, profile=None, segments: int = 64) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Unit-size meshes of the spec's primitives (before scale): plane 2x2, cube 2, sphere r 1, cylinder and
    cone r 1 h 2, torus R 1 r 0.25, lathe from its profile. Faces point outwards."""
    if primitive == "plane":
        return np.array([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], float), [(0, 1, 2, 3)]
    if primitive == "cube":
        verts = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
        index = {v: i for i, v in enumerate(verts)}
        faces = []
        for axis, a, b in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):      # a x b = +axis
            for sign in (1, -1):
                ta, tb = (a, b) if sign > 0 else (b, a)
                quad = []
                for ca, cb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                    v = [0, 0, 0]
                    v[axis], v[ta], v[tb] = sign, ca, cb
                    quad.append(index[tuple(v)])
                faces.append(tuple(quad))
        return np.array(verts, float), faces
    if primitive == "sphere":
        prof = [(math.sin(math.pi * i / 32), -math.cos(math.pi * i / 32)) for i in range(33)]
        prof[0], prof[-1] = (0.0, -1.0), (0.0, 1.0)
        return lathe_mesh(prof, 64)
    if primitive == "cylinder":
        return lathe_mesh([(0.0, -1.0), (1.0, -1.0), (1.0, 1.0), (0.0, 1.0)], 64)
    if primitive == "cone":
        return lathe_mesh([(0.0, -1.0), (1.0, -1.0), (0.0, 1.0)], 64)
    if primitive == "torus":
        prof = [(1.0 + 0.25 * math.cos(2 * math.pi * i / 24), 0.25 * math.sin(2 * math.pi * i / 24)) for i in range(24)]
        return lathe_mesh(prof, 64, closed=True)
    if primitive == "lathe":
        return lathe_mesh(profile, segments)
    raise ValueError(f"no built-in mesh for primitive {primitive!r}")
