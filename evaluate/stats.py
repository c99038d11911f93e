"""evaluate's statistics, in plain numpy/scipy: clustered bootstrap CIs, paired differences, the
clustered Spearman link, and the causal test's rank p. No torch, no file access.

    from evaluate.stats import bootstrap_mean_ci, paired_difference, spearman_cluster, ablation_effects
    bootstrap_mean_ci(values, clusters=base_scenes)          # resamples scenes, not samples
    paired_difference(klein, baseline, cluster_of)           # klein - baseline per sample, clustered CI
    spearman_cluster(x, y, clusters)                         # rho, cluster-bootstrap CI, expected half-width at 0

Clusters. Samples of one scene (its lightings and colour variants) are not independent: every CI
here resamples clusters (the render manifest's `base_scene`) with replacement, and the statistic of
a replicate is computed on all samples of the drawn clusters (a cluster drawn twice counts twice).
Without clusters each value is its own cluster (the ordinary bootstrap). The same seed gives the
same cluster draws for the same cluster set, so CIs of different columns are paired.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["bootstrap_mean_ci", "paired_difference", "spearman_cluster", "expected_rho_halfwidth", "Correlation",
           "ablation_effects", "cluster_codes", "t_interval"]


def cluster_codes(clusters: Sequence | None, n: int) -> np.ndarray:
    """Integer cluster code per value (0..C-1); each value its own cluster when clusters is None."""
    if clusters is None:
        return np.arange(n)
    c = np.asarray(clusters).astype(str)
    if c.shape != (n,):
        raise ValueError(f"need one cluster label per value: {n} values, {c.shape} labels")
    return np.unique(c, return_inverse=True)[1].reshape(-1)


def _draws(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      clusters: Sequence | None = None) -> dict[str, Any]:
    """Mean of the finite values and its percentile-bootstrap CI, resampling clusters.

    Non-finite values (NaN: not computed; inf: PSNR of a perfect prediction) are left out and
    counted in n_nonfinite. Returns mean, ci95_low, ci95_high, n, n_nonfinite, n_clusters and
    `resampled` ("clusters" or "samples"); the CI is None with fewer than two clusters.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    codes = cluster_codes(clusters, v.size)
    ok = np.isfinite(v)
    fin, codes = v[ok], codes[ok]
    _, codes = np.unique(codes, return_inverse=True)
    n_cl = int(codes.max()) + 1 if codes.size else 0
    out: dict[str, Any] = {"mean": None, "ci95_low": None, "ci95_high": None, "n": int(fin.size),
                           "n_nonfinite": int(v.size - fin.size), "n_clusters": n_cl,
                           "resampled": "clusters" if clusters is not None else "samples"}
    if fin.size == 0:
        return out
    out["mean"] = float(fin.mean())
    if n_cl < 2 or n_boot <= 0:
        return out
    sums = np.bincount(codes, weights=fin, minlength=n_cl)
    counts = np.bincount(codes, minlength=n_cl).astype(np.float64)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n_cl)  # bounded index memory for big runs
    rng = np.random.default_rng(seed)
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        idx = rng.integers(0, n_cl, size=(k, n_cl))
        means[s:s + k] = sums[idx].sum(1) / counts[idx].sum(1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    out["ci95_low"], out["ci95_high"] = float(lo), float(hi)
    return out


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], cluster_of: Mapping[str, str] | None = None,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean over the samples scored finitely by both of a[s] - b[s], with a cluster-bootstrap CI.

    a, b: sample id -> value. cluster_of: sample id -> cluster (None: samples independent).
    """
    ids = sorted(s for s in a if s in b and np.isfinite(a[s]) and np.isfinite(b[s]))
    d = np.array([a[s] - b[s] for s in ids], dtype=np.float64)
    clusters = [cluster_of.get(s, s) for s in ids] if cluster_of is not None else None
    r = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed, clusters=clusters)
    r["n_only_one_method"] = len(set(a) ^ set(b))
    return r


def t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of independent values (NaN with fewer than two)."""
    from scipy import stats as sps

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    half = sps.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def expected_rho_halfwidth(n: int, level: float = 0.95) -> float:
    """CI half-width of Spearman's rho expected when the true rho is 0, for n independent units:
    tanh(z * sqrt(1.06 / (n - 3))) (Fisher z with Fieller, Hartley and Pearson's variance for
    Spearman). NaN for n <= 3."""
    from scipy import stats as sps

    if n <= 3:
        return float("nan")
    return float(math.tanh(sps.norm.ppf(0.5 + level / 2) * math.sqrt(1.06 / (n - 3))))


class Correlation(dict):
    """Spearman result (a dict, JSON-able, with attribute access for the main fields)."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None

    def as_dict(self) -> dict:
        return dict(self)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats as sps

    rx, ry = sps.rankdata(x), sps.rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def spearman_cluster(x: Sequence[float], y: Sequence[float], clusters: Sequence | None = None, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> Correlation:
    """Spearman rho of (x, y) with a percentile cluster-bootstrap CI (clusters resampled, see above).

    Also: the two-sided p of scipy (which treats samples as independent: read with the CI), n,
    n_clusters, `cluster_means` (rho and p over one point per cluster, the means of its samples: a p
    whose units are independent; with clusters only), and `expected_halfwidth_at_0` = expected_rho_halfwidth(n_clusters), the width a
    reader should compare the CI with (the power of this n).
    """
    from scipy import stats as sps

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    codes = cluster_codes(clusters, x.size)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, codes = x[ok], y[ok], codes[ok]
    _, codes = np.unique(codes, return_inverse=True)
    n, n_cl = int(x.size), int(codes.max()) + 1 if codes.size else 0
    res = Correlation(rho=float("nan"), p=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n=n,
                      n_clusters=n_cl, n_boot=0, resampled="clusters" if clusters is not None else "samples",
                      expected_halfwidth_at_0=expected_rho_halfwidth(n_cl), level=level)
    if n < 3:
        return res
    res["rho"] = _spearman(x, y)
    res["p"] = float(sps.spearmanr(x, y).pvalue)
    if clusters is not None:
        # one point per cluster (the means of its samples): independent units, so its p is valid as it stands
        counts = np.bincount(codes, minlength=n_cl).astype(float)
        mx, my = np.bincount(codes, x, n_cl) / counts, np.bincount(codes, y, n_cl) / counts
        res["cluster_means"] = {"n": n_cl, "rho": float("nan"), "p": float("nan"),
                                "definition": "Spearman over one point per cluster (its samples' mean x and "
                                              "mean y), scipy's p: the clusters are the independent units"}
        if n_cl >= 3:
            res["cluster_means"].update(rho=_spearman(mx, my), p=float(sps.spearmanr(mx, my).pvalue))
    if n_cl < 3 or n_boot <= 0:
        return res
    members = [np.flatnonzero(codes == c) for c in range(n_cl)]
    boots = []
    for draw in _draws(n_cl, n_boot, seed):
        idx = np.concatenate([members[c] for c in draw])
        boots.append(_spearman(x[idx], y[idx]))
    boots = np.asarray(boots)
    boots = boots[np.isfinite(boots)]
    if boots.size:
        lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
        res.update(ci_low=float(lo), ci_high=float(hi), n_boot=int(boots.size))
    return res


def ablation_effects(base: Mapping[str, float], top: Mapping[str, float], randoms: Sequence[Mapping[str, float]],
                     direction: int = 1, n_boot: int = 1000, seed: int = 0,
                     cluster_of: Mapping[str, str] | None = None) -> dict:
    """The causal test for one k and one metric.

    base, top and each of randoms map sample id -> metric. Harm = direction * (ablated - unablated)
    per sample (> 0: worse). Top-k: mean harm with a cluster-bootstrap CI. Random k: one mean harm
    per draw; their mean, and the interval from the spread *between draws* (Student t over draws:
    the CI of the expected random-k harm), plus the draws' range. Rank p for "top-k hurts more than
    random k" = (1 + #{draws with mean harm >= top-k's}) / (1 + #draws); it cannot go below
    1 / (1 + #draws) (`p_min_attainable`). A rank p over draws, not a permutation p over samples.
    """
    def harm(run: Mapping[str, float]) -> dict[str, float]:
        return {s: direction * (run[s] - base[s]) for s in base
                if s in run and np.isfinite(base[s]) and np.isfinite(run[s])}

    h_top = harm(top)
    ids = sorted(h_top)
    clusters = [cluster_of.get(s, s) for s in ids] if cluster_of is not None else None
    t = bootstrap_mean_ci([h_top[s] for s in ids], n_boot=n_boot, seed=seed, clusters=clusters)
    m_top = float("nan") if t["mean"] is None else t["mean"]
    draws = []
    for r in randoms:
        h = harm(r)
        draws.append(float(np.mean(list(h.values()))) if h else float("nan"))
    dm = np.array([d for d in draws if np.isfinite(d)])
    n_draws = int(dm.size)
    p = float((1 + np.sum(dm >= m_top)) / (1 + n_draws)) if n_draws and np.isfinite(m_top) else float("nan")
    lo, hi = t_interval(dm)
    f = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    return {"n_samples": len(ids), "n_clusters": t["n_clusters"], "resampled": t["resampled"],
            "top_harm_mean": m_top, "top_harm_ci": [f(t["ci95_low"]), f(t["ci95_high"])],
            "random_harm_mean": float(dm.mean()) if n_draws else float("nan"),
            "random_harm_ci": [lo, hi],
            "random_harm_ci_definition": "Student-t 95% interval of the mean over draws (between-draw spread)",
            "random_draw_range": [float(dm.min()), float(dm.max())] if n_draws else [float("nan")] * 2,
            "random_draw_means": [float(v) for v in dm], "n_random_draws": n_draws,
            "rank_p_top_hurts_more": p, "p_top_hurts_more": p,
            "p_min_attainable": 1.0 / (1 + n_draws) if n_draws else float("nan"),
            "p_definition": "rank p = (1 + #draws whose mean harm >= top-k's) / (1 + #draws)"}
