"""The image probe's unit classes, from direct tests only: FWER-significance and TOST equivalence on d_z.

    from probe.stats.classify import classify_units, tost_dz, tost_power
    cls = classify_units(stats["lighting"], stats["albedo"], margin=0.5, alpha=0.05)
    cls.classes            # [U] str: lighting-selective, albedo-selective, both, neither, inconclusive
    cls.summary(blocks)    # counts, per-block counts, the definition, the margin and the power

A unit is *lighting-selective* when its lighting contrast is FWER-significant (tmax sign-flip null) and
its albedo contrast is shown to be negligible: equivalent to zero within a margin m on Cohen's d_z,
by a two one-sided tests (TOST) procedure at level alpha. Not significant is not "no effect": a unit
whose albedo contrast is merely not significant is `inconclusive`, never lighting-selective.

    lighting-selective  lighting FWER-significant, albedo not FWER-significant and equivalent within m
    albedo-selective    albedo FWER-significant, lighting not FWER-significant and equivalent within m
    both                lighting and albedo both FWER-significant
    neither             neither FWER-significant (no claim of absence: nothing was found)
    inconclusive        one FWER-significant, the other neither significant nor shown equivalent

TOST on d_z (standardised margin). With n pairs, t = d_z sqrt(n) follows a noncentral t distribution
with n - 1 degrees of freedom and noncentrality delta sqrt(n), delta = E[diff] / sd[diff], exactly for
normal differences. H0: |delta| >= m against H1: |delta| < m is rejected when both one-sided tests
reject: p_upper = P(T(n-1, +m sqrt n) <= t), p_lower = P(T(n-1, -m sqrt n) >= t), p_equiv = max of the
two. Equivalently t lies in (-c, c) with c = the alpha quantile of T(n-1, m sqrt n); when c <= 0 no
unit can be shown equivalent (too few pairs for that margin): `tost_power` is then 0.

The equivalence test is per unit at level alpha, not corrected over units: among the units called
lighting-selective, those whose true |delta_albedo| >= m are each admitted with probability <= alpha.
The columns `p_equiv_lighting` and `p_equiv_albedo` let a reader apply any correction.

Why m = 0.5 by default: at the shipped 25 scenes a lighting effect needs |t| of roughly 5-6 to pass the
tmax FWER threshold over ~16k units, i.e. |d_z| >= 1.0-1.2, so an albedo effect within 0.5 is at most
about half of the weakest lighting effect the test can report (Cohen's "medium"); 0.8 (the "large"
effects that summary.json counts) would call units selective that carry a large effect of the other
factor. The price is power: at delta = 0 the TOST shows equivalence with probability 0.60 at n = 25,
0.93 at n = 50, 0.07 at n = 12, and 0 at 10 scenes or fewer (with m = 0.8: 0.97, 1.0, 0.71, and 0.60 at 10).
`tost_power` gives it for any n and m, and every output states it for the run's own n.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

EQUIVALENCE_MARGIN = 0.5
CLASSES = ("lighting-selective", "albedo-selective", "both", "neither", "inconclusive")
CLASS_CONTRASTS = ("lighting", "albedo")

CLASS_DEFINITION = (
    "lighting-selective: the lighting contrast FWER-significant (tmax sign-flip null, p_fwer <= alpha) and the albedo "
    "contrast not FWER-significant and shown equivalent to zero (TOST on d_z within +-margin, p_equiv_albedo <= alpha); "
    "albedo-selective: the converse; both: both FWER-significant; neither: neither FWER-significant (nothing found, "
    "not shown absent); inconclusive: one FWER-significant, the other neither significant nor shown equivalent. Only "
    "direct tests are used: 'significant for one and not significant for the other' never makes a unit selective.")


def tost_bound(n: int, margin: float, alpha: float) -> float:
    """c such that TOST shows equivalence exactly when |t| < c (t = d_z sqrt n); c <= 0: never."""
    if n < 2 or not margin > 0:
        return 0.0
    return float(_sps.nct.ppf(alpha, n - 1, margin * math.sqrt(n)))


def tost_dz(t, n: int, margin: float, degenerate=None, mean_diff=None) -> np.ndarray:
    """p_equiv [U] of TOST on d_z with margin `margin` from paired t [U] over n pairs (see module docstring).

    Degenerate units (zero variance of the differences) with a non-zero mean have an infinite |d_z| and get
    p = 1; all-zero differences have t = 0 and get the test's p at t = 0."""
    t = np.asarray(t, dtype=np.float64)
    if n < 2 or not margin > 0:
        return np.ones_like(t)
    ncp = margin * math.sqrt(n)
    p_upper = _sps.nct.cdf(t, n - 1, ncp)           # H0: delta >= m, rejected for small t
    p_lower = _sps.nct.sf(t, n - 1, -ncp)           # H0: delta <= -m, rejected for large t
    p = np.maximum(p_upper, p_lower)
    if degenerate is not None:
        nonzero = np.asarray(degenerate, bool) & (np.abs(np.asarray(mean_diff, dtype=np.float64)) > 0
                                                  if mean_diff is not None else True)
        p = np.where(nonzero, 1.0, p)
    return np.clip(p, 0.0, 1.0)


def tost_power(n: int, margin: float, alpha: float, delta: float = 0.0) -> float:
    """P(TOST shows equivalence) when the true standardised effect is `delta` (normal differences)."""
    c = tost_bound(n, margin, alpha)
    if c <= 0:
        return 0.0
    ncp = delta * math.sqrt(n)
    return float(_sps.nct.cdf(c, n - 1, ncp) - _sps.nct.cdf(-c, n - 1, ncp)) if delta else \
        float(_sps.t.cdf(c, n - 1) - _sps.t.cdf(-c, n - 1))


def class_of(sig_l, sig_a, eq_l, eq_a) -> np.ndarray:
    """The class rule on boolean arrays [U]: FWER-significance and shown equivalence of lighting and albedo."""
    sig_l, sig_a, eq_l, eq_a = (np.asarray(x, bool) for x in (sig_l, sig_a, eq_l, eq_a))
    out = np.full(sig_l.shape, "inconclusive", dtype=object)
    out[~sig_l & ~sig_a] = "neither"
    out[sig_l & sig_a] = "both"
    out[sig_l & ~sig_a & eq_a] = "lighting-selective"
    out[sig_a & ~sig_l & eq_l] = "albedo-selective"
    return out.astype(str)


@dataclass(frozen=True, eq=False)
class Classification:
    """Per-unit classes of an image-probe analysis and everything needed to state them."""
    classes: np.ndarray                 # [U] str, one of CLASSES
    p_equiv: dict                       # contrast -> [U] TOST p of equivalence within the margin
    margin: float
    alpha: float
    n_pairs: dict                       # contrast -> pairs the TOST used
    bound: dict                         # contrast -> c: equivalence shown exactly when |t| < c
    power: dict                         # contrast -> P(equivalence shown | true d_z = 0)

    def counts(self, mask=None) -> dict:
        c = self.classes if mask is None else self.classes[mask]
        return {k: int(np.count_nonzero(c == k)) for k in CLASSES}

    def per_block(self, unit_blocks) -> list[dict]:
        blocks = np.asarray(unit_blocks).astype(str)
        return [{"block": b, "n_units": int(np.count_nonzero(blocks == b)), **self.counts(blocks == b)}
                for b in dict.fromkeys(blocks.tolist())]

    def equivalence_record(self) -> dict:
        return {"test": "TOST on Cohen's d_z (noncentral t, exact for normal differences), per unit, not corrected "
                        "over units",
                "margin_dz": self.margin, "alpha": self.alpha,
                "per_contrast": {c: {"n_pairs": self.n_pairs[c], "abs_t_below": self.bound[c],
                                     "power_at_dz_0": self.power[c],
                                     "can_show_equivalence": self.bound[c] > 0} for c in self.n_pairs},
                "why_this_margin": "see probe/stats/classify.py: at 25 scenes the FWER threshold needs |d_z| of about "
                                   "1.0-1.2, so an effect within 0.5 is at most about half the weakest reportable "
                                   "effect of the other factor"}

    def summary(self, unit_blocks) -> dict:
        counts = self.counts()
        return {"definition": CLASS_DEFINITION, "counts": counts,
                **{f"n_{k.replace('-', '_')}": v for k, v in counts.items()},
                "equivalence": self.equivalence_record(), "per_block": self.per_block(unit_blocks)}


def classify_units(lighting, albedo, margin: float = EQUIVALENCE_MARGIN, alpha: float = 0.05) -> Classification:
    """Classes from the `probe.stats.ContrastStats` of the lighting and albedo contrasts (same units)."""
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be a positive d_z, got {margin}")
    p_eq, n, bound, power = {}, {}, {}, {}
    for name, cs in (("lighting", lighting), ("albedo", albedo)):
        u = cs.unit
        n[name] = int(cs.n_pairs)
        p_eq[name] = tost_dz(u.t, cs.n_pairs, margin, u.degenerate, u.mean_diff)
        bound[name] = tost_bound(cs.n_pairs, margin, alpha)
        power[name] = tost_power(cs.n_pairs, margin, alpha)
    classes = class_of(lighting.null.significant, albedo.null.significant, p_eq["lighting"] <= alpha,
                       p_eq["albedo"] <= alpha)
    return Classification(classes, p_eq, float(margin), float(alpha), n, bound, power)
