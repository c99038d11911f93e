"""`python -m probe run --stimuli images` end to end on the tiny model and a real small render (Blender, once per
session): every output (CONTRACTS C3), stats --from reproducing every column, class and per_sample.npz, the
captured values against a direct editing call, resume, compare with a text run, and the bad-input errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from probe.io.captures import load_captures

SCENES = "cornell_box,checker_cube"          # two lightings each
FAST = ("--n-perm", "200", "--n-boot", "50", "--n-splits", "10", "--quiet")
CAPTURE = ("--steps", "1", "--capture-steps", "0", "--guidance", "1.0", "--seeds-per-pair", "2")


def cli(*args, check=True, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


@pytest.fixture(scope="session")
def small_render(tmp_path_factory):
    """2 scenes x 2 lightings x (original + 1 colour variant) at 64 x 64, 4 samples per pixel."""
    out = tmp_path_factory.mktemp("image-render") / "data"
    cli("render", "--no-progress", "--only", SCENES, "--recolor", "1", "--resolution", "64", "--samples", "4",
        "--out", str(out))
    return out


@pytest.fixture(scope="module")
def image_run(small_render, tmp_path_factory, tiny_cache):
    out = tmp_path_factory.mktemp("image-probe") / "run"
    r = cli("probe", "run", "--model", "tiny", "--stimuli", "images", "--data", str(small_render), *CAPTURE,
            "--out", str(out), *FAST)
    return out, r


def test_every_output_follows_the_contracts(image_run, small_render):
    out, r = image_run
    assert "RANDOM WEIGHTS" in r.stdout and "classes:" in r.stdout
    for name in ("captures.npz", "units.csv", "per_sample.npz", "summary.json", "config.json", "report.md",
                 "figures/t_heatmap.png", "figures/t_heatmap_lighting.png", "figures/t_heatmap_albedo.png",
                 "figures/class_scatter.png"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    assert s["stimuli"] == "images" and s["primary_contrast"] == "render_vs_albedo" and s["n_pairs"] == 2
    assert s["direction"] == "render - albedo" and not s["clustered"] and s["pairs_over"] == "scenes"
    assert set(s["contrasts"]) == {"lighting", "albedo", "luminance"}       # luminance: the hsv variants
    design = s["image_design"]
    assert set(design["contrasts"]) == {"render_vs_albedo", "lighting", "albedo", "luminance"}
    assert design["orientation"]["albedo"]["variants"] == "hsv"
    row = s["luminance_row"]
    assert row["albedo_variants"] == "hsv" and sum(row["class_sizes"].values()) == s["n_units"]
    assert row["n_follow_luminance"] == sum(row["by_class"].values())
    assert "shading contrast" in design["contrasts"]["lighting"]["orientation"]
    assert set(design["orientation"]["lighting"]["values"]) == {"cornell_box", "checker_cube"}
    assert sum(s["classes"]["counts"].values()) == s["n_units"]
    assert s["classes"]["equivalence"]["per_contrast"]["albedo"]["power_at_dz_0"] == 0.0   # 2 scenes: never
    header = (out / "units.csv").read_text().splitlines()[0].split(",")
    for col in ("unit", "block", "t", "d", "p", "q", "p_fwer", "fwer_significant", "mean_a", "mean_b", "mean_diff",
                "sd_diff", "class", "direction", "d_av", "class_signed", "p_equiv_albedo", "p_equiv_signed_albedo",
                "rms_change_albedo", "ratio_albedo_to_lighting_ub", "p_equiv_magnitude_albedo"):
        assert col in header, col
    for c in ("render_vs_albedo", "lighting", "albedo", "luminance"):
        for stat in ("t", "d", "p_fwer"):
            assert f"{stat}_{c}" in header
    caps = load_captures(out / "captures.npz")
    units = list(caps.units)
    assert any(u.endswith("/h00") and ".ref/" in u for u in units) and "s00/double.0.ref/h00" in units
    assert caps.images.values.shape == (len(caps.images.keys), len(units))
    # 8 samples: 8 rendered images and 4 distinct albedo images (a version's albedo is the same under both lights)
    assert len(caps.images.keys) == 16
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["capture"]["editing"] and cfg["capture"]["height"] is None and cfg["stimuli"] == "images"
    assert cfg["capture_info"]["unique_stimuli"] == (8 + 4) * 2
    assert cfg["noise"]["scene_seeds"]["cornell_box"] != cfg["noise"]["scene_seeds"]["checker_cube"]
    assert cfg["images"]["image_prompt"].startswith("Remove all lighting")
    per = np.load(out / "per_sample.npz")
    assert {"contrast", "diff", "sample_ids", "scene_ids", "units"} <= set(per.files)
    assert {"diff_lighting", "diff_albedo", "diff_render_vs_albedo", "sign_convention", "direction"} <= set(per.files)
    assert per["diff_lighting"].shape == (4, len(units)) and per["diff_albedo"].shape == (4, len(units))
    assert per["diff"].dtype == np.float32 and per["diff"].shape == (8, len(units))
    assert list(per["units"]) == units and str(per["contrast"]) == "render_vs_albedo"
    assert "cornell_box~c1__warm_point" in list(per["sample_ids"])
    i = list(per["sample_ids"]).index("cornell_box~c1__warm_point")
    assert per["scene_ids"][i] == "cornell_box"
    keys = list(caps.images.keys)
    np.testing.assert_allclose(per["diff"][i], caps.images.values[keys.index("cornell_box~c1__warm_point/render")]
                               - caps.images.values[keys.index("cornell_box~c1__warm_point/albedo")], rtol=1e-6)
    md = (out / "report.md").read_text()
    assert md.splitlines()[0].startswith("**RANDOM WEIGHTS")
    assert "## The contrasts" in md and "## Unit classes" in md and "never from unit values" in md
    assert "never (too few pairs)" in md
    lum = md.split("### Albedo luminance beside the classes")[1].split("\n## ")[0]
    assert "made of hsv variants, which change the surfaces' brightness" in lum and "follow albedo luminance" in lum


def test_change_classes_in_every_output(image_run):
    """The change classes (probe/stats/change.py): every img/ref head unit classed in units.csv (text units empty),
    their counts in summary.json, and one change distance per sample-level pair in captures.npz."""
    import csv

    out, _ = image_run
    s = json.loads((out / "summary.json").read_text())
    cc = s["change_classes"]
    assert sum(cc["counts"].values()) == cc["n_units"] > 0 and cc["dim"] == 512 and cc["n_scenes"] == 2
    assert s["n_change_albedo_selective"] == cc["counts"]["albedo-selective"]
    rows = list(csv.DictReader(open(out / "units.csv")))
    classed = [r for r in rows if r["class_change"]]
    assert len(classed) == cc["n_units"] and all(".txt/" not in r["unit"] for r in classed)
    assert all(r["class_change"] == "" for r in rows if ".txt/" in r["unit"])
    assert {r["class_change"] for r in classed} <= {"lighting-selective", "albedo-selective", "neither"}
    caps = load_captures(out / "captures.npz")
    for name in ("lighting", "albedo"):
        d, scenes = caps.change.contrasts[name]
        assert d.shape == (len(caps.sample_pairs[name][0]), len(caps.change.units)) and np.isfinite(d).all()
    assert json.loads((out / "config.json").read_text())["capture"]["change_dim"] == 512
    assert (out / "partial_captures_change" / "key.json").is_file()


def test_stats_from_the_captures_alone_reproduce_everything(image_run, tmp_path):
    out, _ = image_run
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out / "captures.npz", alone / "captures.npz")
    cli("probe", "stats", "--from", str(alone / "captures.npz"), "--out", str(tmp_path / "re"), *FAST[:-1],
        "--no-report")
    assert (tmp_path / "re" / "units.csv").read_text() == (out / "units.csv").read_text()
    a, b = np.load(out / "per_sample.npz"), np.load(tmp_path / "re" / "per_sample.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "re"))
    assert s1["classes"] == s2["classes"] and s2["stimuli"] == "images"
    # another margin from the command line changes the classes' margin (and nothing else)
    cli("probe", "stats", "--from", str(alone / "captures.npz"), "--out", str(tmp_path / "m"), *FAST[:-1],
        "--no-report", "--equivalence-margin", "1.5")
    s3 = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s3["classes"]["equivalence"]["margin_dz"] == 1.5 and s3["n_fwer_significant"] == s1["n_fwer_significant"]


def test_captured_values_are_the_editing_calls(image_run, small_render, tiny_loaded):
    """An image's stored values are klein's editing call on that PNG with the run's text and its scene's two
    seeds (capture_edit with a fresh capture), averaged over the seeds."""
    from probe.klein.capture import HeadCapture, head_sites
    from probe.klein.edit_capture import capture_edit

    out, _ = image_run
    caps = load_captures(out / "captures.npz")
    cfg = json.loads((out / "config.json").read_text())
    seeds = cfg["noise"]["scene_seeds"]["checker_cube"]
    pipe = tiny_loaded.pipe
    cap_cfg = cfg["capture"]
    fps = cfg["capture_info"]["forwards_per_step"]
    with HeadCapture(pipe.transformer, head_sites(pipe.transformer), cap_cfg["capture_steps"], fps,
                     ref_tokens=True) as cap:
        v = capture_edit(pipe, cap, small_render / "checker_cube~c1__area_right" / "albedo_srgb.png",
                         cfg["images"]["image_prompt"], steps=cap_cfg["steps"], guidance=cap_cfg["guidance"],
                         seeds=seeds)
    assert cap.units == list(caps.units)
    row = list(caps.images.keys).index("checker_cube~c1__area_right/albedo")
    np.testing.assert_allclose(v.mean(axis=0), caps.images.values[row], rtol=2e-4, atol=1e-6)


def test_resume_captures_nothing_again(image_run, small_render, tmp_path):
    out, _ = image_run
    again = tmp_path / "again"
    shutil.copytree(out, again)
    cli("probe", "run", "--model", "tiny", "--stimuli", "images", "--data", str(small_render), *CAPTURE,
        "--out", str(again), *FAST)
    cfg = json.loads((again / "config.json").read_text())
    assert cfg["capture_info"]["captured_now"] == 0 and cfg["capture_info"]["from_cache"] == 24
    assert (again / "units.csv").read_text() == (out / "units.csv").read_text()


def test_compare_sets_a_text_run_beside_the_image_run(image_run, tmp_path):
    """A text run (here synthetic, the tiny model's units without reference tokens) and the image run are
    compared on the units they share."""
    from probe.io.captures import Captures, save_captures
    from probe.jobs.finish import analyse_and_write
    from probe.stats.config import StatsConfig

    out, _ = image_run
    units = [u for u in load_captures(out / "captures.npz").units if ".ref/" not in u]
    rng = np.random.default_rng(0)
    caps = Captures(a=rng.normal(size=(6, len(units))), b=rng.normal(size=(6, len(units))), units=np.array(units),
                    pair_ids=np.array([f"p{i}" for i in range(6)]), meta={"stimuli": "text"})
    text = tmp_path / "text"
    save_captures(text / "captures.npz", caps)
    analyse_and_write(caps, text, {"capture": {"protocol": "heads"}, "model": {"model": "tiny", "source": "tiny",
                                                                                "random_weights": True}},
                      StatsConfig(n_perm=100, n_boot=0, n_splits=5), no_report=True)
    r = cli("probe", "compare", str(text), str(out), "--out", str(tmp_path / "cmp"), "--n-boot", "100", check=False)
    assert r.returncode == 2 and "--units shared" in r.stderr
    # 6 text pairs beside 2 image scenes: the unit-by-unit test on mean |t| is refused (|t| grows with the pairs)
    r = cli("probe", "compare", str(text), str(out), "--units", "shared", "--out", str(tmp_path / "cmp"),
            "--n-boot", "100", check=False)
    assert r.returncode == 2 and "--allow-unequal-pairs" in r.stderr and not (tmp_path / "cmp").exists()
    cli("probe", "compare", str(text), str(out), "--units", "shared", "--allow-unequal-pairs",
        "--out", str(tmp_path / "cmp"), "--n-boot", "100")
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert res["n_units_compared"] == len(units)
    assert [r["stimuli"] for r in res["runs"]] == ["text", "images"]
    assert not res["comparisons"][0]["test"]["available"]      # the scale-free parts only, and it says so
    assert "images" in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.mark.parametrize("kwargs,contrast,flag", [
    (dict(albedo_srgb=False), "render_vs_albedo", "albedo_srgb.png"),
    (dict(variants=0), "albedo", "--recolor K"),
    (dict(lightings=("key",)), "lighting", "--lightings"),
])
def test_bad_render_folders_fail_cleanly_through_the_cli(tmp_path, kwargs, contrast, flag):
    """One paragraph naming the contrast and the render flag, exit 2, no traceback, the output folder untouched
    (an existing one keeps its files, a new one is not made)."""
    from tests.fakes import write_synthetic_render_variants

    args = dict(scenes=("alpha", "beta"), lightings=("key", "rim"), variants=1, h=16, w=16) | kwargs
    root = write_synthetic_render_variants(tmp_path / "r", **args)
    existing = tmp_path / "old-run"
    existing.mkdir()
    (existing / "units.csv").write_text("unit,t\n")
    for out in (existing, tmp_path / "new-run"):
        r = cli("probe", "run", "--model", "tiny", "--stimuli", "images", "--data", str(root), "--out", str(out),
                check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and f"`{contrast}` contrast needs" in lines[0] and flag in lines[0], r.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["units.csv"]
    assert (existing / "units.csv").read_text() == "unit,t\n" and not (tmp_path / "new-run").exists()


def test_argument_errors_come_before_anything_is_written(tmp_path, capsys):
    """Checked before the model loads (in process: the same entry point as the CLI, without its start-up)."""
    from probe.__main__ import main
    from tests.fakes import write_synthetic_render_variants

    root = write_synthetic_render_variants(tmp_path / "r", h=16, w=16)
    out = tmp_path / "never"
    cases = [((), "--stimuli images needs --data"),
             (("--data", str(root), "--height", "64"), "--height applies to the text probe only"),
             (("--data", str(root), "--control", "vocabulary"), "--control applies to the text probe only"),
             (("--data", str(root), "--limit", "1"), "needs at least 2"),
             (("--data", str(root), "--contrasts", "shading"), "unknown contrast"),
             (("--data", str(root), "--equivalence-margin", "0"), "--equivalence-margin must be a positive"),
             (("--data", str(root), "--magnitude-margin", "-1"), "--magnitude-margin must be a positive")]
    for args, msg in cases:
        assert main(["run", "--model", "tiny", "--stimuli", "images", "--out", str(out), *args]) == 2, args
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (args, err)
    assert main(["run", "--model", "tiny", "--data", str(root), "--out", str(out)]) == 2
    assert "add --stimuli images" in capsys.readouterr().err
    assert not out.exists()


def test_pairs_over_samples_is_flagged_clustered_in_every_output(tmp_path):
    """--pairs-over samples (no model: synthetic values through the design and the shared post-capture step)."""
    from types import SimpleNamespace

    from probe.design.image_stimuli import ImageDesign, build_image_plan
    from probe.jobs.finish import finish_run
    from tests.fakes import write_synthetic_render_variants

    root = write_synthetic_render_variants(tmp_path / "r", h=16, w=16)
    design = ImageDesign(build_image_plan(root, pairs_over="samples"), "flat colours", seed=1)
    rng = np.random.default_rng(0)
    values = {s.key(): rng.normal(size=6).astype(np.float32) for s in design.stimuli()}
    units = [f"s00/double.0.ref/h{i:02d}" for i in range(6)]
    out = tmp_path / "run"
    args = SimpleNamespace(n_perm=100, n_splits=0, n_boot=0, stats_seed=0, equivalence_margin=None, no_report=False)
    config = {"capture": {"protocol": "heads"}, "direction": "a-b", "model": {"source": "tiny", "random_weights": True}}
    assert finish_run(out, design, values, units, config, args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clustered"] and "CLUSTERED" in summary["clustered_note"] and summary["pairs_over"] == "samples"
    rows = (out / "units.csv").read_text().splitlines()
    col = rows[0].split(",").index("pairs_over")
    assert all(r.split(",")[col] == "samples (CLUSTERED)" for r in rows[1:])
    md = (out / "report.md").read_text()
    assert "**CLUSTERED" in md.split("## The contrasts")[0]
    caps = load_captures(out / "captures.npz")
    assert caps.meta["image_design"]["clustered"] and caps.n_pairs == 8      # 8 samples: 8 sample-level pairs
    assert summary["image_design"]["contrasts"]["lighting"]["clustered"]


def test_references_are_prepared_as_evaluate_generate_prepares_them(tiny_loaded, tmp_path, monkeypatch):
    """A 70 x 50 render (not a multiple of 16, under klein's 64 px): the image run hands klein the very image,
    and the same call arguments, that `evaluate generate` does with the same --max-side (probe.klein.registration:
    upscaled, then padded to multiples of 16)."""
    import functools
    from types import SimpleNamespace

    from diffusers import Flux2KleinPipeline

    from evaluate.generate import GenerateConfig, generate_predictions
    from probe.klein.edit_capture import ReferencePrep
    from probe.klein.capture_loop import CaptureConfig, capture_stimuli
    from probe.design.stimuli import Stimulus
    from tests.fakes import write_synthetic_render

    calls = []
    original = Flux2KleinPipeline.__call__

    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        calls.append(dict(kwargs))
        if kwargs.get("output_type") == "np":
            w, h = kwargs["image"].size
            return SimpleNamespace(images=[np.zeros((h, w, 3), np.float32)])
        return original(self, **kwargs)

    monkeypatch.setattr(Flux2KleinPipeline, "__call__", recording)
    root = write_synthetic_render(tmp_path / "render", scenes=("alpha",), lightings=("key",), h=50, w=70)
    generate_predictions(tiny_loaded, GenerateConfig(data=str(root), out=str(tmp_path / "pred"), seed=3, steps=1,
                                                     max_side=128), progress=False)
    prep = ReferencePrep.like_evaluate(tiny_loaded, 128)
    cfg = CaptureConfig(steps=1, capture_steps=(0,), guidance=calls[0]["guidance_scale"], height=None, width=None,
                        editing=True, reference_prep=prep.describe())
    stim = Stimulus("alpha", "render:alpha__key", calls[0]["prompt"], 3, image=str(root / "alpha__key/image_srgb.png"))
    capture_stimuli(tiny_loaded, [stim], cfg, progress=False, prepare_reference=prep)
    ev, mine = calls[0], calls[1]
    assert ev["image"].size == mine["image"].size and all(v % prep.multiple == 0 for v in mine["image"].size)
    assert mine["image"].size != (70, 50)
    np.testing.assert_array_equal(np.asarray(ev["image"]), np.asarray(mine["image"]))
    assert set(ev) - {"output_type"} == set(mine) - {"output_type", "callback_on_step_end"}
    assert "plan_reference(max_side=128, multiple=" in prep.describe()
    assert ReferencePrep.like_evaluate(tiny_loaded).max_side == 64          # evaluate's default for a tiny model


def test_image_probe_in_two_shards_merges_to_the_whole_run(image_run, small_render, tmp_path):
    """Shards split over base scenes (Stimulus.pair_id); the merge rebuilds the image design from the recorded
    options and gives exactly the whole run's captures and statistics."""
    out, _ = image_run
    sharded = tmp_path / "sharded"
    for k in (0, 1):
        cli("probe", "run", "--model", "tiny", "--stimuli", "images", "--data", str(small_render), *CAPTURE,
            "--out", str(sharded), "--shard", f"{k}/2", *FAST)
    assert sorted(p.name for p in (sharded / "shards").glob("partial-*.npz")) == [
        "partial-0-of-2.npz", "partial-1-of-2.npz"]
    assert not (sharded / "units.csv").exists()           # statistics wait for the merge
    cli("probe", "merge", str(sharded), *FAST[:-1])
    whole, merged = load_captures(out / "captures.npz"), load_captures(sharded / "captures.npz")
    assert list(merged.images.keys) == list(whole.images.keys)
    np.testing.assert_allclose(merged.images.values, whole.images.values, rtol=1e-6, atol=1e-7)
    assert (sharded / "units.csv").read_text() == (out / "units.csv").read_text()
    s = json.loads((sharded / "summary.json").read_text())
    assert s["stimuli"] == "images" and s["classes"] == json.loads((out / "summary.json").read_text())["classes"]


def test_evaluate_reads_the_image_probe_end_to_end(image_run, small_render, tmp_path):
    """evaluate all on the same render with the image probe: the link is the direct one (per_sample.npz, the
    images the edit saw, clustered by scene) and `--select lighting` ablates the heads ranked by the lighting
    contrast's |t| (no head is lighting-selective on 2 scenes, which the plan says)."""
    import csv

    out, _ = image_run
    ev = tmp_path / "eval"
    cli("evaluate", "all", "--model", "tiny", "--data", str(small_render), "--probe", str(out), "--out", str(ev),
        "--steps", "1", "--k", "2", "--n-random", "2", "--n-boot", "50", "--select", "lighting", "--quiet")
    link = json.loads((ev / "link.json").read_text())
    assert link["stimuli"] == "images" and link["kind"].startswith("direct")
    assert link["n_matched"] == 8 and link["n_clusters"] == 2 and link["spearman"]["resampled"] == "clusters"
    assert link["spearman"]["cluster_means"]["n"] == 2 and link["spearman"]["cluster_means"]["p"] is None  # < 3
    plan = json.loads((ev / "ablation_plan.json").read_text())
    sel = plan["selection"]["2"]
    assert plan["select"] == "lighting" and sel["contrast"] == "lighting" and sel["n_eligible"] == 0
    assert "filled by |t| rank (not selective)" in sel["rule"]
    rows = list(csv.DictReader((out / "units.csv").open()))
    top = sorted(rows, key=lambda r: -abs(float(r["t_lighting"])))[:2]
    assert sel["units"] == [r["unit"].split("/", 1)[1] for r in top]
    scores = list(csv.DictReader((ev / "scores.csv").open()))
    assert {r["method"] for r in scores} >= {"klein", "klein__ablate_top2", "image_as_albedo"}
