"""The statistics' settings (`StatsConfig`) and the numerical tolerances every part of probe.stats shares."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StatsConfig", "threshold_key", "DEGENERATE_RTOL", "TIE_RTOL", "TILE", "STREAM_NULL", "STREAM_SPLIT",
           "STREAM_BOOT", "cancellation_rtol"]

DEGENERATE_RTOL = 1e-12   # sd(diff) at or below this fraction of |mean(diff)| is rounding, not variance
TIE_RTOL = 1e-6           # the null runs in float32: values this close to |t_u| count as reaching it
STREAM_NULL, STREAM_SPLIT, STREAM_BOOT = 1, 2, 3   # independent random streams derived from StatsConfig.seed
TILE = 1 << 17            # float32 elements per tile (512 KB) of the null and the bootstrap: passes stay in cache


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
    equivalence_margin: float = 0.5         # image probe: TOST margin on d_z of the signed rule (class_signed)
    magnitude_margin: float = 0.5           # image probe: margin on the ratio of per-scene RMS changes (class)

    def __post_init__(self):
        if self.n_perm < 1 or self.n_splits < 0 or self.n_boot < 0 or self.chunk < 1 or self.threads < 1:
            raise ValueError(f"StatsConfig: n_perm >= 1, n_splits >= 0, n_boot >= 0, chunk >= 1, threads >= 1 "
                             f"needed: {self}")
        if not self.equivalence_margin > 0:
            raise ValueError(f"StatsConfig.equivalence_margin must be a positive d_z, got {self.equivalence_margin}")
        if not self.magnitude_margin > 0:
            raise ValueError(f"StatsConfig.magnitude_margin must be a positive ratio, got {self.magnitude_margin}")
        if not self.thresholds or any(not (c > 0) for c in self.thresholds):
            raise ValueError(f"StatsConfig.thresholds must be positive |t| values, got {self.thresholds}")
        if not (0 < self.alpha < 1 and 0 < self.ci < 1 and 0 < self.null_quantile < 100):
            raise ValueError(f"StatsConfig: need 0 < alpha < 1, 0 < ci < 1, 0 < null_quantile < 100: {self}")
        object.__setattr__(self, "thresholds", tuple(float(c) for c in self.thresholds))


def cancellation_rtol(n: int) -> float:
    """Relative size below which a float32 one-pass variance is rounding, not variance.

    The bootstrap and split-half compute each resample's variance as (sum of squares) - (sum)^2 / n in float32
    (`probe.stats.blocks._Resampler`, `probe.stats.splithalf._subset_t32`). Both terms carry a rounding error of
    up to about n float32 epsilons of the sum of squares, so a difference at or below this fraction of it is not
    known to be non-zero: such resamples (e.g. one pair drawn n times, whose true variance is 0) are recomputed
    exactly in float64 (`probe.stats.paired.weighted_t`). Comparing with 1e-12 |mean| (the float64 rule) let
    float32 rounding through as variance: one repeated pair gave |t| in the thousands."""
    return max(1e-4, 8.0 * max(int(n), 1) * float(np.finfo(np.float32).eps))


def threshold_key(c: float) -> str:
    """Key fragment of a threshold: 3 -> '3', 2.5 -> '2_5' (as in n_abs_t_gt_3, n_abs_d_gt_0_8)."""
    return f"{float(c):g}".replace(".", "_").replace("-", "m")
