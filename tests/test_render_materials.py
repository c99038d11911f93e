"""Procedural textures, composite objects, skies, exposure and the generator (issue 12).

The one Blender render here (a tiny scene with every texture type) checks albedo exactness per texture:
with the Principled BSDF's specular layer off, Cycles' own Diffuse Color pass is the base colour the BSDF
used, sample by sample, so it must equal the albedo AOV; everything else is pure Python.
"""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from scipy import ndimage

from render.assets import COMPOSITES, euler_to_matrix, lathe_mesh, matrix_to_euler, primitive_mesh
from render.generator import KINDS, generate_scenes
from render.groundtruth import EXPOSURE_TARGET, GroundTruth, expose, identity_error, meter
from render.materials import TEXTURES, seed_offset, texture_graph
from render.paths import data_dir
from render.scene import (TEXTURES as SCENE_TEXTURES, Sky, SceneError, Texture, load_scenes, parse_scene,
                          scene_to_dict, spec_doc)
from test_render import run_cli, run_py

SPEC = {
    "id": "t", "description": "test objects",
    "camera": {"location": [0, -4, 2], "look_at": [0, 0, 0.5]},
    "objects": [{"name": "floor", "primitive": "plane", "scale": 3, "material": {"base_color": [0.5, 0.5, 0.5]}}],
    "lightings": [{"name": "sun", "description": "lit by a sun", "lights": [{"type": "sun", "location": [1, -1, 3]}]},
                  {"name": "sky", "description": "lit by the sky", "lights": [], "world": {"strength": 1.0}}],
}
COLOURS = {"color1": [0.7, 0.2, 0.1], "color2": [0.1, 0.5, 0.8], "color3": [0.9, 0.85, 0.3]}


def texture_spec(kind: str, **params) -> dict:
    t = {"type": kind, **{c: COLOURS[c] for c in TEXTURES[kind].colors}, **params}
    return {"base_color": t, "roughness": [0.3, 0.7], "specular": 0.0}


def with_objects(*objects) -> dict:
    d = copy.deepcopy(SPEC)
    d["objects"] += list(objects)
    return d


# ------------------------------------------------------------------------------------ schema
def test_every_texture_has_a_graph_doc_and_parses_with_defaults():
    assert set(TEXTURES) == set(SCENE_TEXTURES)
    doc = spec_doc()
    for kind, tt in TEXTURES.items():
        assert re.search(rf"^  {kind}\b", doc, re.M), kind
        for p in tt.params:
            assert p in doc
        s = parse_scene(with_objects({"name": "x", "primitive": "cube", "location": [0, 0, 0.5], "scale": 0.5,
                                      "material": texture_spec(kind)}))
        t = s.objects[-1].material.base_color
        assert isinstance(t, Texture) and t.type == kind and t.coords == tt.coords
        assert dict(t.params).keys() == tt.params.keys()
        g = texture_graph(t, (0.5, 0.5, 0.5))
        assert g.color is not None and g.factor is not None and g.nodes
        assert {a for a, *_ in g.links} | {b for *_, b, _ in g.links} <= set(g.nodes)
    for kind, c in COMPOSITES.items():
        assert re.search(rf"^  {kind}\b", doc, re.M) and all(p in doc for p in c.params)


BAD = [
    ("unknown texture", lambda: texture_spec("wood") | {"base_color": {"type": "velvet", **COLOURS}},
     "objects[1].material.base_color.type", "velvet"),
    ("out of range", lambda: texture_spec("wood", ring_spacing=0.5), "objects[1].material.base_color.ring_spacing",
     "0.05"),
    ("param of another type", lambda: texture_spec("wood", mortar=0.01), "objects[1].material.base_color.mortar",
     "unknown field"),
    ("missing mortar colour", lambda: {"base_color": {"type": "brick", "color1": [0.5, 0.1, 0.1],
                                                      "color2": [0.4, 0.1, 0.1]}},
     "objects[1].material.base_color", "color3"),
    ("bad choice", lambda: texture_spec("tile", pattern="hexagon"), "objects[1].material.base_color.pattern",
     "hexagon"),
    ("roughness pair without texture", lambda: {"base_color": [0.5, 0.5, 0.5], "roughness": [0.2, 0.4]},
     "objects[1].material.roughness", "texture"),
    ("roughness pair out of range", lambda: texture_spec("wood") | {"roughness": [0.2, 1.4]},
     "objects[1].material.roughness[1]", "1.0"),
]


@pytest.mark.parametrize("make,field,word", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_material_is_one_paragraph_naming_the_field(make, field, word):
    spec = with_objects({"name": "x", "primitive": "cube", "location": [0, 0, 0.5], "scale": 0.5, "material": make()})
    with pytest.raises(SceneError) as e:
        parse_scene(spec, where="spec.json")
    msg = str(e.value)
    assert field in msg and word in msg and "\n" not in msg, msg


BAD_OBJECTS = [
    ("bevel on a sphere", {"name": "x", "primitive": "sphere", "bevel": 0.01, "material": {"base_color": [1, 1, 1]}},
     "objects[1].bevel"),
    ("bevel too big", {"name": "x", "primitive": "cube", "scale": 0.1, "bevel": 0.2, "material": {"base_color": [1, 1, 1]}},
     "objects[1].bevel"),
    ("lathe without profile", {"name": "x", "primitive": "lathe", "material": {"base_color": [1, 1, 1]}},
     "profile"),
    ("composite param typo", {"name": "t", "primitive": "table", "params": {"legz": 3},
                              "material": {"base_color": [1, 1, 1]}}, "objects[1].params.legz"),
    ("composite param range", {"name": "t", "primitive": "table", "params": {"size": [1, 0.5, 9]},
                               "material": {"base_color": [1, 1, 1]}}, "objects[1].params.size[2]"),
    ("composite unknown group", {"name": "t", "primitive": "table", "material": {"base_color": [1, 1, 1]},
                                 "materials": {"seat": {"base_color": [1, 0, 0]}}}, "objects[1].materials.seat"),
    ("composite bad material", {"name": "t", "primitive": "table", "material": {"base_color": [1, 1, 2]}},
     "objects[1].material.base_color[2]"),
    ("room bad wall", {"name": "r", "primitive": "room", "params": {"window": {"wall": "ceiling"}},
                       "material": {"base_color": [1, 1, 1]}}, "objects[1].params.window.wall"),
    ("shape on a point light", None, "lightings[0].lights[0].shape"),
    ("sky elevation", None, "lightings[1].world.sky.sun_elevation_deg"),
]


@pytest.mark.parametrize("obj,field", [b[1:] for b in BAD_OBJECTS], ids=[b[0] for b in BAD_OBJECTS])
def test_bad_objects_and_lights_name_the_field(obj, field):
    spec = with_objects(obj) if obj else copy.deepcopy(SPEC)
    if field.startswith("lightings[0]"):
        spec["lightings"][0]["lights"][0].update(type="point", shape="disk")
    if field.startswith("lightings[1]"):
        spec["lightings"][1]["world"]["sky"] = {"sun_elevation_deg": 120}
    with pytest.raises(SceneError) as e:
        parse_scene(spec, where="spec.json")
    assert field in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_cli_bad_texture_parameter_exits_2_and_writes_nothing(tmp_path):
    spec = with_objects({"name": "x", "primitive": "cube", "location": [0, 0, 0.5], "scale": 0.5,
                         "material": texture_spec("marble", sharpness=99)})
    (tmp_path / "t.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    proc = run_cli("--scenes", str(tmp_path / "t.json"), "--out", str(out), check=False)
    assert proc.returncode == 2 and "objects[1].material.base_color.sharpness" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


# ---------------------------------------------------------------------------------- geometry
def _signed_volume(verts: np.ndarray, faces) -> float:
    v = 0.0
    for f in faces:
        for a, b in zip(f[1:-1], f[2:]):
            v += float(np.dot(verts[f[0]], np.cross(verts[a], verts[b]))) / 6.0
    return v


@pytest.mark.parametrize("prim,volume", [("cube", 8.0), ("sphere", 4 / 3 * np.pi), ("cylinder", 2 * np.pi),
                                         ("cone", 2 * np.pi / 3), ("torus", 2 * np.pi ** 2 * 0.25 ** 2)])
def test_primitive_meshes_are_closed_and_face_outwards(prim, volume):
    verts, faces = primitive_mesh(prim)
    assert _signed_volume(verts, faces) == pytest.approx(volume, rel=0.02)     # > 0: normals point outwards


def test_lathe_profile_walks_and_mug_is_a_solid_shell():
    verts, faces = lathe_mesh([(0, 0), (1, 0), (1, 1), (0, 1)], 96)
    assert _signed_volume(verts, faces) == pytest.approx(np.pi, rel=0.01)
    s = parse_scene(with_objects({"name": "mug", "primitive": "mug", "material": {"base_color": [1, 1, 1]}}))
    body = next(o for o in s.objects if o.name == "mug.body")
    v, f = lathe_mesh(body.profile, body.segments)
    r, h, t = 0.04, 0.095, 0.004
    shell = np.pi * r * r * h - np.pi * (r - t) ** 2 * (h - t - 0.002)
    assert _signed_volume(v, f) == pytest.approx(shell, rel=0.05)


def test_euler_round_trip():
    rng = np.random.default_rng(0)
    for deg in rng.uniform(-170, 170, (20, 3)):
        deg[1] = np.clip(deg[1], -80, 80)
        np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(euler_to_matrix(deg))), euler_to_matrix(deg),
                                   atol=1e-9)


def test_composites_expand_into_placed_parts():
    table = {"name": "table", "primitive": "table", "location": [1.0, 2.0, 0.0], "rotation_deg": [0, 0, 90],
             "params": {"size": [1.2, 0.6, 0.75]}, "material": {"base_color": [0.4, 0.2, 0.1]},
             "materials": {"top": {"base_color": [0.8, 0.8, 0.8]}}}
    s = parse_scene(with_objects(table))
    parts = [o for o in s.objects if o.group == "table"]
    names = {o.name for o in parts}
    assert {"table.top", "table.leg_0", "table.leg_3", "table.apron_front"} <= names
    top = next(o for o in parts if o.name == "table.top")
    assert top.material.base_color == (0.8, 0.8, 0.8) and top.bevel > 0
    assert top.location == pytest.approx((1.0, 2.0, 0.73)) and top.rotation_deg[2] == pytest.approx(90.0)
    leg = next(o for o in parts if o.name == "table.leg_0")
    assert leg.location[2] - leg.scale[2] == pytest.approx(0.0, abs=1e-9)        # legs stand on the floor
    assert leg.material.base_color == (0.4, 0.2, 0.1)
    # a 90-degree turn swaps the table's width and depth in world x/y: legs span 0.6 m in x after it
    xs = [o.location[0] for o in parts if o.name.startswith("table.leg")]
    assert max(xs) - min(xs) < 0.6
    room = {"name": "room", "primitive": "room", "params": {"size": [4, 5, 2.6],
                                                             "window": {"wall": "left", "size": [1.2, 1.2]},
                                                             "door": {"wall": "back", "center": 1.0}},
            "material": {"base_color": [0.7, 0.7, 0.7]}}
    r = parse_scene(with_objects(room))
    assert len(r.portals) == 1 and r.portals[0].location[0] < -2.0 < r.portals[0].look_at[0]   # faces into the room
    open_room = copy.deepcopy(room)
    open_room["params"]["walls"] = ["back", "left", "right"]
    assert parse_scene(with_objects(open_room)).portals == ()        # the sky also comes in through the open side
    names = {o.name for o in r.objects}
    assert {"room.floor", "room.ceiling", "room.door_back_leaf", "room.window_left_sill"} <= names
    assert any(n.startswith("room.skirting_back") for n in names)
    shelf = parse_scene(with_objects({"name": "s", "primitive": "shelf", "params": {"seed": 3},
                                      "material": {"base_color": [0.5, 0.4, 0.3]}}))
    books = [o for o in shelf.objects if ".book_" in o.name]
    assert len(books) > 10 and len({o.material.base_color for o in books}) > 3
    again = parse_scene(with_objects({"name": "s", "primitive": "shelf", "params": {"seed": 3},
                                      "material": {"base_color": [0.5, 0.4, 0.3]}}))
    assert again == shelf


def test_default_and_generated_scenes_round_trip_through_json():
    for s in load_scenes(data_dir("scenes")) + generate_scenes(6, seed=1):
        assert parse_scene(scene_to_dict(s)) == s, s.id
        assert len(s.objects) <= 255


def test_sky_sun_direction_convention():
    assert np.allclose(Sky(sun_elevation_deg=0, sun_azimuth_deg=90).sun_direction, (1, 0, 0), atol=1e-12)
    assert np.allclose(Sky(sun_elevation_deg=0, sun_azimuth_deg=0).sun_direction, (0, 1, 0), atol=1e-12)
    assert Sky(sun_elevation_deg=60).sun_kelvin == 5800.0 and Sky(sun_elevation_deg=0).sun_kelvin == 2500.0
    assert Sky(sun_temperature_k=4000).sun_kelvin == 4000


def test_texture_seed_moves_the_pattern_deterministically():
    assert seed_offset(0) == (0.0, 0.0, 0.0) and seed_offset(5) == seed_offset(5) != seed_offset(6)


# ---------------------------------------------------------------------------------- exposure
def _gt(rng, shading_scale=1.0):
    h, w = 20, 24
    albedo = rng.uniform(0.1, 0.8, (h, w, 3)).astype(np.float32)
    shading = (rng.uniform(0.5, 1.5, (h, w, 3)) * shading_scale).astype(np.float32)
    residual = rng.uniform(0, 0.05, (h, w, 3)).astype(np.float32)
    image = albedo * shading + residual
    return GroundTruth(image=image, albedo=albedo, shading=shading, residual=residual,
                       normal=np.zeros((h, w, 3), np.float32), depth=np.ones((h, w), np.float32),
                       mask=np.ones((h, w), bool), object_index=np.ones((h, w), np.int32),
                       coverage=np.ones((h, w), np.float32),
                       identity_error=identity_error(image, albedo, shading, residual))


def test_exposure_meters_the_light_and_keeps_the_identity():
    rng = np.random.default_rng(0)
    for scale in (0.01, 1.0, 300.0):
        gt = _gt(rng, scale)
        med, k = meter(gt)
        assert med == pytest.approx(float(np.median(gt.shading @ np.array([0.2126, 0.7152, 0.0722]))), rel=0.1)
        ev = np.log2(k)
        assert abs(ev * 3 - round(ev * 3)) < 1e-9                              # 1/3-EV steps
        out = expose(gt, k)
        assert np.array_equal(out.albedo, gt.albedo)                           # albedo is never scaled
        np.testing.assert_allclose(out.image, gt.image * k, rtol=1e-6)
        assert out.identity_error < 1e-5
        exposed = np.median(out.shading @ np.array([0.2126, 0.7152, 0.0722]))
        assert EXPOSURE_TARGET * 2 ** (-1 / 3) * 0.85 < exposed <= EXPOSURE_TARGET * 1.1
    # a small, very brightly lit patch: highlight protection keeps it under white
    gt = _gt(rng)
    sh = gt.shading.copy()
    sh[:3, :] *= 40
    bright = GroundTruth(**{**gt.__dict__, "shading": sh, "image": gt.albedo * sh + gt.residual})
    _, k = meter(bright)
    assert np.percentile((bright.albedo * bright.shading * k) @ np.array([0.2126, 0.7152, 0.0722]), 97) <= 0.9


# --------------------------------------------------------------------------------- generator
def test_generator_composes_every_kind_with_descriptions():
    scenes = generate_scenes(18, seed=2)
    lighting_words = re.compile(r"\b(lit|sun|sunlight|shadows?|spotlight|glow|highlight)\b", re.I)
    kinds = set()
    for s in scenes:
        assert 2 <= len(s.lightings) <= 3 and s.description and not lighting_words.search(s.description), s.id
        assert all(l.description.startswith("lit ") for l in s.lightings)
        groups = {o.group for o in s.objects}
        kinds.add("room" if "room" in groups and any("chair" in (g or "") for g in groups) else
                  "tabletop" if "room" in groups else "yard")
        assert any(isinstance(o.material.base_color, Texture) for o in s.objects)
    assert kinds == set(KINDS)
    textures = {o.material.base_color.type for s in scenes for o in s.objects if isinstance(o.material.base_color, Texture)}
    assert {"wood", "plaster", "tile", "fabric"} <= textures
    assert any(l.world and l.world.sky for s in scenes for l in s.lightings)
    assert any(li.temperature_k for s in scenes for l in s.lightings for li in l.lights)


# ---------------------------------------------------------------------------- albedo exactness
def test_albedo_is_the_base_colour_for_every_texture_type(tmp_path):
    """Each texture on its own box, specular off: Cycles' Diffuse Color (the BSDF's own diffuse colour, sample by
    sample) equals the albedo AOV to 1e-4 on every covered pixel, and the albedo is a mix of the declared colours."""
    kinds = list(TEXTURES)
    objs = []
    for i, kind in enumerate(kinds):
        x, y = (i % 4) * 0.55 - 0.8, (i // 4) * 0.55 - 0.5
        params = {"scale": 8.0} if kind in ("checker", "stripes", "noise", "marble") else {}
        params |= {"tile_size": 0.06} if kind == "tile" else {}
        params |= {"spacing": 0.05} if kind == "dots" else {}
        params |= {"threads": 40.0} if kind == "fabric" else {}
        params |= {"scale": 8.0} if kind == "plaster" else {}
        objs.append({"name": kind, "primitive": "cube", "location": [x, y, 0.2], "scale": [0.2, 0.2, 0.2],
                     "rotation_deg": [0, 0, 20], "bevel": 0.01, "material": texture_spec(kind, **params)})
    spec = copy.deepcopy(SPEC)
    spec["camera"] = {"location": [0, -0.2, 3.2], "look_at": [0, 0, 0], "lens_mm": 30}
    spec["objects"] = objs
    spec["lightings"] = spec["lightings"][:1]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(spec))
    code = f"""
import json, tempfile, numpy as np
from render.blender import BlenderSession
from render.scene import load_scene
from render.settings import RenderSettings
scene = load_scene({str(path)!r})
s = BlenderSession(RenderSettings(width=64, height=64, samples=4, firefly_clamp=0.0), tempfile.mkdtemp())
s.build(scene); s.set_lighting(scene, scene.lightings[0]); p = s.render()
np.savez({str(tmp_path / 'p.npz')!r}, albedo=p["albedo"], diffcol=p["Diffuse Color"], index=p["Object Index"])
"""
    run_py(code)
    p = np.load(tmp_path / "p.npz")
    covered = p["albedo"][..., 3] > 0
    err = np.abs(p["diffcol"][..., :3] - p["albedo"][..., :3])[covered]
    assert err.max() < 1e-4
    index = np.rint(p["index"][..., 0]).astype(int)
    full = p["albedo"][..., 3] == 1.0
    for i, kind in enumerate(kinds, start=1):
        px = p["albedo"][..., :3][(index == i) & full]
        assert len(px) > 20, kind
        cols = np.array([COLOURS[c] for c in TEXTURES[kind].colors])
        lo = (cols.min(0) * (0.0 if kind == "fabric" else 1.0)) - 1e-5          # fabric's relief darkens towards 0
        hi = cols.max(0) + 1e-5
        assert (px >= lo).all() and (px <= hi).all(), (kind, px[(px < lo).any(-1) | (px > hi).any(-1)][:3])
        assert px.std(0).max() > 0.02, f"{kind}: the texture shows no pattern"


def test_texture_make_fills_defaults_like_the_parser():
    t = Texture.make("wood", (0.5, 0.3, 0.1), (0.2, 0.1, 0.05), ring_spacing=0.01)
    parsed = parse_scene(with_objects({"name": "x", "primitive": "cube", "material": {"base_color": {
        "type": "wood", "color1": [0.5, 0.3, 0.1], "color2": [0.2, 0.1, 0.05], "ring_spacing": 0.01}}}))
    assert parsed.objects[-1].material.base_color == t and t.ring_spacing == 0.01 and t.grain == 0.3
    with pytest.raises(TypeError, match="mortar"):
        Texture.make("wood", (0, 0, 0), (1, 1, 1), mortar=0.01)
    with pytest.raises(AttributeError, match="mortar"):
        t.mortar
