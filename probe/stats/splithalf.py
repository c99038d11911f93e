"""Split-half reliability of per-unit t (numpy).

`split_half`: n_splits random 50/50 splits of the pairs (seeded; for odd n the second half has
one pair more); per split, Pearson r across units between the per-unit t of the two halves.
All r, median and IQR. Needs n >= 4 (nan otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.stats.config import DEGENERATE_RTOL, STREAM_SPLIT, cancellation_rtol
from probe.stats.paired import weighted_t

__all__ = ["SplitHalf", "split_half"]


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


def _subset_t32(w: np.ndarray, dc: np.ndarray, dc2: np.ndarray, center: np.ndarray, k: int,
                diff: np.ndarray | None = None) -> np.ndarray:
    """Per-unit t [S, U] (float32) of subsets of k pairs (rows of 0/1 weights `w` [S, n], each summing to
    k), from moments shifted by the full-sample mean (see `_Resampler`). Zero variance -> 0.

    Where the float32 variance is within rounding of the sum of squares it comes from (`cancellation_rtol`:
    e.g. a half whose pairs are all equal), t is recomputed exactly in float64 from `diff` [n, U] (default: dc +
    center), so rounding never passes for variance."""
    m = w @ dc
    s2 = w @ dc2                                   # sum of squares about the full-sample mean
    m *= np.float32(1.0 / k)                       # mean shift
    tmp = np.square(m)
    tmp *= np.float32(k)
    v = s2 - tmp                                   # (k - 1) variance
    unsure = v <= np.float32(cancellation_rtol(k)) * s2
    v *= np.float32(1.0 / (k - 1))                 # variance (ddof 1)
    m += center                                    # subset mean
    np.square(m, out=tmp)
    tmp *= np.float32(DEGENERATE_RTOL ** 2)
    degenerate = v <= tmp
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(np.float32(k), v, out=v)
        np.sqrt(v, out=v)
        m *= v                                     # t = mean sqrt(k / var)
    m[degenerate] = 0.0
    if unsure.any():
        m[unsure & (s2 <= 0)] = 0.0                # every pair of the subset at the full-sample mean
        rr, cc = np.nonzero(unsure & (s2 > 0))
        if rr.size:
            x = (np.asarray(diff, dtype=np.float64) if diff is not None
                 else dc.astype(np.float64) + center.astype(np.float64))
            m[rr, cc] = weighted_t(w[rr], x[:, cc].T)
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
    rng = np.random.default_rng([seed, STREAM_SPLIT])
    w1 = np.zeros((n_splits, n))   # per split: 1 for the pairs of the first half
    for s in range(n_splits):
        w1[s, rng.permutation(n)[:h1]] = 1.0
    center = diff.mean(axis=0)
    dc = diff - center
    dc32, dc2_32, center32 = dc.astype(np.float32), (dc * dc).astype(np.float32), center.astype(np.float32)
    w1 = w1.astype(np.float32)
    t1 = _subset_t32(w1, dc32, dc2_32, center32, sizes[0], diff)
    t2 = _subset_t32(1.0 - w1, dc32, dc2_32, center32, sizes[1], diff)
    r = _rowwise_pearson(t1.astype(np.float64), t2.astype(np.float64))
    fin = r[np.isfinite(r)]
    med, q25, q75 = (float(v) for v in np.percentile(fin, [50, 25, 75])) if fin.size else (np.nan,) * 3
    return SplitHalf(r=r, median=med, q25=q25, q75=q75, half_sizes=sizes, t_half1=t1[0], t_half2=t2[0])
