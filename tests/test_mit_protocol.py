"""evaluate.mit_protocol: the MIT intrinsic images benchmark's error measure, baselines and hold-one-out.

Known answers here: a plain-loop transcription of the benchmark's local_error, images whose Retinex or Weiss
answer is exact, and (where ../shared has the real training half) scores the benchmark's own Python code
printed for the same object and settings."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mit_fixture import import_fixture, write_mit_fixture
from test_mit_import import run_import, shared_or_skip

from evaluate import mit_protocol as M
from evaluate.poisson import PoissonSolver, gradients, poisson_integrate


def local_error_loops(correct, estimate, mask, window=20, shift=10):
    """The benchmark's local_error written out as loops over windows (its definition, our words)."""
    m, n = correct.shape
    ssq = total = 0.0
    for i in range(0, m - window + 1, shift):
        for j in range(0, n - window + 1, shift):
            c, e, k = (a[i:i + window, j:j + window] for a in (correct, estimate, mask))
            energy = float(np.sum(e ** 2 * k))
            alpha = float(np.sum(c * e * k)) / energy if energy > 1e-5 else 0.0
            ssq += float(np.sum(k * (c - alpha * e) ** 2))
            total += float(np.sum(k * c ** 2))
    return ssq / total


def test_local_error_is_the_benchmarks_definition():
    rng = np.random.default_rng(0)
    h, w = 57, 83                                 # not multiples of the step: strips at the edges stay uncovered
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy - 28) ** 2 / 500 + (xx - 40) ** 2 / 1200) < 1
    truth = rng.uniform(0.2, 3.0, (h, w))
    est = truth * rng.uniform(0.5, 2.0, (h, w))
    est[:20, :20] = 1e-4                          # a window whose estimate has no energy: scale 0
    got = M.local_error(truth, est, mask)
    assert got == pytest.approx(local_error_loops(truth, est, mask), rel=1e-10)
    assert M.local_error(truth, 3.7 * truth, mask) == pytest.approx(0.0, abs=1e-12)     # scale-free per window
    s = M.score_image(truth, truth, est, 2 * truth, mask)
    assert s[0] == pytest.approx(0.5 * s[1] + 0.5 * s[2]) and s[2] == pytest.approx(0.0, abs=1e-12)


def test_poisson_solver_integrates_exactly_per_region():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 26), bool)
    mask[2:9, 3:20] = True
    mask[12:18, 5:11] = True                      # a second region: its own free constant
    img = rng.normal(size=mask.shape)
    gy, gx = gradients(img)
    solver = PoissonSolver(mask)
    x = solver.solve(gy, gx)
    for region in (np.s_[2:9, 3:20], np.s_[12:18, 5:11]):
        d = (x - img)[region]
        np.testing.assert_allclose(d, d.mean(), atol=1e-8)      # exact up to the region's constant
        assert abs(x[region].mean()) < 1e-6                     # minimum norm: zero mean per region
    assert (x[~mask] == 0).all()
    np.testing.assert_allclose(poisson_integrate(gy, gx, mask), x, atol=1e-10)
    y = solver.solve(2 * gy, 2 * gx)                           # one factorisation, many targets
    np.testing.assert_allclose(y, 2 * x, atol=1e-8)


def test_hold_one_out_known_answer():
    scores = np.array([[1, 2, 3],
                       [5, 1, 3],
                       [5, 1, 2],
                       [1, 4, 1]], dtype=float)     # integers: sums are exact, so ties are ties
    # object 0: others sum to [11, 6, 6] -> the first of equals, 1; object 3: [11, 4, 8] -> 1;
    # object 1: [7, 7, 6] -> 2; object 2: [7, 7, 7] -> 0
    assert M.hold_one_out(scores) == [1, 2, 0, 1]
    assert M.hold_one_out(scores[:1]) == [None]


def _blob(h=30, w=36):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - 15) ** 2 / 150 + (xx - 18) ** 2 / 250) < 1, yy / h, xx / w


def test_grey_retinex_limits():
    mask, yy, xx = _blob()
    refl = np.where(xx < 0.5, 40.0, 90.0)
    shading = 1.0 + 0.5 * yy                       # slow: log-gradient <= 0.02 per pixel
    img = refl * shading
    solver = PoissonSolver(mask)
    s, r = M.grey_retinex(img, mask, 0.1, solver)   # the edge (log 2.25) is kept, the ramp is not
    ratio = r[mask] / refl[mask]
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-6)
    s0, r0 = M.grey_retinex(img, mask, 0.0, solver)  # every gradient is reflectance: constant shading
    np.testing.assert_allclose(s0[mask], s0[mask].mean(), rtol=1e-6)
    s9, r9 = M.grey_retinex(img, mask, 10.0, solver)  # none is: the image is the shading
    np.testing.assert_allclose(s9[mask] / img[mask], s9[mask][0] / img[mask][0], rtol=1e-6)
    assert (s[~mask] == 0).all() and (r[~mask] == 0).all()


def test_colour_retinex_sees_a_chromatic_edge_grey_retinex_misses():
    mask, yy, xx = _blob()
    refl = np.empty(mask.shape + (3,))
    refl[:] = [60.0, 60.0, 60.0]
    refl[xx >= 0.5] = [90.0, 40.0, 60.0]           # hue changes, grey level only by 5 %: log 1.053 = 0.05
    img = refl * (1.0 + 0.3 * yy)[..., None]
    solver = PoissonSolver(mask)
    _, r_col = M.colour_retinex(img, mask, 0.1, 0.2, solver)
    _, r_grey = M.grey_retinex(img.mean(-1), mask, 0.1, solver)
    left, right = mask & (xx < 0.45), mask & (xx > 0.55)
    assert r_col[right].mean() / r_col[left].mean() == pytest.approx(190 / 180, rel=2e-3)
    assert r_grey[right].mean() / r_grey[left].mean() == pytest.approx(1.0, abs=1e-6)


def test_weiss_recovers_reflectance_when_the_lights_median_is_flat():
    mask, yy, xx = _blob()
    refl = np.where((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.05, 50.0, 120.0)
    slopes = [-2.0, -1.0, -0.5, -0.3, -0.1, 0.1, 0.3, 0.5, 1.0, 2.0]   # symmetric: median log-gradient 0
    lights = np.stack([refl * np.exp(a * xx) for a in slopes], axis=-1)
    s, r = M.weiss(refl * np.exp(0.7 * xx), lights, mask, PoissonSolver(mask))
    ratio = r[mask] / refl[mask]
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-6)
    sh = s[mask] / np.exp(0.7 * xx[mask])
    np.testing.assert_allclose(sh, sh.mean(), rtol=1e-6)


def test_bas_modes():
    mask, _, xx = _blob()
    img = 10 + xx
    s, r = M.bas(img, mask, "refl")
    assert (s == mask).all() and r is img
    s, r = M.bas(img, mask, "shading")
    assert s is img and (r == mask).all()


@pytest.fixture(scope="module")
def mit_import(tmp_path_factory):
    return import_fixture(tmp_path_factory.mktemp("mit"), n_lights=10)


def test_protocol_on_an_import_with_a_perfect_and_a_trivial_method(mit_import, tmp_path):
    from evaluate.predictions import PredictionStore
    from render.dataset import list_samples, load_sample

    pred = tmp_path / "pred"
    for method, make in (("perfect", lambda s: s.albedo_linear), ("image_as_albedo", lambda s: s.image_linear)):
        store = PredictionStore(pred, method)
        for info in list_samples(mit_import):
            s = load_sample(mit_import, info.id)
            store.write(info.id, make(s), scene=s.scene, lighting=s.lighting)
        store.finish({"description": method})
    res = M.run_protocol(mit_import, tmp_path, pred, n_boot=50, progress=False)
    assert res["objects"] == ["cup", "frog", "shoe"] and not res["skipped_objects"]
    assert set(res["baselines"]) == {"BAS", "GR-RET", "COL-RET", "W", "W+RET"}
    # the fixture's diffuse image is reflectance x shading exactly: the true albedo gives the true shading
    assert res["methods"]["perfect"]["mean"] < 1e-6
    # image as albedo: its grey is (diffuse + specular) / exposure; BAS 'refl' reads the diffuse image itself
    assert res["methods"]["image_as_albedo"]["mean"] > 1e-3
    for key, b in res["baselines"].items():
        grid = np.array([b["grid_scores"][n] for n in res["objects"]])
        for i, n in enumerate(res["objects"]):
            others = np.delete(grid, i, axis=0).sum(0)
            c = b["hold_one_out"][n]["grid_index"]
            assert c == int(np.argmin(others)) and b["hold_one_out"][n]["score"] == pytest.approx(grid[i, c])
        assert b["mean"] == pytest.approx(np.mean([b["hold_one_out"][n]["score"] for n in res["objects"]]))
    assert len(res["baselines"]["GR-RET"]["grid"]) == 15 and len(res["baselines"]["COL-RET"]["grid"]) == 25
    assert res["baselines"]["GR-RET"]["grid"][0]["threshold"] == pytest.approx(1e-3)
    assert res["paired"]["perfect"]["BAS"]["mean"] < 0
    rows = list(csv.DictReader(open(tmp_path / M.CSV_NAME)))
    assert {r["method"] for r in rows} >= {"BAS", "W+RET", "perfect"} and len(rows) == 5 * 3 + 2 * 3 + 7
    assert json.loads((tmp_path / M.JSON_NAME).read_text())["n_objects"] == 3
    parts = M.report_parts(tmp_path)
    table = [p for p in parts if p[0] == "table"][0]
    assert table[1][:2] == ["object", "`BAS`"] and table[2][-1][0] == "**mean**"


def test_protocol_refuses_a_render_and_says_what_is_missing(tmp_path, mit_import):
    from fakes import write_synthetic_render

    write_synthetic_render(tmp_path / "render")
    with pytest.raises(M.MitProtocolError, match="import-mit"):
        M.run_protocol(tmp_path / "render", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # an object whose light01-10 are not all there: Weiss leaves it out and says why
    imp = import_fixture(tmp_path / "two", n_lights=2)
    res = M.run_protocol(imp, tmp_path / "out2", baselines=("BAS", "W"), progress=False)
    assert res["baselines"]["W"]["left_out"] == {n: "no light01-10 photographs" for n in ("cup", "frog", "shoe")}
    assert res["baselines"]["W"]["mean"] is None and math.isfinite(res["baselines"]["BAS"]["mean"])


def test_evaluate_all_runs_unchanged_on_an_import(tmp_path, tiny_cache):
    """klein (tiny), image_as_albedo, Retinex, scores, the MIT table and the report on an imported folder."""
    import subprocess
    import sys

    data, ev = import_fixture(tmp_path, n_lights=2), tmp_path / "ev"
    r = subprocess.run([sys.executable, "-m", "evaluate", "all", "--model", "tiny", "--data", str(data), "--out",
                        str(ev), "--probe", str(tmp_path / "no-probe"), "--steps", "1", "--n-boot", "20", "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(ev / "scores.csv")))
    assert len(rows) == 3 * 9 and all(x["status"] == "ok" for x in rows)
    assert {x["method"] for x in rows} == {"klein", "image_as_albedo", "retinex_color"}
    for x in rows:      # scale-free alignments only: the albedo's scale is unknown
        assert x["mse_linear_none"] == "" and x["lmse_linear_none"] == "" and float(x["lmse_linear_scalar"]) >= 0
        assert (x["shading_leakage_linear"] != "") == (x["lighting"] == "original")   # shading: default light only
    summary = json.loads((ev / "score_summary.json").read_text())
    assert "scale-free" in summary["alignment_note"]
    res = json.loads((ev / M.JSON_NAME).read_text())
    assert set(res["methods"]) == {"klein", "image_as_albedo", "retinex_color"} and res["random_weights"] is True
    assert all(v["n_objects"] == 3 for v in res["methods"].values())
    assert res["baselines"]["W"]["mean"] is None and res["baselines"]["COL-RET"]["mean"] > 0
    report = (ev / "report.md").read_text()
    assert report.splitlines()[0].startswith("**RANDOM WEIGHTS") and "The MIT intrinsic images protocol" in report


# Scores the benchmark's own Python code (Grosse et al. 2009: intrinsic.py / comparison.py, converted to Python 3
# outside this repository, pyamg at its default tolerance 1e-5) printed for the object teabag2 of the shared
# MIT-Berkeley training half, at these grid positions. Ours use a direct sparse solve; the two agree to ~1e-3
# relative, and to 2e-6 when pyamg's tolerance is tightened to 1e-12 (benchmarks/RESULTS.md).
TEABAG2 = {("BAS", 0): 0.177766, ("BAS", 1): 0.0371608, ("GR-RET", 5): 0.0354552, ("GR-RET", 9): 0.0188345,
           ("GR-RET", 12): 0.177782, ("COL-RET", 16): 0.0176129, ("COL-RET", 24): 0.0566351, ("W", 0): 0.00608676,
           ("W+RET", 6): 0.00565081, ("W+RET", 9): 0.0134378}


def test_teabag2_matches_the_benchmarks_own_code(tmp_path):
    src = shared_or_skip()
    assert run_import(src, "--out", tmp_path / "imp", "--only", "teabag2")[0] == 0
    (obj,), _ = M.load_objects(tmp_path / "imp")
    solver = PoissonSolver(obj.mask)
    for (key, index), want in TEABAG2.items():
        b = M.BASELINES[key]
        s, r = b.run(obj, b.grid[index], solver)
        got = M.score_image(obj.true_shading, obj.true_reflectance, s, r, obj.mask)[0]
        assert got == pytest.approx(want, rel=2e-3), (key, b.grid[index])
