"""Paired per-unit statistics for the probe: numpy/scipy only (no torch), vectorised over units.

    from probe.stats import Contrast, Direct, StatsConfig, analyse, analyse_captures, load_captures
    res = analyse_captures(load_captures("runs/probe/captures.npz"), StatsConfig(n_perm=10_000, seed=0))

    # contrasts are data: any number of named paired contrasts and direct comparisons between them
    res = analyse([Contrast("main", a, b, pair_ids, label="A photograph - B albedo", columns=None),
                   Contrast("vocabulary", a, v, pair_ids, columns="control_{name}_{stat}")],
                  units, directs=[Direct("vs_vocabulary", of="main", minus="vocabulary")])
    res.summary()        # JSON-able dict (summary.json)
    res.units_table()    # {column: array} for units.csv (unit, block, t, d, p, q, p_fwer, ...)

A `Contrast` is two arrays [pairs, units] with pair ids: per pair, diff = a - b (or b - a with
`reverse=True`); row i of a and b is the same pair. A `Direct` comparison of contrasts X and Y is the
paired test of diff_X - diff_Y over the pairs they share. Each contrast and each direct comparison
gets the same machinery, on its per-pair differences [n, U] in float64:

- `paired_t`: paired t, Cohen's d_z = mean(diff) / sd(diff) (ddof 1), two-sided p from the t
  distribution with n - 1 df, Benjamini-Hochberg q over all units. Equal to
  `scipy.stats.ttest_rel(a, b)` per unit. Zero-variance units (sd(diff) <= 1e-12 |mean(diff)|,
  e.g. a dead unit whose A and B values are identical) get t = 0, d = 0, p = 1 and are flagged in
  `UnitStats.degenerate`: they can never count as selective (scipy would give nan or inf).
- `sign_flip_null`: under H0 (A and B exchangeable within a pair) each pair's difference is
  equally likely to have either sign. Random sign vectors (default 10,000, seeded), or every sign
  vector when 2^n <= n_perm (enumerated as the 2^(n-1) vectors whose first sign is +1: flipping all
  signs leaves every |t| unchanged, so this is the full distribution with each value counted once
  instead of twice). A sign flip leaves sum(diff^2) unchanged, so with each unit's column scaled to
  unit L2 norm, y = signs @ diff_n gives |t| = sqrt((n-1) y^2 / (n - y^2)), monotone in |y|: one
  float32 matmul per chunk of sign vectors, streaming the per-permutation count of units with
  |t| > c (for each threshold c) and max |t|, never storing [perms, units].
  Reports the null count distribution, its p99 (numpy's default linear percentile), observed / p99
  (the card's "7.6x empirical null p99"; the ratio uses max(p99, 1) so a null p99 of 0 gives the
  observed count itself instead of a division by zero), the permutation p of the observed count,
  and the max-|t| null: Westfall-Young single-step FWER p per unit,
  p_fwer(u) = (1 + #{perm: max|t| >= |t_u|}) / (1 + P) for random sign vectors and
  #{vectors: max|t| >= |t_u|} / N for exact enumeration (the identity is one of the N). Ties within
  a relative 1e-6 (float32 arithmetic) count as reached. Units with p_fwer <= alpha are the
  FWER-controlled selective set: a per-unit p99 is no multiple-comparison control, this is.
- `split_half`: n_splits random 50/50 splits of the pairs (seeded; for odd n the second half has
  one pair more); per split, Pearson r across units between the per-unit t of the two halves.
  All r, median and IQR. Needs n >= 4 (nan otherwise).
- `block_stats`: per block of units: max |t|, count |t| > c (each threshold), median |d|, each with
  a percentile bootstrap CI over pairs (pairs resampled with replacement, seeded, default 1,000
  resamples, 95 %). These statistics are not smooth in the pair means: resampling adds noise to
  every unit's t, so for mostly-null blocks the interval lies above the observed value (see
  `BlockStats`); the bootstrap medians are reported beside it.

Columns of units.csv follow one rule (`Analysis.units_table`): the primary (first) contrast gives
the top-level `t, d, p, q, p_fwer, fwer_significant, mean_a, mean_b, mean_diff, sd_diff`; each
contrast with a `columns` pattern adds `pattern.format(stat=..., name=...)` for its `column_stats`
(the image probe: `t_C, d_C, p_fwer_C`); each direct comparison D adds `t_D, d_D, p_fwer_D` and, when
`selective`, `selective_D` = its `of` contrast and D both FWER-significant with the same sign; the
column `direction` says what a positive top-level t means.

The text probe (`text_contrasts`, `analyse_text`, `analyse_captures`): main = A (lit photograph) vs
B (albedo); per control set NAME (paraphrase: A vs a lighting-neutral paraphrase of A, legacy columns
`control_t, control_d, control_p, control_q, control_p_fwer`; vocabulary: A vs a prompt describing
the lit photograph with B's fixed words, columns `control_vocabulary_*`) the contrast A vs control
prompt, and the direct comparison `vs_NAME` = main minus it = control prompt minus albedo prompt of
the same pair (same noise): `t_vs_NAME`, `p_fwer_vs_NAME`, `selective_vs_NAME`, and
`selective_beyond_control` = selective beyond every control set (see SELECTIVE_DEFINITION). Under
the card protocol the sign is reversed (direction "b-a": t = mean(B - A) / (sd / sqrt(N)), the card
family's definition), for every contrast alike, so "same sign" is unaffected.

The image probe (`image_contrasts`, `analyse_images`; `analyse_captures` on a captures.npz with meta
stimuli = "images"): the contrasts render_vs_albedo (primary: the top-level columns), lighting and
albedo, each with columns t_C, d_C, p_fwer_C, no direct comparisons; then the unit classes of
`probe.classify` (FWER-significance of lighting and albedo, TOST equivalence within
`StatsConfig.equivalence_margin` on d_z): columns p_equiv_lighting, p_equiv_albedo, class, and a
constant `pairs_over` column ("samples (CLUSTERED)" when pairs are not scenes).

Seeds: the sign vectors, splits and bootstrap resamples come from independent streams derived
from `StatsConfig.seed`; every contrast reuses them (same sign vectors when its pair count is the
same). `StatsConfig.threads` contrasts are analysed at once; results do not depend on it.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as _sps

# The captures.npz format lives in probe.captures; its names stay importable from here.
from probe.captures import (PARAPHRASE, Captures, CapturesError, ControlSet, check_control_name,  # noqa: F401
                            load_captures, save_captures)

__all__ = [
    "StatsConfig", "UnitStats", "PermutationNull", "SplitHalf", "BlockStats", "ContrastStats", "Analysis",
    "Contrast", "Direct", "Captures", "CapturesError", "ControlSet", "paired_t", "bh_q", "sign_flip_null",
    "split_half", "block_stats", "analyse_contrast", "analyse", "analyse_text", "analyse_captures",
    "text_contrasts", "blocks_from_units", "save_captures", "load_captures", "threshold_key",
    "SELECTIVE_DEFINITION", "image_contrasts", "analyse_images",
]

_DEGENERATE_RTOL = 1e-12   # sd(diff) at or below this fraction of |mean(diff)| is rounding, not variance
_TIE_RTOL = 1e-6           # the null runs in float32: values this close to |t_u| count as reaching it
_STREAM_NULL, _STREAM_SPLIT, _STREAM_BOOT = 1, 2, 3
_TILE = 1 << 17            # float32 elements per tile (512 KB) of the null and the bootstrap: passes stay in cache


@dataclass(frozen=True)
class StatsConfig:
    """Settings of `analyse`. All fields are plain numbers/tuples so `dataclasses.asdict` is JSON-able."""
    n_perm: int = 10_000                    # sign-flip permutations (exact enumeration when 2**n <= n_perm)
    n_splits: int = 100                     # random 50/50 splits for split-half r
    n_boot: int = 1_000                     # bootstrap resamples of pairs for block CIs (0: no CIs)
    seed: int = 0
    thresholds: tuple[float, ...] = (3.0, 5.0)   # |t| thresholds of the count statistics
    alpha: float = 0.05                     # FWER level of the tmax selective set, and the BH level in summary
    ci: float = 0.95                        # bootstrap percentile interval
    d_threshold: float = 0.8                # summary counts |d_z| > this ("large" effect)
    null_quantile: float = 99.0             # percentile of the null count distribution reported (p99)
    chunk: int = 128                        # sign vectors per matmul; memory ~ chunk * units * 4 bytes
    threads: int = 2                        # contrasts analysed at once (results do not depend on it)
    equivalence_margin: float = 0.5         # image probe: TOST margin on d_z of the unit classes (probe.classify)

    def __post_init__(self):
        if self.n_perm < 1 or self.n_splits < 0 or self.n_boot < 0 or self.chunk < 1 or self.threads < 1:
            raise ValueError(f"StatsConfig: n_perm >= 1, n_splits >= 0, n_boot >= 0, chunk >= 1, threads >= 1 "
                             f"needed: {self}")
        if not self.equivalence_margin > 0:
            raise ValueError(f"StatsConfig.equivalence_margin must be a positive d_z, got {self.equivalence_margin}")
        if not self.thresholds or any(not (c > 0) for c in self.thresholds):
            raise ValueError(f"StatsConfig.thresholds must be positive |t| values, got {self.thresholds}")
        if not (0 < self.alpha < 1 and 0 < self.ci < 1 and 0 < self.null_quantile < 100):
            raise ValueError(f"StatsConfig: need 0 < alpha < 1, 0 < ci < 1, 0 < null_quantile < 100: {self}")
        object.__setattr__(self, "thresholds", tuple(float(c) for c in self.thresholds))


def threshold_key(c: float) -> str:
    """Key fragment of a threshold: 3 -> '3', 2.5 -> '2_5' (as in n_abs_t_gt_3, n_abs_d_gt_0_8)."""
    return f"{float(c):g}".replace(".", "_").replace("-", "m")


# ----------------------------------------------------------------------------------------- per unit

@dataclass(frozen=True, eq=False)
class UnitStats:
    """Per-unit paired test of A - B. Arrays are [units]."""
    n: int                      # pairs
    t: np.ndarray               # paired t (0 for degenerate units)
    d: np.ndarray               # Cohen's d_z = mean_diff / sd_diff (0 for degenerate units)
    p: np.ndarray               # two-sided p, t distribution with n - 1 df (1 for degenerate units)
    q: np.ndarray               # Benjamini-Hochberg q over all units
    mean_diff: np.ndarray
    sd_diff: np.ndarray         # ddof = 1
    degenerate: np.ndarray      # bool: zero variance of the differences


def _as_diff(a, b, what: str = "a/b") -> np.ndarray:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise CapturesError(f"{what}: need two arrays of the same shape [pairs, units], got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise CapturesError(f"{what}: a paired test needs at least 2 pairs, got {a.shape[0]}")
    if a.shape[1] < 1:
        raise CapturesError(f"{what}: no units (shape {a.shape})")
    diff = a.astype(np.float64) - b.astype(np.float64)
    if not np.isfinite(diff).all():
        bad = np.argwhere(~np.isfinite(diff))[0]
        raise CapturesError(f"{what}: non-finite value (nan or inf) at pair {bad[0]}, unit {bad[1]}")
    return diff


def _t_from_moments(mean, var, n):
    """t and d from mean and (ddof-1) variance of n differences; zero variance -> 0, without warnings."""
    sd = np.sqrt(np.maximum(var, 0.0))
    degenerate = sd <= _DEGENERATE_RTOL * np.abs(mean)
    safe = np.where(degenerate, 1.0, sd)
    d = np.where(degenerate, 0.0, mean / safe)
    return d * math.sqrt(n), d, sd, degenerate


def bh_q(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p (q) over all entries of `p`: q_(i) = min_{j>=i} p_(j) m / j, capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty_like(p)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def paired_t(a, b) -> UnitStats:
    """Paired t of a - b per unit (columns); same t and p as scipy.stats.ttest_rel(a, b) (axis 0)."""
    diff = _as_diff(a, b)
    return _unit_stats(diff)


def _unit_stats(diff: np.ndarray) -> UnitStats:
    n = diff.shape[0]
    mean = diff.mean(axis=0)
    var = ((diff - mean) ** 2).sum(axis=0) / (n - 1)   # two-pass, as scipy
    t, d, sd, degenerate = _t_from_moments(mean, var, n)
    p = np.where(degenerate, 1.0, 2.0 * _sps.t.sf(np.abs(t), n - 1))
    return UnitStats(n=n, t=t, d=d, p=p, q=bh_q(p), mean_diff=mean, sd_diff=sd, degenerate=degenerate)


# --------------------------------------------------------------------------------- sign-flip null

@dataclass(frozen=True, eq=False)
class PermutationNull:
    """Sign-flip null of one contrast. K = len(thresholds), P = n_perm (vectors actually used)."""
    n_perm: int
    exact: bool                 # True: every sign vector (2^(n-1) up to global sign), else random
    thresholds: tuple[float, ...]
    quantile: float             # percentile reported as `p99`
    counts: np.ndarray          # [P, K] int: units with |t| > c under each sign vector
    observed: np.ndarray        # [K] int: observed units with |t| > c
    p99: np.ndarray             # [K] float: `quantile` percentile of counts
    ratio: np.ndarray           # [K] observed / max(p99, 1)
    p_count: np.ndarray         # [K] permutation p of the observed count: P(null count >= observed)
    tmax: np.ndarray            # [P] max |t| over units under each sign vector
    p_fwer: np.ndarray          # [U] Westfall-Young single-step FWER-adjusted p
    alpha: float
    fwer_t: float               # p_fwer <= alpha exactly when |t| > fwer_t (up to ties; inf: no unit can)

    @property
    def significant(self) -> np.ndarray:
        """[U] bool: the FWER-controlled selective set (p_fwer <= alpha)."""
        return self.p_fwer <= self.alpha


def _sign_vectors(n: int, n_perm: int, seed: int) -> tuple[np.ndarray, bool]:
    """[P, n] float32 of +-1; exact enumeration (first sign fixed at +1) when 2**n <= n_perm."""
    if n < 63 and (1 << n) <= n_perm:
        k = np.arange(1 << (n - 1), dtype=np.int64)[:, None]
        bits = (k >> np.arange(n - 1, dtype=np.int64)) & 1
        signs = np.ones((k.shape[0], n), dtype=np.float32)
        signs[:, 1:] = 1 - 2 * bits
        return signs, True
    rng = np.random.default_rng([seed, _STREAM_NULL])
    # drawn all at once so the sign vectors do not depend on the chunk size
    return (rng.integers(0, 2, size=(n_perm, n), dtype=np.int8) * 2 - 1).astype(np.float32), False


def _y_to_t(y, n):
    y2 = np.square(np.asarray(y, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.where(y2 >= n, np.inf, (n - 1) * y2 / np.maximum(n - y2, 1e-300)))


def sign_flip_null(diff: np.ndarray, t_obs: np.ndarray, config: StatsConfig = StatsConfig(),
                   degenerate: np.ndarray | None = None) -> PermutationNull:
    """Sign-flip null counts and the tmax FWER p of observed t `t_obs` [U] (see the module docstring)."""
    diff = np.asarray(diff, dtype=np.float64)
    n, n_units = diff.shape
    t_abs = np.abs(np.asarray(t_obs, dtype=np.float64))
    thr = np.asarray(config.thresholds, dtype=np.float64)
    # |t| > c  <=>  |y| > c sqrt(n / (n - 1 + c^2)) for y = sum(s d) / ||d||
    y_thr = (thr * np.sqrt(n / (n - 1 + thr ** 2))).astype(np.float32)
    norm = np.sqrt((diff ** 2).sum(axis=0))
    dead = norm == 0 if degenerate is None else (degenerate | (norm == 0))
    diff_n = np.where(dead, 0.0, diff / np.where(dead, 1.0, norm)).astype(np.float32)
    signs, exact = _sign_vectors(n, config.n_perm, config.seed)
    n_vec = signs.shape[0]
    counts = np.empty((n_vec, thr.size), dtype=np.int32)
    ymax = np.empty(n_vec, dtype=np.float32)
    buf = np.empty((min(config.chunk, n_vec), n_units), dtype=np.float32)
    above = np.empty(buf.shape, dtype=bool)
    for lo in range(0, n_vec, config.chunk):
        hi = min(lo + config.chunk, n_vec)
        y = buf[: hi - lo]
        np.matmul(signs[lo:hi], diff_n, out=y)
        np.abs(y, out=y)
        ymax[lo:hi] = y.max(axis=1)
        for k, c in enumerate(y_thr):
            gt = np.greater(y, c, out=above[: hi - lo])
            # count_nonzero of a 1-D bool row is a fast byte count; with axis=1 numpy sums via intp
            counts[lo:hi, k] = [np.count_nonzero(row) for row in gt]
    tmax = _y_to_t(ymax, n)
    if exact and t_abs.size:
        # the first enumerated vector is the identity: its max |t| is the observed one, which float32 can
        # understate when |y| is near sqrt(n) (few pairs, huge t), so that a unit would not reach itself
        tmax[0] = max(tmax[0], float(t_abs.max()))
    observed = np.array([np.count_nonzero(t_abs > c) for c in thr], dtype=np.int64)
    if exact:
        counts[0] = observed          # the identity's counts are the observed ones (same float32 caveat)
    p99 = np.percentile(counts, config.null_quantile, axis=0)
    ratio = observed / np.maximum(p99, 1.0)
    # the identity is among the enumerated vectors; random vectors add it as the "+1"
    extra = 0 if exact else 1
    p_count = (extra + (counts >= observed[None, :]).sum(axis=0)) / (n_vec + extra)
    tmax_sorted = np.sort(tmax)
    reach = n_vec - np.searchsorted(tmax_sorted, t_abs * (1 - _TIE_RTOL), side="left")
    p_fwer = (extra + reach) / (n_vec + extra)
    # smallest |t| with p_fwer <= alpha: need (extra + reach) <= alpha (n_vec + extra)
    max_reach = math.floor(config.alpha * (n_vec + extra) + 1e-9) - extra
    # Under exact enumeration the identity is one of the vectors, so every unit has reach >= 1.
    min_reach = 1 if exact else 0
    fwer_t = float(tmax_sorted[n_vec - max_reach - 1]) if min_reach <= max_reach < n_vec else (
        0.0 if max_reach >= n_vec else math.inf)
    return PermutationNull(n_perm=n_vec, exact=exact, thresholds=config.thresholds, quantile=config.null_quantile,
                           counts=counts, observed=observed, p99=p99, ratio=ratio, p_count=p_count, tmax=tmax,
                           p_fwer=p_fwer, alpha=config.alpha, fwer_t=fwer_t)


# ------------------------------------------------------------------------------------- split half

@dataclass(frozen=True, eq=False)
class SplitHalf:
    """Split-half consistency of per-unit t. `r` is [n_splits]; nan when undefined (n < 4)."""
    r: np.ndarray
    median: float
    q25: float
    q75: float
    half_sizes: tuple[int, int]
    t_half1: np.ndarray | None  # [U] per-unit t in the two halves of the first split (for a scatter plot)
    t_half2: np.ndarray | None

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    num = (x * y).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _subset_t32(w: np.ndarray, dc: np.ndarray, dc2: np.ndarray, center: np.ndarray, k: int) -> np.ndarray:
    """Per-unit t [S, U] (float32) of subsets of k pairs (rows of 0/1 weights `w` [S, n], each summing to
    k), from moments shifted by the full-sample mean (see `_Resampler`). Zero variance -> 0."""
    m = w @ dc
    v = w @ dc2
    m *= np.float32(1.0 / k)                       # mean shift
    tmp = np.square(m)
    tmp *= np.float32(k)
    v -= tmp
    v *= np.float32(1.0 / (k - 1))                 # variance (ddof 1)
    m += center                                    # subset mean
    np.square(m, out=tmp)
    tmp *= np.float32(_DEGENERATE_RTOL ** 2)
    degenerate = v <= tmp
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(np.float32(k), v, out=v)
        np.sqrt(v, out=v)
        m *= v                                     # t = mean sqrt(k / var)
    m[degenerate] = 0.0
    return m


def split_half(diff: np.ndarray, n_splits: int = 100, seed: int = 0) -> SplitHalf:
    """Pearson r across units of per-unit t between two random halves of the pairs, n_splits times."""
    diff = np.asarray(diff, dtype=np.float64)
    n = diff.shape[0]
    h1 = n // 2
    sizes = (h1, n - h1)
    if h1 < 2 or n_splits < 1:
        nan = float("nan")
        return SplitHalf(np.full(max(n_splits, 0), np.nan), nan, nan, nan, sizes, None, None)
    rng = np.random.default_rng([seed, _STREAM_SPLIT])
    w1 = np.zeros((n_splits, n))   # per split: 1 for the pairs of the first half
    for s in range(n_splits):
        w1[s, rng.permutation(n)[:h1]] = 1.0
    center = diff.mean(axis=0)
    dc = diff - center
    dc32, dc2_32, center32 = dc.astype(np.float32), (dc * dc).astype(np.float32), center.astype(np.float32)
    w1 = w1.astype(np.float32)
    t1 = _subset_t32(w1, dc32, dc2_32, center32, sizes[0])
    t2 = _subset_t32(1.0 - w1, dc32, dc2_32, center32, sizes[1])
    r = _rowwise_pearson(t1.astype(np.float64), t2.astype(np.float64))
    fin = r[np.isfinite(r)]
    med, q25, q75 = (float(v) for v in np.percentile(fin, [50, 25, 75])) if fin.size else (np.nan,) * 3
    return SplitHalf(r=r, median=med, q25=q25, q75=q75, half_sizes=sizes, t_half1=t1[0], t_half2=t2[0])


# -------------------------------------------------------------------------------------- per block

@dataclass(frozen=True, eq=False)
class BlockStats:
    """Per-block statistics with bootstrap percentile CIs over pairs. B = blocks, K = thresholds.

    CI arrays are [..., 2] (low, high) and nan when n_boot = 0; `boot_median` holds the bootstrap
    medians of (max|t|, counts..., median|d|) as [B, 2 + K]. None of these statistics is a smooth
    function of the pair means: resampling pairs adds noise to every unit's t, so for blocks made
    mostly of null units the bootstrap distribution (and the percentile interval) lies above the
    observed value. Read the interval as the spread of the statistic over resampled experiments,
    not as an interval that must cover the observed value; compare blocks with it, not with 0.
    """
    names: tuple[str, ...]          # in order of first appearance among the units
    n_units: np.ndarray             # [B]
    thresholds: tuple[float, ...]
    max_abs_t: np.ndarray           # [B]
    max_abs_t_ci: np.ndarray        # [B, 2]
    n_abs_t_gt: np.ndarray          # [B, K]
    n_abs_t_gt_ci: np.ndarray       # [B, K, 2]
    median_abs_d: np.ndarray        # [B]
    median_abs_d_ci: np.ndarray     # [B, 2]
    boot_median: np.ndarray         # [B, 2 + K]: bootstrap medians of max|t|, median|d|, counts (nan: no boot)
    n_boot: int
    ci: float

    def rows(self) -> list[dict]:
        """One JSON-able dict per block (summary.json's `blocks`)."""
        out = []
        for i, name in enumerate(self.names):
            row = {"block": name, "n_units": int(self.n_units[i]),
                   "max_abs_t": float(self.max_abs_t[i]), "max_abs_t_ci": [float(v) for v in self.max_abs_t_ci[i]],
                   "max_abs_t_boot_median": float(self.boot_median[i, 0])}
            for k, c in enumerate(self.thresholds):
                key = f"n_abs_t_gt_{threshold_key(c)}"
                row[key] = int(self.n_abs_t_gt[i, k])
                row[key + "_ci"] = [float(v) for v in self.n_abs_t_gt_ci[i, k]]
                row[key + "_boot_median"] = float(self.boot_median[i, 2 + k])
            row["median_abs_d"] = float(self.median_abs_d[i])
            row["median_abs_d_ci"] = [float(v) for v in self.median_abs_d_ci[i]]
            row["median_abs_d_boot_median"] = float(self.boot_median[i, 1])
            out.append(row)
        return out


def _block_index(unit_blocks: np.ndarray) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Block names in first-appearance order, a column order making blocks contiguous, and slice bounds."""
    names, first, inverse = np.unique(unit_blocks, return_index=True, return_inverse=True)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(names))
    block_of = rank[inverse]
    order = np.argsort(block_of, kind="stable")
    bounds = np.searchsorted(block_of[order], np.arange(len(names) + 1))
    return tuple(str(s) for s in names[np.argsort(first, kind="stable")]), order, bounds


def _block_reduce(t: np.ndarray, d: np.ndarray, bounds: np.ndarray, thr: np.ndarray):
    """t, d [S, U] (columns already block-ordered) -> max|t| [S, B], counts [S, B, K], median|d| [S, B]."""
    at = np.abs(t)
    ad = np.abs(d)
    nb = len(bounds) - 1
    mx = np.empty((t.shape[0], nb))
    cnt = np.empty((t.shape[0], nb, thr.size), dtype=np.int64)
    med = np.empty((t.shape[0], nb))
    for i in range(nb):
        lo, hi = bounds[i], bounds[i + 1]
        blk = at[:, lo:hi]
        mx[:, i] = blk.max(axis=1)
        for k, c in enumerate(thr):
            cnt[:, i, k] = np.count_nonzero(blk > c, axis=1)
        med[:, i] = np.median(ad[:, lo:hi], axis=1)
    return mx, cnt, med


class _Resampler:
    """Per-unit q of pair resamples, tile by tile (shared by the block bootstrap and `resampled_abs_t_mean`).

    For multiplicities w [S, n] (float32, each row summing to n) and differences diff [n, U], with
    dc = diff - center (center = the full-sample mean, which keeps the variance free of cancellation),
    S1 = w @ dc and S2 = w @ dc2: a resample has mean (n center + S1) / n and variance
    (n S2 - S1^2) / (n (n - 1)), so q = (n center + S1)^2 / (n S2 - S1^2) gives t^2 = (n - 1) q and
    d^2 = (n - 1) q / n; every statistic here is monotone in q. Tiles of a few hundred resamples x one
    block of units keep the elementwise passes in cache. float32 moves t by ~1e-6 relative, far below
    the resampling spread it summarises. Zero-variance resamples (sd <= 1e-12 |mean|) give q = 0.
    """

    def __init__(self, diff: np.ndarray, w: np.ndarray):
        diff = np.asarray(diff, dtype=np.float64)
        self.n = diff.shape[0]
        center = diff.mean(axis=0)
        dc = diff - center
        self.dc = dc.astype(np.float32)
        self.dc2 = (dc * dc).astype(np.float32)
        self.ncenter = (center * self.n).astype(np.float32)
        self.w = np.asarray(w, dtype=np.float32)
        self.wn = self.w * np.float32(self.n)
        self.eps = np.float32(_DEGENERATE_RTOL ** 2 * (self.n - 1) / self.n)

    def tiles(self, lo: int, hi: int):
        """Yield (r0, r1, q [r1 - r0, hi - lo] float32) over all resamples for units lo:hi."""
        rows = max(1, _TILE // max(hi - lo, 1))
        for r0 in range(0, self.w.shape[0], rows):
            r1 = min(r0 + rows, self.w.shape[0])
            s1 = self.w[r0:r1] @ self.dc[:, lo:hi]
            den = self.wn[r0:r1] @ self.dc2[:, lo:hi]
            tmp = np.square(s1)
            den -= tmp                                  # n S2 - S1^2
            s1 += self.ncenter[lo:hi]
            np.square(s1, out=s1)                       # (n center + S1)^2
            np.multiply(s1, self.eps, out=tmp)
            degenerate = den <= tmp
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.divide(s1, den, out=s1)
            if degenerate.any():
                q[degenerate] = 0.0
            yield r0, r1, q


def _boot_blocks(rs: _Resampler, bounds: np.ndarray, thr: np.ndarray):
    """Bootstrap resamples -> per-block max|t| [S, B], counts |t| > c [S, B, K] and median|d| [S, B]
    (block-ordered units; see `_Resampler`)."""
    n_boot, n = rs.w.shape
    nb, nk = len(bounds) - 1, thr.size
    mx = np.empty((n_boot, nb))
    cnt = np.empty((n_boot, nb, nk), dtype=np.int64)
    med = np.empty((n_boot, nb))
    q_thr = (thr.astype(np.float64) ** 2 / (n - 1)).astype(np.float32)      # |t| > c  <=>  q > c^2 / (n - 1)
    for i in range(nb):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        size = hi - lo
        k = size // 2
        for r0, r1, q in rs.tiles(lo, hi):
            mx[r0:r1, i] = np.sqrt(q.max(axis=1).astype(np.float64) * (n - 1))
            for j, c in enumerate(q_thr):
                cnt[r0:r1, i, j] = np.count_nonzero(q > c, axis=1)
            # in place: [:, k] is the upper middle value; q >= 0, so its int32 bit patterns sort as the floats do
            # (and partition faster: no NaN-aware comparisons)
            q.view(np.int32).partition(k, axis=1)
            upper = q[:, k].astype(np.float64)
            # median of |d|: the middle value, or the mean of the two middle values when the block is even
            mid = np.sqrt(upper) if size % 2 else 0.5 * (np.sqrt(upper) + np.sqrt(q[:, :k].max(axis=1).astype(
                np.float64)))
            med[r0:r1, i] = mid * math.sqrt((n - 1) / n)
    return mx, cnt, med


def resample_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] float32 multiplicities of `n_boot` resamples of n pairs drawn with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n), dtype=np.float32)
    np.add.at(w, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return w


def resampled_abs_t_mean(diff: np.ndarray, w: np.ndarray, width: int = 4096) -> np.ndarray:
    """Mean over units of |t| in each resample of the pairs (rows of multiplicities `w` [S, n]): [S].

    The per-unit t of every resample is recomputed from the differences `diff` [n, U], so the
    dependence between units (they share the pairs) is kept: the pairs are the independent units.
    """
    rs = _Resampler(diff, w)
    n_units = rs.dc.shape[1]
    total = np.zeros(rs.w.shape[0])
    for lo in range(0, n_units, width):
        hi = min(lo + width, n_units)
        for r0, r1, q in rs.tiles(lo, hi):
            total[r0:r1] += np.sqrt(q.astype(np.float64) * (rs.n - 1)).sum(axis=1)
    return total / max(n_units, 1)


def block_stats(diff: np.ndarray, unit_blocks, config: StatsConfig = StatsConfig(),
                unit: UnitStats | None = None) -> BlockStats:
    """Per-block max|t|, counts |t| > c and median |d| with bootstrap CIs over pairs (see module docstring)."""
    diff = np.asarray(diff, dtype=np.float64)
    n = diff.shape[0]
    unit = unit if unit is not None else _unit_stats(diff)
    names, order, bounds = _block_index(np.asarray(unit_blocks).astype(str))
    thr = np.asarray(config.thresholds)
    mx, cnt, med = _block_reduce(unit.t[None, order], unit.d[None, order], bounds, thr)
    nb, nk = len(names), thr.size
    mx_ci = np.full((nb, 2), np.nan)
    cnt_ci = np.full((nb, nk, 2), np.nan)
    med_ci = np.full((nb, 2), np.nan)
    boot_median = np.full((nb, 2 + nk), np.nan)
    if config.n_boot > 0:
        w = resample_weights(n, config.n_boot, np.random.default_rng([config.seed, _STREAM_BOOT]))
        bmx, bcnt, bmed = _boot_blocks(_Resampler(diff[:, order], w), bounds, thr)
        q = [50 * (1 - config.ci), 100 - 50 * (1 - config.ci)]
        mx_ci = np.moveaxis(np.percentile(bmx, q, axis=0), 0, -1)
        cnt_ci = np.moveaxis(np.percentile(bcnt, q, axis=0), 0, -1)
        med_ci = np.moveaxis(np.percentile(bmed, q, axis=0), 0, -1)
        boot_median = np.column_stack([np.median(bmx, axis=0), np.median(bmed, axis=0), np.median(bcnt, axis=0)])
    return BlockStats(names=names, n_units=np.diff(bounds), thresholds=config.thresholds, max_abs_t=mx[0],
                      max_abs_t_ci=mx_ci, n_abs_t_gt=cnt[0], n_abs_t_gt_ci=cnt_ci, median_abs_d=med[0],
                      median_abs_d_ci=med_ci, boot_median=boot_median, n_boot=config.n_boot, ci=config.ci)


# -------------------------------------------------------------------------------------- contrasts

@dataclass(frozen=True, eq=False)
class ContrastStats:
    """Everything computed for one contrast or one direct comparison."""
    n_pairs: int
    mean_a: np.ndarray | None   # [U] mean of the contrast's `a` (None for a direct comparison)
    mean_b: np.ndarray | None   # [U]
    unit: UnitStats
    null: PermutationNull
    split: SplitHalf
    blocks: BlockStats
    pair_ids: np.ndarray | None = None   # [n_pairs] the pairs it was computed on (None: by position)

    def summary(self, config: StatsConfig) -> dict:
        """JSON-able numbers of this contrast (non-finite values are float('nan'))."""
        u, nl = self.unit, self.null
        s: dict = {"n_pairs": self.n_pairs, "n_units": int(u.t.size)}
        for k, c in enumerate(nl.thresholds):
            key = threshold_key(c)
            s[f"n_abs_t_gt_{key}"] = int(nl.observed[k])
            s[f"null_p99_abs_t_gt_{key}"] = float(nl.p99[k])
            s[f"ratio_vs_null_p99_abs_t_gt_{key}"] = float(nl.ratio[k])
            s[f"null_p_abs_t_gt_{key}"] = float(nl.p_count[k])
            s[f"null_mean_abs_t_gt_{key}"] = float(nl.counts[:, k].mean())
            s[f"null_max_abs_t_gt_{key}"] = int(nl.counts[:, k].max())
        s["null_quantile"] = nl.quantile
        s["null_ratio_note"] = "observed count / max(null p99, 1)"
        s["split_half_r_median"] = self.split.median
        s["split_half_r_q25"] = self.split.q25
        s["split_half_r_q75"] = self.split.q75
        s["split_half_r_iqr"] = self.split.iqr
        s["split_half_sizes"] = list(self.split.half_sizes)
        s["max_abs_t"] = float(np.max(np.abs(u.t))) if u.t.size else float("nan")
        s["max_abs_t_unit_index"] = int(np.argmax(np.abs(u.t))) if u.t.size else -1
        s["median_abs_d"] = float(np.median(np.abs(u.d))) if u.d.size else float("nan")
        s[f"n_abs_d_gt_{threshold_key(config.d_threshold)}"] = int(np.count_nonzero(np.abs(u.d) > config.d_threshold))
        s["n_fwer_significant"] = int(np.count_nonzero(nl.significant))
        s["fwer_alpha"] = nl.alpha
        s["fwer_abs_t_threshold"] = nl.fwer_t
        s["null_tmax_p95"] = float(np.percentile(nl.tmax, 95))
        s[f"n_q_le_{threshold_key(config.alpha)}"] = int(np.count_nonzero(u.q <= config.alpha))
        s["n_zero_variance_units"] = int(np.count_nonzero(u.degenerate))
        s["n_perm"] = nl.n_perm
        s["null_exact"] = nl.exact
        s["blocks"] = self.blocks.rows()
        return s


def _analyse_diff(diff: np.ndarray, unit_blocks, config: StatsConfig, mean_a=None, mean_b=None,
                  pair_ids=None) -> ContrastStats:
    """Unit stats, sign-flip/tmax null, split-half and per-block stats of per-pair differences [n, U]."""
    unit = _unit_stats(diff)
    null = sign_flip_null(diff, unit.t, config, degenerate=unit.degenerate)
    split = split_half(diff, config.n_splits, config.seed)
    blocks = block_stats(diff, unit_blocks, config, unit=unit)
    return ContrastStats(n_pairs=diff.shape[0], mean_a=mean_a, mean_b=mean_b, unit=unit, null=null, split=split,
                         blocks=blocks, pair_ids=pair_ids)


def analyse_contrast(a, b, unit_blocks, config: StatsConfig = StatsConfig(), what: str = "a/b") -> ContrastStats:
    """Unit stats, sign-flip/tmax null, split-half and per-block stats of one paired contrast a - b."""
    diff = _as_diff(a, b, what)
    return _analyse_diff(diff, unit_blocks, config, np.asarray(a, dtype=np.float64).mean(axis=0),
                         np.asarray(b, dtype=np.float64).mean(axis=0))


def blocks_from_units(units) -> np.ndarray:
    """Block label of each unit name: the name without its last '/' part ('s12/double.3.img/h07' ->
    's12/double.3.img'); names without '/' all fall in one block 'all'."""
    units = np.asarray(units).astype(str)
    if units.size and all("/" in u for u in units):
        return np.array([u.rsplit("/", 1)[0] for u in units])
    return np.full(units.shape, "all")


@dataclass(frozen=True, eq=False)
class Contrast:
    """A named paired contrast: per pair i and unit u, diff = a - b (b - a with `reverse`).

    `columns` is the units.csv column pattern of its per-unit statistics (`{stat}` and `{name}` are
    filled in; None: no columns of its own, e.g. the text probe's main contrast, whose columns are the
    top-level t, d, ...); `column_stats` lists which statistics get a column (t, d, p, q, p_fwer,
    mean_diff). `label` says in words what a positive t means ("A photograph − B albedo").
    """
    name: str
    a: np.ndarray                            # [pairs, units]
    b: np.ndarray                            # [pairs, units]
    pair_ids: np.ndarray | None = None       # [pairs] str; None: rows are matched by position
    reverse: bool = False
    label: str = ""
    columns: str | None = "{stat}_{name}"
    column_stats: tuple[str, ...] = ("t", "d", "p_fwer")

    def diff(self) -> np.ndarray:
        d = _as_diff(self.a, self.b, f"contrast {self.name!r}")
        return -d if self.reverse else d


@dataclass(frozen=True)
class Direct:
    """A direct paired test between two contrasts: per shared pair, diff(`of`) - diff(`minus`), with the
    same t / sign-flip / tmax / split-half / block machinery. For the text probe, of = main (A - B) and
    minus = a control set (A - C) give C - B: the control prompt minus the albedo prompt, same noise.

    Columns: `{stat}_{name}` for t, d, p_fwer; with `selective`, also `selective_{name}` = 1 where `of`
    and this comparison are both FWER-significant with the same sign.
    """
    name: str
    of: str
    minus: str
    label: str = ""
    selective: bool = True
    column_stats: tuple[str, ...] = ("t", "d", "p_fwer")


SELECTIVE_DEFINITION = (
    "selective beyond a control set C (selective_vs_C): the main contrast and the direct paired test of the "
    "control prompt against the albedo prompt of the same pair (same noise; t_vs_C) are both FWER-significant "
    "(tmax sign-flip null, p_fwer <= alpha) with the same sign; selective_beyond_control: selective beyond "
    "every control set of the run")

_STAT_COLUMNS = ("t", "d", "p", "q", "p_fwer", "mean_diff", "sd_diff")


def _stat_column(cs: ContrastStats, stat: str) -> np.ndarray:
    if stat == "p_fwer":
        return cs.null.p_fwer
    if stat not in _STAT_COLUMNS:
        raise ValueError(f"unknown column statistic {stat!r}; one of {_STAT_COLUMNS}")
    return getattr(cs.unit, stat)


@dataclass(frozen=True, eq=False)
class Analysis:
    """Result of `analyse`: statistics of every named contrast and direct comparison, by name.

    `main` is the primary contrast; `control` the `paraphrase` contrast when there is one (the lexical
    control the report and the legacy `control_*` columns describe).
    """
    config: StatsConfig
    units: np.ndarray                               # [U] unit names
    unit_blocks: np.ndarray                         # [U] block label per unit
    primary: str
    contrasts: dict                                 # name -> Contrast (definitions, arrays included)
    stats: dict                                     # name -> ContrastStats
    directs: dict                                   # name -> Direct
    direct_stats: dict                              # name -> ContrastStats
    selective: dict                                 # direct name -> [U] bool (directs with selective=True)
    all_selective: str | None = None                # column: selective beyond every selective direct
    classification: object | None = None            # image probe: probe.classify.Classification of the units
    constant_columns: tuple = ()                    # (name, value) columns of units.csv with one value for all

    @property
    def main(self) -> ContrastStats:
        return self.stats[self.primary]

    @property
    def control(self) -> ContrastStats | None:
        return self.stats.get("paraphrase")

    @property
    def selective_beyond_control(self) -> np.ndarray | None:
        """[U] bool: selective beyond every control set (None without control sets)."""
        if not self.selective:
            return None
        return np.logical_and.reduce(list(self.selective.values()))

    @property
    def direction(self) -> str:
        return self.contrasts[self.primary].label

    @property
    def t(self) -> np.ndarray:
        return self.main.unit.t

    @property
    def p_fwer(self) -> np.ndarray:
        return self.main.null.p_fwer

    def units_table(self) -> dict[str, np.ndarray]:
        """Columns of units.csv, one row per unit, by rule: the primary contrast's top-level columns, each
        contrast's `columns` pattern, `selective_beyond_control` (with selective directs), each direct's
        `{stat}_{name}` and `selective_{name}`, and `direction` (what a positive top-level t means)."""
        u, nl = self.main.unit, self.main.null
        cols: dict[str, np.ndarray] = {
            "unit": self.units, "block": self.unit_blocks, "t": u.t, "d": u.d, "p": u.p, "q": u.q,
            "p_fwer": nl.p_fwer, "fwer_significant": nl.significant.astype(np.int8),
            "mean_a": self.main.mean_a, "mean_b": self.main.mean_b, "mean_diff": u.mean_diff, "sd_diff": u.sd_diff,
        }
        for name, c in self.contrasts.items():
            if c.columns is None:
                continue
            for stat in c.column_stats:
                cols[c.columns.format(stat=stat, name=name)] = _stat_column(self.stats[name], stat)
        if self.all_selective and self.selective:
            cols[self.all_selective] = self.selective_beyond_control.astype(np.int8)
        for name, dr in self.directs.items():
            for stat in dr.column_stats:
                cols[f"{stat}_{name}"] = _stat_column(self.direct_stats[name], stat)
            if name in self.selective:
                cols[f"selective_{name}"] = self.selective[name].astype(np.int8)
        if self.classification is not None:
            for name, p in self.classification.p_equiv.items():
                cols[f"p_equiv_{name}"] = p
            cols["class"] = self.classification.classes
        for name, value in self.constant_columns:
            cols[name] = np.full(self.units.shape, value)
        cols["direction"] = np.full(self.units.shape, self.direction or "a-b")
        return cols

    def summary(self) -> dict:
        """JSON-able summary (summary.json). Primary-contrast keys at top level; every other contrast under
        `contrasts`, every direct comparison under `directs`, the paraphrase control also under `control`.

        Always present: n_pairs, n_units, n_abs_t_gt_3, n_abs_t_gt_5, null_p99_abs_t_gt_3,
        null_p99_abs_t_gt_5, split_half_r_median, max_abs_t (the 3/5 keys follow `thresholds`), and
        `n_selective_<direct>` for each selective direct (text probe: n_selective_vs_<control>).
        Undefined numbers (e.g. split-half with < 4 pairs) are float('nan').
        """
        cfg = self.config
        s = self.main.summary(cfg)
        s["max_abs_t_unit"] = str(self.units[s["max_abs_t_unit_index"]]) if self.units.size else ""
        s["thresholds"] = list(cfg.thresholds)
        s["n_splits"] = int(self.main.split.r.size)
        s["n_boot"] = cfg.n_boot
        s["bootstrap_ci"] = cfg.ci
        s["seed"] = cfg.seed
        s["primary_contrast"] = self.primary
        s["direction"] = self.direction
        # machine-readable: which way round the primary contrast's per-pair difference (and t) is taken
        s["t_direction"] = "b-a" if self.contrasts[self.primary].reverse else "a-b"
        s["sign_convention"] = (f"t > 0 means the unit is larger on the first term of '{self.direction}'; every "
                                f"statistic is on that per-pair difference")
        s["contrasts"] = {}
        for name, c in self.contrasts.items():
            if name == self.primary:
                continue
            s["contrasts"][name] = {"label": c.label, **self.stats[name].summary(cfg)}
        s["directs"] = {}
        for name, dr in self.directs.items():
            d = {"label": dr.label, "of": dr.of, "minus": dr.minus, **self.direct_stats[name].summary(cfg)}
            if name in self.selective:
                d["n_selective"] = int(np.count_nonzero(self.selective[name]))
                s[f"n_selective_{name}"] = d["n_selective"]
            s["directs"][name] = d
        if self.selective:
            s["selective_definition"] = SELECTIVE_DEFINITION
            if self.all_selective:
                s[f"n_{self.all_selective}"] = int(np.count_nonzero(self.selective_beyond_control))
        if self.control is not None:
            c = dict(s["contrasts"]["paraphrase"])
            if "vs_paraphrase" in self.selective:
                c["n_selective_vs_paraphrase"] = int(np.count_nonzero(self.selective["vs_paraphrase"]))
            if self.all_selective:
                c[f"n_{self.all_selective}"] = s[f"n_{self.all_selective}"]
            c["selective_definition"] = SELECTIVE_DEFINITION
            c["n_fwer_significant_in_both"] = int(np.count_nonzero(
                self.main.null.significant & self.control.null.significant))
            for k, th in enumerate(cfg.thresholds):
                key = threshold_key(th)
                m, ct = int(self.main.null.observed[k]), int(self.control.null.observed[k])
                c[f"main_minus_control_abs_t_gt_{key}"] = m - ct
                c[f"main_over_control_abs_t_gt_{key}"] = m / max(ct, 1)
            c["ratio_note"] = "main count / max(control count, 1)"
            s["control"] = c
        else:
            s["control"] = None
        if self.classification is not None:
            s["classes"] = self.classification.summary(self.unit_blocks)
            for k in ("lighting_selective", "albedo_selective", "both", "neither", "inconclusive"):
                s[f"n_{k}"] = s["classes"][f"n_{k}"]
        return s

    def write_units_csv(self, path) -> None:
        """units.csv (floats as %.6g, empty for non-finite), written atomically."""
        import csv

        table = self.units_table()
        cols = list(table)
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(cols)
                for i in range(len(self.units)):
                    row = []
                    for c in cols:
                        v = table[c][i]
                        if isinstance(v, (float, np.floating)):
                            v = f"{float(v):.6g}" if np.isfinite(v) else ""
                        row.append(v)
                    w.writerow(row)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _map(fn, items: list, threads: int) -> list:
    """[fn(x) for x in items], on `threads` threads (numpy's kernels release the GIL); order kept."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        return list(ex.map(fn, items))


def _aligned_rows(of: Contrast, minus: Contrast, n_of: int, n_minus: int, what: str):
    """Row indices of the pairs two contrasts share, in `of`'s order."""
    if of.pair_ids is None or minus.pair_ids is None:
        if of.pair_ids is not None or minus.pair_ids is not None:
            raise CapturesError(f"{what}: give pair ids for both contrasts or for neither")
        if n_of != n_minus:
            raise CapturesError(f"{what}: without pair ids both contrasts need the same number of pairs "
                                f"({n_of} vs {n_minus})")
        return np.arange(n_of), np.arange(n_minus), None
    pos = {str(p): i for i, p in enumerate(np.asarray(minus.pair_ids).astype(str))}
    ids = [str(p) for p in np.asarray(of.pair_ids).astype(str) if str(p) in pos]
    of_pos = {str(p): i for i, p in enumerate(np.asarray(of.pair_ids).astype(str))}
    return (np.array([of_pos[p] for p in ids], dtype=np.int64), np.array([pos[p] for p in ids], dtype=np.int64),
            np.array(ids))


def analyse(contrasts, units, directs=(), unit_blocks=None, config: StatsConfig = StatsConfig(),
            all_selective: str | None = None) -> Analysis:
    """Run every statistic on each named contrast and each direct comparison between them.

    contrasts: a sequence of `Contrast` (the first is the primary one: units.csv's top-level columns);
    directs: a sequence of `Direct` naming two of the contrasts; units [U] names; unit_blocks [U] block
    labels (default `blocks_from_units(units)`); all_selective: name of a column that is 1 where every
    selective direct comparison is (the text probe: `selective_beyond_control`).
    Raises CapturesError for mismatched shapes, unknown names or non-finite values.
    """
    contrasts = list(contrasts)
    directs = list(directs)
    if not contrasts:
        raise CapturesError("analyse needs at least one contrast")
    units = np.asarray(units).astype(str)
    names = [c.name for c in contrasts] + [d.name for d in directs]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise CapturesError(f"contrast and direct-comparison names must be unique: {dupes} repeat")
    diffs = {}
    for c in contrasts:
        if not isinstance(c, Contrast):
            raise TypeError("analyse(contrasts, ...): every contrast must be a probe.stats.Contrast")
        d = c.diff()
        if units.shape != (d.shape[1],):
            raise CapturesError(f"units: need {d.shape[1]} names (one per column of contrast {c.name!r}), got "
                                f"shape {units.shape}")
        if c.pair_ids is not None and np.asarray(c.pair_ids).shape != (d.shape[0],):
            raise CapturesError(f"contrast {c.name!r}: need {d.shape[0]} pair ids, got "
                                f"shape {np.asarray(c.pair_ids).shape}")
        diffs[c.name] = d
    unit_blocks = blocks_from_units(units) if unit_blocks is None else np.asarray(unit_blocks).astype(str)
    if unit_blocks.shape != units.shape:
        raise CapturesError(f"unit_blocks: need {units.size} labels, got shape {unit_blocks.shape}")
    by_name = {c.name: c for c in contrasts}
    jobs = []   # (kind, name, diff, mean_a, mean_b, pair_ids)
    for c in contrasts:
        jobs.append(("contrast", c.name, diffs[c.name], np.asarray(c.a, dtype=np.float64).mean(axis=0),
                     np.asarray(c.b, dtype=np.float64).mean(axis=0),
                     None if c.pair_ids is None else np.asarray(c.pair_ids).astype(str)))
    for dr in directs:
        if dr.of not in by_name or dr.minus not in by_name:
            raise CapturesError(f"direct comparison {dr.name!r} names contrasts {dr.of!r} and {dr.minus!r}; "
                                f"known contrasts: {', '.join(by_name)}")
        what = f"direct comparison {dr.name!r}"
        ro, rm, ids = _aligned_rows(by_name[dr.of], by_name[dr.minus], diffs[dr.of].shape[0],
                                    diffs[dr.minus].shape[0], what)
        if ro.size < 2:
            raise CapturesError(f"{what}: contrasts {dr.of!r} and {dr.minus!r} share {ro.size} pairs; a paired "
                                f"test needs at least 2")
        jobs.append(("direct", dr.name, diffs[dr.of][ro] - diffs[dr.minus][rm], None, None, ids))

    def run(job):
        _, _, diff, ma, mb, ids = job
        return _analyse_diff(diff, unit_blocks, config, ma, mb, ids)

    results = _map(run, jobs, config.threads)
    stats = {j[1]: r for j, r in zip(jobs, results) if j[0] == "contrast"}
    direct_stats = {j[1]: r for j, r in zip(jobs, results) if j[0] == "direct"}
    selective = {}
    for dr in directs:
        if dr.selective:
            m, x = stats[dr.of], direct_stats[dr.name]
            selective[dr.name] = (m.null.significant & x.null.significant
                                  & (np.sign(m.unit.t) == np.sign(x.unit.t)) & (m.unit.t != 0))
    return Analysis(config=config, units=units, unit_blocks=unit_blocks, primary=contrasts[0].name,
                    contrasts=by_name, stats=stats, directs={d.name: d for d in directs}, direct_stats=direct_stats,
                    selective=selective, all_selective=all_selective if selective else None)


# ------------------------------------------------------------------------------------ text probe

TEXT_DIRECTIONS = ("a-b", "b-a")


def text_contrasts(a, b, pair_ids=None, controls=None, direction: str = "a-b") -> tuple[list, list]:
    """The text probe's contrasts and direct comparisons.

    main: A (lit-photograph prompt) vs B (albedo prompt); per control set NAME (`controls`: {name:
    ControlSet or (a, b[, pair_ids])}, where `a` is the pair's A and `b` the control prompt): the contrast
    A vs control prompt (columns `control_{stat}` for `paraphrase`, the legacy names, else
    `control_NAME_{stat}`), and the direct comparison `vs_NAME` = main minus that contrast = control
    prompt minus albedo prompt (columns t_vs_NAME, d_vs_NAME, p_fwer_vs_NAME, selective_vs_NAME).
    direction "a-b" (t > 0: higher for A) or "b-a" (the card family's t = mean(second - first)).
    """
    if direction not in TEXT_DIRECTIONS:
        raise ValueError(f"direction must be one of {TEXT_DIRECTIONS}, got {direction!r}")
    reverse = direction == "b-a"
    ids = None if pair_ids is None else np.asarray(pair_ids).astype(str)

    def lab(first: str, second: str) -> str:
        return f"{second} - {first}" if reverse else f"{first} - {second}"

    out = [Contrast("main", a, b, ids, reverse, lab("A photograph", "B albedo"), columns=None)]
    dirs = []
    for name, cs in (controls or {}).items():
        check_control_name(name)
        if name == "main":
            raise CapturesError("'main' is the name of the main contrast, not a control set")
        ca, cb, cids = (cs.a, cs.b, cs.pair_ids) if isinstance(cs, ControlSet) else (tuple(cs) + (None,))[:3]
        if cids is None and ids is not None:
            m = np.asarray(ca).shape[0]
            if m > ids.size:
                raise CapturesError(f"control set {name!r}: {m} rows without pair ids, but only {ids.size} pairs")
            cids = ids[:m]
        legacy = name == PARAPHRASE
        out.append(Contrast(name, ca, cb, None if cids is None else np.asarray(cids).astype(str), reverse,
                            lab("A photograph", f"{name} control prompt"),
                            columns="control_{stat}" if legacy else "control_{name}_{stat}",
                            column_stats=("t", "d", "p", "q", "p_fwer") if legacy else ("t", "d", "p_fwer")))
        dirs.append(Direct(f"vs_{name}", of="main", minus=name,
                           label=lab(f"{name} control prompt", "B albedo")))
    return out, dirs


def analyse_text(a, b, units, pair_ids=None, controls=None, unit_blocks=None, config: StatsConfig = StatsConfig(),
                 direction: str = "a-b", control=None) -> Analysis:
    """`analyse` on the text probe's design (`text_contrasts`); selective_beyond_control over all controls.

    control=(ca, cb): shorthand for controls={"paraphrase": (ca, cb)} ((None, None) counts as no control).
    """
    if control is not None and not (control[0] is None and control[1] is None):
        if control[0] is None or control[1] is None:
            raise CapturesError("control: need both arrays (A and its paraphrase) or neither")
        ca = np.asarray(control[0])
        if ca.ndim != 2 or ca.shape[1] != np.asarray(a).shape[1]:
            raise CapturesError(f"control: need [control_pairs, {np.asarray(a).shape[1]}] arrays, got {ca.shape}")
        controls = {PARAPHRASE: tuple(control), **(controls or {})}
    contrasts, directs = text_contrasts(a, b, pair_ids, controls, direction)
    return analyse(contrasts, units, directs, unit_blocks, config, all_selective="selective_beyond_control")


def analyse_captures(captures: Captures, config: StatsConfig = StatsConfig()) -> Analysis:
    """`analyse_text` on a Captures of the text probe (every control set in the file), `analyse_images` on
    one of the image probe (meta 'stimuli' = 'images': every contrast in the file); the sign from
    meta['direction'] (default 'a-b', the convention of files written before the key existed)."""
    if captures.stimuli == "images":
        described = (captures.meta.get("image_design") or {}).get("contrasts") or {}
        labels = {n: (c.get("a", "A"), c.get("b", "B")) for n, c in described.items()}
        return analyse_images(captures.contrast_sets(), captures.units, captures.unit_blocks, config,
                              direction=captures.meta.get("direction", "a-b"), labels=labels,
                              pairs_over=(captures.meta.get("image_design") or {}).get("pairs_over", "scenes"))
    return analyse_text(captures.a, captures.b, captures.units, captures.pair_ids, captures.control_sets(),
                        captures.unit_blocks, config, direction=captures.meta.get("direction", "a-b"))


# ----------------------------------------------------------------------------------- image probe

IMAGE_LABELS = {"render_vs_albedo": ("render", "albedo"), "lighting": ("harder lighting", "softer lighting"),
                "albedo": ("higher albedo luminance", "lower albedo luminance")}


def image_contrasts(sets, direction: str = "a-b", labels=None) -> list[Contrast]:
    """The image probe's contrasts, in order (the first is the primary one): `sets` {name: ControlSet or
    (a, b[, pair_ids])}. Every contrast gets the columns t_NAME, d_NAME, p_fwer_NAME (CONTRACTS C3; the
    primary one besides the top-level t, d, p, ...). direction "a-b", or "b-a" (card protocol) for all."""
    if direction not in TEXT_DIRECTIONS:
        raise ValueError(f"direction must be one of {TEXT_DIRECTIONS}, got {direction!r}")
    reverse = direction == "b-a"
    out = []
    for name, cs in sets.items():
        check_control_name(name, "contrast")
        a, b, ids = (cs.a, cs.b, cs.pair_ids) if isinstance(cs, ControlSet) else (tuple(cs) + (None,))[:3]
        first, second = (labels or {}).get(name) or IMAGE_LABELS.get(name, ("A", "B"))
        out.append(Contrast(name, a, b, None if ids is None else np.asarray(ids).astype(str), reverse,
                            f"{second} - {first}" if reverse else f"{first} - {second}", columns="{stat}_{name}"))
    return out


def analyse_images(sets, units, unit_blocks=None, config: StatsConfig = StatsConfig(), direction: str = "a-b",
                   labels=None, pairs_over: str = "scenes") -> Analysis:
    """`analyse` on the image probe's contrasts (`image_contrasts`), then the unit classes from the lighting
    and albedo contrasts (`probe.classify`, margin `config.equivalence_margin`, level `config.alpha`).
    units.csv gets a `pairs_over` column: "scenes", or "samples (CLUSTERED)" when pairs are samples."""
    import dataclasses

    from probe.classify import classify_units

    res = analyse(image_contrasts(sets, direction, labels), units, (), unit_blocks, config)
    cls = None
    if "lighting" in res.stats and "albedo" in res.stats:
        cls = classify_units(res.stats["lighting"], res.stats["albedo"], config.equivalence_margin, config.alpha)
    flag = "scenes" if pairs_over == "scenes" else f"{pairs_over} (CLUSTERED)"
    return dataclasses.replace(res, classification=cls, constant_columns=(("pairs_over", flag),))
