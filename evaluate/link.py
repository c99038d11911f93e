"""Link the probe's head selectivity to the physical correctness of klein's albedo.

    from evaluate.link import selectivity_per_pair, spearman_with_ci, top_head_units, random_matched_units
    sel = selectivity_per_pair(a, b, t, k=50)            # one number per probe pair (scene)
    rho = spearman_with_ci(sel, err, n_boot=1000)        # against that scene's albedo error
    top = top_head_units(units_csv_rows, k=16)           # for the causal (ablation) test
    rand = random_matched_units(top, all_units, rng)     # k heads drawn from the same blocks

Correlational part: per scene, the probe's A-B difference on the top-k selective units (signed by
each unit's t, scaled by the unit's SD of differences across pairs) against the scene's albedo error
(mean over its lightings). Causal part: mean-ablate the top-k heads during generation, and k random
heads drawn from the same blocks as controls; `ablation_effects` compares the metric changes.
numpy/scipy only.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

# Direction of each metric family: +1 when larger is worse (an error), -1 when larger is better.
METRIC_DIRECTION = {"mse": 1, "lmse": 1, "dssim": 1, "lpips": 1, "psnr": -1, "ssim": -1}


def metric_direction(column: str) -> int:
    for prefix, sign in METRIC_DIRECTION.items():
        if column.startswith(prefix):
            return sign
    return 1


def strip_step(unit: str) -> str:
    parts = unit.split("/")
    return "/".join(parts[1:]) if parts[0].startswith("s") and parts[0][1:].isdigit() else unit


def unit_site(unit: str) -> str:
    return strip_step(unit).rsplit("/", 1)[0]


def is_head_unit(unit: str) -> bool:
    return strip_step(unit).rsplit("/", 1)[-1].startswith("h")


def top_head_units(units: Sequence[str], t: Sequence[float], k: int) -> list[str]:
    """The k heads with the largest |t| (step prefix dropped: ablation acts at every step)."""
    units = list(units)
    if not all(is_head_unit(u) for u in units):
        raise ValueError("ablation needs real-head units (probe --protocol heads); card slices are not heads")
    order = np.argsort(-np.abs(np.nan_to_num(np.asarray(t, dtype=float))), kind="stable")
    picked: list[str] = []
    for i in order:
        u = strip_step(units[i])
        if u not in picked:
            picked.append(u)
        if len(picked) == k:
            break
    return picked


def random_matched_units(top: Sequence[str], all_units: Sequence[str], rng: np.random.Generator) -> list[str]:
    """As many heads per site as `top` has, drawn from the other heads of the same sites."""
    pool: dict[str, list[str]] = defaultdict(list)
    for u in dict.fromkeys(strip_step(u) for u in all_units):
        pool[unit_site(u)].append(u)
    chosen: list[str] = []
    top_set = set(top)
    for site, n in Counter(unit_site(u) for u in top).items():
        others = [u for u in pool[site] if u not in top_set]
        candidates = others if len(others) >= n else pool[site]
        chosen += list(rng.choice(candidates, size=n, replace=False))
    return chosen


def selectivity_per_pair(a: np.ndarray, b: np.ndarray, t: np.ndarray, k: int = 50) -> np.ndarray:
    """Per pair: mean over the top-k |t| units of sign(t_u) * (a_iu - b_iu) / sd_u.

    sd_u is the SD of the A-B differences across pairs, so units of different scale count alike and
    a pair scores high when it moves the selective units the way the whole set does.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    t = np.nan_to_num(np.asarray(t, dtype=np.float64))
    idx = np.argsort(-np.abs(t), kind="stable")[: max(1, min(k, t.size))]
    sd = d[:, idx].std(axis=0, ddof=1)
    sd[~np.isfinite(sd) | (sd == 0)] = 1.0
    return (np.sign(t[idx]) * d[:, idx] / sd).mean(axis=1)


@dataclass(frozen=True)
class Correlation:
    rho: float
    p: float
    ci_low: float
    ci_high: float
    n: int
    n_boot: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def spearman_with_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> Correlation:
    """Spearman rho with a percentile bootstrap CI over scenes (resampled with replacement)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3:
        return Correlation(float("nan"), float("nan"), float("nan"), float("nan"), n, 0)
    res = sps.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    rx = sps.rankdata(x[idx], axis=1)
    ry = sps.rankdata(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (rx * ry).sum(1) / den
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots.size else (np.nan, np.nan))
    return Correlation(float(res.statistic), float(res.pvalue), float(lo), float(hi), n, int(boots.size))


def _mean_ci(x, n_boot: int, seed: int) -> tuple[float, float, float]:
    from evaluate.score import bootstrap_mean_ci

    r = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
    f = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    return f(r["mean"]), f(r["ci95_low"]), f(r["ci95_high"])


def ablation_effects(base: dict[str, float], top: dict[str, float], randoms: Sequence[dict[str, float]],
                     direction: int = 1, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-sample metric changes (ablated - unablated, signed so that > 0 means worse).

    `base`, `top` and each of `randoms` map sample id -> metric. The permutation p for "top-k hurts
    more than random k" is (1 + #{random draws whose mean harm >= top's}) / (1 + #draws).
    """
    def harm(run: dict[str, float]) -> np.ndarray:
        ids = [s for s in base if s in run and np.isfinite(base[s]) and np.isfinite(run[s])]
        return direction * (np.array([run[s] for s in ids]) - np.array([base[s] for s in ids]))

    h_top = harm(top)
    m_top, lo, hi = _mean_ci(h_top, n_boot, seed)
    rand_means = np.array([np.mean(harm(r)) if len(harm(r)) else np.nan for r in randoms], dtype=float)
    rand_means = rand_means[np.isfinite(rand_means)]
    p = float((1 + np.sum(rand_means >= m_top)) / (1 + rand_means.size)) if rand_means.size else float("nan")
    all_rand = np.concatenate([harm(r) for r in randoms]) if randoms else np.array([])
    r_mean, r_lo, r_hi = _mean_ci(all_rand, n_boot, seed + 1)
    return {"n_samples": int(h_top.size), "top_harm_mean": m_top, "top_harm_ci": [lo, hi],
            "random_harm_mean": r_mean, "random_harm_ci": [r_lo, r_hi],
            "random_draw_means": [float(v) for v in rand_means], "n_random_draws": int(rand_means.size),
            "p_top_hurts_more": p}
