"""The image probe's unit classes, from direct tests only: FWER-significance of one factor and an equivalence test
on the *size* of the other factor's change.

    from probe.stats.classify import classify_units, magnitude_equivalence, cluster_rms
    cls = classify_units(stats["lighting"], stats["albedo"], magnitude={"lighting": (diff_l, scenes_l),
                                                                      "albedo": (diff_a, scenes_a)})
    cls.classes            # [U] str: lighting-selective, albedo-selective, both, neither, inconclusive
    cls.classes_signed     # [U] str: the same labels under the earlier signed rule (units.csv `class_signed`)
    cls.summary(blocks)    # counts, per-block counts, definitions, margins and power

    lighting-selective  lighting FWER-significant, albedo not FWER-significant, and the albedo change shown
                        smaller than m times the lighting change (magnitude test below)
    albedo-selective    the converse
    both                lighting and albedo both FWER-significant
    neither             neither FWER-significant (no claim of absence: nothing was found)
    inconclusive        one FWER-significant, the other not, and its change not shown small

"Does not react to surface colour" is a claim about the size of the change, not about its mean. The contrasts are
signed (A and B ordered by a ground-truth quantity, `probe.design.image_stimuli`), so a unit that a colour change
moves by +3 in one scene and -3 in the next has a signed mean near 0 and passes any equivalence test on the signed
d_z, while colour moves it three times as much as light does. So the class rule tests magnitudes:

Magnitude test (`magnitude_equivalence`). Per base scene s (the independent unit; a scene's lightings and colour
variants are not independent) and unit, the per-scene RMS of the sample-level differences of each contrast,
x_s (the factor shown small) and y_s (the yardstick), e.g. x_s = RMS over the scene's colour pairs of
(unit on A - unit on B), y_s = the same over its lighting pairs (`cluster_rms`; the sign of a pair plays no part).
The ratio of interest is rho = E[x] / E[y]: how much the unit moves with the one factor, in units of how much it
moves with the other. H0: rho >= m against H1: rho < m is rejected when the one-sided paired t of
z_s = x_s - m y_s over scenes is below -t(1 - alpha, n - 1) (a Fieller-type test: the ratio of two means by a
linear contrast). The (1 - alpha) upper confidence bound of rho (`upper`) is the smallest m the test would accept,
the root of (x_bar - m y_bar)^2 = (t_c^2 / n) var(x - m y); it is infinite when y_bar itself is not clearly above
0 (y_bar^2 <= (t_c^2 / n) var(y)). Equivalence is shown exactly when upper < m.

Why the other factor is the yardstick, and not the noise. Every image of a base scene is captured with the same
noise seed(s) (`probe.design.image_stimuli`), so a difference A - B contains no independent noise draw: the spread
between noise seeds of one image (available with --seeds-per-pair >= 2) measures how the unit moves with the
noise, not a floor under |A - B|, and a default run has one draw. A unit's own change under the other factor is
there in every run, is measured on the same scenes, and is what "selective" means: lighting-selective = colour
moves it less than m times as much as light. Its limit: it is relative. A unit that light moves enormously may be
called lighting-selective while colour still moves it a lot in absolute terms; `rms_change_C` in units.csv gives
both sizes.

Size and power. Per unit at level alpha, not corrected over units (as the TOST before it): among the units called
lighting-selective, those whose true rho_albedo >= m are each admitted with probability <= alpha. The t test
assumes z_s roughly normal over scenes; simulated with per-scene sizes |normal|, log-normal, or the RMS of 4
pairs with log-normal scene scales (`benchmarks/bench_classes.py`), its rejection rate at rho = m was
0.044-0.054 at 10, 25 and 50 scenes (coefficient of variation of the scene sizes 0.3-1.0). The power depends on how much a unit's change varies over scenes: with coefficient of
variation c for both factors (independent normal), the test statistic is noncentral t with n - 1 df and
noncentrality sqrt(n) (m - rho) / (c sqrt(rho^2 + m^2)) (`magnitude_power`): at m = 0.5 and 25 scenes, 1.00
(c = 0.5) and 1.00 (c = 1) at rho = 0, 1.00 and 0.70 at rho = m / 2; at 10 scenes 1.00 and 0.90 at rho = 0, 0.83
and 0.37 at rho = m / 2; at 50 scenes 1.00 and 0.93 at rho = m / 2 (the signed TOST had 0.60 at 25 scenes and
none at 10 or fewer). Every output states it for the run's own scene count and the median c of its units.

Why m = 0.5 by default: selective means the other factor moves the unit at most half as much (`--magnitude-margin`).

The signed rule (`classes_signed`, units.csv `class_signed`, `p_equiv_signed_C`; until this version the rule of
`class`): the other factor's signed d_z shown within +-margin by two one-sided tests (TOST; `tost_dz`). It shows
that the *mean signed* change is small, which a scene-dependent sign makes small too; kept for comparison.

TOST on d_z (standardised margin). With n pairs, t = d_z sqrt(n) follows a noncentral t distribution
with n - 1 degrees of freedom and noncentrality delta sqrt(n), delta = E[diff] / sd[diff], exactly for
normal differences. H0: |delta| >= m against H1: |delta| < m is rejected when both one-sided tests
reject: p_upper = P(T(n-1, +m sqrt n) <= t), p_lower = P(T(n-1, -m sqrt n) >= t), p_equiv = max of the
two. Equivalently t lies in (-c, c) with c = the alpha quantile of T(n-1, m sqrt n); when c <= 0 no
unit can be shown equivalent (too few pairs for that margin): `tost_power` is then 0. At delta = 0 and
m = 0.5 the TOST shows equivalence with probability 0.60 at n = 25, 0.93 at n = 50, 0.07 at n = 12, and
0 at 10 scenes or fewer (with m = 0.8: 0.97, 1.0, 0.71, and 0.60 at 10).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

EQUIVALENCE_MARGIN = 0.5      # the signed rule's TOST margin on d_z (class_signed, p_equiv_signed_C)
MAGNITUDE_MARGIN = 0.5        # the class rule's margin on the ratio of per-scene RMS changes (class)
CLASSES = ("lighting-selective", "albedo-selective", "both", "neither", "inconclusive")
CLASS_CONTRASTS = ("lighting", "albedo")

CLASS_DEFINITION = (
    "lighting-selective: the lighting contrast FWER-significant (tmax sign-flip null, p_fwer <= alpha), the albedo "
    "contrast not FWER-significant, and the albedo change shown smaller than the margin times the lighting change "
    "(magnitude test: per base scene the RMS of the unit's change over the scene's colour pairs and over its "
    "lighting pairs; one-sided paired t over scenes of RMS_albedo - margin x RMS_lighting, p_equiv_magnitude_albedo "
    "<= alpha, i.e. the upper confidence bound ratio_albedo_to_lighting_ub below the margin); albedo-selective: the "
    "converse; both: both FWER-significant; neither: neither FWER-significant (nothing found, not shown absent); "
    "inconclusive: one FWER-significant, the other not, and its change not shown small. Only direct tests are "
    "used: 'significant for one and not significant for the other' never makes a unit selective, and the size of "
    "the change is tested, not its signed mean (a change whose sign depends on the scene is not a small change).")

SIGNED_CLASS_DEFINITION = (
    "class_signed (the rule of `class` before the magnitude test; kept for comparison): the same labels, with "
    "'shown small' meaning the other contrast's signed d_z shown within +-margin by TOST (p_equiv_signed_C <= "
    "alpha). It shows only that the signed mean change is small, which a change whose sign depends on the scene "
    "also gives: a unit that colour moves by +-3 and light by +1 can be lighting-selective under this rule.")

CLASS_CHANGE_NOTE = (
    "`class` now follows the magnitude test (the labels keep their promise: 'lighting-selective' = reacts to the "
    "light and colour moves it less than margin x as much); runs made before it followed the signed rule, now "
    "`class_signed`. p_equiv_lighting / p_equiv_albedo keep their signed meaning and are also written as "
    "p_equiv_signed_lighting / p_equiv_signed_albedo.")


def cluster_rms(diff, clusters) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster RMS of sample-level differences: diff [pairs, U] (any sign), clusters [pairs] (base scenes)
    -> (cluster ids [C] sorted, rms [C, U] float64) = sqrt(mean over the cluster's pairs of diff^2)."""
    diff = np.asarray(diff, dtype=np.float64)
    clusters = np.asarray(clusters).astype(str)
    if diff.ndim != 2 or clusters.shape != (diff.shape[0],):
        raise ValueError(f"cluster_rms: need diff [pairs, units] and one cluster per pair, got {diff.shape} and "
                         f"{clusters.shape}")
    ids, inv = np.unique(clusters, return_inverse=True)
    sq = np.zeros((ids.size, diff.shape[1]))
    np.add.at(sq, inv, np.square(diff))
    return ids, np.sqrt(sq / np.bincount(inv, minlength=ids.size)[:, None])


@dataclass(frozen=True, eq=False)
class MagnitudeTest:
    """Equivalence on size: is a change (x, per cluster) smaller than `margin` times a yardstick (y)? Arrays [U]."""
    ratio: np.ndarray           # mean x / mean y over clusters (nan when mean y = 0)
    upper: np.ndarray           # one-sided (1 - alpha) upper confidence bound of the ratio (Fieller); inf: unbounded
    t: np.ndarray               # paired t over clusters of z = x - margin y (negative: below the margin)
    p: np.ndarray               # one-sided p of H0 ratio >= margin (t distribution, n - 1 df)
    mean_x: np.ndarray          # mean over clusters of x (the change shown small)
    mean_y: np.ndarray          # mean over clusters of y (the yardstick)
    cv_y: np.ndarray            # coefficient of variation of y over clusters (sets the power)
    n: int                      # clusters
    margin: float
    alpha: float
    clusters: tuple = ()

    @property
    def shown(self) -> np.ndarray:
        """[U] bool: the change shown smaller than margin x the yardstick (p <= alpha; equivalently upper < margin)."""
        return self.p <= self.alpha

    @property
    def t_crit(self) -> float:
        return float(_sps.t.ppf(1 - self.alpha, self.n - 1)) if self.n >= 2 else math.inf


def magnitude_equivalence(x, y, margin: float = MAGNITUDE_MARGIN, alpha: float = 0.05,
                          clusters=()) -> MagnitudeTest:
    """Test per unit that the size of one change is below `margin` times another's (see the module docstring).

    x [n, U]: per cluster (the independent unit: a base scene, an object) the size of the change to be shown small,
    e.g. `cluster_rms` of its sample-level differences; y [n, U] (or [U]: a known yardstick per unit) the yardstick
    on the same clusters, row for row. H0: E[x] >= margin E[y]; rejected when the one-sided paired t of
    z = x - margin y over clusters is below -t(1 - alpha, n - 1). Returns the ratio E[x]/E[y], its Fieller upper
    bound, t, p, and what the power depends on (n, cv_y). Clusters with identical z in every row (zero variance)
    get t = -inf / +inf by the sign of mean z, or 0."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"magnitude_equivalence: x must be [clusters, units], got {x.shape}")
    if y.ndim == 1:
        y = np.broadcast_to(y, x.shape)
    if y.shape != x.shape:
        raise ValueError(f"magnitude_equivalence: y {y.shape} must match x {x.shape} (or be [units])")
    if not margin > 0 or not 0 < alpha < 1:
        raise ValueError(f"magnitude_equivalence: need margin > 0 and 0 < alpha < 1, got {margin}, {alpha}")
    n, units = x.shape
    mx, my = x.mean(axis=0), y.mean(axis=0)
    if n < 2:
        nan = np.full(units, np.nan)
        return MagnitudeTest(np.where(my > 0, mx / np.where(my > 0, my, 1.0), np.nan), np.full(units, np.inf), nan,
                             np.ones(units), mx, my, nan, n, float(margin), float(alpha), tuple(clusters))
    cx, cy = x - mx, y - my
    sxx = (cx * cx).sum(axis=0) / (n - 1)
    syy = (cy * cy).sum(axis=0) / (n - 1)
    sxy = (cx * cy).sum(axis=0) / (n - 1)
    z_mean = mx - margin * my
    z_var = np.maximum(sxx - 2 * margin * sxy + margin ** 2 * syy, 0.0)
    z_sd = np.sqrt(z_var)
    scale = np.abs(mx) + margin * np.abs(my)
    flat = z_sd <= 1e-12 * np.maximum(scale, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(flat, np.sign(z_mean) * np.where(z_mean == 0, 0.0, np.inf),
                     z_mean / np.where(flat, 1.0, z_sd) * math.sqrt(n))
    p = _sps.t.cdf(t, n - 1)
    tc = float(_sps.t.ppf(1 - alpha, n - 1))
    k = tc * tc / n
    # Fieller: (mx - r my)^2 = k (sxx - 2 r sxy + r^2 syy), larger root, when my^2 > k syy (else unbounded)
    qa = my * my - k * syy
    qb = -2.0 * (mx * my - k * sxy)
    qc = mx * mx - k * sxx
    disc = np.maximum(qb * qb - 4 * qa * qc, 0.0)
    ok = (qa > 1e-300) & (my > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.where(ok, (-qb + np.sqrt(disc)) / (2 * np.where(ok, qa, 1.0)), np.inf)
        ratio = np.where(my > 0, mx / np.where(my > 0, my, 1.0), np.nan)
        cv = np.where(my > 0, np.sqrt(syy) / np.where(my > 0, my, 1.0), np.nan)
    upper = np.where(ok, np.maximum(upper, 0.0), np.inf)
    return MagnitudeTest(ratio, upper, t, np.clip(p, 0.0, 1.0), mx, my, cv, n, float(margin), float(alpha),
                         tuple(clusters))


def magnitude_power(n: int, margin: float = MAGNITUDE_MARGIN, alpha: float = 0.05, ratio: float = 0.0,
                    cv: float = 1.0) -> float:
    """P(`magnitude_equivalence` shows the change below margin) when the true ratio is `ratio` and both per-cluster
    sizes vary over clusters with coefficient of variation `cv`, independently and normally: the statistic is
    noncentral t(n - 1, sqrt(n) (margin - ratio) / (cv sqrt(ratio^2 + margin^2)))."""
    if n < 2 or not cv > 0:
        return 0.0 if n < 2 else float(ratio < margin)
    tc = _sps.t.ppf(1 - alpha, n - 1)
    ncp = math.sqrt(n) * (margin - ratio) / (cv * math.sqrt(ratio ** 2 + margin ** 2))
    return float(_sps.nct.sf(tc, n - 1, ncp))


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


MAGNITUDE_SIZE_NOTE = ("simulated rejection rate at ratio = margin, alpha 0.05 (per-scene sizes |normal|, log-normal, "
                       "or the RMS of 4 pairs with log-normal scene scales; coefficient of variation 0.3-1.0; "
                       "benchmarks/bench_classes.py): 0.044-0.054 at 10, 25 and 50 scenes")


def _median(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


@dataclass(frozen=True, eq=False)
class Classification:
    """Per-unit classes of an image-probe analysis and everything needed to state them."""
    classes: np.ndarray                 # [U] str, one of CLASSES: the magnitude rule (units.csv `class`)
    p_equiv: dict                       # contrast -> [U] signed TOST p of equivalence within the d_z margin
    margin: float                       # the signed TOST's margin on d_z
    alpha: float
    n_pairs: dict                       # contrast -> pairs the TOST used
    bound: dict                         # contrast -> c: signed equivalence shown exactly when |t| < c
    power: dict                         # contrast -> P(signed equivalence shown | true d_z = 0)
    classes_signed: np.ndarray | None = None   # [U] str: the signed rule (units.csv `class_signed`)
    magnitude: dict | None = None       # contrast C -> MagnitudeTest of "C's change < margin x the other's"
    magnitude_margin: float = MAGNITUDE_MARGIN
    magnitude_note: str = ""            # why the magnitude test is missing, when it is
    significant: dict | None = None     # contrast -> [U] bool FWER-significant (for the power's median cv)

    def counts(self, mask=None, signed: bool = False) -> dict:
        c = self.classes_signed if signed else self.classes
        c = c if mask is None else c[mask]
        return {k: int(np.count_nonzero(c == k)) for k in CLASSES}

    def per_block(self, unit_blocks, signed: bool = False) -> list[dict]:
        blocks = np.asarray(unit_blocks).astype(str)
        return [{"block": b, "n_units": int(np.count_nonzero(blocks == b)), **self.counts(blocks == b, signed)}
                for b in dict.fromkeys(blocks.tolist())]

    def equivalence_record(self) -> dict:
        """The signed TOST (class_signed, p_equiv_C / p_equiv_signed_C)."""
        return {"test": "TOST on Cohen's d_z of the signed contrast (noncentral t, exact for normal differences), per "
                        "unit, not corrected over units; it shows the signed mean change small, not the size of the "
                        "change: it decides `class_signed`, not `class`",
                "margin_dz": self.margin, "alpha": self.alpha,
                "per_contrast": {c: {"n_pairs": self.n_pairs[c], "abs_t_below": self.bound[c],
                                     "power_at_dz_0": self.power[c],
                                     "can_show_equivalence": self.bound[c] > 0} for c in self.n_pairs},
                "why_this_margin": "see probe/stats/classify.py: at 25 scenes the FWER threshold needs |d_z| of about "
                                   "1.0-1.2, so an effect within 0.5 is at most about half the weakest reportable "
                                   "effect of the other factor",
                "columns": ["p_equiv_signed_lighting", "p_equiv_signed_albedo", "p_equiv_lighting (same)",
                            "p_equiv_albedo (same)", "class_signed"]}

    def magnitude_record(self) -> dict:
        """The magnitude test that decides `class`: margin, scenes, bound, power (summary.json classes.magnitude)."""
        m, a = self.magnitude_margin, self.alpha
        rec = {"test": "per base scene, the RMS of the unit's sample-level changes under each factor; one-sided paired "
                       "t over scenes of RMS_C - margin x RMS_other (H0: E[RMS_C] >= margin E[RMS_other]); "
                       "equivalently the Fieller (1 - alpha) upper bound of E[RMS_C] / E[RMS_other] below the margin; "
                       "per unit, not corrected over units",
               "yardstick": "the unit's own change under the other factor, on the same scenes (not the noise: every "
                            "image of a scene shares its noise seed, so no independent noise enters a difference; "
                            "see probe/stats/classify.py)",
               "margin_ratio": m, "alpha": a, "clusters": "base scenes (always, also with --pairs-over samples)",
               "available": self.magnitude is not None, "size_at_margin": MAGNITUDE_SIZE_NOTE,
               "power_model": "both per-scene sizes vary over scenes with coefficient of variation cv, independently "
                              "and normally (probe.stats.classify.magnitude_power)"}
        if self.magnitude is None:
            rec["why_unavailable"] = self.magnitude_note
            return rec
        per = {}
        for c, mt in self.magnitude.items():
            other = "albedo" if c == "lighting" else "lighting"
            sig = (self.significant or {}).get(other)
            cv = _median(mt.cv_y[sig] if sig is not None and np.any(sig) else mt.cv_y)
            per[c] = {"shown_small_relative_to": other, "decides": f"{other}-selective", "n_scenes": mt.n,
                      "t_crit": mt.t_crit, "shown_when": f"ratio_{c}_to_{other}_ub < {m:g}",
                      "n_units_shown": int(np.count_nonzero(mt.shown)),
                      "median_cv_of_yardstick": cv,
                      "median_cv_over": (f"units FWER-significant for {other}" if sig is not None and np.any(sig)
                                         else "all units"),
                      "power_at_ratio_0": {"cv_0.5": magnitude_power(mt.n, m, a, 0.0, 0.5),
                                           "cv_1": magnitude_power(mt.n, m, a, 0.0, 1.0),
                                           "cv_median": magnitude_power(mt.n, m, a, 0.0, cv) if np.isfinite(cv)
                                           else None},
                      "power_at_half_margin": {"cv_0.5": magnitude_power(mt.n, m, a, m / 2, 0.5),
                                               "cv_1": magnitude_power(mt.n, m, a, m / 2, 1.0),
                                               "cv_median": magnitude_power(mt.n, m, a, m / 2, cv) if np.isfinite(cv)
                                               else None},
                      "scenes": list(mt.clusters)}
        rec["per_contrast"] = per
        return rec

    def summary(self, unit_blocks) -> dict:
        counts = self.counts()
        out = {"definition": CLASS_DEFINITION, "rule": "magnitude" if self.magnitude is not None else
               "magnitude (unavailable: no class can be selective)", "counts": counts,
               **{f"n_{k.replace('-', '_')}": v for k, v in counts.items()},
               "magnitude": self.magnitude_record(), "equivalence": self.equivalence_record(),
               "per_block": self.per_block(unit_blocks), "change_of_rule": CLASS_CHANGE_NOTE}
        if self.classes_signed is not None:
            out["signed"] = {"definition": SIGNED_CLASS_DEFINITION, "column": "class_signed",
                             "counts": self.counts(signed=True)}
        return out


def classify_units(lighting, albedo, margin: float = EQUIVALENCE_MARGIN, alpha: float = 0.05, magnitude=None,
                   magnitude_margin: float = MAGNITUDE_MARGIN) -> Classification:
    """Classes from the `probe.stats.ContrastStats` of the lighting and albedo contrasts (same units).

    magnitude: {"lighting": (diff, clusters), "albedo": (diff, clusters)}: each contrast's sample-level differences
    [pairs, U] with the base scene of every pair (image probe: `probe.io.captures.Captures.sample_level`). The class
    rule needs it; without it no unit can be shown selective (the record says why). `margin` is the signed TOST's
    (class_signed), `magnitude_margin` the magnitude test's (class)."""
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be a positive d_z, got {margin}")
    if not magnitude_margin > 0:
        raise ValueError(f"the magnitude margin must be a positive ratio, got {magnitude_margin}")
    p_eq, n, bound, power = {}, {}, {}, {}
    for name, cs in (("lighting", lighting), ("albedo", albedo)):
        u = cs.unit
        n[name] = int(cs.n_pairs)
        p_eq[name] = tost_dz(u.t, cs.n_pairs, margin, u.degenerate, u.mean_diff)
        bound[name] = tost_bound(cs.n_pairs, margin, alpha)
        power[name] = tost_power(cs.n_pairs, margin, alpha)
    sig_l, sig_a = lighting.null.significant, albedo.null.significant
    signed = class_of(sig_l, sig_a, p_eq["lighting"] <= alpha, p_eq["albedo"] <= alpha)
    mag, note = None, ""
    if magnitude is not None and all(c in magnitude for c in CLASS_CONTRASTS):
        (ids_l, rms_l), (ids_a, rms_a) = (cluster_rms(*magnitude[c]) for c in CLASS_CONTRASTS)
        common = np.intersect1d(ids_l, ids_a)
        rows_l, rows_a = np.searchsorted(ids_l, common), np.searchsorted(ids_a, common)
        x_l, x_a = rms_l[rows_l], rms_a[rows_a]
        mag = {"lighting": magnitude_equivalence(x_l, x_a, magnitude_margin, alpha, tuple(common)),
               "albedo": magnitude_equivalence(x_a, x_l, magnitude_margin, alpha, tuple(common))}
        eq_l, eq_a = mag["lighting"].shown, mag["albedo"].shown
    else:
        note = ("the sample-level pairs of the lighting and albedo contrasts are not available (captures without "
                "image values or pairs), so no change can be shown small")
        eq_l = eq_a = np.zeros(sig_l.shape, bool)
    classes = class_of(sig_l, sig_a, eq_l, eq_a)
    return Classification(classes, p_eq, float(margin), float(alpha), n, bound, power, classes_signed=signed,
                          magnitude=mag, magnitude_margin=float(magnitude_margin), magnitude_note=note,
                          significant={"lighting": sig_l, "albedo": sig_a})
