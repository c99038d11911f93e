"""Issue 17.1 and 17.8 through the whole post-capture step, without a model: a synthetic render folder, the image
design, synthetic unit values, `finish_run` (what `probe run` and `probe merge` do after capture) and `probe stats
--from`. captures.npz holds every contrast's sample-level pairs; per_sample.npz every contrast's per-pair differences
in units.csv's sign, under both protocols; the classes and per_sample.npz are recomputed from captures.npz alone,
also from a file written before it held the pairs."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from probe.io.captures import load_captures, save_captures

SCENES = ("alpha", "beta", "gamma", "delta", "eps")
ARGS = dict(n_perm=200, n_splits=0, n_boot=0, stats_seed=0, equivalence_margin=None, magnitude_margin=None,
            no_report=True)


def _run(tmp_path, protocol="heads", pairs_over="scenes", report=False):
    from probe.design.image_stimuli import ImageDesign, build_image_plan
    from probe.jobs.finish import finish_run
    from tests.fakes import write_synthetic_render_variants

    root = tmp_path / "r"
    if not root.exists():
        write_synthetic_render_variants(root, scenes=SCENES, h=16, w=16)
    design = ImageDesign(build_image_plan(root, pairs_over=pairs_over), "flat colours", seed=1)
    rng = np.random.default_rng(0)
    values = {s.key(): rng.normal(size=6).astype(np.float32) for s in design.stimuli()}
    units = [f"s00/double.0.ref/h{i:02d}" for i in range(6)]
    out = tmp_path / f"{protocol}-{pairs_over}"
    config = {"capture": {"protocol": protocol}, "direction": "b-a" if protocol == "card" else "a-b",
              "model": {"source": "tiny", "random_weights": True}}
    assert finish_run(out, design, values, units, config, SimpleNamespace(**{**ARGS, "no_report": not report})) == 0
    return out


@pytest.mark.parametrize("protocol", ["heads", "card"])
def test_per_sample_holds_every_contrast_in_the_sign_of_units_csv(tmp_path, protocol):
    out = _run(tmp_path, protocol)
    caps = load_captures(out / "captures.npz")
    per = np.load(out / "per_sample.npz")
    sign = -1.0 if protocol == "card" else 1.0
    assert str(per["direction"]) == ("b-a" if protocol == "card" else "a-b")
    assert list(per["contrasts"]) == ["render_vs_albedo", "lighting", "albedo", "luminance"]   # hsv variants
    assert ("B minus A" if protocol == "card" else "A minus B") in str(per["sign_convention"])
    assert "`diff`" in str(per["sign_convention"]) and "always the rendered image minus its albedo" in str(
        per["sign_convention"])
    # `diff` stays render - albedo in every protocol (the contract); diff_render_vs_albedo follows units.csv
    keys = list(caps.images.keys)
    for i, sid in enumerate(per["sample_ids"]):
        np.testing.assert_allclose(per["diff"][i], caps.images.values[keys.index(f"{sid}/render")]
                                   - caps.images.values[keys.index(f"{sid}/albedo")], rtol=1e-6)
    order = [list(per["pair_ids_render_vs_albedo"]).index(s) for s in per["sample_ids"]]
    np.testing.assert_allclose(per["diff_render_vs_albedo"][order], sign * per["diff"], rtol=1e-6)
    # every contrast: a scene's mean of its pairs' diff_C is its row of (a - b) x sign, the difference t_C tests
    table = {}
    with open(out / "units.csv") as f:
        rows = [line.rstrip("\n").split(",") for line in f]
    table = {c: np.array([float(r[i]) for r in rows[1:]]) for i, c in enumerate(rows[0])
             if c.startswith("t_") and not c.startswith("t_vs")}
    for name, cs in caps.contrast_sets().items():
        d = per[f"diff_{name}"]
        assert d.dtype == np.float32 and d.shape[1] == 6
        assert len(per[f"pair_ids_{name}"]) == len(per[f"a_keys_{name}"]) == len(per[f"scene_ids_{name}"]) == len(d)
        scenes = per[f"scene_ids_{name}"]
        scene_mean = np.stack([d[scenes == s].mean(0) for s in cs.pair_ids])
        np.testing.assert_allclose(scene_mean, sign * (cs.a.astype(np.float64) - cs.b), rtol=1e-4, atol=1e-5)
        t = scene_mean.mean(0) / (scene_mean.std(0, ddof=1) / np.sqrt(len(SCENES)))
        np.testing.assert_allclose(table[f"t_{name}"], t, rtol=1e-4)
    assert str(per["a_keys_lighting"][0]).endswith("/render") and " vs " in str(per["pair_ids_albedo"][0])


def test_stats_from_the_captures_alone_reproduce_the_classes_and_per_sample(tmp_path):
    from probe.jobs.stats import main_stats

    out = _run(tmp_path)
    caps = load_captures(out / "captures.npz")
    for name in ("render_vs_albedo", "lighting", "albedo"):
        a_keys, b_keys = caps.sample_pairs[name]
        assert len(a_keys) == len(b_keys) > 0
    assert caps.meta["magnitude_margin"] == 0.5
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out / "captures.npz", alone / "captures.npz")
    assert main_stats(SimpleNamespace(**ARGS, captures=str(alone / "captures.npz"), out=str(tmp_path / "re"),
                                      baseline=None)) == 0
    assert (tmp_path / "re" / "units.csv").read_text() == (out / "units.csv").read_text()
    a, b = np.load(out / "per_sample.npz"), np.load(tmp_path / "re" / "per_sample.npz")
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "re"))
    assert s1["classes"] == s2["classes"] and s1["classes"]["magnitude"]["available"]
    assert s1["classes"]["magnitude"]["per_contrast"]["albedo"]["n_scenes"] == len(SCENES)
    # another magnitude margin from the command line changes the classes' margin (and nothing else)
    main_stats(SimpleNamespace(**{**ARGS, "magnitude_margin": 3.0}, captures=str(alone / "captures.npz"),
                               out=str(tmp_path / "m"), baseline=None))
    s3 = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s3["classes"]["magnitude"]["margin_ratio"] == 3.0 and s3["n_fwer_significant"] == s1["n_fwer_significant"]


def test_captures_written_before_the_sample_pairs_are_rebuilt(tmp_path):
    """A captures.npz without contrast_NAME_sample_a/_b (written before them): the pairs are rebuilt from its image
    keys and design record, equal to the stored ones, so `probe stats --from` gives the same columns."""
    import dataclasses

    from probe.design.image_stimuli import sample_pairs_from_record
    from probe.jobs.stats import main_stats

    out = _run(tmp_path)
    caps = load_captures(out / "captures.npz")
    rebuilt = sample_pairs_from_record(caps.images.keys, caps.images.scene_ids, caps.meta["image_design"])
    assert set(rebuilt) == set(caps.sample_pairs)
    for name, (a, b) in caps.sample_pairs.items():
        np.testing.assert_array_equal(rebuilt[name][0], a)
        np.testing.assert_array_equal(rebuilt[name][1], b)
    old = tmp_path / "old"
    save_captures(old / "captures.npz", dataclasses.replace(caps, sample_pairs={}))
    assert not any(k.endswith("_sample_a") for k in np.load(old / "captures.npz").files)
    main_stats(SimpleNamespace(**ARGS, captures=str(old / "captures.npz"), out=str(tmp_path / "re"), baseline=None))
    assert (tmp_path / "re" / "units.csv").read_text() == (out / "units.csv").read_text()
    summary = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert "rebuilt" in summary["sample_pairs_note"]


def test_pairs_over_samples_keeps_the_magnitude_test_over_base_scenes(tmp_path):
    out = _run(tmp_path, pairs_over="samples")
    s = json.loads((out / "summary.json").read_text())
    assert s["clustered"] and s["classes"]["magnitude"]["per_contrast"]["lighting"]["n_scenes"] == len(SCENES)
    assert s["contrasts"]["lighting"]["n_pairs"] == 2 * len(SCENES)        # the signed test: sample-level pairs


def test_the_report_words_the_classes_by_what_their_test_showed(tmp_path):
    out = _run(tmp_path, report=True)
    md = (out / "report.md").read_text()
    classes = md.split("## Unit classes")[1].split("<details>")[0]
    assert "shown not to react" not in md                              # the old promise the signed test did not keep
    assert "**The size of the change, not its signed mean.**" in classes
    assert "| class | units (`class`) | signed rule (`class_signed`) | what it means |" in classes
    assert "Magnitude test (decides `class`): margin 0.5" in classes and "power at ratio 0" in classes
    assert "Signed rule (`class_signed`, kept for comparison)" in classes and "not the noise" in classes
    assert "`diff_C`" in md and "`class_signed`" in md.split("## Files")[1]
    assert (out / "figures" / "class_scatter.png").is_file()
