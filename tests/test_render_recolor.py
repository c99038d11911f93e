"""Colour variants (`--recolor K`) and albedo_srgb.png: what the image probe's contrasts rest on.

A variant must differ from its original in albedo only: mask, object index, normals and depth equal
pixel for pixel, albedo different wherever a surface is seen and nowhere else.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from render.dataset import (entry_base_scene, entry_variant, list_samples, load_manifest, load_sample,
                            read_albedo_srgb, sample_ids)
from render.imageio import linear_to_srgb, read_png_srgb
from render.paths import data_dir
from render.pipeline import FILES, SAMPLE_JSON, build_manifest, plan_samples, verify_sample
from render.recolor import RECOLOR_RANGE, recolor_scene, scene_colours, with_variants
from render.scene import SceneError, Texture, load_scenes, parse_scene, scene_to_dict, split_variant
from test_render import hashes, run_cli

TINY = ["--resolution", "32", "--samples", "4"]
ARGS = ["--only", "checker_cube", "--lightings", "area_right", *TINY]


@pytest.fixture(scope="session")
def variants(tmp_path_factory):
    out = tmp_path_factory.mktemp("recolor") / "data"
    run_cli(*ARGS, "--recolor", "2", "--out", str(out))
    return out


# ---------------------------------------------------------------------------------- pure
def _scenes():
    return load_scenes(data_dir("scenes"), only=["cornell_box", "checker_cube", "striped_torus", "kitchen_counter"])


def test_variant_ids_parse():
    assert split_variant("cornell_box~c12") == ("cornell_box", 12)
    assert split_variant("cornell_box") == ("cornell_box", 0)
    for bad in ("cornell_box~c0", "cornell_box~x1", "Cornell", "a~c1~c2"):
        with pytest.raises(ValueError):
            split_variant(bad)


def test_recolor_changes_colours_only_and_keeps_their_structure():
    for s in _scenes():
        v = recolor_scene(s, 1, seed=0)
        assert v.id == f"{s.id}~c1" and v.base_id == s.id and v.variant == 1
        assert v.camera == s.camera and v.lightings == s.lightings and v.world == s.world
        old, new = scene_colours(s), scene_colours(v)
        assert len(old) == len(new)                        # one new colour per distinct old colour
        mapping = dict(zip(old, new))
        for a, b in zip(s.objects, v.objects):
            ca, cb = a.material.base_color, b.material.base_color
            if isinstance(ca, Texture):
                assert isinstance(cb, Texture)
                assert dataclasses.replace(ca, color1=cb.color1, color2=cb.color2, color3=cb.color3) == cb  # pattern
                assert tuple(mapping[c] for c in ca.colors) == cb.colors                 # every colour, mortar too
            else:
                assert mapping[ca] == cb
            # everything but the base colour is identical
            assert dataclasses.replace(a, material=dataclasses.replace(a.material, base_color=cb)) == b
        for o, n in mapping.items():
            assert max(abs(x - y) for x, y in zip(o, n)) >= RECOLOR_RANGE["min_change"]
            assert all(0.0033 <= x <= 0.89 for x in n)
        assert parse_scene(scene_to_dict(v)) == v and parse_scene(scene_to_dict(v)).recolor == v.recolor


def test_recolor_is_seeded_per_scene_and_variant():
    a, b = _scenes(), _scenes()
    assert with_variants(a, 2, seed=3) == with_variants(b, 2, seed=3)
    # a scene's variants do not depend on which other scenes are selected
    alone = with_variants([a[1]], 2, seed=3)
    assert alone == [s for s in with_variants(a, 2, seed=3) if s.base_id == a[1].id]
    assert recolor_scene(a[0], 1, 3) != recolor_scene(a[0], 1, 4)
    assert recolor_scene(a[0], 1, 3) != recolor_scene(a[0], 2, 3)
    assert [s.id for s in with_variants(a[:1], 2)] == ["checker_cube", "checker_cube~c1", "checker_cube~c2"]
    assert any(isinstance(o.material.base_color, Texture) and o.material.base_color.color3 for s in a for o in s.objects)
    assert with_variants(a, 0) == a
    with pytest.raises(SceneError, match="already a colour variant"):
        recolor_scene(recolor_scene(a[0], 1), 1)
    with pytest.raises(SceneError, match="--recolor"):
        with_variants(a, -1)


def test_recolor_with_shards_partitions_all_samples():
    scenes = with_variants(_scenes(), 2)
    whole = [j.id for j in plan_samples(scenes)]
    parts = [j.id for k in range(3) for j in plan_samples(scenes, shard=f"{k}/3")]
    assert sorted(parts) == whole and len(set(parts)) == len(whole)
    assert any("~c2__" in i for i in whole)


# ---------------------------------------------------------------------------------- renders
def test_variants_share_everything_but_albedo_pixel_for_pixel(variants):
    m = load_manifest(variants)
    assert sample_ids(variants) == ["checker_cube__area_right", "checker_cube~c1__area_right",
                                    "checker_cube~c2__area_right"]
    orig = load_sample(variants, "checker_cube__area_right", m)
    cube = next(o for o in orig.meta["objects"] if o["name"] == "cube")
    for k in (1, 2):
        v = load_sample(variants, f"checker_cube~c{k}__area_right", m)
        assert v.variant == k and v.base_scene == "checker_cube" and v.scene == f"checker_cube~c{k}"
        assert np.array_equal(v.mask, orig.mask) and np.array_equal(v.object_index, orig.object_index)
        assert np.array_equal(v.normal, orig.normal) and np.array_equal(v.depth, orig.depth)
        seen = orig.albedo_linear.any(-1) | v.albedo_linear.any(-1)
        # albedo differs wherever a surface is seen (every colour changed) and nowhere else
        assert (np.abs(v.albedo_linear - orig.albedo_linear).max(-1)[seen] > 1e-3).all()
        assert np.array_equal(v.albedo_linear[~seen], orig.albedo_linear[~seen])
        assert seen[orig.mask].all()
        # the checker pattern is where it was: an interior pixel of colour 1 becomes new colour 1
        vcube = next(o for o in v.meta["objects"] if o["name"] == "cube")
        interior = ndimage.binary_erosion((orig.object_index == cube["index"]) & orig.mask, iterations=1)
        old_c = np.array(cube["texture_colors"], np.float32)
        new_c = np.array(vcube["texture_colors"], np.float32)
        d_old = np.abs(orig.albedo_linear[interior][:, None] - old_c[None]).max(-1)
        d_new = np.abs(v.albedo_linear[interior][:, None] - new_c[None]).max(-1)
        pure = (d_old.min(-1) < 1e-6)
        assert pure.sum() > 10
        assert (d_new.min(-1)[pure] < 1e-6).all() and np.array_equal(d_old.argmin(-1)[pure], d_new.argmin(-1)[pure])
        assert v.meta["identity_error"] < 1e-4 and not np.allclose(v.image_linear, orig.image_linear)


def test_manifest_records_variants_and_recolor_settings(variants):
    m = load_manifest(variants)
    assert m["base_scenes"] == ["checker_cube"] and len(m["scenes"]) == 3
    assert m["recolor"]["variants"] == 2 and m["recolor"]["seed"] == 0
    assert m["recolor"]["range"] == json.loads(json.dumps(RECOLOR_RANGE))
    for e in m["samples"]:
        base, k = split_variant(e["scene"])
        assert e["variant"] == k and e["base_scene"] == base == "checker_cube"
        assert e["id"] == f"{e['scene']}__{e['lighting']}"
        assert (e.get("recolor") or {}).get("variant", 0) == k
    spec = json.loads((variants / "scenes" / "checker_cube~c1.json").read_text())
    assert spec["id"] == "checker_cube~c1" and spec["recolor"]["seed"] == 0
    infos = list_samples(variants)
    assert [(i.base_scene, i.variant) for i in infos] == [("checker_cube", 0), ("checker_cube", 1), ("checker_cube", 2)]
    assert all(i.albedo_srgb.is_file() and i.image_srgb.is_file() for i in infos)


def test_albedo_srgb_is_encoded_exactly_like_image_srgb(variants):
    for sid in sample_ids(variants):
        s = load_sample(variants, sid)
        assert s.albedo_srgb_path == f"{sid}/{FILES['albedo_srgb']}"
        png = read_png_srgb(variants / s.albedo_srgb_path)
        expect = np.round(linear_to_srgb(s.albedo_linear) * 255) / 255       # same path as image_srgb.png
        assert np.abs(png - expect).max() < 1e-6
        assert np.abs(read_png_srgb(variants / s.image_srgb_path)
                      - np.round(linear_to_srgb(s.image_linear) * 255) / 255).max() < 1e-6
        assert (png[~s.albedo_linear.any(-1)] == 0).all()                   # background: albedo 0, black
        assert np.array_equal(read_albedo_srgb(variants, sid), png)
        assert verify_sample(variants, sid) == (s.meta, "")


def test_resume_adds_variants_and_refuses_another_seed(variants, tmp_path):
    out = tmp_path / "more"
    shutil.copytree(variants, out)
    proc = run_cli(*ARGS, "--recolor", "3", "--out", str(out))
    assert "rendered 1, skipped 3" in proc.stderr
    assert sample_ids(out)[-1] == "checker_cube~c3__area_right"
    before = hashes(out)
    proc = run_cli(*ARGS, "--recolor", "1", "--recolor-seed", "5", "--out", str(out), check=False)
    assert proc.returncode == 2 and "checker_cube~c1__area_right" in proc.stderr and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr and hashes(out) == before
    proc = run_cli(*ARGS, "--recolor", "-1", "--out", str(out), check=False)
    assert proc.returncode == 2 and "--recolor" in proc.stderr and hashes(out) == before


def test_renders_from_before_variants_and_albedo_srgb_still_read_and_resume(variants, tmp_path):
    """Strip the new fields and file from a sample, as an older render wrote it: it still counts as finished,
    reads with variant 0 and base_scene = scene, and a rerun adds albedo_srgb.png without re-rendering."""
    out = tmp_path / "old"
    shutil.copytree(variants, out)
    sid = "checker_cube__area_right"
    meta_path = out / sid / SAMPLE_JSON
    entry = json.loads(meta_path.read_text())
    png = (out / entry["albedo_srgb"]).read_bytes()
    (out / entry["albedo_srgb"]).unlink()
    files = {k: v for k, v in entry["files"].items() if k != entry["albedo_srgb"]}
    old = {k: v for k, v in entry.items() if k not in ("albedo_srgb", "variant", "base_scene")}
    meta_path.write_text(json.dumps({**old, "files": files}))
    assert verify_sample(out, sid)[1] == ""
    build_manifest(out)
    m = load_manifest(out)
    e = next(e for e in m["samples"] if e["id"] == sid)
    assert e["variant"] == 0 and e["base_scene"] == "checker_cube"      # filled in by the manifest
    bare = {k: v for k, v in e.items() if k not in ("variant", "base_scene", "albedo_srgb")}
    assert entry_variant(bare) == 0 and entry_base_scene(bare) == "checker_cube"
    assert entry_variant({"scene": "checker_cube~c2"}) == 2
    assert load_sample(out, sid).albedo_srgb_path is None
    assert next(i for i in list_samples(out) if i.id == sid).albedo_srgb is None
    assert np.array_equal(read_albedo_srgb(out, sid), read_png_srgb(variants / sid / FILES["albedo_srgb"]))
    image_mtime = (out / sid / FILES["image"]).stat().st_mtime_ns
    proc = run_cli(*ARGS, "--recolor", "2", "--out", str(out))
    assert "rendered 0, skipped 3" in proc.stderr
    assert (out / sid / FILES["albedo_srgb"]).read_bytes() == png
    assert (out / sid / FILES["image"]).stat().st_mtime_ns == image_mtime
    assert verify_sample(out, sid)[1] == "" and load_sample(out, sid).albedo_srgb_path


def test_fake_render_with_variants_reads_like_a_real_one(tmp_path):
    from fakes import write_synthetic_render_variants

    root = write_synthetic_render_variants(tmp_path / "fake", scenes=("alpha", "beta"), variants=2)
    infos = list_samples(root)
    assert len(infos) == 2 * 3 * 2 and {i.base_scene for i in infos} == {"alpha", "beta"}
    v = load_sample(root, "alpha~c2__rim")
    o = load_sample(root, "alpha__rim")
    assert v.variant == 2 and v.base_scene == "alpha" and np.array_equal(v.mask, o.mask)
    assert np.array_equal(v.shading, o.shading) and not np.array_equal(v.albedo_linear, o.albedo_linear)
    assert np.array_equal(read_albedo_srgb(root, v.id), read_png_srgb(root / v.albedo_srgb_path))
    assert np.array_equal(load_sample(root, "alpha~c2__key").albedo_linear, v.albedo_linear)


# ---------------------------------------------------------------------- chroma variants (issue 17, point 7)
from render.recolor import CHROMA_RANGE, rec709_luminance  # noqa: E402


def test_chroma_variants_keep_every_colours_luminance_and_change_its_hue():
    tol = CHROMA_RANGE["luminance_tolerance"]
    for s in _scenes():
        hsv, chroma = with_variants([s], 1, seed=0, mode="both")[1:]
        assert hsv == recolor_scene(s, 1, seed=0) and "mode" not in hsv.recolor        # hsv records as before modes
        assert chroma.id == f"{s.id}~c2" and chroma.recolor["mode"] == "chroma"
        mapping = dict(zip(scene_colours(s), scene_colours(chroma)))
        assert len(mapping) == len(scene_colours(s)) == len(chroma.recolor["colours"])
        for old, new in mapping.items():
            assert abs(rec709_luminance(new) - rec709_luminance(old)) <= tol
            assert max(new) <= CHROMA_RANGE["max_channel"] and min(new) >= 0
        for rec in chroma.recolor["colours"]:
            assert rec["chroma_change"] >= CHROMA_RANGE["min_chroma_change"] or rec["luminance_old"] > 0.8
        # the hsv variant changes brightness: a luminance-ordered albedo contrast is a brightness contrast there
        assert max(abs(rec709_luminance(n) - rec709_luminance(o)) for o, n in
                   zip(scene_colours(s), scene_colours(hsv))) > 0.02
        assert parse_scene(scene_to_dict(chroma)) == chroma and parse_scene(scene_to_dict(chroma)).recolor == chroma.recolor
    with pytest.raises(SceneError, match="--recolor-mode"):
        with_variants(_scenes(), 1, mode="grey")


@pytest.fixture(scope="session")
def chroma_render(tmp_path_factory):
    out = tmp_path_factory.mktemp("chroma") / "data"
    run_cli(*ARGS, "--recolor", "1", "--recolor-mode", "both", "--adaptive-threshold", "0", "--out", str(out))
    return out


def test_chroma_variant_keeps_albedo_luminance_pixel_for_pixel(chroma_render):
    """On the rendered albedo (checker texture: pixels that mix two colours at the squares' edges included): every
    pixel of the chroma variant has its original's Rec.709 luminance within the stated tolerance (+ float32), and its
    colour differs; the hsv variant's luminance does not stay."""
    m = load_manifest(chroma_render)
    orig = load_sample(chroma_render, "checker_cube__area_right", m)
    y = lambda a: a.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])  # noqa: E731
    chroma = load_sample(chroma_render, "checker_cube~c2__area_right", m)
    hsv = load_sample(chroma_render, "checker_cube~c1__area_right", m)
    seen = orig.albedo_linear.any(-1)
    assert np.abs(y(chroma.albedo_linear) - y(orig.albedo_linear)).max() <= CHROMA_RANGE["luminance_tolerance"] + 1e-6
    assert (np.abs(chroma.albedo_linear - orig.albedo_linear).max(-1)[seen] > 1e-3).mean() > 0.95
    assert np.abs(y(hsv.albedo_linear) - y(orig.albedo_linear))[seen].max() > 0.02
    entries = {e["id"]: e for e in m["samples"]}
    assert entries["checker_cube~c2__area_right"]["recolor_mode"] == "chroma"
    assert entries["checker_cube~c1__area_right"]["recolor_mode"] == "hsv"
    assert "recolor_mode" not in entries["checker_cube__area_right"]
    assert m["recolor"]["modes"] == {"chroma": [2], "hsv": [1]}
    modes = {s.id: s.recolor_mode for s in list_samples(chroma_render)}
    assert modes == {"checker_cube__area_right": None, "checker_cube~c1__area_right": "hsv",
                     "checker_cube~c2__area_right": "chroma"}
