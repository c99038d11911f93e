"""Per-unit paired t test of A - B (numpy/scipy, vectorised over units).

`paired_t`: paired t, Cohen's d_z = mean(diff) / sd(diff) (ddof 1), two-sided p from the t
distribution with n - 1 df, Benjamini-Hochberg q over all units. Equal to
`scipy.stats.ttest_rel(a, b)` per unit. Zero-variance units (sd(diff) <= 1e-12 |mean(diff)|,
e.g. a dead unit whose A and B values are identical) get t = 0, d = 0, p = 1 and are flagged in
`UnitStats.degenerate`: they can never count as selective (scipy would give nan or inf).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

from probe.io.captures import CapturesError
from probe.stats.config import DEGENERATE_RTOL

__all__ = ["UnitStats", "paired_t", "bh_q", "weighted_t"]


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
    degenerate = sd <= DEGENERATE_RTOL * np.abs(mean)
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


def weighted_t(w, x) -> np.ndarray:
    """Exact paired t (float64, two-pass) of weighted rows: row i holds the multiplicities w[i] [n] of a resample
    or subset (they sum to its size k >= 2) and the differences x[i] [n] of one unit; returns t [rows].

    The bootstrap and split-half compute t in float32 from one-pass moments, fast but blind to a zero variance
    hidden under rounding; they hand the resamples whose variance is within rounding to this function
    (`probe.stats.config.cancellation_rtol`). Zero variance (sd <= DEGENERATE_RTOL |mean|, as in `paired_t`)
    gives t = 0."""
    w = np.asarray(w, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    k = w.sum(axis=1)
    mean = (w * x).sum(axis=1) / k
    var = (w * np.square(x - mean[:, None])).sum(axis=1) / (k - 1)
    sd = np.sqrt(np.maximum(var, 0.0))
    degenerate = sd <= DEGENERATE_RTOL * np.abs(mean)
    return np.where(degenerate, 0.0, mean * np.sqrt(k) / np.where(degenerate, 1.0, sd))
