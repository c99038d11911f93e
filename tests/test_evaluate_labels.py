"""Issue 18: every number evaluate writes means what its label says. One section per point of the issue;
each test failed on the code before it (tiny synthetic arrays and render folders, no model)."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evaluate import metrics as M
from evaluate import stats as ST
from evaluate.predictions import write_method_manifest, write_prediction
from evaluate.score import ScoreError, score
from fakes import fake_probe_units, write_fake_probe, write_synthetic_render, write_synthetic_render_variants
from render.imageio import read_exr, read_png_srgb, srgb_to_linear, write_png_encoded


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _disc(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.45 * min(h, w)) ** 2


def _scene(h=32, w=40, seed=0):
    rng = np.random.default_rng(seed)
    albedo = rng.uniform(0.2, 0.9, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w] / w
    shading = np.repeat((0.05 + 1.5 * xx * (1 - 0.4 * yy))[..., None], 3, -1)
    return albedo, shading, _disc(h, w)


# ---------------------------------------------------------------------------------------------
# 1. shading leakage: a magnitude for ranking, and black pixels inside the fit


def test_over_corrected_leakage_is_as_wrong_as_the_image():
    albedo, shading, mask = _scene()
    over = M.score_pair(albedo, albedo / shading, mask, shading=shading)       # gt / shading: lighting inverted
    img = M.score_pair(albedo, albedo * shading, mask, shading=shading)
    assert over["shading_leakage_linear"] == pytest.approx(-1.0) and img["shading_leakage_linear"] == pytest.approx(1.0)
    assert over["shading_leakage_abs_linear"] == pytest.approx(1.0) and img["shading_leakage_abs_linear"] == pytest.approx(1.0)
    assert M.metric_kind("shading_leakage_linear") == "signed" and M.metric_kind("shading_leakage_abs_linear") == "error"
    assert "SIGNED" in M.COLUMN_DOCS["shading_leakage_linear"]
    # +0.5 and -0.5 average to 0 signed, to 0.5 in magnitude
    half_up = M.score_pair(albedo, albedo * shading ** 0.5, mask, shading=shading)
    half_down = M.score_pair(albedo, albedo * shading ** -0.5, mask, shading=shading)
    signed = [half_up["shading_leakage_linear"], half_down["shading_leakage_linear"]]
    mags = [half_up["shading_leakage_abs_linear"], half_down["shading_leakage_abs_linear"]]
    assert np.mean(signed) == pytest.approx(0.0, abs=1e-9) and np.mean(mags) == pytest.approx(0.5)
    from evaluate.causal import harm_definition

    assert harm_definition("shading_leakage_linear").startswith("NOT a harm")


def test_black_prediction_pixels_stay_in_the_leakage_fit():
    """A prediction equal to gt except black where shading < 0.3 carried the lighting exactly there: it must
    not score 0 (before: those pixels were left out), and 0 must score like a value just above it."""
    albedo, shading, mask = _scene()
    dark = shading[..., 0] < 0.3
    assert (dark & mask).sum() > 20
    black, near = albedo.copy(), albedo.copy()
    black[dark] = 0.0
    near[dark] = 1e-4
    d_black = M.shading_leakage_details(albedo, black, shading, mask)
    d_near = M.shading_leakage_details(albedo, near, shading, mask)
    assert d_black["slope"] > 0.5 and d_black["slope"] == pytest.approx(d_near["slope"])     # continuous at 0
    assert d_black["n_floored"] == 3 * int((dark & mask).sum()) and d_black["n_unused"] == 0
    row = M.score_pair(albedo, black, mask, shading=shading)
    assert row["shading_leakage_n_floored"] == d_black["n_floored"]
    gt0 = albedo.copy()
    gt0[:8] = 0.0                                                    # black albedo cannot enter a log ratio
    assert M.shading_leakage_details(gt0, albedo, shading, mask)["n_unused"] == 3 * int(mask[:8].sum())


# ---------------------------------------------------------------------------------------------
# 2. like for like


def _pred_folder(pred: Path, data: Path, method: str, ids, key_of=lambda sid: None, fn=lambda a, sid: a):
    for sid in ids:
        alb = read_exr(data / sid / "albedo_linear.exr")
        write_prediction(pred, method, sid, fn(np.asarray(alb, np.float32), sid), key=key_of(sid))
    write_method_manifest(pred, method, {})


def test_a_folder_with_mixed_settings_is_refused_and_nothing_written(tmp_path):
    data = write_synthetic_render(tmp_path / "render")
    ids = ["alpha__key", "alpha__rim", "beta__key", "beta__rim"]
    pred = tmp_path / "eval" / "pred"
    _pred_folder(pred, data, "klein", ids, key_of=lambda sid: {"model": "m", "steps": 4,
                                                               "seed": 1 if sid == "beta__rim" else 0})
    with pytest.raises(ScoreError, match=r"2 different settings.*seed = 0 \(3 predictions.*vs 1 \(1") as e:
        score(data, pred, tmp_path / "eval", n_boot=20, lpips="off", progress=False)
    assert "steps" not in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "eval" / "scores.csv").exists() and not (tmp_path / "eval" / "score_summary.json").exists()
    from evaluate.__main__ import main

    assert main(["score", "--data", str(data), "--out", str(tmp_path / "eval")]) == 2
    # one setting: scored, and the summary says which
    _pred_folder(pred, data, "klein", ["beta__rim"], key_of=lambda sid: {"model": "m", "steps": 4, "seed": 0})
    res = score(data, pred, tmp_path / "eval", n_boot=20, lpips="off", progress=False)
    assert res.summary["methods"]["klein"]["settings"] == {"model": "m", "steps": 4, "seed": 0}


def test_headline_means_are_over_the_samples_every_method_scored(tmp_path):
    data = write_synthetic_render(tmp_path / "render", scenes=("alpha", "beta", "gamma"))
    ids = sorted(p.name for p in data.iterdir() if p.is_dir())
    pred = tmp_path / "eval" / "pred"
    _pred_folder(pred, data, "klein", ids, fn=lambda a, sid: a * 0.8)
    _pred_folder(pred, data, "other", [i for i in ids if i != "gamma__key"], fn=lambda a, sid: a * 0.5 + 0.1)
    res = score(data, pred, tmp_path / "eval", n_boot=50, lpips="off", progress=False)
    s = res.summary
    assert s["common_samples"]["n_samples"] == 5 and s["common_samples"]["n_base_scenes"] == 3
    for m in ("klein", "other"):
        assert s["methods"][m]["metrics_common"]["mse_linear_none"]["n"] == 5
    assert s["methods"]["klein"]["metrics"]["mse_linear_none"]["n"] == 6          # its own samples, as before
    from evaluate.report import write_report

    md = write_report(tmp_path / "eval", data=data, probe=tmp_path / "none", max_grid=0).read_text()
    assert "the same 5 samples of 3 scenes" in md and "samples / scenes" in md and "| 5 / 3 |" in md


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")   # the PNG beside the EXR of a NaN prediction
def test_nan_outside_the_mask_is_not_an_error_inside_it_is(tmp_path):
    data = write_synthetic_render(tmp_path / "render")
    mask = read_png_srgb(data / "alpha__key" / "mask.png").max(axis=-1) > 0.5
    ids = ["alpha__key", "alpha__rim", "beta__key", "beta__rim"]

    def poke(a, sid):
        a = a.copy()
        if sid == "alpha__key":
            a[~mask] = np.nan                      # background only
        if sid == "beta__key":
            a[mask.nonzero()[0][0], mask.nonzero()[1][0]] = np.inf     # one object pixel
        return a

    pred = tmp_path / "eval" / "pred"
    _pred_folder(pred, data, "klein", ids, fn=poke)
    res = score(data, pred, tmp_path / "eval", n_boot=20, lpips="off", progress=False)
    rows = {r["sample"]: r for r in _rows(res.scores_csv)}
    assert rows["alpha__key"]["status"] == "ok" and int(rows["alpha__key"]["n_nonfinite_outside_mask"]) == (~mask).sum()
    assert float(rows["alpha__key"]["mse_linear_none"]) == pytest.approx(0.0, abs=1e-12)
    assert rows["beta__key"]["status"] == "error" and "non-finite values inside the mask" in rows["beta__key"]["error"]


def test_limit_applies_to_the_baselines_as_to_klein(tmp_path):
    from evaluate.jobs import main_baselines

    data = write_synthetic_render(tmp_path / "render")
    args = argparse.Namespace(data=str(data), out=str(tmp_path / "eval"), pred=None, shard=None, hdr=False,
                              marigold=None, resume="on", no_resume=False, quiet=True, limit=2)
    assert main_baselines(args) == 0
    for m in ("image_as_albedo", "retinex_color"):
        side = sorted(p.name for p in (tmp_path / "eval" / "pred" / m).glob("*__*.json"))
        assert side == ["alpha__key.json", "alpha__rim.json"], m      # the first 2 by id, as generate --limit 2


# ---------------------------------------------------------------------------------------------
# 3. say when the input was changed


@pytest.mark.parametrize("w,h", [(128, 96), (256, 192), (300, 200), (96, 128)])
def test_downscaled_references_with_the_tiny_max_side(w, h):
    from probe.klein.registration import plan_reference

    t = plan_reference(w, h, max_side=64)
    mw, mh = t.model
    assert mw % 16 == mh % 16 == 0 and 64 <= min(mw, mh) and max(mw, mh) <= 64
    assert t.scale_mode == "downscale_area" and not t.exact and not t.describe()["exact"]
    ref = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = t.apply(ref)
    assert x.shape == (mh, mw, 3)
    assert t.invert(x.astype(np.float32)).shape == (h, w, 3)


def test_scores_and_report_say_the_reference_was_downscaled(tmp_path):
    from evaluate.generate import GenerateConfig, generate_predictions
    from evaluate.report import write_report
    from test_predictions import fake_loaded

    data = write_synthetic_render(tmp_path / "render", scenes=("alpha",), lightings=("key",), h=96, w=128)
    for method, max_side in (("klein", 64), ("klein_exact", 128)):
        generate_predictions(fake_loaded(), GenerateConfig(data=str(data), out=str(tmp_path / "eval" / "pred"),
                                                           method=method, max_side=max_side), progress=False)
    res = score(data, tmp_path / "eval" / "pred", tmp_path / "eval", n_boot=20, lpips="off", progress=False)
    row, exact = sorted(_rows(res.scores_csv), key=lambda r: r["method"])
    assert exact["reference_scale_mode"] == "none" and exact["reference_exact"] == "true"
    assert row["resized"] == "false"                 # scoring did not resize: generate mapped it back ...
    assert row["reference_scale_mode"] == "downscale_area" and row["reference_exact"] == "false"  # ... not exactly
    assert row["reference_model_hw"] == "64x64"
    assert res.summary["methods"]["klein"]["n_reference_downscaled"] == 1
    assert res.summary["methods"]["klein"]["n_not_pixel_exact"] == 1
    md = write_report(tmp_path / "eval", data=data, probe=tmp_path / "none", max_grid=0).read_text()
    assert "area-downscaled before the model saw it" in md and "not pixel-exact" in md
    assert "`klein_exact`: every model input was the render itself" in md


# ---------------------------------------------------------------------------------------------
# 4. intervals that hold with few scenes, and words around them


def test_studentised_cluster_interval_covers_at_five_clusters():
    """The percentile cluster bootstrap under-covers with 5 clusters; the studentised one holds 95 %
    (a cheap version of benchmarks/bench_intervals.py: 300 simulated data sets, fixed seed)."""
    rng = np.random.default_rng(0)
    hits = {"percentile": 0, "studentized": 0}
    reps = 300
    for r in range(reps):
        sizes = rng.integers(2, 7, 5)
        codes = np.repeat(np.arange(5), sizes)
        v = rng.normal(0, 1, 5)[codes] + rng.normal(0, 0.5, codes.size)     # true mean 0
        ci = ST.bootstrap_mean_ci(v, n_boot=499, seed=r, clusters=codes)
        hits["percentile"] += ci["ci95_low"] <= 0 <= ci["ci95_high"]
        hits["studentized"] += ci["ci95_studentized_low"] <= 0 <= ci["ci95_studentized_high"]
    cov = {k: v / reps for k, v in hits.items()}
    assert cov["percentile"] < 0.9 and cov["studentized"] >= 0.93, cov


def test_studentised_interval_edges():
    flat = ST.bootstrap_mean_ci([1.0, 1.0, 1.0, 1.0], n_boot=50, clusters=["a", "a", "b", "b"])
    assert flat["ci95_studentized_low"] == flat["ci95_studentized_high"] == 1.0
    three = ST.bootstrap_mean_ci([1.0, 2.0, 4.0], n_boot=200, clusters=["a", "b", "c"])
    assert three["ci95_studentized_high"] == np.inf            # 3 clusters cannot bound it: said, not hidden
    psnr = ST.bootstrap_mean_ci([30.0, np.inf, 40.0, np.nan], n_boot=50, clusters=list("abcd"), cap=ST.PSNR_CAP)
    assert psnr["n"] == 3 and psnr["n_capped"] == 1 and psnr["n_nonfinite"] == 1
    assert psnr["mean"] == pytest.approx((30 + 100 + 40) / 3)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    from test_evaluate_report import build_out

    from evaluate.report import write_report

    out, data = build_out(tmp_path_factory.mktemp("r"), random_weights=True)
    return write_report(out, data=data, probe=out / "none", max_grid=0).read_text()


def test_paired_differences_name_their_comparisons_and_scenes(report_run):
    from test_evaluate_report import _section

    metrics = _section(report_run, "## Metrics against ground truth albedo")
    assert "a CI that excludes 0 is a difference the data support" not in metrics
    assert "This table holds 14 comparisons" in metrics and "uncorrected for the other 13" in metrics
    header = next(line for line in metrics.splitlines() if line.startswith("| difference"))
    assert header.rstrip(" |").endswith("scenes")
    assert "`shading_leakage_linear`" not in header and "`shading_leakage_abs_linear`" in header


def test_ablation_table_leads_with_the_rank_p_and_keeps_intervals_apart(report_run):
    from test_evaluate_report import _section

    abl = _section(report_run, "## Ablation")
    header = next(line for line in abl.splitlines() if line.startswith("| k"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[1] == "rank p" and "over scenes" in cells[3] and "draws" in cells[4]
    assert "random-k harm [95% CI]" not in abl and "Read the rank p first" in abl
    assert "What the random draws came from" not in abl      # an ablation.json made before the pool was recorded


def test_the_report_says_what_the_random_draws_came_from(tmp_path):
    import json

    from test_evaluate_report import _section, build_out

    from evaluate.report import write_report

    out, data = build_out(tmp_path, random_weights=True)
    ab = json.loads((out / "ablation.json").read_text())
    k = next(iter(ab["by_k"]))
    ab["by_k"][k].setdefault("selection", {}).update(match="block", random_pool={
        "n_heads": 27, "n_eligible": 9, "by_region": {"img": 9, "ref": 18}, "eligible_by_region": {"img": 9},
        "top_by_region": {"img": 4}})
    ab["by_k"][k]["harm_vs_n_eligible"] = {"rho": -0.06, "n_draws": 19, "mean_harm_by_n_eligible": {"0": 0.01,
                                                                                                     "1": 0.009}}
    (out / "ablation.json").write_text(json.dumps(ab))
    abl = _section(write_report(out, data=data, probe=out / "none", max_grid=0).read_text(), "## Ablation")
    assert f"k = {k}: the draws came from 27 heads, 9 of them selective by the same rule; by token region img 9 (9 " \
           "selective), ref 18 (0 selective); the top-k: img 4" in abl
    assert "Spearman rho -0.06 (19 draws; mean harm by count: 0: 0.01, 1: 0.009)" in abl
    assert "either token region with `--match block`" in abl


# ---------------------------------------------------------------------------------------------
# 5. random heads that are random


def _four_head_probe(tmp_path, top):
    units = fake_probe_units(steps=(0,))          # 4 groups x 4 heads
    t = np.zeros(len(units))
    for i, u in enumerate(top):
        t[units.index(u)] = 20 - i
    return write_fake_probe(tmp_path / "probe", {"unit": units, "t": t}, {"stimuli": "text"})


def test_random_draws_never_hold_a_top_head(tmp_path):
    from evaluate.causal import ablation_plan
    from evaluate.selection import read_probe

    probe = read_probe(_four_head_probe(tmp_path, ["s00/double.0.img/h00", "s00/double.0.img/h01",
                                                   "s00/single.1/h02"]))
    plan = ablation_plan(probe, [3], n_random=3, seed=0)      # C(2, 2) x C(3, 1) = 3 different draws exist
    top = set(plan["methods"]["klein__ablate_top3"])
    draws = [frozenset(h) for n, h in plan["methods"].items() if "rand" in n]
    assert len(draws) == 3 == len(set(draws)) and plan["selection"]["3"]["n_distinct_possible"] == 3
    for name, heads in plan["methods"].items():
        if "rand" in name:
            assert not set(heads) & top and plan["random_overlap"][name] == 0
            assert sorted(h.rsplit("/", 1)[0] for h in heads) == ["double.0.img", "double.0.img", "single.1"]


def test_random_draws_are_all_different_and_no_more_than_exist(tmp_path, capsys):
    """A rank p over 19 draws claims 19 alternatives: a top-k whose 4-head groups allow only 3 different draws gets
    those 3 (said, and recorded; the floor follows) instead of 19 with repeats (the known-answer study's first
    ablation repeated draws this way); --match block widens the pool to the block's other regions."""
    from evaluate.causal import ablation_plan
    from evaluate.selection import n_distinct_matched, read_probe

    top = ["s00/double.0.img/h00", "s00/double.0.img/h01", "s00/single.1/h02"]
    probe = read_probe(_four_head_probe(tmp_path, top))
    plan = ablation_plan(probe, [3], n_random=19, seed=0)
    draws = [frozenset(h) for n, h in plan["methods"].items() if "rand" in n]
    assert len(draws) == 3 == len(set(draws)) and plan["selection"]["3"]["n_random_draws"] == 3
    assert "only 3 different random draws" in capsys.readouterr().err
    heads = [u.split("/", 1)[1] for u in top]
    # block: double.0 has 8 heads (img and txt regions), 6 outside the top-3; single.1 its 4 (3 others)
    assert n_distinct_matched(heads, probe.unit_names, "block") == 15 * 3
    plan = ablation_plan(probe, [3], n_random=19, seed=0, match="block")
    draws = [frozenset(h) for n, h in plan["methods"].items() if "rand" in n]
    assert len(draws) == 19 == len(set(draws)) and plan["selection"]["3"]["match"] == "block"
    assert all(not d & set(heads) for d in draws)
    assert all(sorted(h.split(".")[0] + "." + h.split(".")[1].split("/")[0] for h in d) ==
               ["double.0", "double.0", "single.1"] for d in draws)


def test_the_light_cli_lists_the_same_choices_as_the_selection():
    import evaluate.__main__ as cli
    from evaluate import selection

    assert cli.SELECT_CHOICES == selection.SELECT_CHOICES and cli.MATCH_CHOICES == selection.MATCH_CHOICES


def test_change_albedo_selects_the_heads_shown_to_drop_light(tmp_path):
    """--select change_albedo: only class_change albedo-selective units are eligible, ranked by the bound on their
    lighting-to-colour gain ratio (smallest first), whatever their |t|."""
    from evaluate.selection import ProbeError, read_probe, select_heads

    units = fake_probe_units(steps=(0,))
    n = len(units)
    cls = np.array(["neither"] * n, dtype=object)
    ub = np.full(n, 0.9)
    for u, b in (("s00/single.1/h03", 0.2), ("s00/single.0/h01", 0.1), ("s00/double.0.img/h02", 0.4)):
        cls[units.index(u)], ub[units.index(u)] = "albedo-selective", b
    t = np.zeros(n)
    t[units.index("s00/single.1/h00")] = 30          # the card's contrast would pick this one
    path = write_fake_probe(tmp_path / "p", {"unit": units, "t": t, "class_change": cls,
                                            "change_ratio_lighting_to_albedo_ub": ub}, {"stimuli": "images"})
    sel = select_heads(read_probe(path), 2, "change_albedo")
    assert sel.heads == ["single.0/h01", "single.1/h03"] and sel.n_eligible == 3 and "class_change" in sel.rule
    bare = write_fake_probe(tmp_path / "q", {"unit": units, "t": t}, {"stimuli": "images"})
    with pytest.raises(ProbeError, match="no `class_change` column"):
        select_heads(read_probe(bare), 2, "change_albedo")


def test_the_random_pool_and_each_draws_selective_heads_are_recorded(tmp_path):
    """What the random draws come from (heads, how many selective by the top-k's rule, token regions) and how many
    selective heads each draw holds; the draws' harm against that count (Spearman) is context for H6."""
    from evaluate.causal import ablation_plan
    from evaluate.selection import read_probe
    from evaluate.stats import harm_vs_n_eligible

    units = fake_probe_units(steps=(0,))
    n = len(units)
    cls = np.array(["neither"] * n, dtype=object)
    ub = np.full(n, 0.9)
    selective = {"s00/single.1/h03": 0.2, "s00/single.1/h00": 0.3, "s00/single.1/h01": 0.45,
                 "s00/double.0.img/h02": 0.4}
    for u, b in selective.items():
        cls[units.index(u)], ub[units.index(u)] = "albedo-selective", b
    path = write_fake_probe(tmp_path / "p", {"unit": units, "t": np.zeros(n), "class_change": cls,
                                            "change_ratio_lighting_to_albedo_ub": ub}, {"stimuli": "images"})
    plan = ablation_plan(read_probe(path), [2], n_random=19, seed=0, select="change_albedo", match="block")
    sel = plan["selection"]["2"]
    assert plan["methods"]["klein__ablate_top2"] == ["single.1/h03", "single.1/h00"]
    pool = sel["random_pool"]
    # single.1's other heads (h01 selective, h02) in its image region: the block's only region in this fake probe
    assert pool["n_heads"] == 2 and pool["n_eligible"] == 1 and pool["eligible_fraction"] == 0.5
    assert pool["by_region"] == {"img": 2} and pool["top_by_region"] == {"img": 2}
    draws = [plan["methods"][f"klein__ablate_rand2_r{r}"] for r in range(sel["n_random_draws"])]
    assert sel["random_n_eligible"] == [sum(h == "single.1/h01" for h in d) for d in draws]
    # the context statistic: harm rising with the selective-head count gives rho 1; no spread gives None
    eff = {"random_draw_means": [0.1, 0.2, 0.3, 0.4]}
    got = harm_vs_n_eligible(eff, {"random_n_eligible": [0, 1, 2, 3]})
    assert got["rho"] == pytest.approx(1.0) and got["n_draws"] == 4 and got["mean_harm_by_n_eligible"]["3"] == 0.4
    assert harm_vs_n_eligible(eff, {"random_n_eligible": [1, 1, 1, 1]}) is None
    assert harm_vs_n_eligible(eff, {"random_n_eligible": [0, 1]}) is None


def test_a_group_without_enough_other_heads_is_refused(tmp_path, capsys):
    from evaluate.__main__ import main
    from evaluate.causal import ablation_plan
    from evaluate.selection import ProbeError, read_probe

    path = _four_head_probe(tmp_path, [f"s00/double.0.img/h0{i}" for i in range(3)])
    with pytest.raises(ProbeError, match=r"block group `double.0.img` has 4 heads, 3 of them in the top-3, so it "
                                         r"can supply 1 other heads where the draw needs 3"):
        ablation_plan(read_probe(path), [3], n_random=2, seed=0)
    data = write_synthetic_render(tmp_path / "render")
    out = tmp_path / "eval"
    rc = main(["ablate", "--model", "tiny", "--data", str(data), "--probe", str(path), "--k", "3", "--n-random", "2",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "double.0.img" in err and "Traceback" not in err and not out.exists()


# ---------------------------------------------------------------------------------------------
# 6. the link's confound


def test_partial_spearman_removes_a_shared_shading_strength():
    from evaluate.link import partial_link

    rng = np.random.default_rng(1)
    n_scenes, per = 40, 3
    clusters = np.repeat([f"s{i}" for i in range(n_scenes)], per)
    shading = rng.uniform(0, 1, n_scenes)[np.arange(n_scenes).repeat(per)] + 0.05 * rng.normal(size=n_scenes * per)
    control = shading + 0.02 * rng.normal(size=shading.size)            # image_as_albedo's error: the distance
    sel = shading + 0.15 * rng.normal(size=shading.size)
    confounded = partial_link(sel, shading + 0.15 * rng.normal(size=shading.size), control, clusters)
    assert confounded["available"] and confounded["n"] == n_scenes
    assert confounded["rho_plain"] > 0.7 and abs(confounded["rho"]) < 0.35 and confounded["p"] > 0.05
    mechanism = partial_link(sel, 0.3 * shading + (sel - shading) + 0.02 * rng.normal(size=shading.size), control,
                             clusters)
    assert mechanism["rho"] > 0.6 and mechanism["p"] < 1e-3 and mechanism["ci_low"] > 0
    assert not partial_link(sel, sel, None, clusters)["available"]


def test_link_json_has_the_controlled_rho_beside_the_plain_one(tmp_path):
    from evaluate.jobs import main_link

    units = fake_probe_units()
    rng = np.random.default_rng(2)
    sample_ids = [f"scene{s:02d}__l{k}" for s in range(10) for k in range(2)]
    scene_ids = [s.split("__")[0] for s in sample_ids]
    diff = rng.normal(size=(len(sample_ids), len(units)))
    t = np.zeros(len(units))
    t[0] = 9
    path = write_fake_probe(tmp_path / "probe", {"unit": units, "t": t}, {"stimuli": "images"},
                            per_sample={"diff": diff.astype(np.float32), "sample_ids": np.array(sample_ids),
                                        "scene_ids": np.array(scene_ids), "units": np.array(units),
                                        "contrast": np.array("render_vs_albedo")})
    out = tmp_path / "eval"
    out.mkdir()
    with open(out / "scores.csv", "w") as f:
        f.write("method,sample,scene,lighting,base_scene,status,lmse_linear_scalar\n")
        for i, (sid, sc) in enumerate(zip(sample_ids, scene_ids)):
            f.write(f"klein,{sid},{sc},l,{sc},ok,{diff[i, 0] + rng.normal()}\n")
            f.write(f"image_as_albedo,{sid},{sc},l,{sc},ok,{diff[i, 0]}\n")
    args = argparse.Namespace(probe=str(path), out=str(out), metric=None, method="klein", top_k=1, select=None,
                              n_boot=50)
    assert main_link(args) == 0
    link = json.loads((out / "link.json").read_text())
    ps = link["partial_spearman"]
    assert ps["available"] and ps["control"] == "image_as_albedo" and ps["n"] == 10
    for k in ("rho", "p", "ci_low", "ci_high", "rho_plain", "rho_selectivity_control", "rho_error_control"):
        assert k in ps
    assert ps["rho_plain"] == pytest.approx(link["spearman"]["cluster_means"]["rho"])
    assert "image_as_albedo_lmse_linear_scalar" in (out / "link.csv").read_text().splitlines()[0]


# ---------------------------------------------------------------------------------------------
# 7. resume keys and degenerate outputs


def test_a_local_model_is_keyed_by_content_and_randomisation(tmp_path):
    from evaluate.generate import model_identity

    local = tmp_path / "klein"
    (local / "transformer").mkdir(parents=True)
    (local / "model_index.json").write_text("{}")
    (local / "transformer" / "config.json").write_text("{}")
    weights = local / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(bytes(range(256)) * 40_000)              # ~10 MB: sampled, not read whole
    spec = SimpleNamespace(model=str(local), tiny_seed=0, revision=None)

    def ident(randomized=None):
        return model_identity(SimpleNamespace(spec=spec, source="local", revision=None, resolved_path=str(local),
                                              dtype="float32", device="cpu", random_weights=bool(randomized),
                                              randomized=randomized or {}))

    first = ident()
    data = bytearray(weights.read_bytes())
    data[: 1 << 16] = bytes(1 << 16)                             # fine-tuned in place: same name, same size
    weights.write_bytes(bytes(data))
    assert ident()["fingerprint"] != first["fingerprint"]
    assert ident({"mode": "transformer", "seed": 3})["randomize"] == {"mode": "transformer", "seed": 3}
    assert first["randomize"] == {"mode": "none"}
    copy = tmp_path / "elsewhere"
    shutil.copytree(local, copy)
    spec2 = SimpleNamespace(model=str(copy), tiny_seed=0, revision=None)
    moved = model_identity(SimpleNamespace(spec=spec2, source="local", revision=None, resolved_path=str(copy),
                                           dtype="float32", device="cpu", random_weights=False, randomized={}))
    assert moved["fingerprint"] == ident()["fingerprint"]         # the same files elsewhere: the same content


def test_retinex_is_redone_when_the_mask_changes_and_says_it_gets_the_mask(tmp_path):
    from evaluate.baselines import write_baselines

    data = write_synthetic_render(tmp_path / "render")
    pred = tmp_path / "pred"
    write_baselines(data, pred, progress=False)
    side = json.loads((pred / "retinex_color" / "alpha__key.json").read_text())
    assert side["key"]["mask"]["file"] == "alpha__key/mask.png" and side["key"]["versions"]["scipy"]
    man = json.loads((pred / "retinex_color" / "manifest.json").read_text())
    assert "ground-truth object mask" in man["description"] and "klein is not" in man["description"]
    mask = np.zeros((32, 40), np.float32)
    mask[4:28, 5:35] = 1.0
    write_png_encoded(data / "alpha__key" / "mask.png", mask)
    again = write_baselines(data, pred, progress=False)
    assert again["retinex_color"]["written"] == 1 and again["image_as_albedo"]["written"] == 0


def test_near_constant_predictions_are_flagged_and_counted(tmp_path):
    data = write_synthetic_render(tmp_path / "render")
    ids = ["alpha__key", "alpha__rim", "beta__key", "beta__rim"]
    rng = np.random.default_rng(0)
    grey = lambda a, sid: srgb_to_linear((128 + rng.integers(-1, 2, a.shape)) / 255.0).astype(np.float32)  # noqa
    pred = tmp_path / "eval" / "pred"
    _pred_folder(pred, data, "klein", ids, fn=lambda a, sid: a * 0.7)
    _pred_folder(pred, data, "grey", ids, fn=grey)
    res = score(data, pred, tmp_path / "eval", n_boot=20, lpips="off", progress=False)
    rows = _rows(res.scores_csv)
    assert {r["degenerate"] for r in rows if r["method"] == "grey"} == {"near-constant"}
    assert {r["degenerate"] for r in rows if r["method"] == "klein"} == {""}
    g = res.summary["methods"]["grey"]
    assert g["n_degenerate"] == 4 and g["n_degenerate_by_kind"]["near-constant"] == 4
    from evaluate.report import write_report

    md = write_report(tmp_path / "eval", data=data, probe=tmp_path / "none", max_grid=0).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method") and "degenerate" in line)
    assert "| `grey` |" in md and "4 (4 near-constant)" in md and header


# ---------------------------------------------------------------------------------------------
# 8. words: scenes are base scenes, colour variants are named


def test_scenes_are_counted_as_base_scenes(tmp_path):
    data = write_synthetic_render_variants(tmp_path / "render", variants=1)
    ids = sorted(p.name for p in data.iterdir() if p.is_dir())
    assert len(ids) == 8
    pred = tmp_path / "eval" / "pred"
    _pred_folder(pred, data, "klein", ids, fn=lambda a, sid: a * 0.9 + 0.01)
    res = score(data, pred, tmp_path / "eval", n_boot=20, lpips="off", progress=False)
    s = res.summary
    assert (s["n_base_scenes"], s["n_scene_versions"], s["n_colour_variants"], s["n_scenes"]) == (2, 4, 2, 4)
    from evaluate.report import write_report

    md = write_report(tmp_path / "eval", data=data, probe=tmp_path / "none", max_grid=4).read_text()
    assert "8 samples of 2 scenes (4 scene versions: the originals and 2 colour variants" in md
    assert "in 4 scenes" not in md and "from 2 scenes (" in md


def test_an_ablation_without_enough_selective_heads_is_not_run_and_says_so(tmp_path):
    """--select change_albedo with fewer albedo-selective heads than k writes ablation.json with `skipped` (no
    generations of non-selective head sets); the report and the verdict's H6 say why."""
    from types import SimpleNamespace

    from evaluate.report import section_ablation

    why = {"4": "only 0 heads are albedo-selective (change classes), fewer than k = 4: there is no set of 4 selective "
                "heads to ablate; not run"}
    ab = {"primary_metric": "lmse_linear_scalar", "ks": [4], "n_random": 19, "skipped": why,
          "by_k": {"4": {"heads": [], "selection": {"contrast": "change_albedo", "n_eligible": 0, "n_filled": 4},
                         "skipped": why["4"], "metrics": {}}}}
    text = " ".join(str(getattr(b, "text", b)) for b in section_ablation(SimpleNamespace(ablation=ab, out=tmp_path),
                                                                           False))
    assert "Not run" in text and "only 0 heads are albedo-selective" in text
    from test_verdict import evaluate_folder

    from evaluate.verdict import verdict_from_folders

    h6 = verdict_from_folders(evaluate_folder(tmp_path, "e", ablation=ab)).outcome("H6")
    assert h6.outcome == "not tested" and "only 0 heads are albedo-selective" in h6.reason
