"""Paired per-unit statistics for the probe: numpy/scipy only (no torch), vectorised over units.

    from probe.stats import StatsConfig, analyse, load_captures
    caps = load_captures("runs/probe/captures.npz")
    res = analyse(caps.a, caps.b, caps.units, unit_blocks=caps.unit_blocks,
                  control=(caps.control_a, caps.control_b), config=StatsConfig(n_perm=10_000, seed=0))
    res.summary()        # JSON-able dict (summary.json)
    res.units_table()    # {column: array} for units.csv (unit, block, t, d, p, q, p_fwer, ...)

Inputs are `a`, `b` [pairs, units]: A = rendered-photograph prompt, B = albedo prompt, row i of both
is the same scene. The contrast is always A - B (positive t: the unit is higher for the photograph
prompt). Everything works on the per-pair differences `diff = a - b` [n, U] in float64.

What is computed (each part also callable alone):
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
- `analyse`: all of the above for the main contrast and, given `control=(ca, cb)` (A against a
  lighting-neutral paraphrase of A, [control_pairs, units]), for the control contrast too, plus
  "selective beyond the control": a unit is selective beyond the control when
    (1) p_fwer_main(u) <= alpha, (2) p_fwer_control(u) > alpha, and (3) |d_main(u)| > |d_control(u)|.
  (3) compares effect sizes: with equal pair counts it is exactly |t_main| > |t_control|, and it
  stays fair when the control set has fewer pairs. Counts |t| > 3 / > 5 of both contrasts are in
  the summary side by side (`control` entry).
- `save_captures` / `load_captures`: the `captures.npz` interchange format, validated.

Seeds: the sign vectors, splits and bootstrap resamples come from independent streams derived
from `StatsConfig.seed`; the control contrast reuses them (same sign vectors when its pair count
is the same).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as _sps

__all__ = [
    "StatsConfig", "UnitStats", "PermutationNull", "SplitHalf", "BlockStats", "ContrastStats", "Analysis",
    "Captures", "CapturesError", "paired_t", "bh_q", "sign_flip_null", "split_half", "block_stats",
    "analyse_contrast", "analyse", "analyse_captures", "blocks_from_units", "save_captures", "load_captures",
    "threshold_key",
]

_DEGENERATE_RTOL = 1e-12   # sd(diff) at or below this fraction of |mean(diff)| is rounding, not variance
_TIE_RTOL = 1e-6           # the null runs in float32: values this close to |t_u| count as reaching it
_STREAM_NULL, _STREAM_SPLIT, _STREAM_BOOT = 1, 2, 3


class CapturesError(ValueError):
    """captures.npz (or arrays handed to `analyse`) are malformed: the message says which array and why."""


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

    def __post_init__(self):
        if self.n_perm < 1 or self.n_splits < 0 or self.n_boot < 0 or self.chunk < 1:
            raise ValueError(f"StatsConfig: n_perm >= 1, n_splits >= 0, n_boot >= 0, chunk >= 1 needed: {self}")
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
    for lo in range(0, n_vec, config.chunk):
        hi = min(lo + config.chunk, n_vec)
        y = buf[: hi - lo]
        np.matmul(signs[lo:hi], diff_n, out=y)
        np.abs(y, out=y)
        ymax[lo:hi] = y.max(axis=1)
        for k, c in enumerate(y_thr):
            counts[lo:hi, k] = np.count_nonzero(y > c, axis=1)
    tmax = _y_to_t(ymax, n)
    observed = np.array([np.count_nonzero(t_abs > c) for c in thr], dtype=np.int64)
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


def _masked_t(w: np.ndarray, dc: np.ndarray, dc2: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Per-unit t of the pairs weighted by integer counts w [S, n] (subsets or bootstrap multiplicities).

    dc = diff - center (center = the full-sample mean): shifting keeps the one-pass variance free
    of cancellation. Returns t [S, U] and d [S, U]; zero-variance -> 0.
    """
    k = w.sum(axis=1, keepdims=True)
    s1 = w @ dc
    s2 = w @ dc2
    mean_shift = s1 / k
    var = (s2 - s1 * mean_shift) / (k - 1)
    return _t_from_moments_k(center + mean_shift, var, k)


def _t_from_moments_k(mean, var, k):
    sd = np.sqrt(np.maximum(var, 0.0))
    degenerate = sd <= _DEGENERATE_RTOL * np.abs(mean) + 1e-300
    d = np.where(degenerate, 0.0, mean / np.where(degenerate, 1.0, sd))
    return d * np.sqrt(k), d


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    num = (x * y).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


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
    w1 = np.zeros((n_splits, n))
    for s in range(n_splits):
        w1[s, rng.permutation(n)[:h1]] = 1.0
    center = diff.mean(axis=0)
    dc = diff - center
    dc2 = dc * dc
    t1, _ = _masked_t(w1, dc, dc2, center)
    t2, _ = _masked_t(1.0 - w1, dc, dc2, center)
    r = _rowwise_pearson(t1, t2)
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
        rng = np.random.default_rng([config.seed, _STREAM_BOOT])
        idx = rng.integers(0, n, size=(config.n_boot, n))
        w = np.zeros((config.n_boot, n))
        np.add.at(w, (np.repeat(np.arange(config.n_boot), n), idx.ravel()), 1.0)
        dsorted = diff[:, order]
        center = dsorted.mean(axis=0)
        dc = dsorted - center
        dc2 = dc * dc
        bmx = np.empty((config.n_boot, nb))
        bcnt = np.empty((config.n_boot, nb, nk))
        bmed = np.empty((config.n_boot, nb))
        step = max(1, (4 << 20) // max(diff.shape[1], 1))   # ~32 MB of float64 per [step, U] temporary
        for lo in range(0, config.n_boot, step):
            hi = min(lo + step, config.n_boot)
            bt, bd = _masked_t(w[lo:hi], dc, dc2, center)
            bmx[lo:hi], bcnt[lo:hi], bmed[lo:hi] = _block_reduce(bt, bd, bounds, thr)
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
    """Everything computed for one contrast (main A vs B, or control A vs paraphrase of A)."""
    n_pairs: int
    mean_a: np.ndarray          # [U]
    mean_b: np.ndarray          # [U]
    unit: UnitStats
    null: PermutationNull
    split: SplitHalf
    blocks: BlockStats

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


def analyse_contrast(a, b, unit_blocks, config: StatsConfig = StatsConfig(), what: str = "a/b") -> ContrastStats:
    """Unit stats, sign-flip/tmax null, split-half and per-block stats of one paired contrast a - b."""
    diff = _as_diff(a, b, what)
    unit = _unit_stats(diff)
    null = sign_flip_null(diff, unit.t, config, degenerate=unit.degenerate)
    split = split_half(diff, config.n_splits, config.seed)
    blocks = block_stats(diff, unit_blocks, config, unit=unit)
    return ContrastStats(n_pairs=diff.shape[0], mean_a=np.asarray(a, dtype=np.float64).mean(axis=0),
                         mean_b=np.asarray(b, dtype=np.float64).mean(axis=0), unit=unit, null=null, split=split,
                         blocks=blocks)


def blocks_from_units(units) -> np.ndarray:
    """Block label of each unit name: the name without its last '/' part ('s12/double.3.img/h07' ->
    's12/double.3.img'); names without '/' all fall in one block 'all'."""
    units = np.asarray(units).astype(str)
    if units.size and all("/" in u for u in units):
        return np.array([u.rsplit("/", 1)[0] for u in units])
    return np.full(units.shape, "all")


SELECTIVE_DEFINITION = ("selective beyond the control: p_fwer(main) <= alpha, p_fwer(control) > alpha, "
                        "and |d_z(main)| > |d_z(control)| (= |t_main| > |t_control| when pair counts are equal)")


@dataclass(frozen=True, eq=False)
class Analysis:
    """Result of `analyse`. `main` is A vs B; `control` (or None) is A vs its lighting-neutral paraphrase."""
    config: StatsConfig
    units: np.ndarray                       # [U] unit names
    unit_blocks: np.ndarray                 # [U] block label per unit
    main: ContrastStats
    control: ContrastStats | None
    selective_beyond_control: np.ndarray | None   # [U] bool, see SELECTIVE_DEFINITION

    # convenience views of the main contrast
    @property
    def t(self) -> np.ndarray:
        return self.main.unit.t

    @property
    def p_fwer(self) -> np.ndarray:
        return self.main.null.p_fwer

    def units_table(self) -> dict[str, np.ndarray]:
        """Columns of units.csv, one row per unit (control_* columns only with a control set)."""
        u, nl = self.main.unit, self.main.null
        cols: dict[str, np.ndarray] = {
            "unit": self.units, "block": self.unit_blocks, "t": u.t, "d": u.d, "p": u.p, "q": u.q,
            "p_fwer": nl.p_fwer, "fwer_significant": nl.significant.astype(np.int8),
            "mean_a": self.main.mean_a, "mean_b": self.main.mean_b, "mean_diff": u.mean_diff, "sd_diff": u.sd_diff,
        }
        if self.control is not None:
            cu = self.control.unit
            cols.update({"control_t": cu.t, "control_d": cu.d, "control_p": cu.p, "control_q": cu.q,
                         "control_p_fwer": self.control.null.p_fwer,
                         "selective_beyond_control": self.selective_beyond_control.astype(np.int8)})
        return cols

    def summary(self) -> dict:
        """JSON-able summary (summary.json). Main-contrast keys at top level, control under `control`.

        Always present: n_pairs, n_units, n_abs_t_gt_3, n_abs_t_gt_5, null_p99_abs_t_gt_3,
        null_p99_abs_t_gt_5, split_half_r_median, max_abs_t (the 3/5 keys follow `thresholds`).
        Undefined numbers (e.g. split-half with < 4 pairs) are float('nan').
        """
        s = self.main.summary(self.config)
        s["max_abs_t_unit"] = str(self.units[s["max_abs_t_unit_index"]]) if self.units.size else ""
        s["thresholds"] = list(self.config.thresholds)
        s["n_splits"] = int(self.main.split.r.size)
        s["n_boot"] = self.config.n_boot
        s["bootstrap_ci"] = self.config.ci
        s["seed"] = self.config.seed
        if self.control is not None:
            c = self.control.summary(self.config)
            c["n_selective_beyond_control"] = int(np.count_nonzero(self.selective_beyond_control))
            c["selective_definition"] = SELECTIVE_DEFINITION
            c["n_fwer_significant_in_both"] = int(np.count_nonzero(
                self.main.null.significant & self.control.null.significant))
            for k, th in enumerate(self.config.thresholds):
                key = threshold_key(th)
                m, ct = int(self.main.null.observed[k]), int(self.control.null.observed[k])
                c[f"main_minus_control_abs_t_gt_{key}"] = m - ct
                c[f"main_over_control_abs_t_gt_{key}"] = m / max(ct, 1)
            c["ratio_note"] = "main count / max(control count, 1)"
            s["control"] = c
            s["n_selective_beyond_control"] = c["n_selective_beyond_control"]
        else:
            s["control"] = None
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


def analyse(a, b, units, unit_blocks=None, control=None, config: StatsConfig = StatsConfig()) -> Analysis:
    """Run every statistic on A vs B ([pairs, units] each) and, given control=(ca, cb), on the control.

    unit_blocks: [U] block label per unit (default: `blocks_from_units(units)`).
    control: None, or (ca, cb) with ca, cb [control_pairs, units]; (None, None) counts as no control.
    Raises CapturesError for mismatched shapes or non-finite values.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    units = np.asarray(units).astype(str)
    if a.ndim != 2:
        raise CapturesError(f"a: need [pairs, units], got shape {a.shape}")
    if units.shape != (a.shape[1],):
        raise CapturesError(f"units: need {a.shape[1]} names (one per column of a), got shape {units.shape}")
    unit_blocks = blocks_from_units(units) if unit_blocks is None else np.asarray(unit_blocks).astype(str)
    if unit_blocks.shape != units.shape:
        raise CapturesError(f"unit_blocks: need {units.size} labels, got shape {unit_blocks.shape}")
    main = analyse_contrast(a, b, unit_blocks, config, "a/b")
    ctrl = sel = None
    if control is not None and not (control[0] is None and control[1] is None):
        ca, cb = (np.asarray(x) if x is not None else None for x in control)
        if ca is None or cb is None:
            raise CapturesError("control: need both arrays (A and its paraphrase) or neither")
        if ca.ndim != 2 or ca.shape[1] != a.shape[1]:
            raise CapturesError(f"control: need [control_pairs, {a.shape[1]}] arrays, got {ca.shape} and {cb.shape}")
        ctrl = analyse_contrast(ca, cb, unit_blocks, config, "control_a/control_b")
        sel = (main.null.significant & ~ctrl.null.significant & (np.abs(main.unit.d) > np.abs(ctrl.unit.d)))
    return Analysis(config=config, units=units, unit_blocks=unit_blocks, main=main, control=ctrl,
                    selective_beyond_control=sel)


# --------------------------------------------------------------------------------------- captures

@dataclass(frozen=True, eq=False)
class Captures:
    """Contents of captures.npz: a, b float32 [pairs, units]; units, pair_ids str; optional control
    arrays [control_pairs, units] with control_pair_ids, unit_blocks [units] and a JSON-able meta dict.
    Validated on construction (CapturesError)."""
    a: np.ndarray
    b: np.ndarray
    units: np.ndarray
    pair_ids: np.ndarray
    control_a: np.ndarray | None = None
    control_b: np.ndarray | None = None
    control_pair_ids: np.ndarray | None = None
    unit_blocks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("a", _float_2d(self.a, "a"))
        set_("b", _float_2d(self.b, "b"))
        if self.a.shape != self.b.shape:
            raise CapturesError(f"a {self.a.shape} and b {self.b.shape} must have the same shape [pairs, units]")
        n, u = self.a.shape
        set_("units", _strings(self.units, "units", u, unique=True))
        set_("pair_ids", _strings(self.pair_ids, "pair_ids", n, unique=True))
        if self.unit_blocks is not None:
            set_("unit_blocks", _strings(self.unit_blocks, "unit_blocks", u))
        if (self.control_a is None) != (self.control_b is None):
            raise CapturesError("control_a and control_b must both be present or both absent")
        if self.control_a is not None:
            set_("control_a", _float_2d(self.control_a, "control_a"))
            set_("control_b", _float_2d(self.control_b, "control_b"))
            if self.control_a.shape != self.control_b.shape or self.control_a.shape[1] != u:
                raise CapturesError(f"control_a {self.control_a.shape} and control_b {self.control_b.shape} must "
                                    f"both be [control_pairs, {u}] (the same units as a and b)")
            if self.control_pair_ids is not None:
                set_("control_pair_ids", _strings(self.control_pair_ids, "control_pair_ids",
                                                  self.control_a.shape[0], unique=True))
        elif self.control_pair_ids is not None and len(self.control_pair_ids):
            raise CapturesError("control_pair_ids given without control_a/control_b")
        else:
            set_("control_pair_ids", None)
        set_("meta", dict(self.meta or {}))

    @property
    def n_pairs(self) -> int:
        return self.a.shape[0]

    @property
    def n_units(self) -> int:
        return self.a.shape[1]

    @property
    def has_control(self) -> bool:
        return self.control_a is not None


def _float_2d(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise CapturesError(f"{name}: not a numeric array ({e})") from e
    if arr.ndim != 2:
        raise CapturesError(f"{name}: need a 2-D array [pairs, units], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise CapturesError(f"{name}: non-finite value at pair {bad[0]}, unit {bad[1]}")
    return arr


def _strings(x, name: str, length: int, unique: bool = False) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "UO" and arr.size:
        raise CapturesError(f"{name}: need strings, got dtype {arr.dtype}")
    arr = arr.astype(str)
    if arr.shape != (length,):
        raise CapturesError(f"{name}: need {length} entries, got shape {arr.shape}")
    if unique:
        vals, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise CapturesError(f"{name}: duplicate entries, e.g. {vals[counts > 1][0]!r}")
    return arr


_REQUIRED = ("a", "b", "units", "pair_ids")


def save_captures(path, captures: Captures) -> Path:
    """Write captures.npz (compressed; a/b float32, names as unicode arrays, meta as JSON), atomically."""
    if not isinstance(captures, Captures):
        raise TypeError("save_captures(path, captures): captures must be a Captures")
    path = Path(path)
    arrays = {"a": captures.a, "b": captures.b, "units": captures.units, "pair_ids": captures.pair_ids}
    if captures.control_a is not None:
        arrays.update(control_a=captures.control_a, control_b=captures.control_b)
        if captures.control_pair_ids is not None:
            arrays["control_pair_ids"] = captures.control_pair_ids
    if captures.unit_blocks is not None:
        arrays["unit_blocks"] = captures.unit_blocks
    if captures.meta:
        arrays["meta_json"] = np.array(json.dumps(captures.meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:   # a file object: np.savez would append .npz to a name
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_captures(path) -> Captures:
    """Read and validate captures.npz; CapturesError names the missing or inconsistent array."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zip/pickle/format errors: not a captures file
        raise CapturesError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CapturesError(f"{path}: missing array(s) {', '.join(missing)}; captures.npz needs a, b "
                            f"[pairs, units], units and pair_ids")
    meta = {}
    if "meta_json" in data:
        try:
            meta = json.loads(str(data["meta_json"]))
        except json.JSONDecodeError as e:
            raise CapturesError(f"{path}: meta_json is not valid JSON ({e})") from e
    try:
        return Captures(a=data["a"], b=data["b"], units=data["units"], pair_ids=data["pair_ids"],
                        control_a=data.get("control_a"), control_b=data.get("control_b"),
                        control_pair_ids=data.get("control_pair_ids"), unit_blocks=data.get("unit_blocks"),
                        meta=meta)
    except CapturesError as e:
        raise CapturesError(f"{path}: {e}") from e


def analyse_captures(captures: Captures, config: StatsConfig = StatsConfig()) -> Analysis:
    """`analyse` on a Captures (control included when present)."""
    control = (captures.control_a, captures.control_b) if captures.has_control else None
    return analyse(captures.a, captures.b, captures.units, unit_blocks=captures.unit_blocks, control=control,
                   config=config)
