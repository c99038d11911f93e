"""`evaluate.report.write_report` on a tiny fake evaluation folder (no torch, no model).

The folder is built from the real writers: render layout via render.imageio, predictions via
evaluate.baselines, scores via evaluate.score.score, ablation.json via evaluate.causal.summarise_ablation;
link.json is written by hand in the format of evaluate.jobs.main_link.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluate import report as R
from evaluate.baselines import write_baselines
from evaluate.predictions import write_method_manifest, write_prediction
from evaluate.score import score
from fakes import write_synthetic_render
from render.imageio import write_png_encoded

H, W = 24, 32
WARNING = "RANDOM WEIGHTS"


def write_render(root: Path, scenes=("alpha", "beta"), lightings=("key", "rim")) -> Path:
    """Four samples (two scenes, two lightings each) in the render output layout."""
    return write_synthetic_render(root, scenes=scenes, lightings=lightings, h=H, w=W)


def _klein_like(pred: Path, data: Path, method: str, ids, random_weights: bool, seed: int, ablate=()) -> None:
    from render.imageio import read_exr

    rng = np.random.default_rng(seed)
    model = {"model": "tiny" if random_weights else "black-forest-labs/FLUX.2-klein-base-4B",
             "revision": None if random_weights else "abc123", "random_weights": random_weights}
    for sid in ids:
        gt = read_exr(data / sid / "albedo_linear.exr")
        noisy = np.clip(gt * 0.8 + rng.normal(0, 0.05, gt.shape), 0, 1).astype(np.float32)
        write_prediction(pred, method, sid, noisy, scene=sid.split("__")[0], lighting=sid.split("__")[1], prompt="albedo",
                         seed=0, steps=4, guidance=1.0, model=model["model"], random_weights=random_weights,
                         ablated_units=list(ablate))
    write_method_manifest(pred, method, {"model": model, "prompt": "turn this into its albedo", "steps": 4,
                                         "guidance": 1.0, "seed": 0, "ablated_units": list(ablate)})
    (pred / method / "config.json").write_text(json.dumps({"model": model, "steps": 4, "guidance": 1.0,
                                                           "prompt": "turn this into its albedo",
                                                           "config": {"seed": 0, "ablate": list(ablate)}}))


def build_out(root: Path, random_weights: bool, extras: bool = True) -> tuple[Path, Path]:
    """(OUT, DATA): predictions of klein, two baselines and (extras) two ablation runs, scored, plus
    (extras) link.json and ablation.json."""
    data = write_render(root / "render")
    out = root / "eval"
    pred = out / "pred"
    ids = ["alpha__key", "alpha__rim", "beta__key", "beta__rim"]
    write_baselines(data, pred, progress=False)
    _klein_like(pred, data, "klein", ids, random_weights, seed=1)
    if extras:
        _klein_like(pred, data, "klein__ablate_top2", ids, random_weights, seed=2, ablate=("double.0.img/h00",))
        # one missing prediction: an error row the report must list
        _klein_like(pred, data, "klein__ablate_rand2_r0", ids[:1], random_weights, seed=3,
                    ablate=("double.0.img/h01",))
    score(data, pred, out, n_boot=50, lpips="off", progress=False, workers=1)
    if extras:
        from evaluate.causal import summarise_ablation

        plan = {"klein__ablate_top2": ["double.0.img/h00"], "klein__ablate_rand2_r0": ["double.0.img/h01"]}
        (out / "ablation_plan.json").write_text(json.dumps(
            {"probe": "probe", "ks": [2], "n_random": 1, "definition": "token-mean ablation", "methods": plan}))
        summarise_ablation(out, plan, [2], 1, "lmse_linear_per_channel", n_boot=50, seed=0)
        (out / "link.json").write_text(json.dumps({
            "method": "klein", "metric": "lmse_linear_per_channel", "top_k": 50, "n_matched": 4,
            "spearman": {"rho": 0.4, "p": 0.6, "ci_low": -0.8, "ci_high": 1.0, "n": 4, "n_boot": 100},
            "random_weights": random_weights, "definition": "selectivity = mean over the top-k |t| units",
            "pairs": [{"id": f"s{i}", "selectivity": float(i), "error": float(i % 3)} for i in range(4)]}))
        write_png_encoded(out / "figures" / "link_scatter.png", np.full((20, 30, 3), 0.5, np.float32))
    return out, data


def _section(md: str, title: str) -> str:
    """The markdown between the heading containing `title` and the next level-2 heading."""
    start = md.index(title)
    nxt = md.find("\n## ", start)
    return md[start: nxt if nxt >= 0 else len(md)]


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    out, data = build_out(tmp_path_factory.mktemp("random"), random_weights=True)
    path = R.write_report(out, data=data, probe=out / "no_probe_here", max_grid=12)
    return out, data, path


def test_random_weights_first_line_and_tables(random_run):
    out, _, path = random_run
    assert path == out / "report.md"
    md = path.read_text()
    first = md.splitlines()[0]
    assert WARNING in first and "nothing in this report is a finding" in first and "--model tiny" in first

    metrics = _section(md, "## Metrics against ground truth albedo")
    for m in ("`klein`", "`image_as_albedo`", "`retinex_color`"):
        assert m in metrics
    assert "ablate" not in metrics  # ablation runs stay out of the main table
    assert "lmse_linear_per_channel" in metrics and "psnr_srgb_none" in metrics
    assert "lpips_srgb_none" in metrics and "not computed" in metrics  # LPIPS off: dash plus the reason
    assert "4 / 0" in metrics       # n ok / n errors of klein
    assert "lower is better" in metrics and "linear values" in metrics  # legend from COLUMN_DOCS
    assert "[" in metrics.split("`klein`")[1].splitlines()[0]  # mean [CI]

    inv = _section(md, "## Illumination invariance")
    assert "`klein`" in inv and "inv_nmse_linear_per_channel" in inv and "2 / 2" in inv

    link = _section(md, "## Link")
    assert "0.4 [-0.8, 1]" in link and "figures/link_scatter.png" in link and "selectivity" in link

    abl = _section(md, "## Ablation")
    assert "figures/ablation.png" in abl and "| 2 |" in abl
    with Image.open(out / "figures" / "ablation.png") as im:
        im.verify()

    errs = _section(md, "## Errors")
    assert "klein__ablate_rand2_r0" in errs and "alpha__rim" in errs

    cfg = _section(md, "## Configuration")
    assert "turn this into its albedo" in cfg and "score_config.json" in cfg and "ablation_plan.json" in cfg


def test_grid_png_is_valid_and_excludes_ablations(random_run):
    out, _, path = random_run
    md = path.read_text()
    grids = sorted((out / "figures").glob("grid_*.png"))
    assert grids, "no grid written"
    for g in grids:
        assert f"figures/{g.name}" in md
        with Image.open(g) as im:
            im.verify()
        with Image.open(g) as im:
            assert im.size[0] > 200 and im.size[1] > 100
    section = _section(md, "## Per-sample predictions")
    assert "4 of 4 samples" in section and "error map of `klein`" in section


def test_html_is_self_contained_and_warns(random_run):
    out, _, _ = random_run
    page = (out / "report.html").read_text()
    assert page.index(WARNING) < page.index("<h1>")
    assert "data:image/png;base64," in page and "src='figures/" not in page
    assert "<table>" in page and "klein" in page


def test_report_survives_moving_the_folder(random_run, tmp_path):
    out, _, _ = random_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    md = (moved / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert links and all((moved / p).is_file() for p in links) and not any(p.startswith("/") for p in links)


def test_real_weights_no_warning_and_missing_section_notes(tmp_path):
    out, data = build_out(tmp_path, random_weights=False, extras=False)
    md = R.write_report(out, data=data, probe=tmp_path / "probe").read_text()
    assert WARNING not in md and "finding" not in md.splitlines()[0]
    assert md.startswith("# klein albedo evaluation")
    assert "No link.json" in md and "python -m evaluate link" in md
    assert "No ablation.json" in md and "python -m evaluate ablate" in md
    assert "`klein`" in _section(md, "## Metrics against ground truth albedo")
    assert WARNING not in (out / "report.html").read_text()


def test_empty_folder_gives_notes_not_crashes(tmp_path):
    out = tmp_path / "eval"
    md = R.write_report(out, data=tmp_path / "no_render", probe=None).read_text()
    assert WARNING not in md
    for needle in ("No score_summary.json", "No invariance.csv", "python -m render", "No link.json",
                   "No ablation.json", "No scores.csv", "No prediction folders"):
        assert needle in md, needle
    assert not list((out / "figures").glob("grid_*.png")) if (out / "figures").exists() else True
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("where", ["probe_summary", "link", "job_config", "sidecar"])
def test_random_weights_detected_from_any_record(tmp_path, where):
    out = tmp_path / "eval"
    probe = tmp_path / "probe"
    out.mkdir()
    probe.mkdir()
    if where == "probe_summary":
        (probe / "summary.json").write_text(json.dumps({"random_weights": True, "n_pairs": 3}))
    elif where == "link":
        (out / "link.json").write_text(json.dumps({"method": "klein", "random_weights": True, "spearman": {}}))
    elif where == "job_config":
        (out / "config.json").write_text(json.dumps({"job": "evaluate all", "args": {"model": "tiny"}}))
    else:  # only a per-sample sidecar in the manifest says so
        (out / "pred" / "klein").mkdir(parents=True)
        (out / "pred" / "klein" / "manifest.json").write_text(json.dumps(
            {"method": "klein", "predictions": [{"sample": "a__b", "model": "tiny", "random_weights": True}]}))
    first = R.write_report(out, data=None, probe=probe).read_text().splitlines()[0]
    assert WARNING in first and "nothing in this report is a finding" in first


def test_spread_samples_covers_scenes():
    samples = [(f"s{s}__l{l}", f"s{s}") for s in range(10) for l in range(3)]
    picked = R.spread_samples(samples, 4)
    assert len(picked) == 4 and len({p.split("__")[0] for p in picked}) == 4
    assert picked[0] == "s0__l0" and picked[-1] == "s9__l0"  # evenly spread, ends included
    picked = R.spread_samples(samples[:6], 5)  # 2 scenes x 3 lightings: both scenes, then second lightings
    assert len(picked) == 5 and {p.split("__")[0] for p in picked} == {"s0", "s1"}
    assert R.spread_samples(samples, 0) == []


def test_headline_is_scalar_aligned_beside_paired_differences(random_run):
    out, _, path = random_run
    md = path.read_text()
    metrics = _section(md, "## Metrics against ground truth albedo")
    header = next(line for line in metrics.splitlines() if line.startswith("| method"))
    for c in ("lmse_linear_scalar", "mse_linear_scalar", "mse_srgb_scalar", "dssim_srgb_scalar", "psnr_srgb_scalar",
              "shading_leakage_linear"):
        assert f"`{c}`" in header, c
    assert "_none" not in header and "_per_channel" not in header      # those are in the detail tables
    assert "mse_srgb_none" in metrics and "alignments `none` and `per_channel`" in metrics
    assert "resampled together" in metrics and "Paired differences" in metrics
    assert "`klein` − `image_as_albedo`" in metrics and "`klein` − `retinex_color`" in metrics
    inv = _section(md, "## Illumination invariance")
    assert "accuracy `lmse_linear_scalar`" in inv and "degenerate" in inv
    assert inv.index("accuracy") < inv.index("inv_nmse_linear_scalar")
    abl = _section(md, "## Ablation")
    assert "rank p" in abl and "smallest attainable p" in abl and "permutation" not in abl
    assert "What changed in the definitions" in md and "scalar" in _section(md, "## What changed")
