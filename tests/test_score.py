"""`evaluate score` and the baselines end to end on a tiny synthetic render folder (2 scenes x 2 lightings)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluate import baselines as B
from evaluate import score as S
from evaluate.metrics import INVARIANCE_COLUMNS, metric_columns
from fakes import write_synthetic_render  # noqa: F401  (shared with test_evaluate_report)
from render.imageio import read_exr, write_exr, write_png_srgb

H, W = 32, 40




def _write_pred(pred: Path, method: str, entries: list[dict]) -> None:
    (pred / method).mkdir(parents=True, exist_ok=True)
    (pred / method / "manifest.json").write_text(json.dumps(
        {"method": method, "colour_space_note": "linear EXR / sRGB PNG", "predictions": entries}))


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_render(tmp_path_factory.mktemp("render"))


@pytest.fixture(scope="module")
def scored(data, tmp_path_factory):
    """gt (exact), noisy (one missing file, one unlisted sample, one half-size), png_only (one corrupt PNG)."""
    pred = tmp_path_factory.mktemp("pred")
    ds = S.open_dataset(data)
    ids = [s.id for s in ds.samples]
    rng = np.random.default_rng(1)
    gt_entries, noisy_entries, png_entries = [], [], []
    for i, sid in enumerate(ids):
        alb = ds.load(sid).albedo_linear
        write_exr(pred / "gt" / f"{sid}_albedo_linear.exr", alb)
        write_png_srgb(pred / "gt" / f"{sid}_albedo_srgb.png", alb)
        gt_entries.append({"sample": sid, "albedo_linear": f"{sid}_albedo_linear.exr",
                           "albedo_srgb": f"{sid}_albedo_srgb.png", "seed": 0})
        noisy = np.clip(alb * 0.7 + rng.normal(0, 0.03, alb.shape), 0, 1).astype(np.float32)
        if i == 2:
            write_exr(pred / "noisy" / f"{sid}_albedo_linear.exr", noisy[::2, ::2])   # half size
        elif i > 2:
            write_exr(pred / "noisy" / f"{sid}_albedo_linear.exr", noisy)
        if i != 1:   # i == 1: not listed in the manifest at all; i == 0: listed, but no file written
            noisy_entries.append({"sample": sid, "albedo_linear": f"{sid}_albedo_linear.exr"})
        png = pred / "png_only" / f"{sid}_albedo_srgb.png"
        if i == 3:
            png.parent.mkdir(parents=True, exist_ok=True)
            png.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
        else:
            write_png_srgb(png, alb)
        png_entries.append({"sample": sid, "albedo_srgb": png.name})
    _write_pred(pred, "gt", gt_entries)
    _write_pred(pred, "noisy", noisy_entries)
    _write_pred(pred, "png_only", png_entries)
    out = tmp_path_factory.mktemp("scores")
    res = S.score(data, pred, out, n_boot=200, seed=0, progress=False)
    return res, ids, pred, out


def test_score_writes_all_files_and_rows(scored):
    res, ids, _, out = scored
    for p in (res.scores_csv, res.invariance_csv, res.summary_json, res.config_json):
        assert p.is_file() and p.parent == out
    rows = _read_csv(res.scores_csv)
    assert len(rows) == res.n_rows == 3 * len(ids)
    assert set(metric_columns()) <= set(rows[0])
    assert {(r["method"], r["sample"]) for r in rows} == {(m, s) for m in ("gt", "noisy", "png_only") for s in ids}
    assert res.methods == ("gt", "noisy", "png_only")


def test_ground_truth_as_prediction_scores_perfectly(scored):
    res, ids, _, _ = scored
    rows = [r for r in _read_csv(res.scores_csv) if r["method"] == "gt"]
    assert all(r["status"] == "ok" and r["pred_source"] == "exr_linear" for r in rows)
    for r in rows:
        for a in ("none", "scalar", "per_channel"):
            assert float(r[f"mse_linear_{a}"]) == pytest.approx(0.0, abs=1e-12)
            assert float(r[f"lmse_linear_{a}"]) == pytest.approx(0.0, abs=1e-12)
            assert float(r[f"dssim_srgb_{a}"]) == pytest.approx(0.0, abs=1e-6)
        assert r["psnr_srgb_none"] == "inf"
        assert float(r["scale_scalar"]) == pytest.approx(1.0)
    inv = [r for r in _read_csv(res.invariance_csv) if r["method"] == "gt"]
    assert len(inv) == 2
    for r in inv:
        assert r["n_pairs"] == "1"
        for c in INVARIANCE_COLUMNS:
            assert float(r[c]) == pytest.approx(0.0, abs=1e-15)


def test_missing_unlisted_and_corrupt_predictions_are_error_rows(scored):
    res, ids, _, _ = scored
    rows = {(r["method"], r["sample"]): r for r in _read_csv(res.scores_csv)}
    missing = rows["noisy", ids[0]]
    assert missing["status"] == "error" and "missing prediction file" in missing["error"]
    assert missing["mse_linear_none"] == ""
    unlisted = rows["noisy", ids[1]]
    assert unlisted["status"] == "error" and "no prediction for this sample" in unlisted["error"]
    corrupt = rows["png_only", ids[3]]
    assert corrupt["status"] == "error" and "cannot decode" in corrupt["error"]
    summ = res.summary["methods"]
    assert summ["noisy"]["n_errors"] == 2 and summ["noisy"]["n_ok"] == len(ids) - 2
    assert summ["png_only"]["n_errors"] == 1
    assert {e["sample"] for e in summ["noisy"]["errors"]} == {ids[0], ids[1]}
    assert res.n_errors == 3


def test_resized_prediction_is_recorded(scored):
    res, ids, _, _ = scored
    rows = {(r["method"], r["sample"]): r for r in _read_csv(res.scores_csv)}
    r = rows["noisy", ids[2]]
    assert r["status"] == "ok"
    assert r["resized"] == "true" and r["resize_interp"] == "bilinear"
    assert r["pred_hw"] == f"{H // 2}x{W // 2}" and r["gt_hw"] == f"{H}x{W}"
    assert rows["noisy", ids[3]]["resized"] == "false"
    assert res.summary["methods"]["noisy"]["n_resized"] == 1
    # the noisy method is 0.7x darker: scale alignment recovers most of it
    r3 = rows["noisy", ids[3]]
    assert float(r3["mse_linear_scalar"]) < float(r3["mse_linear_none"])
    assert float(r3["scale_scalar"]) == pytest.approx(1 / 0.7, rel=0.1)


def test_png_prediction_is_decoded_from_srgb(scored):
    res, ids, _, _ = scored
    rows = {(r["method"], r["sample"]): r for r in _read_csv(res.scores_csv)}
    r = rows["png_only", ids[0]]
    assert r["status"] == "ok" and r["pred_source"] == "png_srgb"
    assert 0 < float(r["mse_srgb_none"]) < (1 / 255) ** 2        # 8-bit quantisation only
    assert 0 < float(r["mse_linear_none"]) < 1e-5


def test_lpips_column_empty_with_reason(scored):
    res, _, _, _ = scored
    rows = _read_csv(res.scores_csv)
    assert not res.lpips.available
    assert all(r["lpips_srgb_none"] == "" for r in rows)
    assert res.summary["lpips"]["available"] is False and res.summary["lpips"]["reason"]
    lp = res.summary["methods"]["gt"]["metrics"]["lpips_srgb_scalar"]
    assert lp["mean"] is None and res.lpips.reason in lp["status"]


def test_summary_means_and_bootstrap_cis(scored):
    res, ids, _, out = scored
    summ = json.loads((out / "score_summary.json").read_text())
    rows = [r for r in _read_csv(res.scores_csv) if r["method"] == "noisy" and r["status"] == "ok"]
    m = summ["methods"]["noisy"]["metrics"]["mse_linear_none"]
    vals = [float(r["mse_linear_none"]) for r in rows]
    assert m["n"] == len(vals) == 2
    assert m["mean"] == pytest.approx(np.mean(vals))
    # both ok samples are lightings of one scene: one cluster, so no CI (resampling it changes nothing)
    assert {r["base_scene"] for r in rows} == {"beta"} and m["n_clusters"] == 1 and m["resampled"] == "clusters"
    assert m["ci95_low"] is None and m["ci95_high"] is None
    g = summ["methods"]["gt"]["metrics"]["mse_linear_none"]
    assert g["n_clusters"] == 2 and g["ci95_low"] <= g["mean"] <= g["ci95_high"]
    # PSNR of a perfect prediction is inf: a value, counted as the cap (issue 18), not a dropped row
    psnr = summ["methods"]["gt"]["metrics"]["psnr_srgb_none"]
    assert psnr["n_nonfinite"] == 0 and psnr["n_capped"] == psnr["n"] == len(ids) and psnr["mean"] == psnr["cap"] == 100
    assert set(summ["columns"]) >= set(metric_columns()) | set(INVARIANCE_COLUMNS)
    cfg = json.loads((out / "score_config.json").read_text())
    assert cfg["n_boot"] == 200 and cfg["metrics"]["lmse_window"] == 20 and "scikit-image" in cfg["versions"]


def test_invariance_nonzero_for_lighting_dependent_predictions(data, tmp_path):
    # image-as-albedo changes with the lighting: its invariance must be > 0 (and > 0 after scaling,
    # since the two shadings differ in shape, not only in scale)
    pred = tmp_path / "pred"
    B.write_baselines(data, pred, methods=("image_as_albedo",), progress=False)
    res = S.score(data, pred, tmp_path / "out", n_boot=50, progress=False, lpips="off")
    inv = _read_csv(res.invariance_csv)
    assert len(inv) == 2
    for r in inv:
        assert float(r["inv_mse_linear_none"]) > 1e-3
        assert float(r["inv_mse_linear_per_channel"]) > 1e-4
    assert res.summary["lpips"]["reason"] == "disabled (lpips='off')"


def test_threads_do_not_change_results(data, scored, tmp_path):
    res, _, pred, _ = scored
    one = S.score(data, pred, tmp_path / "one", n_boot=200, seed=0, workers=1, progress=False)
    a, b = _read_csv(res.scores_csv), _read_csv(one.scores_csv)
    assert a == b
    assert _read_csv(res.invariance_csv) == _read_csv(one.invariance_csv)
    assert one.summary["methods"] == res.summary["methods"]


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(0)
    v = rng.normal(5, 1, 400)
    ci = S.bootstrap_mean_ci(v, n_boot=2000, seed=0)
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert ci["ci95_low"] < 5.0 + 3 * se and ci["ci95_high"] > 5.0 - 3 * se
    assert (ci["ci95_high"] - ci["ci95_low"]) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert S.bootstrap_mean_ci(v, 500, seed=3) == S.bootstrap_mean_ci(v, 500, seed=3)
    c = S.bootstrap_mean_ci([1.0, np.nan, np.inf], 100)
    assert c["n"] == 1 and c["n_nonfinite"] == 2 and c["mean"] == 1.0 and c["ci95_low"] is None


def test_direct_reader_agrees_with_render_dataset(data):
    rd = pytest.importorskip("render.dataset", reason="render.dataset not importable: only the direct reader exists")
    ds = S.open_dataset(data)
    assert ds.reader == "render.dataset.load_sample"
    direct = S.open_dataset(data)
    direct._rd = None
    for s in ds.samples:
        a, b = ds.load(s.id, image=True), direct.load(s.id, image=True)
        np.testing.assert_array_equal(a.albedo_linear, b.albedo_linear)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.image_linear, b.image_linear)
        np.testing.assert_array_equal(a.albedo_linear, rd.load_sample(data, s.id).albedo_linear)
    assert a.mask.any() and not a.mask.all()


# ---------------------------------------------------------------------------------------------
# baselines


def test_baselines_write_layout_resume_and_score(data, tmp_path):
    pred = tmp_path / "pred"
    rep = B.write_baselines(data, pred, progress=False)
    ids = [s.id for s in S.open_dataset(data).samples]
    for m in B.BASELINE_METHODS:
        assert rep[m]["written"] == len(ids)
        man = json.loads((pred / m / "manifest.json").read_text())
        assert man["method"] == m and [e["sample"] for e in man["predictions"]] == ids
        for sid in ids:
            e = next(e for e in man["predictions"] if e["sample"] == sid)
            assert (pred / m / e["albedo_linear"]).is_file() and (pred / m / e["albedo_srgb"]).is_file()
            assert e["albedo_linear"] == f"{sid}_albedo_linear.exr" and e["albedo_srgb"] == f"{sid}_albedo_srgb.png"
    # image_as_albedo is the input every method gets: the 8-bit sRGB PNG decoded to linear, bit for bit
    from render.imageio import read_png_srgb

    img = read_png_srgb(data / ids[0] / "image_srgb.png", linear=True)
    np.testing.assert_array_equal(read_exr(pred / "image_as_albedo" / f"{ids[0]}_albedo_linear.exr"), img)

    # resume: nothing redone; a corrupted file is redone
    again = B.write_baselines(data, pred, progress=False)
    assert all(again[m]["written"] == 0 and again[m]["skipped_finished"] == len(ids) for m in B.BASELINE_METHODS)
    (pred / "retinex_color" / f"{ids[1]}_albedo_srgb.png").write_bytes(b"garbage")
    again = B.write_baselines(data, pred, progress=False)
    assert again["retinex_color"]["written"] == 1 and again["image_as_albedo"]["written"] == 0

    res = S.score(data, pred, tmp_path / "out", n_boot=100, progress=False)
    summ = res.summary["methods"]
    assert res.n_errors == 0
    # on piecewise-constant albedo under smooth shading, Retinex beats taking the image as albedo
    for col in ("mse_linear_per_channel", "lmse_linear_per_channel"):
        assert summ["retinex_color"]["metrics"][col]["mean"] < summ["image_as_albedo"]["metrics"][col]["mean"]
    assert (summ["retinex_color"]["invariance"]["inv_mse_linear_scalar"]["mean"]
            < summ["image_as_albedo"]["invariance"]["inv_mse_linear_scalar"]["mean"])


def test_color_retinex_recovers_piecewise_albedo():
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w] / 64
    alb = np.empty((h, w, 3))
    alb[:] = [0.8, 0.2, 0.2]
    alb[:, 32:] = [0.2, 0.6, 0.3]
    img = alb * (0.3 + 0.7 * xx * (1 - 0.5 * yy))[..., None]
    mask = np.ones((h, w), bool)
    out = B.color_retinex(img, mask)
    assert out.dtype == np.float32 and out.shape == img.shape and out.max() == pytest.approx(1.0)
    from evaluate.metrics import mse

    assert mse(alb, out, mask, "per_channel") < 1e-4 < mse(alb, img, mask, "per_channel")


def test_poisson_integrate_recovers_a_known_image():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 15))
    mask = np.ones_like(x, bool)
    mask[5:7, :] = False          # two regions, each with its own free constant
    gy = np.zeros_like(x)
    gy[1:] = x[1:] - x[:-1]
    gx = np.zeros_like(x)
    gx[:, 1:] = x[:, 1:] - x[:, :-1]
    sol = B.poisson_integrate(gy, gx, mask)
    for region in (slice(0, 5), slice(7, 12)):
        d = sol[region] - x[region]
        np.testing.assert_allclose(d, d.mean(), atol=1e-6)
        assert abs(sol[region].mean()) < 1e-6
    assert (sol[~mask] == 0).all()


def test_baselines_shards_cover_every_sample_once(data, tmp_path):
    pred = tmp_path / "pred"
    ids = [s.id for s in S.open_dataset(data).samples]
    r0 = B.write_baselines(data, pred, methods=("image_as_albedo",), shard="0/2", progress=False)
    r1 = B.write_baselines(data, pred, methods=("image_as_albedo",), shard="1/2", progress=False)
    assert r0["image_as_albedo"]["written"] + r1["image_as_albedo"]["written"] == len(ids)
    folder = pred / "image_as_albedo"
    # shards write no shared file: each leaves its own record; the index is rebuilt by the next reader
    assert not (folder / "manifest.json").exists() and not (folder / "config.json").exists()
    recs = [json.loads((folder / "shards" / f"shard-{k}-of-2.json").read_text()) for k in (0, 1)]
    assert sorted(recs[0]["samples"] + recs[1]["samples"]) == ids and recs[1]["shard"]["count"] == 2
    res = S.score(data, pred, tmp_path / "out", n_boot=10, progress=False)
    assert res.n_errors == 0 and res.methods == ("image_as_albedo",)
    man = json.loads((folder / "manifest.json").read_text())
    assert sorted(e["sample"] for e in man["predictions"]) == ids
    assert "image taken as albedo" in man["description"]          # the run's fields, from the shard records
    assert json.loads((folder / "config.json").read_text())["shards"][0]["count"] == 2


def test_unknown_baseline_and_marigold_without_weights(data, tmp_path):
    with pytest.raises(ValueError, match="unknown baseline"):
        B.write_baselines(data, tmp_path / "pred", methods=("nope",))
    with pytest.raises(B.WeightsUnavailableError, match="nothing is downloaded"):
        B.write_marigold(data, tmp_path / "pred", weights=None)
    with pytest.raises(B.WeightsUnavailableError, match="not found on disk"):
        B.write_marigold(data, tmp_path / "pred", weights=tmp_path / "no-such-model")
    assert not (tmp_path / "pred" / "marigold_intrinsics").exists()


# ---------------------------------------------------------------------------------------------
# bad inputs, CLI, no torch


def test_bad_inputs_give_clear_errors(data, tmp_path):
    with pytest.raises(S.ScoreError, match="render folder not found"):
        S.score(tmp_path / "nowhere", tmp_path, tmp_path / "o", progress=False)
    with pytest.raises(S.ScoreError, match="prediction folder"):
        S.score(data, tmp_path / "no-pred", tmp_path / "o", progress=False)
    pred = tmp_path / "pred"
    _write_pred(pred, "elsewhere", [{"sample": "other__scene", "albedo_srgb": "x.png"}])
    with pytest.raises(S.ScoreError, match="wrong --data or --pred"):
        S.score(data, pred, tmp_path / "o", progress=False)
    with pytest.raises(S.ScoreError, match="no predictions for method 'absent'"):
        S.score(data, pred, tmp_path / "o", methods=["absent"], progress=False)


def test_main_score_cli(data, tmp_path, capsys):
    pred = tmp_path / "pred"
    B.write_baselines(data, pred, methods=("image_as_albedo",), progress=False)
    rc = S.main_score(["--data", str(data), "--pred", str(pred), "--out", str(tmp_path / "o"),
                       "--n-boot", "20", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "0 errors" in out and "LPIPS columns empty" in out
    assert (tmp_path / "o" / "scores.csv").is_file()
    assert S.main_score(["--data", str(tmp_path / "none"), "--pred", str(pred), "--quiet"]) == 2


def test_scoring_imports_no_torch(data, tmp_path):
    pred = tmp_path / "pred"
    B.write_baselines(data, pred, methods=("image_as_albedo",), progress=False)
    code = ("import sys; from evaluate.score import score; "
            f"score({str(data)!r}, {str(pred)!r}, {str(tmp_path / 'o')!r}, n_boot=10, progress=False); "
            "import evaluate.baselines; "
            "bad = [m for m in ('torch', 'torchvision', 'diffusers', 'lpips') if m in sys.modules]; "
            "assert not bad, bad; print('clean')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert "clean" in r.stdout


# ---------------------------------------------------------------------------------------------
# issue 10: clusters, paired differences, degenerate predictions, shading leakage, stale references


def _method(pred: Path, method: str, data: Path, make, key=None) -> None:
    from evaluate.predictions import PredictionStore

    ds = S.open_dataset(data)
    store = PredictionStore(pred, method)
    for s in ds.samples:
        gt = ds.load(s.id, image=True)
        store.write(s.id, make(gt, s), key=key(s) if key else None, scene=s.scene, lighting=s.lighting)
    store.finish()


def test_clusters_follow_base_scene_and_old_manifests(tmp_path):
    """C1: colour variants `<scene>~c<k>` share their base scene's cluster; manifests without base_scene
    fall back to scene."""
    data = write_synthetic_render(tmp_path / "render", scenes=("alpha", "alpha~c1", "beta"))
    man = json.loads((data / "manifest.json").read_text())
    for e in man["samples"]:
        if e["scene"] == "alpha~c1":
            e["base_scene"], e["variant"] = "alpha", 1
        elif e["scene"] == "alpha":
            e["base_scene"], e["variant"] = "alpha", 0
        # beta: an entry written before the change (no base_scene, no variant)
    (data / "manifest.json").write_text(json.dumps(man))
    pred = tmp_path / "pred"
    _method(pred, "klein", data, lambda gt, s: gt.albedo_linear * 0.9)
    res = S.score(data, pred, tmp_path / "out", n_boot=50, progress=False)
    rows = _read_csv(res.scores_csv)
    assert {(r["scene"], r["base_scene"], r["variant"]) for r in rows} == {
        ("alpha", "alpha", "0"), ("alpha~c1", "alpha", "1"), ("beta", "beta", "0")}
    summ = res.summary
    assert summ["clusters"] == "base_scene" and summ["n_clusters"] == 2 and summ["n_scenes"] == 3
    assert summ["methods"]["klein"]["metrics"]["mse_linear_none"]["n_clusters"] == 2
    inv = _read_csv(res.invariance_csv)
    assert sorted(r["scene"] for r in inv) == ["alpha", "alpha~c1", "beta"]   # invariance per scene (variant)


def test_paired_differences_and_degenerate_predictions(data, tmp_path):
    pred = tmp_path / "pred"
    B.write_baselines(data, pred, progress=False)
    rng = np.random.default_rng(3)
    _method(pred, "klein", data, lambda gt, s: np.clip(gt.albedo_linear * 0.8 + rng.normal(0, 0.02, gt.albedo_linear.shape),
                                                       0, 1).astype(np.float32))
    _method(pred, "grey", data, lambda gt, s: np.full_like(gt.albedo_linear, 0.4))
    res = S.score(data, pred, tmp_path / "out", n_boot=200, progress=False)
    rows = _read_csv(res.scores_csv)
    pd = res.summary["paired_differences"]
    for other in ("image_as_albedo", "retinex_color", "grey"):
        k = {r["sample"]: float(r["mse_linear_scalar"]) for r in rows if r["method"] == "klein"}
        o = {r["sample"]: float(r["mse_linear_scalar"]) for r in rows if r["method"] == other}
        d = pd[other]["mse_linear_scalar"]
        assert d["mean"] == pytest.approx(np.mean([k[s] - o[s] for s in k])) and d["n"] == 4 and d["n_clusters"] == 2
        assert d["ci95_low"] <= d["mean"] <= d["ci95_high"]
    assert "klein" not in pd and "shading_leakage_linear" in pd["grey"]
    # a constant prediction is flagged, and not ranked "most invariant"
    assert {r["degenerate"] for r in rows if r["method"] == "grey"} == {"constant"}
    assert {r["degenerate"] for r in rows if r["method"] == "klein"} == {""}
    inv = [r for r in _read_csv(res.invariance_csv) if r["method"] == "grey"]
    assert all(r["inv_nmse_linear_scalar"] == "" and "degenerate" in r["note"] for r in inv)
    assert res.summary["methods"]["grey"]["n_degenerate"] == 4
    assert res.summary["methods"]["grey"]["invariance"]["inv_nmse_linear_scalar"]["mean"] is None
    assert res.summary["methods"]["klein"]["invariance"]["inv_nmse_linear_scalar"]["mean"] is not None


def test_shading_leakage_of_image_as_albedo_and_truth(data, tmp_path):
    pred = tmp_path / "pred"
    B.write_baselines(data, pred, methods=B.BASELINE_METHODS + B.HDR_BASELINE_METHODS, progress=False)
    _method(pred, "truth", data, lambda gt, s: gt.albedo_linear)
    res = S.score(data, pred, tmp_path / "out", n_boot=50, progress=False)
    rows = _read_csv(res.scores_csv)
    leak = lambda m: [float(r["shading_leakage_linear"]) for r in rows if r["method"] == m]  # noqa: E731
    assert leak("truth") == pytest.approx([0.0] * 4, abs=1e-9)
    assert leak("image_as_albedo_hdr") == pytest.approx([1.0] * 4, abs=1e-5)   # the fake render has no residual
    # from the 8-bit PNG every method gets: the same up to quantisation and the few pixels clipped at 1
    assert leak("image_as_albedo") == pytest.approx([1.0] * 4, abs=1e-2)
    assert leak("retinex_color") == pytest.approx([0.0] * 4, abs=0.1)     # Retinex removes most of the shading
    m = res.summary["methods"]["image_as_albedo_hdr"]["metrics"]["shading_leakage_linear"]
    assert m["mean"] == pytest.approx(1.0, abs=1e-5) and m["n_clusters"] == 2


def test_baselines_read_the_same_srgb_input_as_klein(data, tmp_path):
    from render.imageio import read_png_srgb

    pred = tmp_path / "pred"
    B.write_baselines(data, pred, methods=("image_as_albedo", "image_as_albedo_hdr"), progress=False)
    sid = "beta__rim"
    png = read_png_srgb(data / sid / "image_srgb.png", linear=True)
    hdr = S.open_dataset(data).load(sid, image=True).image_linear
    assert hdr.max() > 1.0                                           # the render has highlights the PNG clips
    np.testing.assert_array_equal(read_exr(pred / "image_as_albedo" / f"{sid}_albedo_linear.exr"), png)
    np.testing.assert_array_equal(read_exr(pred / "image_as_albedo_hdr" / f"{sid}_albedo_linear.exr"), hdr)
    side = json.loads((pred / "image_as_albedo" / f"{sid}.json").read_text())
    assert side["key"]["reference"]["file"] == f"{sid}/image_srgb.png" and "8-bit sRGB" in side["key"]["input"]


def test_prediction_of_an_older_render_is_an_error_row(data, tmp_path):
    import shutil

    local = tmp_path / "render"
    shutil.copytree(data, local)
    pred = tmp_path / "pred"
    B.write_baselines(local, pred, methods=("image_as_albedo",), progress=False)
    write_png_srgb(local / "beta__key" / "image_srgb.png", np.full((H, W, 3), 0.2, np.float32))   # re-rendered
    res = S.score(local, pred, tmp_path / "out", n_boot=20, progress=False)
    rows = {r["sample"]: r for r in _read_csv(res.scores_csv)}
    assert rows["beta__key"]["status"] == "error" and "stale prediction" in rows["beta__key"]["error"]
    assert rows["alpha__key"]["status"] == "ok"
