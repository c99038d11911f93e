"""probe.stats.classify: the magnitude test of the classes (size, power, bound), the signed TOST on d_z kept beside
it, and the image probe's unit classes on planted units, the demonstrating case of issue 17.1 included."""
from __future__ import annotations

import numpy as np
import pytest

from fakes import fake_image_captures
from probe.stats.analysis import analyse_captures, analyse_images
from probe.stats.classify import (CLASSES, class_of, cluster_rms, magnitude_equivalence, magnitude_power, tost_bound,
                                  tost_dz, tost_power)
from probe.stats.config import StatsConfig
from probe.stats.paired import paired_t

FAST = StatsConfig(n_perm=2000, n_boot=0, n_splits=0)


def _t_of(diff):
    return paired_t(diff, np.zeros_like(diff)).t


def test_tost_size_at_the_margin_and_power_at_zero_match_simulation():
    """At |delta| = margin the test shows equivalence at most alpha of the time (its size); at delta = 0 as
    often as `tost_power` says."""
    rng = np.random.default_rng(0)
    n, m, alpha, units = 25, 0.5, 0.05, 20_000
    for delta in (m, -m):
        diff = rng.normal(delta, 1.0, size=(n, units))
        rate = np.mean(tost_dz(_t_of(diff), n, m) <= alpha)
        assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / units), (delta, rate)
        assert rate > 0.03          # exact, not conservative: close to alpha at the boundary
    diff = rng.normal(0.0, 1.0, size=(n, units))
    p = tost_dz(_t_of(diff), n, m)
    assert abs(np.mean(p <= alpha) - tost_power(n, m, alpha)) < 0.015
    # equivalence is shown exactly when |t| < the bound
    t = _t_of(diff)
    c = tost_bound(n, m, alpha)
    np.testing.assert_array_equal(p <= alpha, np.abs(t) < c)


def test_tost_power_and_impossible_cases():
    assert tost_power(2, 0.5, 0.05) == 0.0 and tost_bound(2, 0.5, 0.05) < 0
    assert tost_power(10, 0.5, 0.05) == 0.0 and tost_power(11, 0.5, 0.05) > 0
    assert 0.55 < tost_power(25, 0.5, 0.05) < 0.65 and tost_power(50, 0.5, 0.05) > 0.9
    assert tost_power(25, 0.8, 0.05) > 0.95
    assert tost_power(25, 0.5, 0.05, delta=0.5) <= 0.05 + 1e-9
    # degenerate units: a constant non-zero shift is never equivalent; all-zero differences are
    p = tost_dz(np.array([0.0, 0.0]), 30, 0.5, degenerate=np.array([True, True]), mean_diff=np.array([0.2, 0.0]))
    assert p[0] == 1.0 and p[1] < 0.05


def test_class_rule_truth_table():
    T, F = True, False
    rows = [  # sig_l, sig_a, eq_l, eq_a -> class
        ((T, F, F, T), "lighting-selective"), ((F, T, T, F), "albedo-selective"), ((T, T, F, F), "both"),
        ((T, T, T, T), "both"), ((F, F, T, T), "neither"), ((F, F, F, F), "neither"),
        ((T, F, F, F), "inconclusive"), ((F, T, F, F), "inconclusive"), ((T, F, T, F), "inconclusive"),
    ]
    cols = [np.array([r[0][k] for r in rows]) for k in range(4)]
    assert class_of(*cols).tolist() == [r[1] for r in rows]


def test_the_demonstrating_case_is_not_lighting_selective():
    """Issue 17.1: a unit that colour changes move by +-3 (the sign depending on the scene) and lighting by +1 had an
    albedo d_z near 0, passed the signed TOST and was `lighting-selective` ("shown not to react when only the
    surface colours change"). Colour moves it three times as much as light: `class` (the magnitude test) does not
    call it selective; `class_signed` keeps the old label, under a name that says what it is."""
    n = 25
    rng = np.random.default_rng(1)
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)                   # scene-dependent direction
    light = np.stack([1.0 + rng.normal(0, 0.08, n), 1.5 + rng.normal(0, 0.3, n)], axis=1)
    colour = np.stack([3.0 * signs + rng.normal(0, 0.3, n), rng.normal(0, 0.05, n)], axis=1)
    res = analyse_captures(fake_image_captures(light, colour, n), FAST)
    t = res.units_table()
    assert t["t_lighting"][0] > 12 and abs(t["t_albedo"][0]) < 0.8
    assert t["p_equiv_albedo"][0] <= 0.05 and t["p_equiv_signed_albedo"][0] == t["p_equiv_albedo"][0]
    assert t["class_signed"][0] == "lighting-selective"                  # what `class` said before
    assert t["rms_change_albedo"][0] == pytest.approx(3.0, abs=0.15)
    assert t["ratio_albedo_to_lighting"][0] == pytest.approx(3.0, abs=0.2)
    assert t["ratio_albedo_to_lighting_ub"][0] > 2.5 and t["p_equiv_magnitude_albedo"][0] > 0.5
    assert t["class"][0] == "inconclusive"
    # a unit colour leaves alone (change 0.05 against 1.5) is lighting-selective under both rules
    assert t["class"][1] == t["class_signed"][1] == "lighting-selective"
    assert t["ratio_albedo_to_lighting_ub"][1] < 0.1
    s = res.summary()["classes"]
    assert s["rule"] == "magnitude" and s["counts"]["lighting-selective"] == 1
    assert s["signed"]["counts"]["lighting-selective"] == 2 and "class_signed" in s["change_of_rule"]
    mag = s["magnitude"]["per_contrast"]["albedo"]
    assert mag["n_scenes"] == n and mag["decides"] == "lighting-selective" and mag["n_units_shown"] == 1
    assert mag["power_at_ratio_0"]["cv_1"] == pytest.approx(magnitude_power(n, 0.5, 0.05, 0.0, 1.0))
    assert s["magnitude"]["margin_ratio"] == 0.5 and "noise" in s["magnitude"]["yardstick"]


def test_magnitude_test_size_power_and_bound():
    """At ratio = margin the test shows equivalence at most alpha of the time; with normal sizes its power is what
    `magnitude_power` says; it shows equivalence exactly when the Fieller upper bound is below the margin; the
    bound covers the true ratio 95 % of the time."""
    rng = np.random.default_rng(0)
    n, m, alpha, units = 25, 0.5, 0.05, 20_000
    y = rng.normal(1.0, 0.5, size=(n, units))
    x = rng.normal(m, 0.5 * m, size=(n, units))                         # true ratio = m
    mt = magnitude_equivalence(x, y, m, alpha)
    rate = np.mean(mt.shown)
    assert 0.03 < rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / units), rate
    np.testing.assert_array_equal(mt.shown, mt.upper < m)
    assert np.mean(mt.upper >= m) == pytest.approx(1 - rate)           # the bound covers the true ratio
    for ratio, cv in ((m / 2, 1.0), (m / 2, 0.5), (0.0, 1.0)):
        y = rng.normal(1.0, cv, size=(n, units))
        x = rng.normal(ratio, cv * ratio, size=(n, units)) if ratio else np.zeros((n, units))
        got = np.mean(magnitude_equivalence(x, y, m, alpha).shown)
        assert got == pytest.approx(magnitude_power(n, m, alpha, ratio, cv), abs=0.02), (ratio, cv)
    assert magnitude_power(n, m, alpha, m, 1.0) == pytest.approx(alpha)
    assert magnitude_power(10, m, alpha, 0.0, 1.0) > 0.85 and tost_power(10, 0.5, alpha) == 0.0


def test_magnitude_test_edges_and_cluster_rms():
    diff = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 3.0], [0.0, 4.0]])
    ids, rms = cluster_rms(diff, ["b", "b", "a", "a"])
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(rms, [[np.sqrt(2.0), np.sqrt(12.5)], [1.0, 0.0]])
    # no change at all against a constant yardstick: shown, bound 0; no yardstick at all: never shown
    x = np.zeros((5, 3))
    y = np.array([[1.0, 0.0, 1.0]] * 5)
    y[:, 2] = [0.5, 1.5, 1.0, 0.8, 1.2]
    mt = magnitude_equivalence(x, y, 0.5, 0.05)
    assert mt.shown.tolist() == [True, False, True] and mt.upper[0] == 0.0 and np.isinf(mt.upper[1])
    assert np.isnan(mt.ratio[1])
    # a known yardstick per unit ([U]) works as a constant column
    mt2 = magnitude_equivalence(x[:, :1] + 0.1, np.array([1.0]), 0.5, 0.05)
    assert mt2.shown[0] and mt2.ratio[0] == pytest.approx(0.1)
    one = magnitude_equivalence(np.ones((1, 2)), np.ones((1, 2)), 0.5, 0.05)
    assert not one.shown.any() and np.isinf(one.upper).all()
    with pytest.raises(ValueError, match="margin"):
        magnitude_equivalence(x, y, 0.0)


def test_planted_units_get_their_class():
    """40 scenes: a unit moved only by the light is lighting-selective, only by the colours albedo-selective, by
    both `both`, by neither `neither`; a unit with a lighting effect and a colour change of 0.8 x its size, too weak
    or too scene-dependent for the FWER test, is never called lighting-selective; without the sample-level pairs
    no unit is shown selective."""
    rng = np.random.default_rng(2)
    n, reps = 40, 30
    effects = {"light": (1.5, 0.0), "albedo": (0.0, 1.5), "both": (1.5, 1.5), "none": (0.0, 0.0),
               "light+some_albedo": (1.5, 1.2)}
    names = [f"s00/{k.replace('+', '_')}.0/h{i:02d}" for k in effects for i in range(reps)]
    mean_l = np.concatenate([np.full(reps, e[0]) for e in effects.values()])
    mean_a = np.concatenate([np.full(reps, e[1]) for e in effects.values()])
    light = mean_l * rng.lognormal(0, 0.3, size=(n, mean_l.size)) + rng.normal(0, 0.05, size=(n, mean_l.size))
    colour = mean_a * rng.lognormal(0, 0.3, size=(n, mean_a.size)) + rng.normal(0, 0.05, size=(n, mean_a.size))
    colour[:, 4 * reps:] *= np.where(rng.uniform(size=(n, reps)) < 0.5, 1.0, -1.0)   # some_albedo: either way
    caps = fake_image_captures(light, colour, n, units=names)
    res = analyse_captures(caps, FAST)
    cls = res.classification.classes
    share = {k: {c: np.mean(cls[i * reps:(i + 1) * reps] == c) for c in CLASSES} for i, k in enumerate(effects)}
    assert share["light"]["lighting-selective"] >= 0.9
    assert share["albedo"]["albedo-selective"] >= 0.9
    assert share["both"]["both"] >= 0.95
    assert share["none"]["neither"] >= 0.95
    assert share["light+some_albedo"]["lighting-selective"] == 0.0
    table = res.units_table()
    assert set(table["class"]) <= set(CLASSES) and set(table["class_signed"]) <= set(CLASSES)
    for col in ("p_equiv_albedo", "p_equiv_signed_lighting", "rms_change_lighting", "ratio_lighting_to_albedo",
                "ratio_lighting_to_albedo_ub", "p_equiv_magnitude_lighting"):
        assert col in table, col
    s = res.summary()
    assert s["classes"]["counts"] == res.classification.counts() and s["n_lighting_selective"] >= 0.9 * reps
    eq = s["classes"]["equivalence"]["per_contrast"]["albedo"]
    assert eq["n_pairs"] == n and eq["power_at_dz_0"] == pytest.approx(tost_power(n, 0.5, 0.05))
    assert sum(b["n_units"] for b in s["classes"]["per_block"]) == len(names)
    # the same contrasts without sample-level pairs: nothing can be shown small, the record says why
    bare = analyse_images(caps.contrast_sets(), caps.units, config=FAST)
    assert not np.isin(bare.classification.classes, ["lighting-selective", "albedo-selective"]).any()
    rec = bare.summary()["classes"]["magnitude"]
    assert not rec["available"] and "sample-level pairs" in rec["why_unavailable"]


def test_margins_are_settings():
    with pytest.raises(ValueError, match="equivalence_margin"):
        StatsConfig(equivalence_margin=0.0)
    with pytest.raises(ValueError, match="magnitude_margin"):
        StatsConfig(magnitude_margin=-1.0)
    n = 12
    rng = np.random.default_rng(5)
    caps = fake_image_captures(1.0 + rng.normal(0, 0.05, (n, 1)),                    # colour moves it 0.3 x light,
                               0.3 * np.where(np.arange(n) % 2, 1.0, -1.0)[:, None], n)   # either way
    tight = analyse_captures(caps, StatsConfig(n_perm=500, n_boot=0, n_splits=0, magnitude_margin=0.2))
    loose = analyse_captures(caps, StatsConfig(n_perm=500, n_boot=0, n_splits=0, magnitude_margin=0.5))
    assert tight.units_table()["class"][0] == "inconclusive" and loose.units_table()["class"][0] == "lighting-selective"
