"""`python -m render import-mit`: the MIT intrinsic images as render samples (render.mit).

A synthetic copy in the dataset's layout, written here, covers the importer everywhere; the real training
half is read from ../shared/data/mit-berkeley-intrinsic where this machine has it (research-only licence:
never copied into the repository), and those tests skip with the reason elsewhere."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mit_fixture import import_fixture, object_arrays, write_mit_fixture, write_png16

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mit-berkeley-intrinsic"
if not SHARED.is_dir():      # a worktree of the main checkout: ../../shared
    SHARED = Path("/work/shared/data/mit-berkeley-intrinsic")


def shared_or_skip() -> Path:
    if not (SHARED / "teabag2" / "original.png").is_file():
        pytest.skip(f"MIT intrinsic images not at {SHARED}: a fresh clone has no ../shared copy (research-only "
                    "licence, never committed); point SRC at your own download to run these")
    return SHARED


def run_import(*args) -> tuple[int, str]:
    """`python -m render import-mit ...` in this process: (exit status, stderr text)."""
    import contextlib
    import io

    from render.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["import-mit", *map(str, args), "--no-progress"])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = import_fixture(tmp_path_factory.mktemp("mit"), n_lights=3)
    return out.parent / "src", out


def test_import_writes_the_render_contract(imported):
    from render.dataset import list_samples, load_manifest, load_sample

    src, out = imported
    m = load_manifest(out)
    assert m["created_by"] == "python -m render import-mit" and m["num_samples"] == 3 * 4
    assert m["base_scenes"] == ["cup", "frog", "shoe"] and "scale_ambiguity" in m
    assert (out / "NOTICE.txt").read_text() == (src / "NOTICE.txt").read_text()   # the licence travels
    infos = {i.id: i for i in list_samples(out)}
    assert sorted(infos) == sorted(f"{o}__{l}" for o in ("cup", "frog", "shoe")
                                   for l in ("original", "light01", "light02", "light03"))
    for i in infos.values():
        assert i.base_scene == i.scene and i.variant == 0 and i.image_srgb.is_file() and i.albedo_srgb.is_file()
    # one albedo per object, identical for all of its photographs
    assert all(m["albedo_identical_across_lightings"].values())
    s = load_sample(out, "frog__original")
    raw = object_arrays(1, 3)
    k = s.meta["exposure"]["scale"]
    np.testing.assert_allclose(s.image_linear, np.round(raw["original"] * 65535) / 65535 * k, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s.albedo_linear, np.round(raw["reflectance"] * 65535) / 65535, atol=1e-7)
    assert s.mask.sum() == (raw["mask"] > 0).sum()
    # shading: the dataset's, times one least-squares factor (diffuse = 0.9 reflectance x shading here)
    assert s.meta["shading_fit"]["scale"] == pytest.approx(0.9, rel=1e-3)
    np.testing.assert_allclose(s.reconstruct()[s.mask], s.image_linear[s.mask], atol=2e-4 * k)
    assert s.meta["identity_rms_relative"] < 1e-3
    d = json.loads((out / "frog__original" / "sample.json").read_text())
    assert d["source"]["files"]["image"]["file"] == "original.png" and d["albedo_scale_known"] is False


def test_missing_fields_are_absent_and_said(imported):
    from render.dataset import load_sample

    _, out = imported
    s = load_sample(out, "cup__light02")
    assert s.shading is None and s.residual is None and s.normal is None and s.depth is None
    assert s.object_index is None
    for key in ("shading", "residual", "normal", "depth", "object_index"):
        assert key in s.missing and s.missing[key]
        assert key not in s.meta
    assert not (out / "cup__light02" / "shading_linear.exr").exists()
    with pytest.raises(ValueError, match="no shading"):
        s.reconstruct()
    o = load_sample(out, "cup__original")
    assert o.shading is not None and o.residual is not None and "shading" not in o.missing
    assert o.meta["diffuse"] == "cup__original/diffuse_linear.exr"


def test_exposure_rule_is_the_renderers_metering(imported):
    """One rule for every photograph: render.groundtruth.meter_light on photo / reflectance; 1/3-EV steps."""
    from render.dataset import load_sample
    from render.groundtruth import meter_light

    _, out = imported
    raw = object_arrays(2, 3)
    for light in ("original", "light01"):
        s = load_sample(out, f"shoe__{light}")
        photo = np.round(raw[light] * 65535) / 65535
        refl = np.round(raw["reflectance"] * 65535) / 65535
        y = np.array([0.2126, 0.7152, 0.0722])
        est = np.where(refl @ y > 0, (photo @ y) / np.maximum(refl @ y, 1e-300), 0.0)
        _, scale = meter_light(raw["mask"] > 0, np.repeat(est[..., None], 3, -1), refl)
        assert s.meta["exposure"]["scale"] == pytest.approx(scale)
        ev = np.log2(scale) * 3
        assert abs(ev - round(ev)) < 1e-6


def test_sixteen_bits_survive(tmp_path):
    """A value above 255 read through the importer is the 16-bit value, not an 8-bit reduction of it."""
    from render.dataset import load_sample
    from render.mit import read_png16

    src = write_mit_fixture(tmp_path / "src", objects=("cup",), n_lights=1)
    raw = np.full((8, 10, 3), 0, np.uint16)
    raw[...] = [[[1000, 40000, 4097]]]
    raw[0, 0] = [65535, 256, 257]
    write_png16(tmp_path / "p.png", raw)
    got = read_png16(tmp_path / "p.png")
    assert got.dtype == np.uint16 and got[0, 0].tolist() == [65535, 256, 257] and got[1, 1].tolist() == [1000, 40000, 4097]
    import cv2

    refl = cv2.imread(str(src / "cup" / "reflectance.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    code, err = run_import(src, "--out", tmp_path / "out")
    assert code == 0, err
    s = load_sample(tmp_path / "out", "cup__original")
    back = np.round(s.albedo_linear.astype(np.float64) * 65535)
    inside = refl > 255
    assert inside.sum() > 100 and (refl % 257 != 0)[inside].any()     # not an expanded 8-bit image
    np.testing.assert_array_equal(back[inside], refl[inside])


# ---------------------------------------------------------------------------------------------- bad inputs

def _assert_refused(code: int, err: str, out: Path, *needles: str) -> None:
    assert code == 2, err
    msg = err.strip()
    assert msg.count("\n") == 0, msg                   # one paragraph
    for n in needles:
        assert n in msg, (n, msg)
    assert "Nothing was written" in msg
    assert not out.exists(), sorted(out.rglob("*"))


def test_a_folder_not_in_the_layout(tmp_path):
    (tmp_path / "src" / "photos").mkdir(parents=True)
    (tmp_path / "src" / "photos" / "IMG_0001.png").write_bytes(b"")
    code, err = run_import(tmp_path / "src", "--out", tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "not in the MIT intrinsic images layout", "original.png")
    code, err = run_import(tmp_path / "nowhere", "--out", tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "not found")
    one = write_mit_fixture(tmp_path / "one", objects=("cup",), n_lights=1) / "cup"
    code, err = run_import(one, "--out", tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "one object's folder")


@pytest.mark.parametrize("lacking", ["mask.png", "reflectance.png", "original.png"])
def test_an_object_without_a_required_file(tmp_path, lacking):
    src = write_mit_fixture(tmp_path / "src", n_lights=1, skip={"frog": [lacking]})
    code, err = run_import(src, "--out", tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "'frog'", lacking)


def test_an_eight_bit_copy(tmp_path):
    import cv2

    src = write_mit_fixture(tmp_path / "src", n_lights=2)
    p = src / "shoe" / "light02.png"
    eight = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) // 257).astype(np.uint8)   # what PIL would have kept
    assert cv2.imwrite(str(p), eight)
    code, err = run_import(src, "--out", tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "'shoe'", "light02.png", "8-bit", "16-bit")


def test_sizes_must_agree_and_out_must_not_hold_a_render(tmp_path):
    src = write_mit_fixture(tmp_path / "src", n_lights=1)
    write_png16(src / "cup" / "shading.png", np.zeros((5, 5), np.uint16))
    code, err = run_import(src, "--out", tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "'cup'", "shading.png", "same size")
    src2 = write_mit_fixture(tmp_path / "src2", n_lights=1)
    render = tmp_path / "render"
    render.mkdir()
    (render / "manifest.json").write_text(json.dumps({"created_by": "python -m render", "samples": []}))
    code, err = run_import(src2, "--out", render)
    assert code == 2 and "another dataset" in err and sorted(p.name for p in render.iterdir()) == ["manifest.json"]


def test_only_adds_objects_into_one_folder(tmp_path):
    from render.dataset import load_manifest

    src = write_mit_fixture(tmp_path / "src", n_lights=1)
    assert run_import(src, "--out", tmp_path / "out", "--only", "cup")[0] == 0
    assert load_manifest(tmp_path / "out")["base_scenes"] == ["cup"]
    assert run_import(src, "--out", tmp_path / "out", "--only", "shoe")[0] == 0
    assert load_manifest(tmp_path / "out")["base_scenes"] == ["cup", "shoe"]
    code, err = run_import(src, "--out", tmp_path / "o2", "--only", "dog")
    _assert_refused(code, err, tmp_path / "o2", "dog", "cup, frog, shoe")


def test_render_refuses_to_write_into_an_import(imported):
    """`python -m render --out IMPORT` (a render or --manifest-only) would drop the imported samples: refused."""
    from render.__main__ import main

    _, out = imported
    before = (out / "manifest.json").read_bytes()
    for argv in (["--out", str(out), "--manifest-only"], ["--out", str(out), "--only", "red_cube_table"]):
        assert main(argv) == 2
    assert (out / "manifest.json").read_bytes() == before
    assert main(["--out", str(out), "--contact-sheet", "--sheet-size", "32"]) == 0    # reading it is fine
    assert (out / "contact_sheet.png").is_file()


def test_render_cli_keeps_its_flat_options(tmp_path):
    """The subcommand does not change any existing `python -m render ...` invocation or its --help."""
    r = subprocess.run([sys.executable, "-m", "render", "--only", "red_cube_table", "--dry-run", "--out",
                        str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "red_cube_table__" in r.stdout and not (tmp_path / "r").exists()
    h = subprocess.run([sys.executable, "-m", "render", "--help"], capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and "--recolor" in h.stdout and "import-mit SRC --out DIR" in h.stdout


# ---------------------------------------------------------------------------------------------- the real data

def test_real_copy_keeps_sixteen_bits(tmp_path):
    """On the shared training half: one object imports, and values above 255 come back exactly."""
    import cv2

    from render.dataset import load_sample

    src = shared_or_skip()
    code, err = run_import(src, "--out", tmp_path / "out", "--only", "teabag2")
    assert code == 0, err
    s = load_sample(tmp_path / "out", "teabag2__light05")
    raw = cv2.imread(str(src / "teabag2" / "light05.png"), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64)
    back = s.image_linear.astype(np.float64) / s.meta["exposure"]["scale"] * 65535
    big = raw > 255
    assert big.mean() > 0.05 and raw.max() > 4 * 255
    np.testing.assert_allclose(back[big], raw[big], rtol=2e-6)
    o = load_sample(tmp_path / "out", "teabag2__original")
    assert 0.01 < o.meta["identity_rms_relative"] < 0.1        # measured photographs: a few per cent
    assert o.meta["shading_fit"]["against"] == "diffuse.png"
    assert (tmp_path / "out" / "NOTICE.txt").read_text() == (src / "NOTICE.txt").read_text()
