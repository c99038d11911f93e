"""`python -m render` end to end on tiny renders: the output contract, exact ground truth, resume, shards.

Blender runs in subprocesses (the CLI, or a short script), so bpy never shares the pytest process
with torch. One session-scoped render of a few default scenes is shared by most tests.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from render.dataset import load_manifest, load_sample, sample_ids
from render.pipeline import FILES, SAMPLE_JSON, verify_sample

ROOT = Path(__file__).resolve().parent.parent
SCENES = ["red_cube_table", "glossy_sphere_pedestal", "checker_cube", "matte_vs_glossy"]
TINY = ["--resolution", "48", "--samples", "4"]


def run_cli(*args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "render", "--no-progress", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"python -m render {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_py(code: str, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def hashes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render") / "data"
    run_cli("--only", ",".join(SCENES), *TINY, "--out", str(out))
    return out


@pytest.fixture
def dataset_copy(dataset, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(dataset, dst)
    return dst


# ---------------------------------------------------------------------------------- contract
def test_help_is_fast_and_does_not_import_bpy():
    out = run_py("import sys, render.__main__, render.pipeline, render.dataset; print('bpy' in sys.modules)")
    assert out.strip() == "False"
    proc = subprocess.run([sys.executable, "-m", "render", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "runs/render" in proc.stdout and "--shard" in proc.stdout


def test_manifest_contract(dataset):
    m = load_manifest(dataset)
    assert m["blender_version"].startswith("5.") and m["normal_space"] == "camera"
    assert m["render_settings"]["width"] == 48 and m["render_settings"]["samples"] == 4
    assert m["device"]["requested"] == "auto" and m["device"]["backend"] in ("CPU", "OPTIX", "CUDA", "HIP")
    assert {"albedo", "shading", "residual", "identity_error", "normal", "depth", "mask"} <= set(m["definitions"])
    assert "linear" in m["colour_spaces"]["image"] and "sRGB" in m["colour_spaces"]["image_srgb"]
    ids = sample_ids(dataset)
    assert len(ids) == 9 and ids == sorted(ids)
    for e in m["samples"]:
        assert e["id"] == f"{e['scene']}__{e['lighting']}" and (dataset / e["id"]).is_dir()
        assert e["description"] == f"{e['scene_description']}, {e['lighting_description']}"
        for key, name in FILES.items():
            assert e[key] == f"{e['id']}/{name}" and (dataset / e[key]).is_file()
        assert e["identity_error"] < 1e-4
        assert e["render"]["samples"] == 4 and e["camera"]["world_from_camera"]
        for i, o in enumerate(e["objects"], start=1):
            assert o["index"] == i and o["name"] and o["primitive"]
        assert (dataset / e["scene_spec"]).is_file()
        assert verify_sample(dataset, e["id"]) == (e, "")
    red = next(e for e in m["samples"] if e["scene"] == "red_cube_table")
    assert next(o for o in red["objects"] if o["name"] == "cube")["base_color"] == [0.6, 0.03, 0.03]
    top = next(o for o in red["objects"] if o["name"] == "table.top")
    assert top["group"] == "table" and top["texture"] == "marble" and len(top["texture_colors"]) == 2
    checker = next(e for e in m["samples"] if e["scene"] == "checker_cube")
    cube = next(o for o in checker["objects"] if o["name"] == "cube")
    assert cube["base_color"] is None and cube["texture"] == "checker"
    for e in m["samples"]:
        assert e["exposure"]["mode"] == "auto" and e["exposure"]["scale"] > 0 and e["indirect_clamp"] >= 0
    assert all(m["albedo_identical_across_lightings"].values())


def test_samples_load_as_float32_with_consistent_shapes(dataset):
    s = load_sample(dataset, "red_cube_table__sun_left")
    for a in (s.image_linear, s.albedo_linear, s.shading, s.residual, s.normal):
        assert a.dtype == np.float32 and a.shape == (48, 48, 3)
    assert s.depth.dtype == np.float32 and s.depth.shape == (48, 48)
    assert s.mask.dtype == bool and s.object_index.dtype == np.int32
    assert s.description.startswith("a matte red cube") and s.meta["lighting"] == "sun_left"
    srgb_png = dataset / s.meta["image_srgb"]
    from render.imageio import linear_to_srgb, read_png_srgb

    np.testing.assert_allclose(read_png_srgb(srgb_png), linear_to_srgb(s.image_linear), atol=0.5 / 255 + 1e-6)


# ------------------------------------------------------------------------------ ground truth
def test_identity_holds_on_every_sample_from_files(dataset):
    for sid in sample_ids(dataset):
        s = load_sample(dataset, sid)
        rec = s.albedo_linear.astype(np.float64) * s.shading + s.residual
        err = np.abs(s.image_linear - rec) / np.maximum(np.abs(s.image_linear), 1e-6)
        assert err.max() < 1e-4, sid
        assert err.max() == pytest.approx(s.meta["identity_error"], rel=1e-6, abs=1e-12)
        assert (s.shading >= 0).all() and (s.residual >= 0).all()


def test_albedo_equals_declared_base_colour_in_uniform_interiors(dataset):
    """Matte and glossy dielectrics alike: the AOV is the base colour, not a Fresnel-scaled Diffuse Color."""
    checked = []
    for sid in sample_ids(dataset):
        s = load_sample(dataset, sid)
        for o in s.meta["objects"]:
            if o["base_color"] is None:
                continue
            interior = ndimage.binary_erosion((s.object_index == o["index"]) & s.mask, iterations=2)
            if interior.sum() < 5:
                continue
            err = np.abs(s.albedo_linear[interior] - np.array(o["base_color"], np.float32)).max()
            assert err < 1e-3, (sid, o["name"], err)
            assert err < 1e-6                                   # in fact exact up to float32 rounding
            checked.append((s.scene, o["name"], o["roughness"]))
    assert any(r < 0.1 for _, _, r in checked), "a glossy object was checked"
    assert any(r > 0.6 for _, _, r in checked), "a matte object was checked"


def test_checker_albedo_takes_exactly_its_two_colours(dataset):
    s = load_sample(dataset, "checker_cube__area_right")
    cube = next(o for o in s.meta["objects"] if o["name"] == "cube")
    interior = ndimage.binary_erosion((s.object_index == cube["index"]) & s.mask, iterations=1)
    colours = np.array(cube["texture_colors"], np.float32)
    d = np.abs(s.albedo_linear[interior][:, None, :] - colours[None]).max(-1)      # [pixels, 2]
    near = d.min(-1) < 1e-6
    assert near.mean() > 0.3 and (d.argmin(-1)[near] == 0).any() and (d.argmin(-1)[near] == 1).any()


def test_diffuse_color_pass_is_not_albedo_but_the_aov_is():
    """The reason for the AOV: Cycles' Diffuse Color is base colour times a view-dependent Fresnel factor."""
    code = """
import numpy as np, tempfile
from scipy import ndimage
from render.blender import BlenderSession
from render.paths import data_dir
from render.scene import load_scene
from render.settings import RenderSettings
scene = load_scene(data_dir("scenes") / "red_cube_table.json")
s = BlenderSession(RenderSettings(width=48, height=48, samples=4), tempfile.mkdtemp())
s.build(scene); s.set_lighting(scene, scene.lightings[0]); p = s.render()
cube = [o.name for o in scene.objects].index("cube") + 1
inside = ndimage.binary_erosion((np.rint(p["Object Index"][..., 0]) == cube) & (p["albedo"][..., 3] == 1), iterations=2)
base = np.array([0.6, 0.03, 0.03], np.float32)
ratio = p["Diffuse Color"][inside][:, 0] / base[0]
print(np.abs(p["albedo"][inside][:, :3] - base).max(), ratio.min(), ratio.max(), inside.sum())
"""
    aov_err, rmin, rmax, n = map(float, run_py(code).split())
    assert n > 20
    assert aov_err < 1e-6
    assert rmax < 0.99 and rmin > 0.5          # Diffuse Color is off by several percent, and varies


def test_lightings_share_albedo_and_geometry_exactly(dataset):
    m = load_manifest(dataset)
    for scene in SCENES:
        ids = [e["id"] for e in m["samples"] if e["scene"] == scene]
        assert len(ids) >= 2
        ref = load_sample(dataset, ids[0], m)
        for sid in ids[1:]:
            s = load_sample(dataset, sid, m)
            assert np.array_equal(s.albedo_linear, ref.albedo_linear), sid
            assert np.array_equal(s.mask, ref.mask) and np.array_equal(s.object_index, ref.object_index)
            assert np.array_equal(s.depth, ref.depth) and np.array_equal(s.normal, ref.normal)
            assert not np.allclose(s.image_linear, ref.image_linear)      # but the lighting differs


def test_mask_depth_and_index_agree(dataset):
    for sid in sample_ids(dataset):
        s = load_sample(dataset, sid)
        assert (s.object_index[s.mask] > 0).all()
        assert np.isinf(s.depth[s.object_index == 0]).all() and np.isfinite(s.depth[s.object_index > 0]).all()
        n = np.linalg.norm(s.normal[s.mask], axis=-1)
        np.testing.assert_allclose(n, 1.0, atol=1e-5)
        far_from_surfaces = ~ndimage.binary_dilation(s.object_index > 0, iterations=3)
        assert (s.albedo_linear[far_from_surfaces] == 0).all() and (s.shading[far_from_surfaces] == 0).all()


def test_depth_is_planar_and_normals_are_camera_space(tmp_path):
    """Camera straight above a plane: planar depth is the height everywhere (ray length is not);
    the plane's normal faces the camera (+z in camera space). Also covers primitive 'mesh' (OBJ) and a
    metallic material: albedo is still its base colour, its diffuse light and so its shading are 0."""
    (tmp_path / "quad.obj").write_text("v -0.3 -0.3 0\nv 0.3 -0.3 0\nv 0.3 0.3 0\nv -0.3 0.3 0\nf 1 2 3 4\n")
    spec = {
        "id": "top_down", "description": "a grey plane seen from above with a small red quad",
        "camera": {"location": [0, 0, 5], "look_at": [0, 0, 0], "lens_mm": 20},
        "objects": [{"name": "plane", "primitive": "plane", "scale": 20, "material": {"base_color": [0.5, 0.5, 0.5]}},
                    {"name": "quad", "primitive": "mesh", "file": "quad.obj", "location": [0, 0, 0.5], "scale": 3,
                     "material": {"base_color": [0.7, 0.1, 0.1], "metallic": 1.0, "roughness": 0.3}}],
        "lightings": [{"name": "sun", "description": "lit by a sun", "lights": [{"type": "sun", "location": [1, 1, 5]}]},
                      {"name": "sky", "description": "lit by the sky", "lights": [], "world": {"strength": 1.0}}],
    }
    (tmp_path / "top_down.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    run_cli("--scenes", str(tmp_path / "top_down.json"), "--resolution", "32", "--samples", "2", "--out", str(out))
    s = load_sample(out, "top_down__sun")
    plane = s.object_index == 1
    quad = s.object_index == 2
    assert plane.all() == False and plane.sum() > 500 and quad.sum() > 4      # noqa: E712
    np.testing.assert_allclose(s.depth[plane], 5.0, rtol=1e-5)                  # corners included
    np.testing.assert_allclose(s.depth[quad & s.mask], 4.5, rtol=1e-5)
    assert np.abs(s.normal[plane & s.mask] - np.array([0, 0, 1], np.float32)).max() < 1e-4
    interior = ndimage.binary_erosion(quad & s.mask, iterations=2)   # the 1.5 px filter mixes neighbours
    assert interior.any() and np.abs(s.albedo_linear[interior] - np.array([0.7, 0.1, 0.1], np.float32)).max() < 1e-6
    assert (s.shading[interior] == 0).all() and (s.residual[interior] > 0).any()
    assert s.meta["identity_error"] < 1e-4


def test_rerender_agrees_within_tolerance(dataset, tmp_path):
    out = tmp_path / "again"
    run_cli("--only", "red_cube_table", "--lightings", "sun_left", *TINY, "--out", str(out))
    a = load_sample(dataset, "red_cube_table__sun_left")
    b = load_sample(out, "red_cube_table__sun_left")
    assert np.abs(a.albedo_linear - b.albedo_linear).max() < 1e-6
    assert np.abs(a.image_linear - b.image_linear).max() < 1e-3 * max(1.0, float(a.image_linear.max()))
    assert np.abs(a.shading - b.shading).max() < 1e-3 * max(1.0, float(a.shading.max()))


# ------------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize("args,needle", [
    (["--resolution", "0"], "--resolution"),
    (["--samples", "-2"], "--samples"),
    (["--only", "no_such_scene"], "no_such_scene"),
    (["--shard", "3/2"], "shard"),
    (["--lightings", "no_such_light"], "no_such_light"),
])
def test_bad_arguments_fail_cleanly(dataset_copy, args, needle):
    before = hashes(dataset_copy)
    proc = run_cli("--only", "red_cube_table", *TINY, *args, "--out", str(dataset_copy), check=False)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert hashes(dataset_copy) == before


def test_bad_spec_file_fails_naming_file_and_field(tmp_path, dataset_copy):
    bad = json.loads((ROOT / "scenes" / "red_cube_table.json").read_text())
    bad["objects"][1]["material"]["base_color"] = [0.6, 1.5, 0.0]
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "red_cube_table.json").write_text(json.dumps(bad))
    before = hashes(dataset_copy)
    proc = run_cli("--scenes", str(tmp_path / "specs"), *TINY, "--out", str(dataset_copy), check=False)
    assert proc.returncode == 2
    assert "red_cube_table.json" in proc.stderr and "objects[1].material.base_color[1]" in proc.stderr
    assert hashes(dataset_copy) == before


def test_unwritable_output_fails(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_cli("--only", "red_cube_table", *TINY, "--out", str(blocker / "out"), check=False)
    assert proc.returncode == 2 and "not writable" in proc.stderr and str(blocker) in proc.stderr
    assert blocker.read_text() == "not a folder"


def test_other_settings_into_finished_folder_refuse_without_overwrite(dataset_copy):
    before = hashes(dataset_copy)
    proc = run_cli("--only", "red_cube_table", "--resolution", "40", "--samples", "4", "--out", str(dataset_copy),
                   check=False)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and "width=48 (now 40)" in proc.stderr
    assert hashes(dataset_copy) == before


# ------------------------------------------------------------------------------ resume/shards
def test_resume_redoes_only_broken_samples(dataset_copy):
    a, b, c = "red_cube_table__sun_left", "checker_cube__area_right", "matte_vs_glossy__sun_and_sky"
    (dataset_copy / a / SAMPLE_JSON).unlink()                          # killed before the done marker
    img = dataset_copy / b / FILES["image"]
    img.write_bytes(img.read_bytes()[:100])                            # truncated file
    stale = dataset_copy / c / ".albedo_linear.tmp999.exr"
    stale.write_bytes(b"half")                                         # temp file of a killed writer
    (dataset_copy / c / SAMPLE_JSON).unlink()
    keep = dataset_copy / "glossy_sphere_pedestal__area_front_left" / FILES["image"]
    keep_mtime = keep.stat().st_mtime_ns
    manifest = load_manifest(dataset_copy)
    assert {e["id"] for e in manifest["samples"]} >= {a, b, c}
    proc = run_cli("--only", ",".join(SCENES), *TINY, "--out", str(dataset_copy))
    assert "rendered 3, skipped 6" in proc.stderr
    assert not stale.exists() and keep.stat().st_mtime_ns == keep_mtime
    for sid in sample_ids(dataset_copy):
        assert verify_sample(dataset_copy, sid)[1] == ""
    assert len(sample_ids(dataset_copy)) == 9
    proc = run_cli("--only", ",".join(SCENES), *TINY, "--out", str(dataset_copy))
    assert "rendered 0, skipped 9" in proc.stderr


def test_kill_mid_run_leaves_no_half_sample_and_resumes(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "render", "--no-progress", "--only", "red_cube_table,checker_floor_spheres,cornell_box",
            "--resolution", "64", "--samples", "16", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(f"*/{SAMPLE_JSON}")):
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [p.parent.name for p in out.glob(f"*/{SAMPLE_JSON}")]
    assert 1 <= len(done) < 7, "the kill should land mid-run"
    for sid in done:
        assert verify_sample(out, sid)[1] == ""
    rerun = run_cli("--only", "red_cube_table,checker_floor_spheres,cornell_box", "--resolution", "64", "--samples",
                    "16", "--out", str(out))
    assert f"skipped {len(done)} finished" in rerun.stderr
    assert len(sample_ids(out)) == 7
    assert all(verify_sample(out, sid)[1] == "" for sid in sample_ids(out))
    assert not list(out.glob("*/.*tmp*"))
    assert not list(Path("/dev/shm").glob(f"ray-plantain-{proc.pid}-*"))    # the killed run's scratch is gone


def test_concurrent_shards_union_equals_unsharded(dataset, tmp_path):
    out = tmp_path / "sharded"
    base = [sys.executable, "-m", "render", "--no-progress", "--only", ",".join(SCENES), *TINY, "--out", str(out)]
    procs = [subprocess.Popen([*base, "--shard", f"{k}/3"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for k in range(3)]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read()
    whole, sharded = load_manifest(dataset), load_manifest(out)
    assert [e["id"] for e in sharded["samples"]] == [e["id"] for e in whole["samples"]]
    volatile = {"files", "render_seconds", "stats", "identity_error"}
    for a, b in zip(whole["samples"], sharded["samples"]):
        assert {k: v for k, v in a.items() if k not in volatile} == {k: v for k, v in b.items() if k not in volatile}
        sa, sb = load_sample(dataset, a["id"]), load_sample(out, b["id"])
        assert np.abs(sa.albedo_linear - sb.albedo_linear).max() < 1e-6
        assert np.abs(sa.image_linear - sb.image_linear).max() < 1e-3 * max(1.0, float(sa.image_linear.max()))
    assert all(sharded["albedo_identical_across_lightings"].values())


def test_python_api_render_dataset(tmp_path):
    out = tmp_path / "api"
    code = f"""
from render.pipeline import render_dataset
r = render_dataset(None, {str(out)!r}, resolution=24, samples=2, only=["red_cube_table"], lightings=["sun_left"])
print(len(r.rendered), len(r.skipped), r.manifest)
"""
    n, skipped, manifest = run_py(code).split()
    assert (n, skipped) == ("1", "0") and Path(manifest) == out / "manifest.json"
    assert sample_ids(out) == ["red_cube_table__sun_left"]


def test_generate_renders_and_exports_deterministically(tmp_path):
    run_cli("--generate", "2", "--seed", "7", "--export-scenes", str(tmp_path / "a"))
    run_cli("--generate", "2", "--seed", "7", "--export-scenes", str(tmp_path / "b"))
    assert hashes(tmp_path / "a") == hashes(tmp_path / "b") and len(hashes(tmp_path / "a")) == 2
    out = tmp_path / "gen"
    run_cli("--generate", "1", "--seed", "7", "--resolution", "24", "--samples", "2", "--out", str(out))
    m = load_manifest(out)
    assert m["num_samples"] >= 2 and all(e["scene"] == "gen_s7_0000" for e in m["samples"])
    assert (out / "scenes" / "gen_s7_0000.json").read_bytes() == (tmp_path / "a" / "gen_s7_0000.json").read_bytes()
    assert all(e["identity_error"] < 1e-4 for e in m["samples"])


def test_manifest_only_and_dry_run(dataset_copy):
    (dataset_copy / "manifest.json").unlink()
    run_cli("--out", str(dataset_copy), "--manifest-only")
    assert len(sample_ids(dataset_copy)) == 9
    proc = run_cli("--only", "red_cube_table", *TINY, "--out", str(dataset_copy), "--dry-run")
    assert proc.stdout.count("\tdone") == 3


# ----------------------------------------------------------------------------- reader errors
def test_reader_errors_name_the_file(dataset_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(KeyError, match="no_such"):
        load_sample(dataset_copy, "no_such__sample")
    sid = "red_cube_table__sun_left"
    (dataset_copy / sid / FILES["depth"]).unlink()
    with pytest.raises(FileNotFoundError, match="depth.exr"):
        load_sample(dataset_copy, sid)
    (dataset_copy / sid / FILES["albedo"]).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="albedo_linear.exr"):
        load_sample(dataset_copy, sid)
    (dataset_copy / sid / FILES["mask"]).write_bytes(b"garbage")
    sid2 = "red_cube_table__softbox_overhead"
    (dataset_copy / sid2 / FILES["mask"]).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="mask.png"):
        load_sample(dataset_copy, sid2)
    (dataset_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        load_manifest(dataset_copy)
