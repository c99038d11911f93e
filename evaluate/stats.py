"""evaluate's statistics, in plain numpy/scipy: clustered bootstrap CIs, paired differences, the
clustered Spearman link, and the causal test's rank p. No torch, no file access.

    from evaluate.stats import bootstrap_mean_ci, paired_difference, spearman_cluster, ablation_effects
    bootstrap_mean_ci(values, clusters=base_scenes)          # resamples scenes, not samples
    paired_difference(klein, baseline, cluster_of)           # klein - baseline per sample, clustered CI
    spearman_cluster(x, y, clusters)                         # rho, cluster-bootstrap CI, expected half-width at 0
    partial_spearman(x, y, z)                                # rho(x, y) with z's ranks partialled out

Clusters. Samples of one scene (its lightings and colour variants) are not independent: every CI
here resamples clusters (the render manifest's `base_scene`) with replacement, and the statistic of
a replicate is computed on all samples of the drawn clusters (a cluster drawn twice counts twice).
Without clusters each value is its own cluster (the ordinary bootstrap). The same seed gives the
same cluster draws for the same cluster set, so CIs of different columns are paired.

Two intervals for a mean. The percentile interval (`ci95_low`, `ci95_high`) under-covers with few
clusters: in `benchmarks/bench_intervals.py` a nominal 95 % interval held the true mean 83 % of the time
with 5 clusters (normal cluster effects; 71 % with skewed ones), 92 % with 25. The studentised interval
(`ci95_studentized_low/high`, bootstrap-t) divides each replicate's deviation by its own cluster-robust
standard error: 94-95 % from 4 clusters on with normal effects (89-92 % with strongly skewed ones; see
benchmarks/RESULTS.md); it is the one the report shows. With 3 clusters or fewer it is unbounded (a
replicate drawing one cluster every time has no spread, and such replicates are over 2.5 % of them):
that is what 3 scenes can say, and it is reported as such.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["harm_vs_n_eligible", "bootstrap_mean_ci", "paired_difference", "spearman_cluster", "expected_rho_halfwidth", "Correlation",
           "ablation_effects", "cluster_codes", "t_interval", "partial_spearman", "CI_DEFINITIONS", "PSNR_CAP"]

CI_DEFINITIONS = {
    "ci95_low/ci95_high": "percentile cluster bootstrap (2.5 and 97.5 % quantiles of the replicate means); kept for "
                          "comparison with earlier runs: it under-covers with few clusters (83 % at 5 clusters, "
                          "92 % at 25, benchmarks/bench_intervals.py)",
    "ci95_studentized_low/ci95_studentized_high": "studentised (bootstrap-t) cluster bootstrap: mean - q * SE with q "
                          "the 97.5 and 2.5 % quantiles of (replicate mean - mean) / replicate SE, SE the "
                          "cluster-robust standard error of the ratio mean (CR1: C/(C-1) * sum over clusters of "
                          "(cluster sum - mean * cluster size)^2 / total size^2); 94-95 % from 4 clusters on "
                          "(89-92 % when a few scenes are far worse than the rest); 'inf' when the clusters cannot "
                          "bound it (3 or fewer)",
}
PSNR_CAP = 100.0   # dB: the summary's value for a perfect prediction's infinite PSNR (MSE 1e-10), counted in n_capped


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


def _cluster_se(sums: np.ndarray, counts: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Cluster-robust (CR1) standard error of a ratio mean over the last axis of cluster sums/counts."""
    c = sums.shape[-1]
    r = sums - mean[..., None] * counts
    return np.sqrt(c / (c - 1) * (r * r).sum(-1)) / counts.sum(-1)


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      clusters: Sequence | None = None, cap: float | None = None) -> dict[str, Any]:
    """Mean of the finite values and its cluster-bootstrap CIs, resampling clusters.

    Non-finite values (NaN: not computed) are left out and counted in n_nonfinite; with `cap`, +inf
    and values above it (PSNR of a perfect prediction) count as `cap` instead, counted in n_capped.
    Returns mean, the percentile CI (ci95_low, ci95_high), the studentised CI (ci95_studentized_low,
    ci95_studentized_high; see CI_DEFINITIONS), n, n_nonfinite, n_capped, n_clusters and `resampled`
    ("clusters" or "samples"); the CIs are None with fewer than two clusters.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    codes = cluster_codes(clusters, v.size)
    n_capped = 0
    if cap is not None:
        over = v > cap                      # +inf included; NaN compares False
        n_capped = int(over.sum())
        v = np.where(over, cap, v)
    ok = np.isfinite(v)
    fin, codes = v[ok], codes[ok]
    _, codes = np.unique(codes, return_inverse=True)
    n_cl = int(codes.max()) + 1 if codes.size else 0
    out: dict[str, Any] = {"mean": None, "ci95_low": None, "ci95_high": None, "ci95_studentized_low": None,
                           "ci95_studentized_high": None, "n": int(fin.size), "n_nonfinite": int(v.size - fin.size),
                           "n_clusters": n_cl, "resampled": "clusters" if clusters is not None else "samples"}
    if cap is not None:
        out["n_capped"], out["cap"] = n_capped, cap
    if fin.size == 0:
        return out
    out["mean"] = float(fin.mean())
    if n_cl < 2 or n_boot <= 0:
        return out
    sums = np.bincount(codes, weights=fin, minlength=n_cl)
    counts = np.bincount(codes, minlength=n_cl).astype(np.float64)
    mean = float(sums.sum() / counts.sum())
    se = float(_cluster_se(sums, counts, np.array(mean)))
    means = np.empty(n_boot)
    tstat = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n_cl)  # bounded index memory for big runs
    rng = np.random.default_rng(seed)
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        idx = rng.integers(0, n_cl, size=(k, n_cl))
        ds, dc = sums[idx], counts[idx]
        m = ds.sum(1) / dc.sum(1)
        means[s:s + k] = m
        se_b = _cluster_se(ds, dc, m)
        dev = m - mean
        with np.errstate(divide="ignore", invalid="ignore"):
            t = dev / se_b
        # a replicate without spread (one cluster drawn every time) bounds nothing: +-inf by its side
        tstat[s:s + k] = np.where(se_b > 1e-15 * max(1.0, abs(mean)), t,
                                  np.where(dev > 0, np.inf, np.where(dev < 0, -np.inf, 0.0)))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    out["ci95_low"], out["ci95_high"] = float(lo), float(hi)
    if se <= 0:                             # every cluster has the same mean: nothing varies
        out["ci95_studentized_low"] = out["ci95_studentized_high"] = mean
        return out
    ts = np.sort(tstat)                     # order statistics (np.quantile cannot interpolate infinities)
    q_lo = ts[max(0, int(np.floor(a * n_boot)))]
    q_hi = ts[min(n_boot - 1, int(np.ceil((1.0 - a) * n_boot)) - 1)]
    out["ci95_studentized_low"] = float(mean - q_hi * se)
    out["ci95_studentized_high"] = float(mean - q_lo * se)
    return out


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], cluster_of: Mapping[str, str] | None = None,
                      n_boot: int = 1000, seed: int = 0, cap: float | None = None) -> dict[str, Any]:
    """Mean over the samples scored finitely by both of a[s] - b[s], with a cluster-bootstrap CI.

    a, b: sample id -> value. cluster_of: sample id -> cluster (None: samples independent). With `cap`,
    values above it (+inf: PSNR of a perfect prediction) count as `cap` in both (n_capped counts them).
    """
    n_capped = 0
    if cap is not None:
        n_capped = sum(1 for x in (a, b) for v in x.values() if v > cap)
        a = {s: min(v, cap) for s, v in a.items()}
        b = {s: min(v, cap) for s, v in b.items()}
    ids = sorted(s for s in a if s in b and np.isfinite(a[s]) and np.isfinite(b[s]))
    d = np.array([a[s] - b[s] for s in ids], dtype=np.float64)
    clusters = [cluster_of.get(s, s) for s in ids] if cluster_of is not None else None
    r = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed, clusters=clusters)
    r["n_only_one_method"] = len(set(a) ^ set(b))
    if cap is not None:
        r["n_capped"], r["cap"] = n_capped, cap
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
        res["cluster_means"] = {"n": n_cl, "rho": float("nan"), "p": float("nan"), "ci_low": float("nan"),
                                "ci_high": float("nan"),
                                "definition": "Spearman over one point per cluster (its samples' mean x and "
                                              "mean y), scipy's p: the clusters are the independent units; "
                                              "ci_low/ci_high: Fisher z interval with the Fieller-Hartley-Pearson "
                                              "variance 1.06 / (n - 3) (n > 3)"}
        if n_cl >= 3:
            rho_m = _spearman(mx, my)
            res["cluster_means"].update(rho=rho_m, p=float(sps.spearmanr(mx, my).pvalue))
            res["cluster_means"].update(zip(("ci_low", "ci_high"), _fisher_ci(rho_m, n_cl, 1.06 / (n_cl - 3)
                                                                               if n_cl > 3 else float("nan"), level)))
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


def _fisher_ci(rho: float, n: int, var_z: float, level: float = 0.95) -> tuple[float, float]:
    """tanh(atanh(rho) -+ z * sqrt(var_z)); NaN when rho or var_z is not finite."""
    from scipy import stats as sps

    if not (np.isfinite(rho) and np.isfinite(var_z)) or var_z <= 0:
        return float("nan"), float("nan")
    z = math.atanh(float(np.clip(rho, -0.999999, 0.999999)))
    h = sps.norm.ppf(0.5 + level / 2) * math.sqrt(var_z)
    return float(math.tanh(z - h)), float(math.tanh(z + h))


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float], level: float = 0.95) -> dict:
    """Spearman's rho of x and y with z partialled out: the partial correlation of the ranks,
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)), for independent points (e.g. one per scene).

    p: two-sided, from t = r sqrt((n - 3) / (1 - r^2)) with n - 3 degrees of freedom; CI: Fisher z with
    variance 1.06 / (n - 4). Also the plain rho_xy and the two rhos with the control (rho_x_control,
    rho_y_control: how much each variable follows it). NaN with fewer than 4 finite points.
    """
    from scipy import stats as sps

    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, z))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[ok], y[ok], z[ok]
    n = int(x.size)
    nan = float("nan")
    out = {"n": n, "rho": nan, "p": nan, "ci_low": nan, "ci_high": nan, "rho_plain": nan, "rho_x_control": nan,
           "rho_y_control": nan, "level": level}
    if n < 4:
        return out
    rxy, rxz, ryz = _spearman(x, y), _spearman(x, z), _spearman(y, z)
    out.update(rho_plain=rxy, rho_x_control=rxz, rho_y_control=ryz)
    den = math.sqrt(max(0.0, (1 - rxz ** 2) * (1 - ryz ** 2)))
    if not (np.isfinite(rxy) and den > 1e-12):
        return out
    r = float(np.clip((rxy - rxz * ryz) / den, -1.0, 1.0))
    out["rho"] = r
    if n > 3:
        t = r * math.sqrt((n - 3) / max(1e-300, 1 - r * r))
        out["p"] = float(2 * sps.t.sf(abs(t), n - 3))
    if n > 4:
        out["ci_low"], out["ci_high"] = _fisher_ci(r, n, 1.06 / (n - 4), level)
    return out


def ablation_effects(base: Mapping[str, float], top: Mapping[str, float], randoms: Sequence[Mapping[str, float]],
                     direction: int = 1, n_boot: int = 1000, seed: int = 0,
                     cluster_of: Mapping[str, str] | None = None) -> dict:
    """The causal test for one k and one metric.

    base, top and each of randoms map sample id -> metric. Harm = direction * (ablated - unablated)
    per sample (> 0: worse). Top-k: mean harm with cluster-bootstrap CIs (top_harm_ci: percentile;
    top_harm_ci_studentized: bootstrap-t, the one to read, see CI_DEFINITIONS). Random k: one mean harm
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
            "top_harm_ci_studentized": [f(t["ci95_studentized_low"]), f(t["ci95_studentized_high"])],
            "top_harm_ci_definition": "95% interval of top-k's mean harm over samples, resampling base scenes "
                                      "(top_harm_ci: percentile; top_harm_ci_studentized: bootstrap-t); not "
                                      "comparable with random_harm_ci, which is over draws",
            "random_harm_mean": float(dm.mean()) if n_draws else float("nan"),
            "random_harm_ci": [lo, hi],
            "random_harm_ci_definition": "Student-t 95% interval of the mean over draws (between-draw spread)",
            "random_draw_range": [float(dm.min()), float(dm.max())] if n_draws else [float("nan")] * 2,
            "random_draw_means": [float(v) for v in dm], "n_random_draws": n_draws,
            "rank_p_top_hurts_more": p, "p_top_hurts_more": p,
            "p_min_attainable": 1.0 / (1 + n_draws) if n_draws else float("nan"),
            "p_definition": "rank p = (1 + #draws whose mean harm >= top-k's) / (1 + #draws)"}


def harm_vs_n_eligible(effects: dict | None, selection: dict) -> dict | None:
    """Context for a top-k-against-random result: across the random draws, Spearman rho between a draw's mean harm
    and how many selective heads (by the top-k's rule) it holds. rho > 0: the draws hurt more the more selective
    heads they hold (selectivity matters, whichever heads); rho near 0 with a top-k that hurts no more than random:
    what the answer depends on is not selectivity. None without both lists or with no spread in either."""
    counts = selection.get("random_n_eligible")
    harms = (effects or {}).get("random_draw_means")
    if not counts or not harms or len(counts) != len(harms) or len(counts) < 3:
        return None
    x, y = np.asarray(counts, float), np.asarray(harms, float)
    ok = np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    from scipy.stats import spearmanr

    rho, p = spearmanr(x[ok], y[ok])
    return {"rho": float(rho), "p": float(p), "n_draws": int(ok.sum()),
            "mean_harm_by_n_eligible": {str(int(c)): float(y[ok][x[ok] == c].mean()) for c in np.unique(x[ok])},
            "definition": "Spearman rho over the random draws between each draw's mean harm (the primary metric) "
                          "and the number of its heads selective by the top-k's rule; context, not a criterion"}
