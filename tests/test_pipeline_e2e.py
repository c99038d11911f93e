"""End to end on the tiny model: render a few tiny samples, probe, evaluate (generate, score, ablate,
link, report), resume, and the user-facing errors. Subprocesses run the real CLIs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCENES = "red_cube_table,checker_floor_spheres,glossy_sphere_pedestal"


def cli(*args, cwd=None, check=True, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, tiny_cache):
    out = tmp_path_factory.mktemp("render")
    cli("render", "--only", SCENES, "--resolution", "32", "--samples", "4", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def probed(tmp_path_factory, tiny_cache):
    out = tmp_path_factory.mktemp("probe")
    r = cli("probe", "--model", "tiny", "--limit", "5", "--steps", "4", "--capture-steps", "0,3", "--n-perm", "300",
            "--n-boot", "100", "--n-splits", "20", "--out", str(out), "--quiet")
    return out, r


def test_probe_tiny_writes_every_output(probed):
    out, r = probed
    for name in ("captures.npz", "units.csv", "summary.json", "config.json", "report.md"):
        assert (out / name).is_file(), name
    assert "RANDOM WEIGHTS" in r.stdout
    z = np.load(out / "captures.npz")
    n_units = 2 * (2 * 2 * 4 + 2 * 4)  # 2 steps x (2 double blocks x img/txt + 2 single blocks) x 4 heads
    assert z["a"].shape == z["b"].shape == (5, n_units) and z["a"].dtype == np.float32
    assert z["units"][0].startswith("s00/double.0.img/h00") and len(z["pair_ids"]) == 5
    assert z["control_a"].shape == (5, n_units)
    np.testing.assert_array_equal(z["control_a"], z["a"])  # control A is the main A: same prompt, same seed
    s = json.loads((out / "summary.json").read_text())
    for key in ("n_pairs", "n_units", "n_abs_t_gt_3", "n_abs_t_gt_5", "null_p99_abs_t_gt_3", "null_p99_abs_t_gt_5",
                "split_half_r_median", "max_abs_t"):
        assert key in s, key
    assert s["n_pairs"] == 5 and s["n_units"] == n_units and s["random_weights"] is True
    with open(out / "units.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_units and {"unit", "t", "d", "p", "q"} <= set(rows[0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["capture"]["protocol"] == "heads" and cfg["model"]["random_weights"] is True
    assert all(n < 512 for n in cfg["text_lengths"]["a"])  # padding was measured, not counted
    assert (out / "report.md").read_text().splitlines()[0].upper().count("RANDOM") >= 1


def test_probe_resume_and_stats_from_captures(probed, tmp_path):
    out, _ = probed
    r = cli("probe", "--model", "tiny", "--limit", "5", "--steps", "4", "--capture-steps", "0,3", "--n-perm", "300",
            "--n-boot", "100", "--n-splits", "20", "--out", str(out), "--quiet", "--no-report")
    assert "RANDOM WEIGHTS" in r.stdout
    cfg = json.loads((out / "config.json").read_text())
    # 5 pairs x (A, B, paraphrase, vocabulary and shuffled controls): 25 stimuli, all from the cache
    assert cfg["capture_info"]["prompts_captured_now"] == 0 and cfg["capture_info"]["prompts_from_cache"] == 25
    cli("probe", "stats", "--from", str(out / "captures.npz"), "--out", str(tmp_path / "re"), "--n-perm", "300",
        "--n-boot", "100", "--n-splits", "20")
    a = json.loads((out / "summary.json").read_text())
    b = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert a["max_abs_t"] == pytest.approx(b["max_abs_t"]) and a["n_abs_t_gt_3"] == b["n_abs_t_gt_3"]


def test_probe_card_protocol_units(tmp_path, tiny_cache):
    cli("probe", "--model", "tiny", "--protocol", "card", "--limit", "4", "--control", "none", "--out", str(tmp_path),
        "--quiet", "--no-report", "--n-boot", "50", "--n-splits", "10", "--height", "64", "--width", "64")
    z = np.load(tmp_path / "captures.npz")
    # tiny: 2 double blocks x (64 / 16) + 2 single blocks x ((64 + 192) / 16) slices, one step
    assert z["a"].shape == (4, 2 * 4 + 2 * 16)
    assert all("/c" in u and ".txt" not in u for u in z["units"])
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["capture"]["steps"] == 1 and cfg["capture"]["guidance"] == 1.0 and cfg["stats"]["n_perm"] == 1000


def test_evaluate_end_to_end(rendered, probed, tmp_path):
    probe_out, _ = probed
    ev = tmp_path / "ev"
    cli("evaluate", "all", "--model", "tiny", "--data", str(rendered), "--probe", str(probe_out), "--out", str(ev),
        "--steps", "3", "--k", "1", "--n-random", "2", "--n-boot", "100", "--quiet")   # k 1: 3 different draws
    manifest = json.loads((rendered / "manifest.json").read_text())
    ids = {s["id"] for s in manifest["samples"]}
    pm = json.loads((ev / "pred" / "klein" / "manifest.json").read_text())
    assert {p["sample"] for p in pm["predictions"]} == ids
    p0 = pm["predictions"][0]
    assert p0["steps"] == 3 and p0["seed"] == 0 and p0["random_weights"] is True
    assert (ev / "pred" / "klein" / p0["albedo_linear"]).is_file() and (ev / "pred" / "klein" / p0["albedo_srgb"]).is_file()
    for m in ("image_as_albedo", "retinex_color", "klein__ablate_top1", "klein__ablate_rand1_r0", "klein__ablate_rand1_r1"):
        assert (ev / "pred" / m / "manifest.json").is_file(), m
    with open(ev / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} >= {"klein", "image_as_albedo", "retinex_color"}
    assert all(r["status"] == "ok" for r in rows)
    link = json.loads((ev / "link.json").read_text())
    assert link["n_matched"] == 3 and link["random_weights"] is True
    abl = json.loads((ev / "ablation.json").read_text())
    assert abl["by_k"]["1"]["metrics"]["lmse_linear_per_channel"]["n_random_draws"] == 2
    report = (ev / "report.md").read_text()
    assert "RANDOM" in report.splitlines()[0].upper()
    assert "rank p" in report and "smallest attainable p" in report
    assert abl["p_min_attainable"] == pytest.approx(1 / 3) and "selection" in abl["by_k"]["1"]
    assert link["kind"].startswith("indirect") and "expected_halfwidth_at_0" in link
    plan = json.loads((ev / "ablation_plan.json").read_text())
    assert "FWER-significant" in plan["selection"]["1"]["rule"] and "token-region" in plan["definition"]
    # resume: a second generate skips every finished prediction ...
    r = cli("evaluate", "generate", "--model", "tiny", "--data", str(rendered), "--out", str(ev), "--steps", "3",
            "--quiet", "--no-baselines")
    assert f"0 generated (0 of them replacing predictions made with other settings), {len(ids)} already finished" \
        in r.stdout
    # ... but only when everything that made them is the same: --resume strict stops and names the field
    before = (ev / "pred" / "klein" / p0["albedo_srgb"]).read_bytes()
    r = cli("evaluate", "generate", "--model", "tiny", "--data", str(rendered), "--out", str(ev), "--steps", "2",
            "--quiet", "--no-baselines", "--resume", "strict", check=False)
    assert r.returncode == 2 and "steps" in r.stderr and "Traceback" not in r.stderr
    assert (ev / "pred" / "klein" / p0["albedo_srgb"]).read_bytes() == before
    cfg = json.loads((ev / "pred" / "klein" / "config.json").read_text())
    assert cfg["steps"] == 3 and cfg["n_predictions"] == len(ids)       # config.json: what is on disk
    # (regenerating on a differing key is tested in test_predictions.py, without a subprocess)


def test_evaluate_bad_inputs(rendered, tmp_path):
    r = cli("evaluate", "generate", "--model", "tiny", "--data", str(tmp_path / "missing"), "--out", str(tmp_path),
            check=False)
    assert r.returncode == 2 and "render folder not found" in r.stderr and "Traceback" not in r.stderr
    r = cli("evaluate", "generate", "--model", str(tmp_path / "no-weights"), "--data", str(rendered),
            "--out", str(tmp_path), check=False)
    assert r.returncode == 2 and "--model tiny" in r.stderr and "Traceback" not in r.stderr
    # a corrupt reference image is a clear error naming the file
    bad = tmp_path / "bad_render"
    import shutil

    shutil.copytree(rendered, bad)
    m = json.loads((bad / "manifest.json").read_text())
    (bad / m["samples"][0]["image_srgb"]).write_bytes(b"not a png")
    r = cli("evaluate", "generate", "--model", "tiny", "--data", str(bad), "--out", str(tmp_path / "o"), "--steps", "2",
            "--quiet", "--no-baselines", check=False)
    assert r.returncode == 2 and "cannot read the reference image" in r.stderr
    # mismatched ids: a prediction folder for samples the render doesn't have
    pred = tmp_path / "o2" / "pred" / "klein"
    pred.mkdir(parents=True)
    (pred / "manifest.json").write_text(json.dumps({"method": "klein", "predictions": [
        {"sample": "no_such_scene__key", "albedo_linear": "x.exr", "albedo_srgb": "x.png"}]}))
    r = cli("evaluate", "score", "--data", str(rendered), "--out", str(tmp_path / "o2"), check=False)
    assert r.returncode == 2 and "matches a sample" in r.stderr and "Traceback" not in r.stderr
