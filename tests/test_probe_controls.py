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

from probe.captures import Captures, CapturesError, ControlSet, load_captures, save_captures
from probe.stats import Contrast, Direct, StatsConfig, analyse, analyse_captures, analyse_text
from probe.stimuli import Stimulus, TextDesign, noise_seed

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
    from probe.job import json_clean

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
    from probe.run import load_cache, save_cache

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
    from probe.model import ModelSpec, model_fingerprint

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
    assert fp1["revision"].startswith("configs-sha256:") and fp1["randomize"] == {"mode": "transformer", "seed": 2}
    (local / "transformer" / "config.json").write_text('{"num_layers": 6}')
    assert model_fingerprint(loaded)["revision"] != fp1["revision"]
    (local / "transformer" / "config.json").write_text('{"num_layers": 5}')
    assert model_fingerprint(loaded)["revision"] == fp1["revision"]
    (local / "transformer" / "w.safetensors").write_bytes(b"0" * 11)        # other weights, same config
    assert model_fingerprint(loaded)["revision"] != fp1["revision"]
