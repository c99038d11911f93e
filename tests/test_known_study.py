"""The known answers through the chain, pinned at small scale on held-out default scenes rendered here (Blender,
64 px, 4 samples; 12 of the 25 scenes), every sampling run at 4 steps, every criterion the verdict's own (evaluate/verdict_criteria.py).

CI runs the cheap part: H5 (is the predicted albedo physically right?) on the three networks of the study,
decided by `evaluate verdict` from `evaluate generate` + `score`: supported on the decomposing network, not on the
reproduce-the-photo one nor on an untrained one; H1-H3 "not tested" on all (never trained on text prompts).

The part that needs a population of 19 untrained networks and 19 random ablation draws (H4, H6) costs about
10 CPU-minutes at this scale: it runs with RAY_PLANTAIN_KNOWN_STUDY=1 (`python -m evaluate study` on these
scenes); its full-size result (the 25 default scenes) is in benchmarks/RESULTS.md, "The known-answer study".
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluate.study import EXPECTED, StudyConfig, run_study
from evaluate.verdict import verdict_from_folders
from probe.klein.known import KNOWN_MODELS, models_root

ROOT = Path(__file__).resolve().parents[1]
SCENES = ("checker_cube", "checker_floor_spheres", "cornell_box", "dim_room_lamp", "fruit_spheres_table",
          "glossy_sphere_pedestal", "grey_cylinder_row", "red_cube_table", "pastel_primitives", "stacked_blocks",
          "striped_torus", "studio_sweep")     # 12 of the 25 held-out scenes: with 8 the CIs did not exclude 0
STEPS = "4"
NETWORKS = {"decomposing": ["--model", "known-albedo"], "reproduce-photo": ["--model", "known-photo"],
            "untrained": ["--model", "known-albedo", "--randomize", "transformer", "--randomize-seed", "1000"]}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy (Blender) is not installed: no render"),
    pytest.mark.skipif(not all((models_root() / m / "ray_plantain_known.json").exists() for m in KNOWN_MODELS),
                       reason="the shipped known-answer models are absent (models/known-*)"),
]


def _cli(*args):
    r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    data = tmp_path_factory.mktemp("held-out") / "render"
    _cli("render", "--only", ",".join(SCENES), "--resolution", "64", "--samples", "4", "--recolor", "1",
         "--out", str(data))
    return data


@pytest.fixture(scope="module")
def h5(held_out, tmp_path_factory):
    out = {}
    for net, model in NETWORKS.items():
        ev = tmp_path_factory.mktemp(net) / "evaluate"
        _cli("evaluate", "generate", *model, "--data", str(held_out), "--steps", STEPS, "--quiet", "--out", str(ev))
        _cli("evaluate", "score", "--data", str(held_out), "--out", str(ev), "--lpips", "off", "--n-boot", "400")
        out[net] = verdict_from_folders(ev)
    return out


def test_the_decomposing_network_predicts_a_physically_right_albedo(h5):
    v = h5["decomposing"]
    assert v.outcome("H5").outcome == "supported", v.outcome("H5").reason
    assert v.banner.startswith("known-albedo: a model trained here on synthetic renders")
    # the text hypotheses need text-to-image prompts the small networks never saw: not tested, and said so
    assert {v.outcome(h).outcome for h in ("H1", "H2", "H3")} == {"not tested"}
    assert "never on text-to-image prompts" in v.outcome("H1").reason


@pytest.mark.parametrize("net", ["reproduce-photo", "untrained"])
def test_the_networks_without_a_decomposition_do_not(h5, net):
    v = h5[net]
    assert v.outcome("H5").outcome == EXPECTED[net]["H5"] == "not supported", v.outcome("H5").reason


@pytest.mark.skipif(os.environ.get("RAY_PLANTAIN_KNOWN_STUDY") != "1",
                    reason="the population of 19 and 19 ablation draws cost ~10 CPU-min: set RAY_PLANTAIN_KNOWN_STUDY=1 "
                           "(the full-size result is in benchmarks/RESULTS.md)")
def test_the_whole_study_at_small_scale(held_out, tmp_path):
    table = run_study(StudyConfig(data=str(held_out), out=str(tmp_path / "study"), steps=int(STEPS), k="2",
                                  quiet=True), log=lambda m: None)
    for net in ("untrained", "reproduce-photo"):
        assert table["rows"][net]["as_expected"], table["rows"][net]["outcomes"]
    assert table["rows"]["decomposing"]["outcomes"]["H5"] == "supported"


# ------------------------------------------------------------------------------------------------------------
# The change classes' power, pinned cheaply: new scenes of the training distribution (generator seed 2; the models
# were trained on seed 1's), where the decomposing network's own answer ignores the light (its output's gain for
# light is a third of its gain for colour), against the network that gives the photograph back and an untrained one.

@pytest.fixture(scope="module")
def in_distribution(tmp_path_factory):
    data = tmp_path_factory.mktemp("generated") / "render"
    _cli("render", "--generate", "8", "--seed", "2", "--recolor", "1", "--resolution", "64", "--samples", "4",
         "--out", str(data))
    out = {}
    for net, model in NETWORKS.items():
        run = tmp_path_factory.mktemp(f"probe-{net}") / "run"
        _cli("probe", "run", "--stimuli", "images", *model, "--data", str(data), "--steps", STEPS, "--capture-steps",
             "0,3", "--n-perm", "200", "--n-boot", "50", "--n-splits", "10", "--quiet", "--out", str(run))
        out[net] = __import__("json").loads((run / "summary.json").read_text())["change_classes"]
    return out


def test_change_classes_find_the_decomposition_where_the_network_makes_it(in_distribution):
    """The decomposing network's answer ignores the light on these scenes (output gain ratio light / colour well
    below the other networks'), and it has albedo-selective heads where the other two have none or fewer."""
    def output_ratio(net):
        outs = in_distribution[net]["output"].values()
        return sum(o["ratio_lighting_to_albedo"] for o in outs) / len(outs)

    dec, photo, untrained = (in_distribution[n] for n in ("decomposing", "reproduce-photo", "untrained"))
    assert output_ratio("decomposing") < 0.5 < output_ratio("untrained") < output_ratio("reproduce-photo")
    n_dec = dec["counts"]["albedo-selective"]
    assert n_dec >= 5 and n_dec > photo["counts"]["albedo-selective"] and n_dec > untrained["counts"]["albedo-selective"]
