"""The image probe on real lighting twins: an MIT import (render.mit) as the probe's data. The design part needs
no model (a synthetic copy in the dataset's layout, written here); the end to end part runs the tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mit_fixture import OBJECTS, import_fixture, object_arrays

Y = np.array([0.2126, 0.7152, 0.0722])


@pytest.fixture(scope="module")
def mit_data(tmp_path_factory):
    return import_fixture(tmp_path_factory.mktemp("mit"), n_lights=4)


def _expected_hardest(index: int, n_lights: int = 4) -> str:
    """The lighting whose photograph / reflectance has the largest std of ln max(Y, 1e-3 median Y), from the
    fixture's own arrays (the 16-bit rounding and the exposure do not change the order)."""
    raw = object_arrays(index, n_lights)
    mask = raw["mask"] > 0
    yr = (raw["reflectance"] @ Y)[mask]
    values = {}
    for light in ("original", *[f"light{k:02d}" for k in range(1, n_lights + 1)]):
        s = (raw[light] @ Y)[mask][yr > 0] / yr[yr > 0]
        values[light] = float(np.std(np.log(np.maximum(s, 1e-3 * np.median(s)))))
    return max(values, key=values.get)


def test_plan_builds_lighting_and_render_vs_albedo_and_says_albedo_is_not_there(mit_data):
    from probe.design.image_stimuli import build_image_plan

    plan = build_image_plan(mit_data)
    assert [c.name for c in plan.pairings] == ["render_vs_albedo", "lighting"]
    assert [name for name, _ in plan.unavailable] == ["albedo"]
    assert "no colour twins" in dict(plan.unavailable)["albedo"]
    d = plan.describe()
    assert "no colour twins" in d["unavailable_contrasts"]["albedo"] and d["dataset"].startswith("MIT Intrinsic")
    assert plan.scenes == OBJECTS
    # lighting: one pair per object; A = the photograph with the highest photo / reflectance contrast, B = the rest
    rec = d["orientation"]["lighting"]
    assert rec["source"] == {o: "image / albedo" for o in OBJECTS} and "image / albedo" in rec["sources"]
    lighting = plan.pairing("lighting")
    for i, obj in enumerate(OBJECTS):
        pair = next(p for p in lighting.pairs if p.id == obj)
        top = _expected_hardest(i)
        assert set(pair.a) == {f"{obj}__{top}/render"} and len(pair.b) == 4
        assert f"{obj}__{top}/render" not in pair.b
    # render_vs_albedo: every photograph against the object's one albedo image
    rva = next(p for p in plan.pairing("render_vs_albedo").pairs if p.id == "cup")
    assert len(rva.a) == 5 and len({k.split("/")[0] for k in rva.b}) == 5


def test_asking_for_albedo_is_one_paragraph_that_says_why(mit_data):
    from probe.design.image_stimuli import StimuliError, build_image_plan

    with pytest.raises(StimuliError) as e:
        build_image_plan(mit_data, contrasts=("lighting", "albedo"))
    msg = str(e.value)
    assert "`albedo` contrast" in msg and "no colour twins" in msg and "--contrasts render_vs_albedo,lighting" in msg
    assert "\n" not in msg and "Nothing was written" in msg
    assert [c.name for c in build_image_plan(mit_data, contrasts=("lighting",)).pairings] == ["lighting"]


def test_a_render_keeps_its_measured_shading_orientation(tmp_path):
    from fakes import write_synthetic_render_variants
    from probe.design.image_stimuli import build_image_plan

    root = write_synthetic_render_variants(tmp_path / "r", scenes=("a", "b"), lightings=("key", "rim"), variants=1,
                                           h=16, w=16)
    plan = build_image_plan(root)
    assert not plan.unavailable and [c.name for c in plan.pairings] == ["render_vs_albedo", "lighting", "albedo",
                                                                   "luminance"]          # hsv variants: + luminance
    assert "source" not in plan.describe()["orientation"]["lighting"]     # every scene: shading_linear.exr
    assert set(plan.truth.shading_source.values()) == {"shading"}


def _probe(data, out):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "probe", "run", "--model", "tiny", "--stimuli", "images", "--data",
                        str(data), "--steps", "1", "--capture-steps", "0", "--guidance", "1.0", "--n-perm", "100",
                        "--n-boot", "20", "--n-splits", "10", "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.fixture(scope="module")
def mit_run(mit_data, tmp_path_factory, tiny_cache):
    return _probe(mit_data, tmp_path_factory.mktemp("mit-probe") / "run")


@pytest.fixture(scope="module")
def render_run(tmp_path_factory, tiny_cache):
    from fakes import write_synthetic_render_variants

    root = write_synthetic_render_variants(tmp_path_factory.mktemp("fake-render") / "data", scenes=("a", "b", "c"),
                                           lightings=("key", "rim"), variants=1, h=16, w=16)
    return _probe(root, tmp_path_factory.mktemp("render-probe") / "run")[0]


def test_image_probe_runs_on_an_import(mit_run):
    """probe run --stimuli images on the import: lighting and render_vs_albedo, albedo left out and said."""
    out, r = mit_run
    assert "`albedo` contrast is left out" in r.stderr and "no colour twins" in r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert set(s["contrasts"]) == {"lighting"} and s["primary_contrast"] == "render_vs_albedo"
    assert "no colour twins" in s["image_design"]["unavailable_contrasts"]["albedo"]
    assert s["image_design"]["orientation"]["lighting"]["source"]["frog"] == "image / albedo"
    header = (out / "units.csv").read_text().splitlines()[0].split(",")
    assert "t_lighting" in header and "t_albedo" not in header
    assert (out / "per_sample.npz").is_file()
    report = (out / "report.md").read_text()
    assert "**Real photographs**" in report and "no colour twins" in report


def test_compare_sets_renders_beside_photographs_on_shared_units(render_run, mit_run, tmp_path):
    """probe compare RENDER_RUN MIT_RUN --units shared --contrast lighting: the lighting contrast of both, unit by
    unit, with the test over pairs and the signed agreement; a contrast one run lacks is one paragraph."""
    import subprocess
    import sys

    mit, _ = mit_run
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "probe", "compare", str(render_run), str(mit), "--units", "shared",
                        "--contrast", "lighting", "--labels", "renders,photographs", "--n-boot", "100", "--out",
                        str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "compare.json").read_text())
    assert res["contrast"] == "lighting" and [x["contrast"] for x in res["runs"]] == ["lighting", "lighting"]
    assert {x["direction"] for x in res["runs"]} == {"harder lighting - softer lighting"}
    assert [x["n_pairs"] for x in res["runs"]] == [3, 3]
    n_units = len((mit / "units.csv").read_text().splitlines()) - 1
    assert res["n_units_compared"] == n_units
    c = res["comparisons"][0]
    assert c["test"]["available"] and "independently" in c["test"]["resampling"]
    lo, hi = c["agreement"]["ci"]
    assert -1 <= lo <= hi <= 1 and -1 <= c["agreement"]["rho"] <= 1
    t1 = np.loadtxt(render_run / "units.csv", delimiter=",", skiprows=1, usecols=_col(render_run, "t_lighting"))
    t2 = np.loadtxt(mit / "units.csv", delimiter=",", skiprows=1, usecols=_col(mit, "t_lighting"))
    from scipy.stats import spearmanr

    assert c["agreement"]["rho"] == pytest.approx(spearmanr(t1, t2)[0], abs=2e-3)   # units.csv rounds t
    md = (out / "compare.md").read_text()
    assert "do the same units move the same way" in md and "contrast `lighting`" in md
    bad = subprocess.run([sys.executable, "-m", "probe", "compare", str(render_run), str(mit), "--units", "shared",
                          "--contrast", "albedo", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 2 and "no `albedo` contrast" in bad.stderr and not (tmp_path / "bad").exists()


def _col(run, name):
    return (run / "units.csv").read_text().splitlines()[0].split(",").index(name)


def test_signed_agreement_known_answers():
    from probe.stats.compare import signed_agreement

    rng = np.random.default_rng(0)
    d = rng.normal(size=(12, 40)) + rng.normal(size=40)
    same = signed_agreement(d, d, True, n_boot=50)
    assert same["rho"] == pytest.approx(1.0) and same["ci"] == pytest.approx([1.0, 1.0])
    assert signed_agreement(d, -d, True, n_boot=50)["rho"] == pytest.approx(-1.0)
    other = signed_agreement(d, rng.normal(size=(9, 40)), False, n_boot=200)
    assert abs(other["rho"]) < 0.5 and other["ci"][0] < other["rho"] < other["ci"][1]
