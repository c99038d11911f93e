"""probe.stats: paired t against scipy, BH, sign-flip and tmax nulls, split-half, blocks, captures.npz."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from probe.io.captures import Captures, CapturesError, load_captures, save_captures
from probe.stats.analysis import Analysis, analyse_text, analyse_captures, blocks_from_units
from probe.stats.blocks import _Resampler, block_stats
from probe.stats.config import StatsConfig
from probe.stats.null import _sign_vectors, sign_flip_null
from probe.stats.paired import bh_q, paired_t
from probe.stats.splithalf import _subset_t32, split_half


def noise(seed, n=25, units=2000):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, units)), rng.normal(size=(n, units))


def planted(seed, n=25, units=2000, effect_units=40, d=1.5):
    """A and B from N(0,1) per pair plus a shift making the paired difference's d_z equal `d`."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, units))
    b = rng.normal(size=(n, units))
    a[:, :effect_units] += d * np.sqrt(2.0)   # sd of a - b is sqrt(2)
    return a, b


# ------------------------------------------------------------------------------------- per unit

def test_paired_t_equals_scipy_ttest_rel():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(25, 300)) * rng.uniform(0.1, 10, 300) + rng.uniform(-5, 5, 300)
    b = a + rng.normal(size=(25, 300)) * rng.uniform(0.1, 3, 300) + rng.normal(0, 0.5, 300)
    u = paired_t(a, b)
    ref = sps.ttest_rel(a, b, axis=0)
    np.testing.assert_allclose(u.t, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(u.p, ref.pvalue, rtol=1e-8, atol=1e-300)
    diff = a - b
    np.testing.assert_allclose(u.d, diff.mean(0) / diff.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(u.q, sps.false_discovery_control(ref.pvalue), rtol=1e-10)
    assert not u.degenerate.any()


def test_paired_t_float32_inputs_match_scipy_on_float64():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(25, 100)).astype(np.float32)
    b = rng.normal(size=(25, 100)).astype(np.float32)
    ref = sps.ttest_rel(a.astype(np.float64), b.astype(np.float64), axis=0)
    np.testing.assert_allclose(paired_t(a, b).t, ref.statistic, rtol=1e-10)


def test_zero_variance_units_give_t0_p1_without_warnings():
    a, b = noise(3, n=10, units=50)
    b[:, 0] = a[:, 0]                   # dead unit: identical values
    b[:, 1] = a[:, 1] - 0.25            # constant offset: sd 0 up to rounding
    a[:, 2] = b[:, 2] = 0.0             # all zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        u = paired_t(a, b)
        res = analyse_text(a, b, [f"u{i}" for i in range(50)], config=StatsConfig(n_perm=200, n_boot=50, n_splits=10))
    assert u.degenerate[:3].all() and not u.degenerate[3:].any()
    assert (u.t[:3] == 0).all() and (u.d[:3] == 0).all() and (u.p[:3] == 1).all()
    assert (res.main.null.p_fwer[:3] == 1).all()
    assert res.summary()["n_zero_variance_units"] == 3


def test_bh_matches_direct_implementation_and_scipy():
    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(size=500), rng.uniform(0, 1e-3, 20), [0.5, 0.5, 1.0, 0.0]])
    m = p.size
    direct = np.empty(m)
    order = np.argsort(p)
    for rank in range(m):   # q_(i) = min over j >= i of p_(j) m / j
        direct[order[rank]] = min(1.0, min(p[order[j]] * m / (j + 1) for j in range(rank, m)))
    np.testing.assert_allclose(bh_q(p), direct, rtol=1e-12)
    np.testing.assert_allclose(bh_q(p), sps.false_discovery_control(p), rtol=1e-12)


# ----------------------------------------------------------------------------------------- nulls

def test_null_counts_and_tmax_equal_direct_t_under_each_sign_vector():
    a, b = planted(5, n=10, units=300, effect_units=10)
    diff = a - b
    cfg = StatsConfig(n_perm=150, seed=7, thresholds=(2.0, 3.0), chunk=64)
    u = paired_t(a, b)
    nl = sign_flip_null(diff, u.t, cfg)
    assert not nl.exact and nl.n_perm == 150
    signs, exact = _sign_vectors(10, 150, 7)
    t_perm = sps.ttest_1samp(signs[:, :, None].astype(np.float64) * diff[None], 0.0, axis=1).statistic  # [P, U]
    np.testing.assert_array_equal(nl.counts[:, 0], (np.abs(t_perm) > 2.0).sum(1))
    np.testing.assert_array_equal(nl.counts[:, 1], (np.abs(t_perm) > 3.0).sum(1))
    np.testing.assert_allclose(nl.tmax, np.abs(t_perm).max(1), rtol=1e-5)
    reach = (np.abs(t_perm).max(1)[:, None] >= np.abs(u.t)[None] * (1 - 1e-6)).sum(0)
    np.testing.assert_allclose(nl.p_fwer, (1 + reach) / 151)
    assert np.array_equal(nl.significant, nl.p_fwer <= 0.05)
    # fwer_t separates significant from not
    at = np.abs(u.t)
    assert (at[nl.significant] > nl.fwer_t).all() and (at[~nl.significant] <= nl.fwer_t * (1 + 1e-6)).all()


def test_exact_enumeration_when_2_to_n_is_small():
    a, b = planted(6, n=8, units=40, effect_units=5, d=2.0)
    diff = a - b
    u = paired_t(a, b)
    nl = sign_flip_null(diff, u.t, StatsConfig(n_perm=1000))
    assert nl.exact and nl.n_perm == 2 ** 7
    # brute force over all 2^8 sign vectors (both global signs)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    signs = 1.0 - 2.0 * bits
    t_all = np.abs(sps.ttest_1samp(signs[:, :, None] * diff[None], 0.0, axis=1).statistic)
    tmax_all = t_all.max(1)
    p_ref = (tmax_all[:, None] >= np.abs(u.t)[None] * (1 - 1e-6)).mean(0)
    np.testing.assert_allclose(nl.p_fwer, p_ref)
    np.testing.assert_array_equal(np.sort(np.repeat(nl.counts[:, 0], 2)), np.sort((t_all > 3).sum(1)))
    assert nl.p_fwer.min() >= 1 / 128
    # 2^n above n_perm: random sign vectors, as many as asked
    nl2 = sign_flip_null(diff, u.t, StatsConfig(n_perm=100))
    assert not nl2.exact and nl2.n_perm == 100


def test_exact_null_p99_leaves_the_identity_out():
    """Issue 17.6: with exact enumeration (6 pairs: 32 sign vectors) the p99 is close to the largest null count, and
    the identity's count is the observed one, so keeping it capped the ratio near 1 (1.45 here for 200 of 200 units
    far beyond any other sign vector). The null p99, mean and max leave it out; the permutation p keeps it."""
    rng = np.random.default_rng(3)
    diff = rng.normal(5.0, 1.0, size=(6, 200))
    u = paired_t(diff, np.zeros_like(diff))
    nl = sign_flip_null(diff, u.t, StatsConfig(n_perm=1000))
    assert nl.exact and nl.n_perm == 32 and nl.observed[0] == 200
    bits = (np.arange(1, 32)[:, None] >> np.arange(5)) & 1        # every vector but the identity (first sign +)
    signs = np.ones((31, 6))
    signs[:, 1:] = 1.0 - 2.0 * bits
    t_others = np.abs(sps.ttest_1samp(signs[:, :, None] * diff[None], 0.0, axis=1).statistic)
    others = (t_others > 3).sum(1)
    assert others.max() < 200
    assert nl.p99[0] == pytest.approx(np.percentile(others, 99))
    assert nl.ratio[0] == pytest.approx(200 / max(np.percentile(others, 99), 1)) and nl.ratio[0] > 10
    assert nl.p_count[0] == pytest.approx(1 / 32)                  # the identity counts in the p-value
    res = analyse_text(diff, np.zeros_like(diff), [f"u{i}" for i in range(200)],
                       config=StatsConfig(n_perm=1000, n_boot=0, n_splits=0))
    summ = res.summary()
    assert summ["null_excludes_identity"] and summ["null_max_abs_t_gt_3"] == others.max()
    assert "leave out the identity" in summ["null_counts_note"]


def test_null_calibration_observed_count_inside_band():
    cfg = StatsConfig(n_perm=1000, n_boot=0, n_splits=0)
    inside = 0
    means = []
    for seed in range(20):
        a, b = noise(100 + seed)
        diff = a - b
        nl = sign_flip_null(diff, paired_t(a, b).t, cfg)
        inside += int(nl.observed[0] <= nl.p99[0])
        means.append(nl.counts[:, 0].mean())
    assert inside >= 17, inside
    # the null itself is centred where the t distribution puts it: U * P(|t_24| > 3)
    expected = 2000 * 2 * sps.t.sf(3.0, 24)
    assert abs(np.mean(means) / expected - 1) < 0.2, (np.mean(means), expected)


def test_planted_effects_example_is_above_null():
    a, b = planted(8)
    res = analyse_text(a, b, [f"u{i}" for i in range(2000)], config=StatsConfig(n_perm=1000, n_boot=0, n_splits=10))
    s = res.summary()
    assert s["n_abs_t_gt_5"] > s["null_p99_abs_t_gt_5"]
    assert s["ratio_vs_null_p99_abs_t_gt_5"] >= s["n_abs_t_gt_5"] / max(s["null_p99_abs_t_gt_5"], 1) - 1e-12
    assert s["null_p_abs_t_gt_5"] <= 2 / 1001


def test_ratio_uses_max_p99_1_when_null_p99_is_zero():
    a, b = planted(9, units=500, effect_units=3, d=4.0)
    nl = sign_flip_null(a - b, paired_t(a, b).t, StatsConfig(n_perm=300, thresholds=(8.0,)))
    assert nl.p99[0] == 0 and nl.observed[0] > 0
    assert nl.ratio[0] == nl.observed[0]


def test_planted_effects_recovered_with_few_false_positives():
    recall, false_pos, recall_q = [], [], []
    for seed in range(3):
        a, b = planted(20 + seed)
        res = analyse_text(a, b, [f"u{i}" for i in range(2000)], config=StatsConfig(n_perm=1000, n_boot=0, n_splits=5,
                                                                                seed=seed))
        sig = res.main.null.significant
        recall.append(sig[:40].mean())
        false_pos.append(int(sig[40:].sum()))
        recall_q.append((res.main.unit.q[:40] <= 0.05).mean())
    assert np.mean(recall) >= 0.95, recall
    assert np.mean(recall_q) >= 0.95, recall_q
    assert sum(false_pos) <= 2, false_pos


def test_tmax_controls_family_wise_error_under_the_null():
    any_sig = 0
    n_seeds = 60
    for seed in range(n_seeds):
        a, b = noise(500 + seed, n=12, units=300)
        nl = sign_flip_null(a - b, paired_t(a, b).t, StatsConfig(n_perm=200, seed=seed))
        any_sig += int(nl.significant.any())
    # expected 0.05 * 60 = 3; P(Binomial(60, 0.05) >= 9) < 0.003
    assert any_sig <= 8, any_sig


def test_null_is_seeded():
    a, b = noise(11, n=20, units=200)
    t = paired_t(a, b).t
    n1 = sign_flip_null(a - b, t, StatsConfig(n_perm=300, seed=1))
    n1b = sign_flip_null(a - b, t, StatsConfig(n_perm=300, seed=1, chunk=7))
    n2 = sign_flip_null(a - b, t, StatsConfig(n_perm=300, seed=2))
    np.testing.assert_array_equal(n1.counts, n1b.counts)
    np.testing.assert_allclose(n1.tmax, n1b.tmax, rtol=1e-5)   # float32 matmul: chunking moves the last bit
    assert not np.array_equal(n1.tmax, n2.tmax)


# ------------------------------------------------------------------------------------ split half

def test_split_half_near_zero_for_noise_and_near_one_for_strong_effects():
    a, b = noise(12, units=3000)
    sh = split_half(a - b, n_splits=100, seed=0)
    assert sh.r.shape == (100,) and sh.half_sizes == (12, 13)
    assert abs(sh.median) < 0.05, sh.median
    assert sh.q25 <= sh.median <= sh.q75 and sh.iqr >= 0
    rng = np.random.default_rng(13)
    a, b = noise(13, units=3000)
    a[:, :900] += rng.choice([-3.0, 3.0], 900) * np.sqrt(2.0)   # strong planted effects (d_z 3) in 30 % of units
    sh = split_half(a - b, n_splits=100, seed=0)
    assert sh.median > 0.9, sh.median
    # the example halves are real per-unit t of a split of the pairs
    assert sh.t_half1.shape == (3000,) and np.corrcoef(sh.t_half1, sh.t_half2)[0, 1] == pytest.approx(sh.r[0])


def test_split_half_needs_four_pairs():
    a, b = noise(14, n=3, units=20)
    sh = split_half(a - b, n_splits=5)
    assert np.isnan(sh.r).all() and np.isnan(sh.median)


def test_resampled_and_subset_t_equal_scipy():
    """The float32 bootstrap (multiplicities) and split-half (0/1 subsets) t against scipy on the same rows."""
    rng = np.random.default_rng(15)
    diff = rng.normal(0.3, 1.0, size=(10, 30)) * rng.uniform(0.5, 20, 30) + rng.uniform(-50, 50, 30)
    idx = np.array([0, 0, 3, 3, 3, 5, 7, 8, 9, 9])
    w = np.bincount(idx, minlength=10).astype(np.float32)[None]
    (_, _, q), = _Resampler(diff, w).tiles(0, 30)
    ref = sps.ttest_1samp(diff[idx], 0.0).statistic
    np.testing.assert_allclose(np.sqrt(q[0] * 9), np.abs(ref), rtol=2e-5)
    sub = np.zeros((1, 10), np.float32)
    sub[0, [1, 2, 4, 6, 8]] = 1
    center = diff.mean(0)
    t = _subset_t32(sub, (diff - center).astype(np.float32), ((diff - center) ** 2).astype(np.float32),
                    center.astype(np.float32), 5)
    np.testing.assert_allclose(t[0], sps.ttest_1samp(diff[[1, 2, 4, 6, 8]], 0.0).statistic, rtol=2e-5)


def six_pair_captures(seed=0, units=96, n=6):
    """float32 unit values like a tiny run's (positive RMS values around 1) for n pairs."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.2, 3.0, units).astype(np.float32)
    a = (level * rng.normal(1.0, 0.05, size=(n, units))).astype(np.float32)
    b = (level * rng.normal(0.98, 0.05, size=(n, units))).astype(np.float32)
    return a, b


def test_a_resample_of_one_repeated_pair_has_zero_variance_not_a_huge_t():
    """Issue 17.3: a bootstrap resample made of one pair drawn 6 times has zero variance in every unit, so every
    t is 0 (t = 0 is the zero-variance convention of paired_t). float32 rounding passed for variance and gave a
    mean |t| in the thousands (2,214 on a tiny run's captures), which made compare's bootstrap_sd_S 35 and moved
    block CIs at small n. Other resamples still equal scipy."""
    from probe.stats.blocks import resampled_abs_t_mean

    a, b = six_pair_captures()
    diff = a.astype(np.float64) - b.astype(np.float64)
    w = np.zeros((8, 6), np.float32)
    for i in range(6):
        w[i, i] = 6.0                                      # one pair, six times
    w[6] = [2, 1, 1, 1, 1, 0]
    w[7] = 1
    mean_abs_t = resampled_abs_t_mean(diff, w)
    np.testing.assert_array_equal(mean_abs_t[:6], 0.0)
    for r in (6, 7):
        idx = np.repeat(np.arange(6), w[r].astype(int))
        ref = np.abs(sps.ttest_1samp(diff[idx], 0.0).statistic).mean()
        assert mean_abs_t[r] == pytest.approx(ref, rel=1e-4)
    # the block bootstrap sees the same: a block's max |t| over a one-pair resample is 0
    rs = _Resampler(diff, w[:1])
    (_, _, q), = rs.tiles(0, diff.shape[1])
    assert (q == 0).all() and rs.n_exact > 0


def test_split_half_of_equal_pairs_has_zero_variance():
    """A half whose pairs are all equal has t = 0, not a t made of float32 rounding (it was up to 2.6e6 with 13
    pairs, 6 of them equal); the other units' t still equal scipy."""
    a, b = six_pair_captures(1, units=200, n=13)
    diff = a.astype(np.float64) - b.astype(np.float64)
    diff[:6, :100] = diff[0, :100]                        # pairs 0-5 equal in units 0-99
    sub = np.zeros((1, 13), np.float32)
    sub[0, :6] = 1
    center = diff.mean(0)
    moments = ((diff - center).astype(np.float32), ((diff - center) ** 2).astype(np.float32), center.astype(np.float32))
    t = _subset_t32(sub, *moments, 6)
    np.testing.assert_array_equal(t[0, :100], 0.0)
    np.testing.assert_allclose(t[0, 100:], sps.ttest_1samp(diff[:6, 100:], 0.0).statistic, rtol=1e-4)
    np.testing.assert_array_equal(_subset_t32(sub, *moments, 6, diff), t)


# ---------------------------------------------------------------------------------------- blocks

def test_block_stats_point_values_and_bootstrap():
    a, b = planted(16, units=300, effect_units=0)
    a[:, 100:130] += 2.0 * np.sqrt(2.0)               # block "y" holds 30 strong units
    blocks = np.array(["x"] * 100 + ["y"] * 100 + ["z"] * 100)
    blocks[[0, 5]] = "z"                              # blocks need not be contiguous
    u = paired_t(a, b)
    cfg = StatsConfig(n_boot=300, seed=3)
    bs = block_stats(a - b, blocks, cfg)
    assert bs.names == ("z", "x", "y")                # order of first appearance
    for i, name in enumerate(bs.names):
        m = blocks == name
        assert bs.n_units[i] == m.sum()
        assert bs.max_abs_t[i] == pytest.approx(np.abs(u.t[m]).max())
        assert bs.n_abs_t_gt[i, 0] == (np.abs(u.t[m]) > 3).sum()
        assert bs.median_abs_d[i] == pytest.approx(np.median(np.abs(u.d[m])))
    assert (bs.max_abs_t_ci[:, 0] <= bs.max_abs_t_ci[:, 1]).all()
    y = bs.names.index("y")
    assert bs.n_abs_t_gt_ci[y, 0, 0] >= 20            # the planted block's count stays high in resamples
    assert bs.n_abs_t_gt_ci[bs.names.index("x"), 0, 1] < 15
    again = block_stats(a - b, blocks, cfg)
    np.testing.assert_array_equal(again.median_abs_d_ci, bs.median_abs_d_ci)
    rows = bs.rows()
    assert rows[y]["block"] == "y" and len(rows[y]["n_abs_t_gt_3_ci"]) == 2
    json.dumps(rows, allow_nan=False)
    no_boot = block_stats(a - b, blocks, StatsConfig(n_boot=0))
    assert np.isnan(no_boot.max_abs_t_ci).all()


def test_blocks_from_units():
    got = blocks_from_units(["s12/double.3.img/h07", "s12/single.0/h01", "s00/double.3.img/h00"])
    assert list(got) == ["s12/double.3.img", "s12/single.0", "s00/double.3.img"]
    assert list(blocks_from_units(["a", "b"])) == ["all", "all"]


# --------------------------------------------------------------------------------------- analyse

REQUIRED_SUMMARY = ("n_pairs", "n_units", "n_abs_t_gt_3", "n_abs_t_gt_5", "null_p99_abs_t_gt_3",
                    "null_p99_abs_t_gt_5", "split_half_r_median", "max_abs_t")


def test_analyse_with_control_summary_and_table():
    n, units = 25, 400
    a, b = planted(17, n=n, units=units, effect_units=20, d=2.5)
    rng = np.random.default_rng(18)
    ca = rng.normal(size=(n, units))
    cb = rng.normal(size=(n, units))
    ca[:, 10:20] += 2.5 * np.sqrt(2.0)                # units 10..19 also move under the lexical control
    names = np.array([f"s00/double.{i // 100}.img/h{i % 100:02d}" for i in range(units)])
    res = analyse_text(a, b, names, control=(ca, cb), config=StatsConfig(n_perm=500, n_boot=100, n_splits=20))
    assert isinstance(res, Analysis)
    s = res.summary()
    for k in REQUIRED_SUMMARY:
        assert k in s, k
    json.dumps(s, allow_nan=False)
    assert s["n_pairs"] == n and s["n_units"] == units
    assert s["max_abs_t"] == pytest.approx(np.abs(res.t).max())
    assert len(s["blocks"]) == 4 and s["blocks"][0]["block"] == "s00/double.0.img"
    c = s["control"]
    for k in REQUIRED_SUMMARY:
        assert k in c, k
    sel = res.selective_beyond_control
    assert sel[:10].all() and not sel[10:].any()
    assert s["n_selective_beyond_control"] == c["n_selective_beyond_control"] == 10
    assert c["n_fwer_significant_in_both"] == 10
    assert (sel <= res.main.null.significant).all() and not (sel & res.control.null.significant).any()
    table = res.units_table()
    for col in ("unit", "t", "d", "p", "q", "p_fwer", "mean_a", "mean_b", "block", "control_t"):
        assert col in table and len(table[col]) == units, col
    np.testing.assert_allclose(table["mean_a"], a.mean(0))
    np.testing.assert_allclose(table["control_t"], sps.ttest_rel(ca, cb).statistic, rtol=1e-10)
    # the control contrast's between-condition effect size, as the main contrast's d_av
    want = (ca - cb).mean(0) / (0.5 * (ca.std(0, ddof=1) + cb.std(0, ddof=1)))
    np.testing.assert_allclose(table["control_d_av"], want, rtol=1e-8)
    assert not np.allclose(table["control_d_av"], table["control_d"])
    assert table["unit"][3] == names[3]


def test_selective_beyond_control_states_its_level_and_has_a_joint_column():
    """Issue 17.6: selective_beyond_control combines K FWER-controlled families (main + one direct test per control
    set), so its family-wise error over units is only bounded by K alpha; summary.json says so, and the joint
    column asks p_fwer <= alpha / K in every family (family-wise error <= alpha)."""
    n, units = 25, 300
    rng = np.random.default_rng(40)
    a = rng.normal(size=(n, units))
    b = rng.normal(size=(n, units))
    a[:, :80] += np.linspace(0.7, 1.3, 80)[None] * np.sqrt(2.0)       # main effects around the FWER threshold
    controls = {"paraphrase": (a, a - rng.normal(size=(n, units)) * 0.1),
                "vocabulary": (a, a - rng.normal(size=(n, units)) * 0.1)}
    res = analyse_text(a, b, [f"u{i}" for i in range(units)], controls=controls,
                       config=StatsConfig(n_perm=2000, n_boot=0, n_splits=0))
    s = res.summary()
    err = s["selective_beyond_control_error"]
    assert err["families"] == ["main", "vs_paraphrase", "vs_vocabulary"] and err["n_families"] == 3
    assert err["family_wise_bound"] == pytest.approx(0.15) and err["joint_family_wise_bound"] == 0.05
    assert err["joint_alpha_per_family"] == pytest.approx(0.05 / 3) and err["joint_attainable"]
    assert "3 x 0.05" in err["family_wise_note"] and "level alpha" in s["selective_definition"]
    table = res.units_table()
    joint, plain = table["selective_beyond_control_joint"].astype(bool), table["selective_beyond_control"].astype(bool)
    assert (joint <= plain).all()
    expect = plain.copy()
    for col in ("p_fwer", "p_fwer_vs_paraphrase", "p_fwer_vs_vocabulary"):
        expect &= table[col] <= 0.05 / 3
    np.testing.assert_array_equal(joint, expect)
    assert s["n_selective_beyond_control_joint"] == joint.sum()
    between = (table["p_fwer"] > 0.05 / 3) & (table["p_fwer"] <= 0.05) & plain
    assert between.any() and not joint[between].any()     # in the plain set, not in the joint one
    # 6 pairs: the exact null's smallest p_fwer (1/32) is above 0.05 / 3, and the record says the joint set is empty
    small = analyse_text(a[:6], b[:6], [f"u{i}" for i in range(units)],
                         controls={k: (x[:6], y[:6]) for k, (x, y) in controls.items()},
                         config=StatsConfig(n_perm=2000, n_boot=0, n_splits=0))
    assert not small.selective_error()["joint_attainable"] and not small.selective_beyond_control_joint.any()


def test_d_z_is_named_and_d_av_sits_beside_it():
    """Issue 17.4: the card's |d| > 0.8 count is d_z = t / sqrt(n) (at 25 pairs exactly |t| > 4), which a strong
    within-pair correlation inflates far above a between-condition d. units.csv keeps `d` (= d_z) and adds
    `d_av` = mean difference / the average of the two conditions' sds; summary.json counts both, named."""
    rng = np.random.default_rng(41)
    n, units = 25, 200
    shared = rng.normal(0, 3.0, size=(n, units))                   # the pair's own level: strong correlation
    a = shared + rng.normal(0, 0.3, size=(n, units)) + 0.4
    b = shared + rng.normal(0, 0.3, size=(n, units))
    res = analyse_text(a, b, [f"u{i}" for i in range(units)], config=StatsConfig(n_perm=200, n_boot=0, n_splits=0))
    table = res.units_table()
    d_av = (a - b).mean(0) / (0.5 * (a.std(0, ddof=1) + b.std(0, ddof=1)))
    np.testing.assert_allclose(table["d_av"], d_av, rtol=1e-12)
    np.testing.assert_allclose(table["d"], res.t / np.sqrt(n), rtol=1e-12)
    s = res.summary()
    assert s["n_abs_d_gt_0_8"] == s["n_abs_d_z_gt_0_8"] == np.count_nonzero(np.abs(res.t) > 4.0)
    assert s["n_abs_d_z_gt_0_8"] > 120                             # d_z ~ 0.94: "large" for most units
    assert s["n_abs_d_av_gt_0_8"] == np.count_nonzero(np.abs(d_av) > 0.8) == 0    # d_av ~ 0.13: small
    assert s["median_abs_d_av"] == pytest.approx(np.median(np.abs(d_av)))
    assert "exactly |t| > 4" in s["effect_size_note"] and "inflates d_z" in s["effect_size_note"]
    # the image probe: d_av_C beside t_C, d_C, p_fwer_C for every contrast
    from probe.stats.analysis import analyse_images

    img = analyse_images({"render_vs_albedo": (a, b, None), "lighting": (b, a, None)}, [f"u{i}" for i in range(units)],
                         config=StatsConfig(n_perm=200, n_boot=0, n_splits=0))
    t2 = img.units_table()
    np.testing.assert_allclose(t2["d_av_lighting"], -d_av, rtol=1e-12)
    assert "d_av_render_vs_albedo" in t2 and "n_abs_d_av_gt_0_8" in img.summary()["contrasts"]["lighting"]


def test_analyse_without_control_and_csv(tmp_path):
    a, b = noise(19, units=50)
    res = analyse_text(a, b, [f"u{i}" for i in range(50)], control=(None, None),
                  config=StatsConfig(n_perm=100, n_boot=20, n_splits=10))
    assert res.control is None and res.summary()["control"] is None
    assert "control_t" not in res.units_table()
    res.write_units_csv(tmp_path / "units.csv")
    lines = (tmp_path / "units.csv").read_text().splitlines()
    assert lines[0].startswith("unit,block,t,d,p,q,p_fwer") and len(lines) == 51


def test_analyse_rejects_bad_inputs():
    a, b = noise(20, units=10)
    with pytest.raises(CapturesError, match="same shape"):
        analyse_text(a, b[:, :9], [f"u{i}" for i in range(10)])
    with pytest.raises(CapturesError, match="units"):
        analyse_text(a, b, ["u0"])
    bad = a.copy()
    bad[3, 4] = np.nan
    with pytest.raises(CapturesError, match="pair 3, unit 4"):
        analyse_text(bad, b, [f"u{i}" for i in range(10)])
    with pytest.raises(CapturesError, match="control"):
        analyse_text(a, b, [f"u{i}" for i in range(10)], control=(a[:, :5], b[:, :5]))
    with pytest.raises(ValueError):
        StatsConfig(thresholds=())


# -------------------------------------------------------------------------------------- captures

def make_captures(control=True):
    a, b = noise(21, n=6, units=12)
    units = np.array([f"s00/single.{i // 4}/h{i % 4:02d}" for i in range(12)])
    kw = {}
    if control:
        kw = dict(control_a=a[:4] + 1, control_b=b[:4], control_pair_ids=np.array([f"p{i}" for i in range(4)]))
    return Captures(a=a, b=b, units=units, pair_ids=np.array([f"p{i}" for i in range(6)]),
                    unit_blocks=blocks_from_units(units), meta={"protocol": "heads", "steps": [0, 12]}, **kw)


def test_captures_round_trip(tmp_path):
    caps = make_captures()
    path = save_captures(tmp_path / "captures.npz", caps)
    back = load_captures(path)
    assert back.a.dtype == np.float32 and back.a.shape == (6, 12)
    for k in ("a", "b", "control_a", "control_b"):
        np.testing.assert_array_equal(getattr(back, k), getattr(caps, k).astype(np.float32))
    for k in ("units", "pair_ids", "control_pair_ids", "unit_blocks"):
        assert list(getattr(back, k)) == list(getattr(caps, k))
    assert back.meta == {"protocol": "heads", "steps": [0, 12]}
    with np.load(path, allow_pickle=False) as z:    # plain arrays any numpy reader can open
        assert {"a", "b", "units", "pair_ids"} <= set(z.files) and z["units"].dtype.kind == "U"
    res = analyse_captures(back, StatsConfig(n_perm=64, n_boot=10, n_splits=5))
    assert res.control is not None and res.control.n_pairs == 4
    bare = make_captures(control=False)
    back = load_captures(save_captures(tmp_path / "bare", bare))
    assert back.control_a is None and not back.has_control and not list(tmp_path.glob("bare.npz"))


def test_captures_validation_errors(tmp_path):
    caps = make_captures()
    with pytest.raises(CapturesError, match="same shape"):
        Captures(a=caps.a, b=caps.b[:, :5], units=caps.units, pair_ids=caps.pair_ids)
    with pytest.raises(CapturesError, match="units: need 12"):
        Captures(a=caps.a, b=caps.b, units=caps.units[:3], pair_ids=caps.pair_ids)
    with pytest.raises(CapturesError, match="duplicate"):
        Captures(a=caps.a, b=caps.b, units=caps.units, pair_ids=np.array(["p0"] * 6))
    with pytest.raises(CapturesError, match="both"):
        Captures(a=caps.a, b=caps.b, units=caps.units, pair_ids=caps.pair_ids, control_a=caps.a)
    with pytest.raises(CapturesError, match="control_a"):
        Captures(a=caps.a, b=caps.b, units=caps.units, pair_ids=caps.pair_ids, control_a=caps.a[:, :3],
                 control_b=caps.b[:, :3])
    with pytest.raises(CapturesError, match="control_pair_ids"):
        Captures(a=caps.a, b=caps.b, units=caps.units, pair_ids=caps.pair_ids, control_a=caps.control_a,
                 control_b=caps.control_b, control_pair_ids=np.array(["x"]))
    with pytest.raises(CapturesError, match="non-finite"):
        Captures(a=np.where(caps.a > 0, np.inf, caps.a), b=caps.b, units=caps.units, pair_ids=caps.pair_ids)
    p = tmp_path / "missing.npz"
    np.savez(p, a=caps.a, units=caps.units, pair_ids=caps.pair_ids)
    with pytest.raises(CapturesError, match="missing array.*b"):
        load_captures(p)
    p = tmp_path / "shapes.npz"
    np.savez(p, a=caps.a, b=caps.b, units=caps.units, pair_ids=caps.pair_ids[:2])
    with pytest.raises(CapturesError, match="shapes.npz: pair_ids: need 6"):
        load_captures(p)
    p = tmp_path / "junk.npz"
    p.write_text("not a zip")
    with pytest.raises(CapturesError, match="not a readable"):
        load_captures(p)
    with pytest.raises(FileNotFoundError):
        load_captures(tmp_path / "nope.npz")


def test_stats_module_does_not_import_torch():
    code = "import sys, probe.stats; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_exact_null_counts_the_identity_even_for_huge_t():
    """Under exact enumeration a unit's own sign vector (the identity) must reach its |t|. float32 understated
    the identity's max |t| when |y| is near sqrt(n) (few pairs, huge t) and gave p_fwer = 0, below the
    smallest attainable 1 / #vectors (seen on an image probe with 2 scenes)."""
    from probe.stats.null import sign_flip_null

    diff = np.array([[1.0, 0.3, -0.2], [1.0001, -0.5, 0.4]])
    t = paired_t(diff, np.zeros_like(diff)).t
    assert abs(t[0]) > 1e4
    nl = sign_flip_null(diff, t, StatsConfig(n_perm=100))
    assert nl.exact and nl.n_perm == 2
    assert (nl.p_fwer >= 0.5).all()
    np.testing.assert_array_equal(nl.counts[0], nl.observed)
