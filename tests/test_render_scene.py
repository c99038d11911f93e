"""Scene specs, the generator, settings and the pass decomposition: pure Python, no Blender."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from render.groundtruth import IDENTITY_FLOOR, decompose, identity_error
from render.paths import data_dir
from render.generator import generate_scenes
from render.scene import SceneError, Texture, dumps_scene, load_scene, load_scenes, parse_scene, scene_to_dict
from render.settings import RenderSettings, parse_resolution
from render.shard import Shard

DEFAULT_IDS = """red_cube_table checker_floor_spheres glossy_sphere_pedestal striped_torus room_corner_box outdoor_cones
white_spheres_colored_lights shadow_across_checker mottled_sphere_sand kitchen_counter stacked_blocks matte_vs_glossy
grey_cylinder_row torus_on_stripes pink_cone_teal_cube_room low_sun_blocks fruit_spheres_table checker_cube
dim_room_lamp studio_sweep mottled_floor_cube window_light_room cornell_box glossy_floor_cubes pastel_primitives""".split()

MINIMAL = {
    "id": "tiny", "description": "a red cube on a grey plane",
    "camera": {"location": [0, -5, 3], "look_at": [0, 0, 0.5]},
    "objects": [
        {"name": "floor", "primitive": "plane", "scale": 4, "material": {"base_color": [0.5, 0.5, 0.5]}},
        {"name": "cube", "primitive": "cube", "location": [0, 0, 0.5], "scale": 0.5,
         "material": {"base_color": [0.6, 0.03, 0.03], "roughness": 0.7}},
    ],
    "lightings": [
        {"name": "sun", "description": "lit by a sun", "lights": [{"type": "sun", "location": [3, -2, 5]}]},
        {"name": "lamp", "description": "lit by a lamp", "lights": [{"type": "point", "location": [1, -1, 2], "strength": 100}]},
    ],
}


# ------------------------------------------------------------------------------ default scenes
def test_default_scenes_are_the_25_fixed_ids_and_valid():
    scenes = load_scenes(data_dir("scenes"))
    assert sorted(s.id for s in scenes) == sorted(DEFAULT_IDS)
    # "lamp" may name an object (a table lamp); words for light itself may not appear
    lighting_words = re.compile(r"\b(lit|sun|sunlight|shadows?|spotlight|glow|highlight)\b", re.I)
    for s in scenes:
        assert len(s.lightings) >= 2, s.id
        assert s.description and not lighting_words.search(s.description), s.id
        for l in s.lightings:
            assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", l.name)
            assert l.description
        assert all(o.material.metallic == 0 for o in s.objects), "default scenes are dielectric"


def test_default_scene_json_keys_for_prompt_generator():
    """The prompt generator reads id, description, lightings[].name/.description straight from the JSON."""
    for f in sorted(data_dir("scenes").glob("*.json")):
        d = json.loads(f.read_text())
        assert d["id"] == f.stem and isinstance(d["description"], str)
        assert {"id", "description", "camera", "world", "objects", "lightings"} <= set(d)
        assert all({"name", "description", "lights"} <= set(l) for l in d["lightings"])


def test_default_scenes_use_every_primitive_texture_composite_and_light():
    from render.assets import COMPOSITES
    from render.scene import TEXTURES

    scenes = load_scenes(data_dir("scenes"))
    prims = {o.primitive for s in scenes for o in s.objects}
    assert {"plane", "cube", "sphere", "cylinder", "cone", "torus", "lathe"} <= prims
    textures = {o.material.base_color.type for s in scenes for o in s.objects if isinstance(o.material.base_color, Texture)}
    assert textures == set(TEXTURES)
    groups = {o.name.split(".")[1].rsplit("_", 1)[0] for s in scenes for o in s.objects if o.group}
    kinds = set()
    for s in scenes:
        raw = json.loads(Path(s.source).read_text())
        kinds |= {o["primitive"] for o in raw["objects"] if o["primitive"] in COMPOSITES}
    assert kinds == set(COMPOSITES) and groups
    assert any(o.bevel > 0 for s in scenes for o in s.objects)
    assert any(isinstance(o.material.roughness, tuple) for s in scenes for o in s.objects)
    lights = {li.type for s in scenes for l in s.lightings for li in l.lights}
    assert {"area", "point", "spot"} <= lights
    assert any(l.world and l.world.sky for s in scenes for l in s.lightings)            # Nishita sky + sun
    assert any(li.temperature_k for s in scenes for l in s.lightings for li in l.lights)


def test_scene_round_trips_through_json(tmp_path):
    for s in load_scenes(data_dir("scenes"))[:5]:
        p = tmp_path / f"{s.id}.json"
        p.write_text(dumps_scene(s))
        assert load_scene(p) == s


# ---------------------------------------------------------------------------------- validation
def _write(tmp_path: Path, spec, name="tiny.json") -> Path:
    p = tmp_path / name
    p.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return p


def _bad(mutate):
    d = copy.deepcopy(MINIMAL)
    mutate(d)
    return d


BAD_SPECS = [
    ("malformed", '{"id": "tiny", "description": ', "not valid JSON"),
    ("unknown primitive", _bad(lambda d: d["objects"][1].update(primitive="teapot")), "objects[1].primitive"),
    ("unknown texture", _bad(lambda d: d["objects"][0]["material"].update(
        base_color={"type": "velvet", "color1": [1, 1, 1], "color2": [0, 0, 0]})), "objects[0].material.base_color.type"),
    ("colour above 1", _bad(lambda d: d["objects"][1]["material"].update(base_color=[0.2, 1.3, 0.1])),
     "objects[1].material.base_color[1]"),
    ("negative colour", _bad(lambda d: d["lightings"][0]["lights"][0].update(color=[1, -0.1, 1])),
     "lightings[0].lights[0].color[1]"),
    ("missing field", _bad(lambda d: d.pop("camera")), "missing required field 'camera'"),
    ("unknown field (typo)", _bad(lambda d: d["objects"][1]["material"].update(roughnes=0.3)),
     "objects[1].material.roughnes"),
    ("bad id", _bad(lambda d: d.update(id="Tiny Scene")), "id"),
    ("duplicate lighting", _bad(lambda d: d["lightings"][1].update(name="sun")), "lightings[1].name"),
    ("no lightings", _bad(lambda d: d.update(lightings=[])), "lightings"),
    ("zero scale", _bad(lambda d: d["objects"][1].update(scale=[1, 0, 1])), "objects[1].scale[1]"),
    ("roughness > 1", _bad(lambda d: d["objects"][1]["material"].update(roughness=2)), "objects[1].material.roughness"),
    ("unknown light", _bad(lambda d: d["lightings"][0]["lights"][0].update(type="laser")), "lightings[0].lights[0].type"),
    ("string number", _bad(lambda d: d["camera"].update(lens_mm="35")), "camera.lens_mm"),
    ("mesh file missing", _bad(lambda d: d["objects"][1].update(primitive="mesh", file="nope.obj")), "objects[1].file"),
]


@pytest.mark.parametrize("spec,needle", [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_spec_errors_name_file_and_field(tmp_path, spec, needle):
    p = _write(tmp_path, spec)
    with pytest.raises(SceneError) as e:
        load_scene(p)
    msg = str(e.value)
    assert str(p) in msg and needle in msg, msg


def test_id_must_match_file_name(tmp_path):
    p = _write(tmp_path, MINIMAL, "other.json")
    with pytest.raises(SceneError, match="file name"):
        load_scene(p)


def test_minimal_spec_fills_defaults(tmp_path):
    s = load_scene(_write(tmp_path, MINIMAL))
    assert s.objects[0].scale == (4.0, 4.0, 4.0)
    assert s.objects[1].material.ior == 1.5 and s.objects[1].material.metallic == 0.0
    assert s.lightings[0].lights[0].size_or_default == 2.0
    assert s.world.strength == 1.0


def test_load_scenes_only_and_unknown(tmp_path):
    _write(tmp_path, MINIMAL)
    assert [s.id for s in load_scenes(tmp_path, only=["tiny"])] == ["tiny"]
    with pytest.raises(SceneError, match="unknown scene id"):
        load_scenes(tmp_path, only=["nope"])


# ----------------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_valid():
    a, b = generate_scenes(6, seed=3), generate_scenes(6, seed=3)
    assert a == b and [dumps_scene(s) for s in a] == [dumps_scene(s) for s in b]
    assert generate_scenes(3, seed=3) == a[:3]          # scene k depends on (seed, k) only
    assert generate_scenes(6, seed=4) != a
    assert len({s.id for s in a}) == 6
    for s in a:
        assert len(s.lightings) >= 2 and s.description and all(l.description for l in s.lightings)
        assert parse_scene(scene_to_dict(s)) == s
        for o in s.objects:                               # colours stay valid
            c = o.material.base_color
            cols = [c.color1, c.color2] if isinstance(c, Texture) else [c]
            assert all(0 <= x <= 1 for col in cols for x in col)


def test_generator_rejects_bad_arguments():
    with pytest.raises(SceneError):
        generate_scenes(-1, 0)
    with pytest.raises(SceneError):
        generate_scenes(2, -5)


# ------------------------------------------------------------------------------------ settings
def test_settings_and_resolution_parsing():
    assert parse_resolution("256") == (256, 256) and parse_resolution("320x240") == (320, 240)
    for bad in ("0", "-3", "abc", "10x0", "1x2x3"):
        with pytest.raises(ValueError, match="resolution"):
            parse_resolution(bad)
    with pytest.raises(ValueError, match="samples"):
        RenderSettings(samples=-1).validate()
    with pytest.raises(ValueError, match="width"):
        RenderSettings(width=0).validate()
    assert RenderSettings(threads=2).matches(RenderSettings(threads=0))
    assert not RenderSettings(samples=8).matches(RenderSettings(samples=16))


def test_shard_selection_is_a_partition():
    ids = [f"s{i}" for i in range(11)]
    parts = [Shard.parse(f"{k}/3").select(ids) for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert not set(parts[0]) & set(parts[1])


# -------------------------------------------------------------------------------- decomposition
def _fake_passes(rng, h=6, w=5):
    def rgb(lo=0.0, hi=1.0):
        return rng.uniform(lo, hi, (h, w, 3)).astype(np.float32)

    albedo = rgb(0.0, 0.9)
    albedo[0, 0] = 0.0                                      # a black pixel / background
    cover = np.ones((h, w, 1), np.float32)
    cover[0, 0] = 0.0
    cover[1, 1] = 0.5
    p = {"albedo": np.concatenate([albedo, cover], -1)}
    p["Diffuse Color"] = (albedo * 0.9).astype(np.float32)  # Fresnel-scaled, as the Principled BSDF does
    for k in ("Diffuse Direct", "Diffuse Indirect", "Glossy Color", "Glossy Direct", "Glossy Indirect",
              "Emission", "Environment"):
        p[k] = rgb()
    diffuse = p["Diffuse Color"].astype(np.float64) * (p["Diffuse Direct"] + p["Diffuse Indirect"])
    glossy = p["Glossy Color"].astype(np.float64) * (p["Glossy Direct"] + p["Glossy Indirect"])
    comb = diffuse + glossy + p["Emission"] + p["Environment"]
    p["Combined"] = np.concatenate([comb, np.ones((h, w, 1))], -1).astype(np.float32)
    depth = rng.uniform(1, 5, (h, w, 1)).astype(np.float32)
    depth[0, 0] = 1e10
    p["Depth"] = depth
    n = np.zeros((h, w, 3), np.float32)
    n[..., 2] = 2.0                                          # world +z, not unit length (sample-averaged)
    n[0, 0] = 0.0
    p["Normal"] = n
    idx = np.ones((h, w, 1), np.float32)
    idx[0, 0] = 0
    p["Object Index"] = idx
    return p, diffuse, glossy + p["Emission"] + p["Environment"]


def test_decompose_identity_shading_and_geometry():
    rng = np.random.default_rng(0)
    p, diffuse, rest = _fake_passes(rng)
    # camera looking straight down world -z: camera_from_world maps world +z to camera +z
    gt = decompose(p, np.eye(4))
    assert gt.identity_error < 1e-6
    assert identity_error(gt.image, gt.albedo, gt.shading, gt.residual) == gt.identity_error
    np.testing.assert_allclose(gt.albedo * gt.shading, diffuse, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gt.residual, rest, rtol=1e-6)
    assert (gt.shading[0, 0] == 0).all()                   # 0 where albedo is 0
    assert np.isinf(gt.depth[0, 0]) and np.isfinite(gt.depth[1:, :]).all()
    assert not gt.mask[0, 0] and not gt.mask[1, 1] and gt.mask[2, 2]
    np.testing.assert_allclose(gt.normal[2, 2], [0, 0, 1], atol=1e-7)
    assert (gt.normal[0, 0] == 0).all()
    assert gt.object_index.dtype == np.int32 and gt.object_index[0, 0] == 0
    # a rotation about x by 90 degrees takes world +z to camera -y
    r = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    np.testing.assert_allclose(decompose(p, r).normal[2, 2], [0, -1, 0], atol=1e-7)


def test_identity_error_detects_missing_light():
    rng = np.random.default_rng(1)
    p, _, _ = _fake_passes(rng)
    p["Environment"] = np.zeros_like(p["Environment"])     # drop a term: the identity must notice
    assert decompose(p).identity_error > 1e-3
    p, _, _ = _fake_passes(rng)
    p["albedo"][2, 2, 0] = 0.0                             # diffuse light where albedo says black
    assert decompose(p).identity_error > 1e-3
    assert IDENTITY_FLOOR == 1e-6


def test_decompose_names_missing_passes():
    p, _, _ = _fake_passes(np.random.default_rng(2))
    del p["Glossy Color"]
    with pytest.raises(KeyError, match="Glossy Color"):
        decompose(p)
