"""Issue 8: controls that tell a trained klein from an untrained one and from wording.

Statistics (no torch): contrasts as data, the direct test against each control set with planted
word-only and meaning units, the sign convention; captures.npz with named control sets; stimuli and
noise seeds; the resume key; the compare test; and, on the tiny model, --randomize, --slice-layout,
--seeds-per-pair, compare and the user-facing errors end to end.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from probe.io.captures import Captures, CapturesError, ControlSet, load_captures, save_captures
from probe.stats.analysis import Contrast, Direct, analyse, analyse_captures, analyse_text
from probe.stats.config import StatsConfig
from probe.design.stimuli import Stimulus, TextDesign, noise_seed

FAST = StatsConfig(n_perm=500, n_boot=0, n_splits=10, seed=0)


# ------------------------------------------------------------------------------- planted controls

def planted_text(seed, n=25, units=3000, n_word=60, n_meaning=60, effect=1.6):
    """A, B, vocabulary control V and paraphrase P for `n` pairs that share a noise sample per pair.

    Units 0..n_word-1 react only to B's words (B and V shifted alike), units n_word..n_word+n_meaning-1
    to the albedo meaning (B shifted, V not), the rest to nothing. Effects are d_z = `effect` of the
    paired difference, moderate enough that the control contrast A - V of a word unit sometimes
    misses significance (where 'significant in main, not in control' goes wrong).
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, units)) * 2.0              # the pair's shared noise sample
    a, b, v, p = (base + rng.normal(size=(n, units)) for _ in range(4))
    shift = effect * np.sqrt(2.0)                         # sd of a difference of two prompts is sqrt(2)
    words = slice(0, n_word)
    meaning = slice(n_word, n_word + n_meaning)
    b[:, words] -= shift
    v[:, words] -= shift
    b[:, meaning] -= shift
    return a, b, v, p, words, meaning


def old_rule(res, control: str):
    """The replaced definition: main FWER-significant, control contrast not, |d_main| > |d_control|."""
    m, c = res.main, res.stats[control]
    return m.null.significant & ~c.null.significant & (np.abs(m.unit.d) > np.abs(c.unit.d))


def test_vocabulary_control_word_units_do_not_count_meaning_units_do():
    recall, fp_words, fp_noise, old_para, old_vocab = [], [], [], [], []
    for seed in range(3):
        a, b, v, p, words, meaning = planted_text(seed)
        units = [f"u{i}" for i in range(a.shape[1])]
        ids = np.array([f"p{i}" for i in range(a.shape[0])])
        res = analyse_text(a, b, units, ids, {"paraphrase": (a, p), "vocabulary": (a, v)}, config=FAST)
        sel = res.selective["vs_vocabulary"]
        recall.append(sel[meaning].mean())
        fp_words.append(int(sel[words].sum()))
        fp_noise.append(int(sel[meaning.stop:].sum()))
        old_para.append(old_rule(res, "paraphrase")[words].mean())
        old_vocab.append(int(old_rule(res, "vocabulary")[words].sum()))
        # the direct test is exactly the paired test of control prompt minus albedo prompt
        np.testing.assert_allclose(res.direct_stats["vs_vocabulary"].unit.t, sps.ttest_rel(v, b).statistic,
                                   rtol=1e-9)
        assert (res.selective_beyond_control == (res.selective["vs_vocabulary"] & res.selective["vs_paraphrase"])).all()
    print(f"\nvocabulary control, 3 seeds x (60 word-only, 60 meaning, 2880 null units), d_z 1.6: recall of meaning "
          f"units {np.mean(recall):.3f}; word-only units counted {fp_words}; null units counted {fp_noise}; "
          f"old rule with the paraphrase control counted {np.mean(old_para):.0%} of word-only units, with the "
          f"vocabulary control {old_vocab} of them")
    assert np.mean(recall) >= 0.9, recall
    assert sum(fp_words) <= 2, fp_words          # FWER 0.05 per run: at most a stray one
    assert sum(fp_noise) <= 2, fp_noise
    # what the earlier probe did: its only control (the paraphrase) carries none of B's words, so its
    # 'selective beyond control' counted the word-only units as albedo-selective
    assert np.mean(old_para) >= 0.8, old_para
    # and 'significant in main, not in the control contrast' miscounts some word-only units even with the
    # vocabulary control; the direct test does not
    assert sum(old_vocab) > sum(fp_words), (old_vocab, fp_words)


def test_direct_test_is_not_significant_here_not_there():
    """A unit whose effect is the same in main and control never counts, however the two FWER tests fall."""
    a, b, v, p, words, meaning = planted_text(7, effect=1.0)
    units = [f"u{i}" for i in range(a.shape[1])]
    res = analyse_text(a, b, units, controls={"vocabulary": (a, v)}, config=FAST)
    main_only = res.main.null.significant & ~res.stats["vocabulary"].null.significant
    assert main_only[words].sum() >= 1          # the old rule's trap exists in this data
    assert not res.selective["vs_vocabulary"][words].any()


def test_card_direction_flips_every_sign_but_not_the_selection():
    a, b, v, p, words, meaning = planted_text(3)
    units = [f"u{i}" for i in range(a.shape[1])]
    ab = analyse_text(a, b, units, controls={"vocabulary": (a, v)}, config=FAST)
    ba = analyse_text(a, b, units, controls={"vocabulary": (a, v)}, config=FAST, direction="b-a")
    np.testing.assert_allclose(ba.t, -ab.t)
    np.testing.assert_allclose(ba.direct_stats["vs_vocabulary"].unit.t, sps.ttest_rel(b, v).statistic, rtol=1e-9)
    assert (ba.selective["vs_vocabulary"] == ab.selective["vs_vocabulary"]).all()
    assert ba.direction == "B albedo - A photograph" and ab.direction == "A photograph - B albedo"
    table = ba.units_table()
    assert set(table["direction"]) == {"B albedo - A photograph"}
    np.testing.assert_allclose(table["mean_a"], a.mean(0))      # mean_a stays the A prompt's mean
    assert ba.summary()["sign_convention"].startswith("t > 0 means the unit is larger on the first term")


def test_contrasts_are_data_columns_by_rule():
    """The image probe's contrasts run through the same code path, with columns t_C, d_C, p_fwer_C."""
    rng = np.random.default_rng(4)
    n, u = 12, 40
    units = [f"s00/double.{i // 10}.img/h{i % 10:02d}" for i in range(u)]
    scenes = np.array([f"scene{i}" for i in range(n)])
    render, albedo = rng.normal(size=(n, u)), rng.normal(size=(n, u))
    render[:, :5] += 3.0
    key, rim = rng.normal(size=(n, u)), rng.normal(size=(n, u))
    orig, var = rng.normal(size=(n - 2, u)), rng.normal(size=(n - 2, u))
    res = analyse([Contrast("render_vs_albedo", render, albedo, scenes),
                   Contrast("lighting", key, rim, scenes),
                   Contrast("albedo", orig, var, scenes[2:])], units,
                  directs=[Direct("lighting_minus_albedo", of="lighting", minus="albedo", selective=False)],
                  config=StatsConfig(n_perm=200, n_boot=20, n_splits=5))
    table = res.units_table()
    for c in ("render_vs_albedo", "lighting", "albedo", "lighting_minus_albedo"):
        for stat in ("t", "d", "p_fwer"):
            assert f"{stat}_{c}" in table, (stat, c)
    np.testing.assert_allclose(table["t"], table["t_render_vs_albedo"])
    np.testing.assert_allclose(table["t_lighting"], sps.ttest_rel(key, rim).statistic, rtol=1e-9)
    # the direct comparison pairs by scene id: only the 10 scenes both contrasts have
    assert res.direct_stats["lighting_minus_albedo"].n_pairs == n - 2
    np.testing.assert_allclose(table["t_lighting_minus_albedo"],
                               sps.ttest_rel(key[2:] - rim[2:], orig - var).statistic, rtol=1e-9)
    assert "selective_lighting_minus_albedo" not in table and "selective_beyond_control" not in table
    s = res.summary()
    assert set(s["contrasts"]) == {"lighting", "albedo"} and s["primary_contrast"] == "render_vs_albedo"
    from probe.io.jsonio import json_clean

    json.dumps(json_clean(s), allow_nan=False)
    # threads change nothing
    res1 = analyse([Contrast("render_vs_albedo", render, albedo, scenes)], units,
                   config=StatsConfig(n_perm=200, n_boot=20, n_splits=5, threads=1))
    np.testing.assert_array_equal(res1.main.null.p_fwer, res.main.null.p_fwer)


def test_analyse_rejects_unknown_and_misaligned_contrasts():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4))
    units = ["a", "b", "c", "d"]
    with pytest.raises(CapturesError, match="known contrasts"):
        analyse([Contrast("main", x, x + 1)], units, directs=[Direct("vs_x", of="main", minus="x")])
    with pytest.raises(CapturesError, match="share 0 pairs"):
        analyse([Contrast("main", x, x + 1, np.array(list("abcdef"))), Contrast("c", x, x, np.array(list("uvwxyz")))],
                units, directs=[Direct("vs_c", of="main", minus="c")])
    with pytest.raises(CapturesError, match="unique"):
        analyse([Contrast("main", x, x + 1), Contrast("main", x, x)], units)
    with pytest.raises(CapturesError, match="control set name"):
        analyse_text(x, x + 1, units, controls={"Bad Name": (x, x)})


# ------------------------------------------------------------------------------------- captures

def test_captures_with_named_control_sets_round_trip_and_stats_reproduce(tmp_path):
    a, b, v, p, *_ = planted_text(1, n=8, units=30)
    ids = np.array([f"p{i}" for i in range(8)])
    caps = Captures(a=a, b=b, units=np.array([f"u{i}" for i in range(30)]), pair_ids=ids, control_a=a, control_b=p,
                    control_pair_ids=ids, controls={"vocabulary": ControlSet(a[2:], v[2:], ids[2:])},
                    meta={"direction": "b-a"})
    path = save_captures(tmp_path / "captures.npz", caps)
    with np.load(path) as z:
        assert list(z["control_names"]) == ["paraphrase", "vocabulary"]
        assert {"control_a", "control_b", "control_pair_ids", "control_vocabulary_a", "control_vocabulary_b",
                "control_vocabulary_pair_ids"} <= set(z.files)
    back = load_captures(path)
    assert list(back.control_sets()) == ["paraphrase", "vocabulary"]
    np.testing.assert_array_equal(back.controls["vocabulary"].b, v[2:].astype(np.float32))
    r1, r2 = analyse_captures(caps, FAST), analyse_captures(back, FAST)
    for k, col in r1.units_table().items():
        assert np.array_equal(np.asarray(col), np.asarray(r2.units_table()[k])), k
    assert r2.direction == "B albedo - A photograph" and r2.direct_stats["vs_vocabulary"].n_pairs == 6
    # a file written before control sets had names: control_a/control_b are the paraphrase set
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, a=a, b=b, units=caps.units, pair_ids=ids, control_a=a, control_b=p, control_pair_ids=ids)
    old = load_captures(legacy)
    assert list(old.control_sets()) == ["paraphrase"] and old.meta == {}
    assert "t_vs_paraphrase" in analyse_captures(old, FAST).units_table()
    # a listed set whose arrays are missing is named in the error
    broken = tmp_path / "broken.npz"
    np.savez(broken, a=a, b=b, units=caps.units, pair_ids=ids, control_names=np.array(["vocabulary"]))
    with pytest.raises(CapturesError, match="control_vocabulary_a"):
        load_captures(broken)


# -------------------------------------------------------------------------------------- stimuli

def test_noise_seed_per_pair_shared_within_pair_and_averaged():
    assert noise_seed(0, "red_cube_table") == noise_seed(0, "red_cube_table")
    assert noise_seed(0, "red_cube_table") != noise_seed(0, "cornell_box") != noise_seed(1, "cornell_box")
    assert noise_seed(5, "x", 0, "shared") == 5 and noise_seed(5, "y", 0, "shared") == 5
    assert 0 <= noise_seed(0, "x", 3) < 2 ** 63
    design = TextDesign(pair_ids=("p0", "p1", "p2"), a=("A0", "A1", "A2"), b=("B0", "B1", "B2"),
                        controls={"vocabulary": {"p0": "V0", "p2": "V2"}}, seed=3, seeds_per_pair=2)
    stim = design.stimuli()
    assert len(stim) == 3 * 2 * 2 + 2 * 2
    for pid in ("p0", "p1", "p2"):
        seeds = {s.draw: s.seed for s in stim if s.pair_id == pid and s.role == "a"}
        for s in stim:
            if s.pair_id == pid:
                assert s.seed == seeds[s.draw]          # A, B and the control share each noise draw
    # assemble: each prompt's values are the mean over its pair's draws; control rows follow pair order
    values = {s.key(): np.full(3, float(s.draw) + (10 if s.role == "b" else 0) + 100 * int(s.pair_id[1]))
              for s in stim}
    out = design.assemble(values)
    np.testing.assert_allclose(out["a"][:, 0], [0.5, 100.5, 200.5])
    np.testing.assert_allclose(out["b"][:, 0], [10.5, 110.5, 210.5])
    ca, cb, ids = out["controls"]["vocabulary"]
    assert list(ids) == ["p0", "p2"] and np.allclose(ca[:, 0], [0.5, 200.5])
    assert design.record()["pair_seeds"]["p1"] == design.seeds("p1")
    # the same computation is one key, an image changes it
    s = Stimulus("p0", "a", "A0", 1)
    assert s.key() == Stimulus("p9", "b", "A0", 1).key() != Stimulus("p0", "a", "A0", 2).key()
    with pytest.raises(ValueError, match="seeds_per_pair"):
        TextDesign(("p",), ("a",), ("b",), seeds_per_pair=0)


def test_stimulus_key_follows_the_image_content(tmp_path):
    img = tmp_path / "ref.png"
    img.write_bytes(b"one")
    k1 = Stimulus("p", "a", "text", 0, image=str(img)).key()
    img.write_bytes(b"two!")
    k2 = Stimulus("p", "a", "text", 0, image=str(img)).key()
    assert k1 != k2 != Stimulus("p", "a", "text", 0).key()


# ---------------------------------------------------------------------------------- resume cache

def test_cache_is_reused_only_when_every_field_matches(tmp_path):
    from probe.klein.capture_loop import load_cache, save_cache

    fields = {"model_revision": "commit:abc", "dtype": "bfloat16", "device_type": "cuda",
              "randomize": {"mode": "none"}, "versions": {"torch": "2.13.0"}, "capture": {"steps": 50}}
    path = tmp_path / "partial_captures.npz"
    save_cache(path, fields, {"k1": np.ones(4), "k2": np.zeros(4)})
    done, why = load_cache(path, fields, 4)
    assert why is None and set(done) == {"k1", "k2"}
    for change in ({"model_revision": "commit:def"}, {"dtype": "float32"}, {"device_type": "cpu"},
                   {"randomize": {"mode": "transformer", "seed": 0}}, {"versions": {"torch": "2.14.0"}}):
        done, why = load_cache(path, {**fields, **change}, 4)
        key = next(iter(change))
        assert done == {} and key in why, (change, why)
    assert "commit:abc" in load_cache(path, {**fields, "model_revision": "commit:def"}, 4)[1]
    assert load_cache(path, fields, 5)[1].startswith("partial_captures.npz holds 4 units")
    np.savez(tmp_path / "old.npz", config_key=np.array("x"), keys=np.array(["k"]), values=np.ones((1, 4)))
    assert "older version" in load_cache(tmp_path / "old.npz", fields, 4)[1]


def test_model_fingerprint_hub_snapshot_and_local_configs(tmp_path):
    from probe.klein.model import ModelSpec, model_fingerprint

    snap = tmp_path / "models--x--y" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    loaded = SimpleNamespace(spec=ModelSpec("x/y"), source="hub", resolved_path=str(snap), revision=None,
                             randomized={})
    assert model_fingerprint(loaded)["revision"] == "commit:0123abcd"
    local = tmp_path / "klein"
    (local / "transformer").mkdir(parents=True)
    (local / "model_index.json").write_text("{}")
    (local / "transformer" / "config.json").write_text('{"num_layers": 5}')
    (local / "transformer" / "w.safetensors").write_bytes(b"0" * 10)
    loaded = SimpleNamespace(spec=ModelSpec(str(local)), source="local", resolved_path=str(local), revision=None,
                             randomized={"mode": "transformer", "seed": 2})
    fp1 = model_fingerprint(loaded)
    assert fp1["revision"].startswith("content-sha256:") and fp1["randomize"] == {"mode": "transformer", "seed": 2}
    (local / "transformer" / "config.json").write_text('{"num_layers": 6}')
    assert model_fingerprint(loaded)["revision"] != fp1["revision"]
    (local / "transformer" / "config.json").write_text('{"num_layers": 5}')
    assert model_fingerprint(loaded)["revision"] == fp1["revision"]
    (local / "transformer" / "w.safetensors").write_bytes(b"0" * 11)        # other weights, same config
    assert model_fingerprint(loaded)["revision"] != fp1["revision"]
    (local / "transformer" / "w.safetensors").write_bytes(b"1" * 10)        # replaced in place, same size (issue 18)
    assert model_fingerprint(loaded)["revision"] != fp1["revision"]


# --------------------------------------------------------------------------------------- compare

def _synthetic_run(tmp_path, name, effect, seed, units=None, n=16, random_weights=False):
    """A finished run folder from synthetic captures (no model): `effect` planted in the first 30 units."""
    from probe.jobs.finish import analyse_and_write

    rng = np.random.default_rng(seed)
    units = units if units is not None else [f"s00/double.{i // 20}.img/h{i % 20:02d}" for i in range(200)]
    a = rng.normal(size=(n, len(units)))
    b = rng.normal(size=(n, len(units)))
    b[:, :30] -= effect
    caps = Captures(a=a, b=b, units=np.array(units), pair_ids=np.array([f"p{i}" for i in range(n)]),
                    unit_blocks=np.array([u.rsplit("/", 1)[0] for u in units]))
    out = tmp_path / name
    out.mkdir()
    save_captures(out / "captures.npz", caps)
    model = {"model": "tiny" if random_weights else "black-forest-labs/FLUX.2-klein-base-4B",
             "source": "tiny" if random_weights else "hub", "random_weights": random_weights,
             "randomize": {"mode": "transformer", "seed": 0} if random_weights else {"mode": "none"}}
    analyse_and_write(caps, out, {"capture": {"protocol": "heads"}, "model": model},
                      StatsConfig(n_perm=100, n_boot=0, n_splits=5), no_report=True)
    return out


def test_compare_detects_a_trained_difference_and_not_a_null_one(tmp_path):
    from probe.report.compare import write_compare
    from probe.stats.compare import compare_runs

    strong = _synthetic_run(tmp_path, "trained", 2.0, 1)
    rand = _synthetic_run(tmp_path, "random", 0.0, 2, random_weights=True)
    rand2 = _synthetic_run(tmp_path, "random2", 0.0, 3, random_weights=True)
    res = compare_runs([strong, rand, rand2], n_boot=400)
    c_rand, c_null = res["comparisons"]
    assert c_rand["test"]["available"] and c_rand["test"]["p_run1_greater"] <= 0.01 and c_rand["test"]["S"] > 0
    assert c_rand["test"]["ci"][0] > 0 and "paired" in c_rand["test"]["resampling"]
    null = compare_runs([rand, rand2], n_boot=400)["comparisons"][0]["test"]
    assert null["p_run1_greater"] > 0.05 and null["ci"][0] < 0 < null["ci"][1]
    assert len(res["units"]["unit"]) == 200 and len(res["units"]["delta_abs_t_run1_minus_run2"]) == 200
    assert res["any_random_init_control"] and not res["all_random_weights"]
    files = write_compare(res, tmp_path / "cmp")
    assert [f.name for f in files] == ["compare.md", "compare.json", "compare_blocks.png"]
    md = files[0].read_text()
    assert md.startswith("# Probe runs side by side (with a random-init control)")
    assert "Within-network noise only" in md and "says nothing about training" not in md.split("## Within")[0]
    assert "not independent" in md and "random-init (transformer, seed 0)" in md and "nothing about" in md
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # all runs random: the first line says so
    assert write_compare(compare_runs([rand, rand2], n_boot=50), tmp_path / "cmp2")[0].read_text().startswith(
        "**RANDOM WEIGHTS")


def test_compare_needs_the_same_units(tmp_path):
    from probe.io.runs import CompareError
    from probe.stats.compare import compare_runs

    a = _synthetic_run(tmp_path, "a", 1.0, 1)
    other = [f"s00/double.{i // 20}.img/h{i % 20:02d}" for i in range(100, 300)]
    b = _synthetic_run(tmp_path, "b", 0.0, 2, units=other)
    with pytest.raises(CompareError, match="different unit sets.*100 in common"):
        compare_runs([a, b])
    shared = compare_runs([a, b], units="shared", n_boot=50)
    assert shared["n_units_compared"] == 100 and shared["comparisons"][0]["test"]["available"]
    anyres = compare_runs([a, b], units="any")
    assert anyres["comparisons"] == [] and len(anyres["runs"]) == 2
    with pytest.raises(CompareError, match="summary.json is missing"):
        compare_runs([a, tmp_path])


# ------------------------------------------------------------------------------ tiny, end to end

def cli(*args, check=True, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"probe {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


FAST_ARGS = ("--n-perm", "200", "--n-boot", "50", "--n-splits", "10", "--quiet")
ONE_STEP = ("--steps", "1", "--capture-steps", "0", "--guidance", "1.0")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_cache):
    root = tmp_path_factory.mktemp("controls")
    trained = root / "trained"
    cli("--model", "tiny", "--limit", "4", *ONE_STEP, "--out", str(trained), *FAST_ARGS)
    # the random-init control is run into a copy of the trained run's folder: its cache must not be reused
    rand = root / "random"
    shutil.copytree(trained, rand)
    r = cli("--model", "tiny", "--limit", "4", *ONE_STEP, "--randomize", "transformer", "--randomize-seed", "3",
            "--out", str(rand), *FAST_ARGS)
    return SimpleNamespace(root=root, trained=trained, random=rand, random_stderr=r.stderr)


def test_randomize_runs_fresh_and_is_recorded(tiny_runs):
    assert "starting fresh: partial_captures.npz was made with a different randomize.mode 'none' -> 'transformer'" \
        in tiny_runs.random_stderr
    cfg = json.loads((tiny_runs.random / "config.json").read_text())
    rnd = cfg["model"]["randomize"]
    assert rnd["mode"] == "transformer" and rnd["seed"] == 3 and rnd["components"][0]["name"] == "transformer"
    assert cfg["capture_info"]["captured_now"] == cfg["capture_info"]["unique_stimuli"] == 20     # 4 x (A, B, 3 sets)
    assert cfg["capture_info"]["cache_fields"]["randomize"] == {"mode": "transformer", "seed": 3}
    t = load_captures(tiny_runs.trained / "captures.npz")
    r = load_captures(tiny_runs.random / "captures.npz")
    assert not np.allclose(t.a, r.a)
    first = (tiny_runs.random / "report.md").read_text().splitlines()[0]
    assert first.startswith("**RANDOM WEIGHTS (--randomize transformer, seed 3)")
    report = (tiny_runs.trained / "report.md").read_text()
    assert "no random-init run has been compared with this one" in report.split("## Headline")[0]
    assert "--randomize transformer --randomize-seeds 0-18 --out" in report and "--population" in report
    assert "python -m probe compare" in report


def test_run_outputs_controls_noise_and_stats_reproduce(tiny_runs, tmp_path):
    out = tiny_runs.trained
    z = np.load(out / "captures.npz")
    assert list(z["control_names"]) == ["paraphrase", "vocabulary", "shuffled"]
    np.testing.assert_array_equal(z["control_vocabulary_a"], z["a"])     # same prompt, same noise: captured once
    cfg = json.loads((out / "config.json").read_text())
    seeds = cfg["noise"]["pair_seeds"]
    assert len(set(s[0] for s in seeds.values())) == 4 and cfg["noise"]["seeds_per_pair"] == 1
    assert seeds["red_cube_table"] == [noise_seed(0, "red_cube_table")]
    assert set(cfg["text_lengths"]) == set(cfg["prompt_token_lengths"]) == {"a", "b", "paraphrase", "vocabulary",
                                                                           "shuffled"}
    template = {t - p for k in cfg["text_lengths"] for t, p in zip(cfg["text_lengths"][k], cfg["prompt_token_lengths"][k])}
    assert len(template) == 1 and template.pop() > 0          # the chat template: the same tokens around every prompt
    s = json.loads((out / "summary.json").read_text())
    assert {"n_selective_vs_paraphrase", "n_selective_vs_vocabulary", "n_selective_vs_shuffled",
            "n_selective_beyond_control"} <= set(s)
    assert s["text_tokens"] == "prompt" and set(s["control_lexicon"]) == {"paraphrase", "vocabulary", "shuffled"}
    lex = s["control_lexicon"]
    assert lex["vocabulary"]["keeps_b"] == lex["shuffled"]["keeps_b"] == 1.0 and lex["paraphrase"]["from_a"] > 0.8
    # the tiny tokenizer counts bytes: the pipeline's own count is there beside the stand-in's
    assert lex["shuffled"]["tokens_minus_b_pipeline"]["max"] <= 2 and "tokens_minus_b" in lex["vocabulary"]
    report = (out / "report.md").read_text()
    section = report.split("## Control sets in words and tokens")[1].split("\n## ")[0]
    for name in ("`paraphrase`", "`vocabulary`", "`shuffled`", "B's content words kept", "tokens − B (stand-in)"):
        assert name in section, name
    assert s["direction"] == "A photograph - B albedo" and s["t_direction"] == "a-b" and s["stimuli"] == "text"
    header = (out / "units.csv").read_text().splitlines()[0].split(",")
    for col in ("t_vs_paraphrase", "p_fwer_vs_paraphrase", "selective_vs_paraphrase", "t_vs_vocabulary",
                "p_fwer_vs_vocabulary", "selective_vs_vocabulary", "t_vs_shuffled", "selective_vs_shuffled",
                "control_t", "selective_beyond_control"):
        assert col in header, col
    # the captures alone (no config.json beside them) give every column back
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out / "captures.npz", alone / "captures.npz")
    cli("stats", "--from", str(alone / "captures.npz"), "--out", str(tmp_path / "re"), "--n-perm", "200",
        "--n-boot", "50", "--n-splits", "10", "--no-report")
    assert (tmp_path / "re" / "units.csv").read_text() == (out / "units.csv").read_text()
    again = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert again["control_lexicon"] == s["control_lexicon"] and again["text_tokens"] == "prompt"


def test_compare_cli_and_baseline_report(tiny_runs, tmp_path):
    r = cli("compare", str(tiny_runs.trained), str(tiny_runs.random), "--out", str(tmp_path / "cmp"),
            "--n-boot", "200")
    assert "run 1 vs run 2" in r.stdout
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert res["comparisons"][0]["test"]["available"] and res["runs"][1]["randomize"] == "transformer"
    assert (tmp_path / "cmp" / "compare_blocks.png").is_file()
    cli("stats", "--from", str(tiny_runs.trained / "captures.npz"), "--out", str(tmp_path / "with-base"),
        "--baseline", str(tiny_runs.random), *FAST_ARGS[:-1])
    md = (tmp_path / "with-base" / "report.md").read_text()
    assert "**Compared with the random-init control" in md.split("## Headline")[0]
    assert "## Against the random-init control" in md
    assert json.loads((tmp_path / "with-base" / "summary.json").read_text())["baseline"]["comparison"]["test"]


def test_card_strided_sign_and_seeds_per_pair(tmp_path, tiny_cache):
    out = tmp_path / "card"
    cli("--model", "tiny", "--protocol", "card", "--slice-layout", "strided", "--limit", "3", "--height", "64",
        "--width", "64", "--control", "none", "--seeds-per-pair", "2", "--out", str(out), *FAST_ARGS)
    caps = load_captures(out / "captures.npz")
    # tiny: 2 double blocks x 4 strided slices (stride 4) + 2 single blocks x 16 (stride 16)
    assert caps.units[0] == "s00/double.0.img/c0000s0004" and caps.n_units == 2 * 4 + 2 * 16
    s = json.loads((out / "summary.json").read_text())
    assert s["direction"] == "B albedo - A photograph" and caps.meta["direction"] == "b-a" == s["t_direction"]
    units = (out / "units.csv").read_text().splitlines()
    t = np.array([float(line.split(",")[2]) for line in units[1:]])
    np.testing.assert_allclose(t, sps.ttest_rel(caps.b, caps.a).statistic, rtol=1e-4)
    assert units[1].endswith(",B albedo - A photograph")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["capture"]["slice_layout"] == "strided" and cfg["resolution_source"] == "--height/--width"
    assert cfg["noise"]["seeds_per_pair"] == 2 and all(len(v) == 2 for v in cfg["noise"]["pair_seeds"].values())
    assert cfg["capture_info"]["unique_stimuli"] == 3 * 2 * 2
    md = (out / "report.md").read_text()
    assert "## The card's protocol: stated, stated by a sibling card, reconstructed" in md
    for kind in ("stated by the card", "stated by a sibling plantain card", "our reconstruction"):
        assert kind in md
    assert "slice layout strided" in md and "t = B albedo - A photograph" in md


def test_card_protocol_uses_the_pipeline_default_resolution(tiny_loaded):
    from probe.jobs.run import _capture_config
    from probe.klein.capture_loop import pipeline_default_size

    args = SimpleNamespace(protocol="card", height=None, width=None, seed=0, batch_size=4, max_sequence_length=512,
                           capture_steps=None, steps=None, guidance=None, slice_layout="contiguous")
    cfg, source = _capture_config(args, tiny_loaded)
    side = tiny_loaded.pipe.default_sample_size * tiny_loaded.pipe.vae_scale_factor
    assert (cfg.height, cfg.width) == pipeline_default_size(tiny_loaded.pipe) == (side, side)
    assert source.startswith("pipeline default")
    cfg, source = _capture_config(SimpleNamespace(**{**vars(args), "height": 64, "width": 96}), tiny_loaded)
    assert (cfg.height, cfg.width) == (64, 96) and source == "--height/--width"


def test_strided_slices_match_their_definition(tiny_pipe):
    """Strided slice j = channels j, j + S, ...: its RMS follows from the per-channel RMS (SliceCapture with
    width 1, itself checked against the card's definition in test_capture.py), taken in the same forward."""
    import torch

    from probe.klein.capture import SliceCapture, head_sites
    from probe.klein.card_slices import StridedSliceCapture

    tr = tiny_pipe.transformer
    sites = head_sites(tr)
    with StridedSliceCapture(tr, sites, steps=[0], width=16) as cap, SliceCapture(tr, sites, [0], width=1) as per_ch:
        cap.set_batch(2)
        per_ch.set_batch(2)
        tiny_pipe(prompt=["a red cube", "albedo of a red cube"], height=64, width=64, num_inference_steps=1,
                  guidance_scale=1.0, generator=[torch.Generator().manual_seed(1) for _ in range(2)],
                  output_type="latent")
        got, rms = cap.collect(), per_ch.collect().astype(np.float64)
    cols, lo = [], 0
    for s in cap.sites:                                # per-channel columns come site by site, in the same order
        r = rms[:, lo:lo + s.in_features]
        lo += s.in_features
        stride = s.in_features // 16
        cols += [np.sqrt((r[:, j::stride] ** 2).mean(axis=1)) for j in range(stride)]
    np.testing.assert_allclose(got, np.stack(cols, axis=1), rtol=1e-5)
    assert cap.units[:2] == ["s00/double.0.img/c0000s0004", "s00/double.0.img/c0001s0004"]


def test_bad_inputs_are_one_paragraph_and_change_nothing(tiny_runs, tmp_path):
    before = {p.name: p.read_bytes() for p in tiny_runs.trained.iterdir() if p.is_file()}
    for args, msg in ((("--control", "vocab"), "unknown control set 'vocab'"),
                      (("--seeds-per-pair", "0"), "--seeds-per-pair must be at least 1"),
                      (("--control", "paraphrase", "--control", "none"), "cannot be combined")):
        r = cli("--model", "tiny", "--limit", "4", "--out", str(tiny_runs.trained), *args, check=False)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len([line for line in r.stderr.strip().splitlines() if line.strip()]) == 1, r.stderr
    r = cli("compare", str(tiny_runs.trained), str(_synthetic_run(tmp_path, "other", 0.0, 1)), "--out",
            str(tmp_path / "never"), check=False)
    assert r.returncode == 2 and "different unit sets" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "never").exists()
    after = {p.name: p.read_bytes() for p in tiny_runs.trained.iterdir() if p.is_file()}
    assert after == before


def test_capture_loop_passes_a_reference_image(tiny_loaded, tmp_path):
    """A stimulus with a reference image is an editing call (`image=`); its values and key differ."""
    from PIL import Image

    from probe.klein.capture_loop import CaptureConfig, capture_stimuli

    img = tmp_path / "ref.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(img)
    text = Stimulus("p0", "a", "a red cube on a table", 11)
    edit = Stimulus("p0", "render", "a red cube on a table", 11, image=str(img))
    cfg = CaptureConfig(protocol="heads", steps=1, capture_steps=(0,), guidance=1.0, height=64, width=64)
    values, units, info = capture_stimuli(tiny_loaded, [text, text], cfg, progress=False)
    assert info["unique_stimuli"] == 1 and info["pipeline_calls"] == 1 and len(units) == values[text.key()].size
    with pytest.raises(ValueError, match="one run captures one kind"):
        capture_stimuli(tiny_loaded, [text, edit], cfg, progress=False)
    edit_cfg = CaptureConfig(protocol="heads", steps=1, capture_steps=(0,), guidance=1.0, height=None, width=None,
                             editing=True)
    ev, edit_units, info = capture_stimuli(tiny_loaded, [edit, edit], edit_cfg, progress=False)
    from probe.klein.capture_loop import n_image_tokens

    n = n_image_tokens(tiny_loaded.pipe, 64, 64)     # the generated image takes the 64 x 64 reference's size
    assert info["unique_stimuli"] == 1 and info["token_layouts_seen"] == [{"n_img": n, "n_ref": n}]
    # an editing run's units are the text run's plus the reference-image units
    assert [u for u in edit_units if ".ref/" not in u] == units and len(edit_units) > len(units)
    mine = np.array([ev[edit.key()][edit_units.index(u)] for u in units])
    assert not np.allclose(values[text.key()], mine)
    again, _, _ = capture_stimuli(tiny_loaded, [edit], edit_cfg, progress=False)
    np.testing.assert_allclose(again[edit.key()], ev[edit.key()], rtol=1e-5)
    # the reference token count handed to captures that check the layout is the pipeline's own
    import torch

    from probe.klein.edit_capture import edit_layout

    pipe, seen = tiny_loaded.pipe, []
    h = pipe.transformer.transformer_blocks[0].attn.to_out[0].register_forward_pre_hook(
        lambda m, a: seen.append(a[0].shape[1]))
    try:
        big = Image.fromarray(np.zeros((72, 100, 3), np.uint8))         # cropped by the pipeline to 72 x 96
        pipe(prompt="x", image=big, height=64, width=64, num_inference_steps=1, guidance_scale=1.0,
             generator=torch.Generator().manual_seed(0), output_type="latent")
    finally:
        h.remove()
    assert seen[0] == n_image_tokens(pipe, 64, 64) + edit_layout(pipe, big).n_ref


def test_compare_help_is_light():
    code = ("import sys, runpy\n"
            "sys.argv = ['probe', 'compare', '--help']\n"
            "try:\n"
            "    runpy.run_module('probe', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "usage: python -m probe compare" in r.stdout and "HEAVY []" in r.stdout, r.stdout[-500:] + r.stderr
