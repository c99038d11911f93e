"""probe.stats.classify: TOST equivalence on d_z (size, power) and the image probe's unit classes on planted units."""
from __future__ import annotations

import numpy as np
import pytest

from probe.stats.classify import CLASSES, class_of, tost_bound, tost_dz, tost_power
from probe.stats.analysis import analyse_images
from probe.stats.config import StatsConfig
from probe.stats.paired import paired_t


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


def test_planted_units_get_their_class():
    """60 scenes: a unit moved only by the light is lighting-selective, only by the colours albedo-selective,
    by both `both`, by neither `neither`; a unit with a lighting effect and a moderate albedo effect (d_z 0.6,
    beyond the margin but too weak for the FWER test) is never called lighting-selective."""
    rng = np.random.default_rng(2)
    n, reps = 60, 40
    effects = {"light": (1.5, 0.0), "albedo": (0.0, 1.5), "both": (1.5, 1.5), "none": (0.0, 0.0),
               "light+some_albedo": (1.5, 0.6)}
    names = [f"{k}/{i}" for k in effects for i in range(reps)]
    d_l = np.concatenate([np.full(reps, e[0]) for e in effects.values()])
    d_a = np.concatenate([np.full(reps, e[1]) for e in effects.values()])
    zeros = np.zeros((n, len(names)))
    sets = {"render_vs_albedo": (rng.normal(size=(n, len(names))), zeros, None),
            "lighting": (rng.normal(d_l, 1.0, size=(n, len(names))), zeros, None),
            "albedo": (rng.normal(d_a, 1.0, size=(n, len(names))), zeros, None)}
    res = analyse_images(sets, names, config=StatsConfig(n_perm=2000, n_boot=0, n_splits=0))
    cls = res.classification.classes
    share = {k: {c: np.mean(cls[i * reps:(i + 1) * reps] == c) for c in CLASSES} for i, k in enumerate(effects)}
    assert share["light"]["lighting-selective"] >= 0.8
    assert share["albedo"]["albedo-selective"] >= 0.8
    assert share["both"]["both"] >= 0.95
    assert share["none"]["neither"] >= 0.95
    assert share["light+some_albedo"]["lighting-selective"] <= 0.1
    table = res.units_table()
    assert set(table["class"]) <= set(CLASSES) and "p_equiv_albedo" in table
    s = res.summary()
    assert s["classes"]["counts"] == res.classification.counts() and s["n_lighting_selective"] >= 0.8 * reps
    eq = s["classes"]["equivalence"]["per_contrast"]["albedo"]
    assert eq["n_pairs"] == n and eq["power_at_dz_0"] == pytest.approx(tost_power(n, 0.5, 0.05))
    assert sum(b["n_units"] for b in s["classes"]["per_block"]) == len(names)


def test_margin_is_a_setting():
    with pytest.raises(ValueError, match="equivalence_margin"):
        StatsConfig(equivalence_margin=0.0)
