"""Per-block statistics with bootstrap CIs over pairs, and the pair resampler the comparison test reuses (numpy).

`block_stats`: per block of units: max |t|, count |t| > c (each threshold), median |d|, each with
a percentile bootstrap CI over pairs (pairs resampled with replacement, seeded, default 1,000
resamples, 95 %). These statistics are not smooth in the pair means: resampling adds noise to
every unit's t, so for mostly-null blocks the interval lies above the observed value (see
`BlockStats`); the bootstrap medians are reported beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probe.stats.config import DEGENERATE_RTOL, STREAM_BOOT, TILE, StatsConfig, cancellation_rtol, threshold_key
from probe.stats.paired import UnitStats, _unit_stats, weighted_t

__all__ = ["BlockStats", "block_stats", "resample_weights", "resampled_abs_t_mean"]


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
    the resampling spread it summarises.

    Zero variance is judged against the data's own scale, not in absolute terms: n S2 - S1^2 is a difference of
    two float32 numbers of size n S2, so where it is within rounding of n S2 (`cancellation_rtol`: e.g. a
    resample made of one pair drawn n times, whose true variance is 0) the resample's t is recomputed exactly in
    float64 (`probe.stats.paired.weighted_t`; zero variance gives q = 0), and where S2 = 0 (every drawn pair
    equals the full-sample mean) q = 0. Before, float32 rounding passed for variance there and one repeated pair
    gave a |t| in the thousands.
    """

    def __init__(self, diff: np.ndarray, w: np.ndarray):
        diff = np.asarray(diff, dtype=np.float64)
        self.diff = diff
        self.n = diff.shape[0]
        center = diff.mean(axis=0)
        dc = diff - center
        self.dc = dc.astype(np.float32)
        self.dc2 = (dc * dc).astype(np.float32)
        self.ncenter = (center * self.n).astype(np.float32)
        self.w = np.asarray(w, dtype=np.float32)
        self.wn = self.w * np.float32(self.n)
        self.eps = np.float32(DEGENERATE_RTOL ** 2 * (self.n - 1) / self.n)
        self.cancel = np.float32(cancellation_rtol(self.n))
        self.n_exact = 0                                # resample x unit cells recomputed in float64 (for tests)

    def tiles(self, lo: int, hi: int):
        """Yield (r0, r1, q [r1 - r0, hi - lo] float32) over all resamples for units lo:hi."""
        rows = max(1, TILE // max(hi - lo, 1))
        for r0 in range(0, self.w.shape[0], rows):
            r1 = min(r0 + rows, self.w.shape[0])
            s1 = self.w[r0:r1] @ self.dc[:, lo:hi]
            ns2 = self.wn[r0:r1] @ self.dc2[:, lo:hi]      # n S2
            den = ns2 - np.square(s1)                       # n S2 - S1^2
            unsure = den <= self.cancel * ns2               # within float32 rounding of n S2 (or S2 = 0)
            s1 += self.ncenter[lo:hi]
            np.square(s1, out=s1)                           # (n center + S1)^2
            degenerate = den <= s1 * self.eps
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.divide(s1, den, out=s1)
            if degenerate.any():
                q[degenerate] = 0.0
            if unsure.any():
                self._exact(q, unsure & (ns2 > 0), r0, lo)
                q[unsure & (ns2 <= 0)] = 0.0                # every drawn pair at the mean: zero variance
            yield r0, r1, q

    def _exact(self, q: np.ndarray, cells: np.ndarray, r0: int, lo: int, batch: int = 1 << 14) -> None:
        """q of the resample x unit `cells` [rows, units] recomputed exactly (float64, two-pass)."""
        rr, cc = np.nonzero(cells)
        self.n_exact += rr.size
        for b0 in range(0, rr.size, batch):
            r, c = rr[b0:b0 + batch], cc[b0:b0 + batch]
            t = weighted_t(self.w[r0 + r], self.diff[:, lo + c].T)
            q[r, c] = np.square(t) / (self.n - 1)


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
        w = resample_weights(n, config.n_boot, np.random.default_rng([config.seed, STREAM_BOOT]))
        bmx, bcnt, bmed = _boot_blocks(_Resampler(diff[:, order], w), bounds, thr)
        q = [50 * (1 - config.ci), 100 - 50 * (1 - config.ci)]
        mx_ci = np.moveaxis(np.percentile(bmx, q, axis=0), 0, -1)
        cnt_ci = np.moveaxis(np.percentile(bcnt, q, axis=0), 0, -1)
        med_ci = np.moveaxis(np.percentile(bmed, q, axis=0), 0, -1)
        boot_median = np.column_stack([np.median(bmx, axis=0), np.median(bmed, axis=0), np.median(bcnt, axis=0)])
    return BlockStats(names=names, n_units=np.diff(bounds), thresholds=config.thresholds, max_abs_t=mx[0],
                      max_abs_t_ci=mx_ci, n_abs_t_gt=cnt[0], n_abs_t_gt_ci=cnt_ci, median_abs_d=med[0],
                      median_abs_d_ci=med_ci, boot_median=boot_median, n_boot=config.n_boot, ci=config.ci)
