"""evaluate's statistics and unit choice on fake probe folders (C3) and synthetic numbers: clustered CIs,
paired differences, the causal test's rank p and random-k interval, head selection, and the link."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from scipy import stats as sps

from evaluate import stats as ST
from evaluate.causal import ablation_plan
from evaluate.link import link_image_probe, link_text_probe
from evaluate.selection import ProbeError, read_probe, select_heads
from fakes import fake_probe_units, write_fake_probe

# ---------------------------------------------------------------------------------------------
# clustered CIs (point 7)


def test_cluster_bootstrap_resamples_scenes_not_samples():
    # two scenes of 50 identical samples each: 2 independent units, not 100
    v = np.r_[np.zeros(50), np.ones(50)]
    clusters = ["a"] * 50 + ["b"] * 50
    naive = ST.bootstrap_mean_ci(v, n_boot=2000, seed=0)
    clustered = ST.bootstrap_mean_ci(v, n_boot=2000, seed=0, clusters=clusters)
    assert naive["mean"] == clustered["mean"] == 0.5
    assert naive["ci95_high"] - naive["ci95_low"] < 0.25           # pretends to know the mean to +-0.1
    assert clustered["ci95_low"] == 0.0 and clustered["ci95_high"] == 1.0   # honest: either scene could be typical
    assert clustered["n_clusters"] == 2 and clustered["resampled"] == "clusters"
    one = ST.bootstrap_mean_ci(v[:50], clusters=clusters[:50])
    assert one["ci95_low"] is None and one["n_clusters"] == 1          # one scene: no CI at all


def test_paired_difference_is_the_mean_per_sample_difference():
    rng = np.random.default_rng(0)
    ids = [f"s{i // 3}__l{i % 3}" for i in range(30)]
    a = {s: float(rng.normal()) for s in ids}
    b = {s: a[s] + 0.5 + 0.01 * float(rng.normal()) for s in ids if s != ids[4]}
    r = ST.paired_difference(a, b, {s: s.split("__")[0] for s in ids}, n_boot=500)
    assert r["n"] == 29 and r["n_clusters"] == 10 and r["n_only_one_method"] == 1
    assert r["mean"] == pytest.approx(np.mean([a[s] - b[s] for s in b]))
    assert -0.51 < r["ci95_low"] <= r["mean"] <= r["ci95_high"] < -0.49


def test_spearman_cluster_ci_and_expected_halfwidth():
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = x + rng.normal(scale=0.5, size=60)
    clusters = [f"c{i // 4}" for i in range(60)]
    c = ST.spearman_cluster(x, y, clusters, n_boot=400)
    assert c["rho"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert c["ci_low"] < c["rho"] < c["ci_high"] and c["n"] == 60 and c["n_clusters"] == 15
    assert c["expected_halfwidth_at_0"] == pytest.approx(ST.expected_rho_halfwidth(15))
    # the formula: tanh(1.96 * sqrt(1.06 / (n - 3))); 25 scenes -> about 0.4
    assert ST.expected_rho_halfwidth(25) == pytest.approx(np.tanh(1.959964 * np.sqrt(1.06 / 22)), rel=1e-5)
    assert 0.38 < ST.expected_rho_halfwidth(25) < 0.42 and np.isnan(ST.expected_rho_halfwidth(3))


def test_spearman_cluster_means_p_counts_clusters_not_samples():
    """Five scenes whose means are only weakly related (rho 0.6 over 5 points, p ~ 0.28), each repeated as 10
    near-identical samples: scipy's p over the 50 samples is tiny (clustered samples taken as independent);
    the p over one point per scene is the scenes' own and does not mistake replication for evidence."""
    xm, ym = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([2.0, 1.0, 4.0, 5.0, 3.0])
    rng = np.random.default_rng(0)
    x = np.repeat(xm, 10) + 1e-3 * rng.normal(size=50)
    y = np.repeat(ym, 10) + 1e-3 * rng.normal(size=50)
    c = ST.spearman_cluster(x, y, [f"s{i // 10}" for i in range(50)], n_boot=200)
    cm = c["cluster_means"]
    assert cm["n"] == 5 and cm["rho"] == pytest.approx(sps.spearmanr(xm, ym).statistic, abs=1e-9)
    assert cm["p"] == pytest.approx(sps.spearmanr(xm, ym).pvalue, rel=1e-6) and cm["p"] > 0.2
    assert c["p"] < 1e-3                          # the naive p: why it is never read alone
    assert "cluster_means" not in ST.spearman_cluster(x, y, None, n_boot=0)


# ---------------------------------------------------------------------------------------------
# the causal test's statistics (point 8)


def _runs(n_draws: int, rng):
    ids = [f"s{i // 2}__l{i % 2}" for i in range(40)]
    base = {s: 1.0 for s in ids}
    top = {s: 1.0 + 0.5 + 0.05 * float(rng.normal()) for s in ids}
    # every random draw: mean harm exactly 0.1, but huge spread over samples
    rands = []
    for _ in range(n_draws):
        h = rng.normal(size=len(ids))
        h = h - h.mean() + 0.1
        rands.append({s: 1.0 + float(v) * 1.0 for s, v in zip(ids, h)})
    return ids, base, top, rands


def test_rank_p_floor_and_between_draw_interval():
    rng = np.random.default_rng(2)
    ids, base, top, rands = _runs(3, rng)
    e = ST.ablation_effects(base, top, rands, n_boot=300, cluster_of={s: s.split("__")[0] for s in ids})
    assert e["rank_p_top_hurts_more"] == e["p_top_hurts_more"] == pytest.approx(1 / 4)
    assert e["p_min_attainable"] == pytest.approx(1 / 4)          # 3 draws: p can never be below 0.25
    # the random-k interval is the spread between draws (all draws have mean 0.1: zero width), not the
    # pooled draw x sample spread (which would be about +-0.2 here)
    lo, hi = e["random_harm_ci"]
    assert e["random_harm_mean"] == pytest.approx(0.1) and hi - lo < 1e-9
    assert e["n_clusters"] == 20 and e["resampled"] == "clusters"
    e19 = ST.ablation_effects(base, top, _runs(19, rng)[3], n_boot=100)
    assert e19["p_min_attainable"] == pytest.approx(0.05) and e19["rank_p_top_hurts_more"] == pytest.approx(0.05)


# ---------------------------------------------------------------------------------------------
# selection (point 8) on fake probe folders


def _text_probe(tmp_path, controls=True, name="probe"):
    units = fake_probe_units()
    n = len(units)
    t = np.zeros(n)
    # head double.0.img/h00: the largest |t| but fails the paraphrase control
    t[units.index("s03/double.0.img/h00")] = 20
    t[units.index("s00/single.1/h02")] = -12
    t[units.index("s03/double.0.txt/h01")] = 9
    t[units.index("s00/single.0/h03")] = 7
    cols = {"unit": units, "t": t}
    if controls:
        sel_para = (np.abs(t) > 5).astype(int)
        sel_para[units.index("s03/double.0.img/h00")] = 0
        sel_voc = (np.abs(t) > 5).astype(int)
        sel_voc[units.index("s00/single.0/h03")] = 0
        cols.update({"t_vs_paraphrase": t / 2, "p_fwer_vs_paraphrase": np.where(sel_para, 0.01, 0.5),
                     "selective_vs_paraphrase": sel_para, "t_vs_vocabulary": t / 2,
                     "p_fwer_vs_vocabulary": np.where(sel_voc, 0.01, 0.5), "selective_vs_vocabulary": sel_voc})
    return write_fake_probe(tmp_path / name, cols, {"stimuli": "text", "random_weights": True})


def test_heads_pass_fwer_and_every_direct_control(tmp_path):
    probe = read_probe(_text_probe(tmp_path))
    sel = select_heads(probe, 2)
    # |t| alone would pick double.0.img/h00 first; it fails the paraphrase control
    assert sel.heads == ["single.1/h02", "double.0.txt/h01"]
    assert sel.n_eligible == 2 and sel.n_filled == 0
    assert "selective_vs_paraphrase" in sel.rule and "selective_vs_vocabulary" in sel.rule
    assert "FWER-significant" in sel.rule
    # k above the eligible count: filled by |t| rank, and said so
    sel3 = select_heads(probe, 3)
    assert sel3.heads[:2] == sel.heads and sel3.n_filled == 1 and "not selective" in sel3.rule


def test_old_probe_without_control_columns_still_works(tmp_path):
    probe = read_probe(_text_probe(tmp_path, controls=False))
    sel = select_heads(probe, 2)
    assert sel.heads == ["double.0.img/h00", "single.1/h02"]
    assert "no direct control test" in sel.rule
    with pytest.raises(ProbeError, match="image probe"):
        select_heads(probe, 2, "lighting")
    with pytest.raises(ProbeError, match="more than"):
        select_heads(probe, 999)


def _image_probe(tmp_path, samples=None):
    units = fake_probe_units()
    n = len(units)
    rng = np.random.default_rng(5)
    t_l, t_a = np.zeros(n), np.zeros(n)
    cls = np.array(["neither"] * n, dtype=object)
    for u, tl, ta, c in (("s00/double.0.img/h02", 15, 1, "lighting-selective"),
                         ("s03/single.1/h01", -8, 0.5, "lighting-selective"),
                         ("s00/single.0/h00", 30, 25, "both"),
                         ("s03/double.0.txt/h03", 0.2, 11, "albedo-selective")):
        i = units.index(u)
        t_l[i], t_a[i], cls[i] = tl, ta, c
    t = t_l + t_a
    cols = {"unit": units, "t": t, "t_render_vs_albedo": t, "d_render_vs_albedo": t / 5,
            "p_fwer_render_vs_albedo": np.where(np.abs(t) > 5, 0.01, 0.9), "t_lighting": t_l, "d_lighting": t_l / 5,
            "p_fwer_lighting": np.where(np.abs(t_l) > 5, 0.01, 0.9), "t_albedo": t_a, "d_albedo": t_a / 5,
            "p_fwer_albedo": np.where(np.abs(t_a) > 5, 0.01, 0.9), "class": list(cls)}
    ps = None
    if samples is not None:
        sample_ids, scene_ids, diff = samples
        ps = {"diff": diff.astype(np.float32), "sample_ids": np.array(sample_ids), "scene_ids": np.array(scene_ids),
              "units": np.array(units), "contrast": np.array("render_vs_albedo")}
    return write_fake_probe(tmp_path / "img_probe", cols, {"stimuli": "images", "random_weights": False},
                            per_sample=ps), rng


def test_image_probe_selects_from_the_class(tmp_path):
    probe = read_probe(_image_probe(tmp_path)[0])
    light = select_heads(probe, 2, "lighting")
    assert light.heads == ["double.0.img/h02", "single.1/h01"]    # `both` (|t| 30) is not lighting-selective
    assert "class `lighting-selective`" in light.rule and light.n_filled == 0
    assert select_heads(probe, 1, "albedo").heads == ["double.0.txt/h03"]
    assert select_heads(probe, 1).heads == ["single.0/h00"]        # primary contrast: render_vs_albedo
    plan = ablation_plan(probe, [2], n_random=3, seed=0, select="lighting")
    assert plan["methods"]["klein__ablate_top2"] == light.heads
    assert plan["selection"]["2"]["rule"] == light.rule
    for r in range(3):
        rand = plan["methods"][f"klein__ablate_rand2_r{r}"]
        assert sorted(h.rsplit("/", 1)[0] for h in rand) == ["double.0.img", "single.1"]   # same groups
        assert not set(rand) & set(light.heads)


# ---------------------------------------------------------------------------------------------
# the link (point 9)


def _samples(n_scenes=12, per_scene=3, units=None, strength=1.0, seed=0):
    rng = np.random.default_rng(seed)
    sample_ids, scene_ids = [], []
    for s in range(n_scenes):
        for k in range(per_scene):
            sample_ids.append(f"scene{s:02d}{'' if k == 0 else f'~c{k}'}__key")
            scene_ids.append(f"scene{s:02d}")
    n = len(sample_ids)
    latent = rng.normal(size=n)
    diff = rng.normal(size=(n, len(units)))
    sel_unit = units.index("s00/single.0/h00")
    diff[:, sel_unit] += 3 * latent
    errors = {sid: float(1.0 - strength * latent[i] + 0.2 * rng.normal()) for i, sid in enumerate(sample_ids)}
    return sample_ids, scene_ids, diff, errors


def test_direct_link_per_sample_with_scene_clusters(tmp_path):
    units = fake_probe_units()
    sample_ids, scene_ids, diff, errors = _samples(units=units)
    path, _ = _image_probe(tmp_path, (sample_ids, scene_ids, diff))
    probe = read_probe(path)
    res = link_image_probe(probe, errors, k=1, n_boot=300)
    assert res["kind"].startswith("direct") and res["n_matched"] == 36 and res["n_clusters"] == 12
    sp = res["spearman"]
    assert sp["resampled"] == "clusters" and sp["rho"] < -0.7 and sp["ci_high"] < 0
    assert res["expected_halfwidth_at_0"] == pytest.approx(ST.expected_rho_halfwidth(12))
    assert res["selection"]["units"] == ["s00/single.0/h00"]
    assert {p["cluster"] for p in res["pairs"]} == set(scene_ids)
    # the same x as computing it by hand: sign(t) * diff / sd over the selected unit
    j = units.index("s00/single.0/h00")
    x = diff[:, j] / diff[:, j].std(ddof=1)
    assert [p["selectivity"] for p in res["pairs"]] == pytest.approx(list(x), rel=1e-5)


def test_text_link_is_labelled_indirect(tmp_path):
    probe = read_probe(_text_probe(tmp_path, controls=False))
    units = probe.unit_names
    rng = np.random.default_rng(4)
    pairs = [f"scene{i}" for i in range(6)]
    a = rng.normal(size=(6, len(units)))
    b = rng.normal(size=(6, len(units)))
    errors = {f"scene{i}__{l}": float(rng.normal()) for i in range(6) for l in ("key", "rim")}
    res = link_text_probe(probe, a, b, pairs, errors, {s: s.split("__")[0] for s in errors}, k=3, n_boot=100)
    assert res["kind"].startswith("indirect") and "INDIRECT" in res["definition"] and res["n_matched"] == 6
    assert res["pairs"][0]["error"] == pytest.approx(np.mean([errors["scene0__key"], errors["scene0__rim"]]))


def test_text_link_follows_the_probe_direction(tmp_path):
    """A card-mode probe reports t = B - A (summary `t_direction` b-a): the link must take the per-pair
    difference the same way round, so the same data gives the same selectivity under either convention."""
    units = fake_probe_units()
    rng = np.random.default_rng(5)
    pairs = [f"scene{i}" for i in range(6)]
    a, b = rng.normal(size=(6, len(units))), rng.normal(size=(6, len(units)))
    t = (a - b).mean(0) / ((a - b).std(0, ddof=1) / np.sqrt(6))
    errors = {f"scene{i}__key": float(rng.normal()) for i in range(6)}
    scene_of = {s: s.split("__")[0] for s in errors}
    res = {}
    for direction, sign in (("a-b", 1.0), ("b-a", -1.0)):
        path = write_fake_probe(tmp_path / direction, {"unit": units, "t": sign * t * 10},
                                {"stimuli": "text", "t_direction": direction})
        res[direction] = link_text_probe(read_probe(path), a, b, pairs, errors, scene_of, k=3, n_boot=50)
    xs = {d: [p["selectivity"] for p in r["pairs"]] for d, r in res.items()}
    assert xs["a-b"] == pytest.approx(xs["b-a"]) and res["a-b"]["selection"]["units"] == res["b-a"]["selection"]["units"]
    assert "b-a" in res["b-a"]["definition"]


def test_main_link_writes_direct_link_json(tmp_path, capsys):
    from evaluate.jobs import main_link

    units = fake_probe_units()
    sample_ids, scene_ids, diff, errors = _samples(units=units, seed=3)
    path, _ = _image_probe(tmp_path, (sample_ids, scene_ids, diff))
    out = tmp_path / "eval"
    out.mkdir()
    with open(out / "scores.csv", "w") as f:
        f.write("method,sample,scene,lighting,base_scene,status,lmse_linear_scalar\n")
        for sid, sc in zip(sample_ids, scene_ids):
            f.write(f"klein,{sid},{sid.split('__')[0]},key,{sc},ok,{errors[sid]}\n")
    args = argparse.Namespace(probe=str(path), out=str(out), metric=None, method="klein", top_k=1, select=None,
                              n_boot=200)
    assert main_link(args) == 0
    link = json.loads((out / "link.json").read_text())
    assert link["kind"].startswith("direct") and link["stimuli"] == "images" and link["n_clusters"] == 12
    assert link["metric"] == "lmse_linear_scalar" and "expected_halfwidth_at_0" in link
    assert (out / "figures" / "link_scatter.png").is_file()
    assert "half-width expected at rho = 0" in capsys.readouterr().out
