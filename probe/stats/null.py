"""The sign-flip null of one contrast: null counts over |t| thresholds and the tmax FWER p (numpy).

`sign_flip_null`: under H0 (A and B exchangeable within a pair) each pair's difference is
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
#{vectors: max|t| >= |t_u|} / N for exact enumeration (the identity is one of the N). Under exact
enumeration the null distribution of counts that is reported (p99, mean, max, and so the ratio) leaves
the identity out (`null_counts`): with few pairs there are few vectors (32 at 6 pairs), the p99 is
close to their maximum, and the identity's count is the observed one, so keeping it would cap the
"x null p99" ratio near 1 whatever the data. The permutation p of the count keeps it (a p-value
counts the observed labelling). Ties within
a relative 1e-6 (float32 arithmetic) count as reached. Units with p_fwer <= alpha are the
FWER-controlled selective set: a per-unit p99 is no multiple-comparison control, this is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probe.stats.config import STREAM_NULL, TIE_RTOL, StatsConfig

__all__ = ["PermutationNull", "sign_flip_null"]


@dataclass(frozen=True, eq=False)
class PermutationNull:
    """Sign-flip null of one contrast. K = len(thresholds), P = n_perm (vectors actually used)."""
    n_perm: int
    exact: bool                 # True: every sign vector (2^(n-1) up to global sign), else random
    thresholds: tuple[float, ...]
    quantile: float             # percentile reported as `p99`
    counts: np.ndarray          # [P, K] int: units with |t| > c under each sign vector (exact: row 0 = identity)
    observed: np.ndarray        # [K] int: observed units with |t| > c
    p99: np.ndarray             # [K] float: `quantile` percentile of `null_counts` (identity left out)
    ratio: np.ndarray           # [K] observed / max(p99, 1)
    p_count: np.ndarray         # [K] permutation p of the observed count: P(null count >= observed)
    tmax: np.ndarray            # [P] max |t| over units under each sign vector
    p_fwer: np.ndarray          # [U] Westfall-Young single-step FWER-adjusted p
    alpha: float
    fwer_t: float               # p_fwer <= alpha exactly when |t| > fwer_t (up to ties; inf: no unit can)

    @property
    def null_counts(self) -> np.ndarray:
        """[P', K] the null distribution of counts that p99, its mean and max describe: every sign vector but the
        identity under exact enumeration (row 0, the observed labelling), all of them otherwise."""
        return self.counts[1:] if self.exact and self.counts.shape[0] > 1 else self.counts

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
    rng = np.random.default_rng([seed, STREAM_NULL])
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
    # the identity (exact row 0) is the observed labelling: not part of the null distribution reported as p99
    p99 = np.percentile(counts[1:] if exact and n_vec > 1 else counts, config.null_quantile, axis=0)
    ratio = observed / np.maximum(p99, 1.0)
    # the identity is among the enumerated vectors; random vectors add it as the "+1"
    extra = 0 if exact else 1
    p_count = (extra + (counts >= observed[None, :]).sum(axis=0)) / (n_vec + extra)
    tmax_sorted = np.sort(tmax)
    reach = n_vec - np.searchsorted(tmax_sorted, t_abs * (1 - TIE_RTOL), side="left")
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
