"""Runs side by side and the test of "run 1 > run k" over units (numpy only; `python -m probe compare`).

    from probe.stats.compare import compare_runs
    res = compare_runs(["runs/probe", "runs/probe-random"], units="same", n_boot=2000, seed=0)

The test. Per unit, delta_u = |t_u(run 1)| - |t_u(run k)|, and the statistic S = mean over units of
delta_u (> 0: run 1's units separate A from B more). Units are not independent observations: every
unit's t is computed from the same pairs, and units of one block (or of neighbouring steps) move
together, so a test that treats the units as a sample (a Wilcoxon or a t test over 16,320 units)
has a false-positive rate far above its nominal level. The independent units are the pairs. So S is
bootstrapped over pairs: each resample draws the pairs with replacement, recomputes every unit's t
in both runs from the resampled pairs and recomputes S (the same resample in both runs when they
hold the same pair ids, i.e. the same prompts and noise; independent resamples otherwise). The
one-sided p for "run 1 > run k" is the basic-bootstrap p, (1 + #{S* - S >= S}) / (1 + B) (the
centred bootstrap distribution S* - S stands in for the null distribution of S; this also removes
the upward drift of |t| that resampling causes), and the interval is the basic-bootstrap
interval [2 S - q_hi, 2 S - q_lo]. With B resamples the smallest attainable p is 1 / (1 + B).
Calibration (benchmarks/bench_compare.py, 200 simulated run pairs with correlated units): 4 % and 3 %
false positives at alpha 0.05 under weak and strong unit dependence (a Wilcoxon over units: 8 % and
42 %), 81 % power for a shift in 10 % of the units.

Agreement. S asks whether run 1's units separate A from B more; whether the *same* units move the *same*
way in both runs (e.g. do the heads that change with light on renders change with light on photographs?) is
the Spearman correlation rho of the signed t over the shared units, with a percentile interval from the same
bootstrap over pairs (each resample recomputes every unit's t in both runs). It describes how alike the two
unit profiles are beyond the sampling noise of the pairs; it is not a test of what training did (random
weights give correlated profiles too: compare with a random-init run for that). Beside it, the units
FWER-significant in both runs and how many of them have the same sign. `contrast` sees image probes
through one of their contrasts (probe.io.runs.load_run), so e.g. the lighting contrast of a render-based
and of a photograph-based probe are compared.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.io.runs import CompareError, Run, load_run
from probe.stats.blocks import resample_weights, resampled_abs_t_mean
from probe.stats.paired import paired_t

__all__ = ["UNIT_MODES", "bootstrap_test", "signed_agreement", "compare_runs"]

UNIT_MODES = ("same", "shared", "any")


def _unit_sets(runs: list[Run], mode: str) -> np.ndarray | None:
    """The units compared unit by unit (in run 1's order), per `mode`; None for 'any'."""
    if mode == "any":
        return None
    first = runs[0]
    if mode == "same":
        for r in runs[1:]:
            a, b = set(first.units.tolist()), set(r.units.tolist())
            if a != b:
                only_a, only_b = sorted(a - b), sorted(b - a)
                raise CompareError(
                    f"runs have different unit sets: {first.path} has {len(a):,} units, {r.path} has {len(b):,}, "
                    f"{len(a & b):,} in common (e.g. only in the first: {only_a[:2]}, only in the second: "
                    f"{only_b[:2]}). Units are compared one by one, so compare runs made with the same protocol, "
                    f"capture steps, slice layout and token sets; `--units shared` compares on the common units, "
                    f"`--units any` sets only run-level numbers side by side. Nothing was written.")
        return first.units
    common = set(first.units.tolist())
    for r in runs[1:]:
        common &= set(r.units.tolist())
    if not common:
        raise CompareError("the runs share no unit (different protocols or sites?): `--units shared` needs "
                           "common unit names; `--units any` sets only run-level numbers side by side. "
                           "Nothing was written.")
    return np.array([u for u in first.units if u in common])


def _take(run: Run, units: np.ndarray, values: np.ndarray) -> np.ndarray:
    pos = {u: i for i, u in enumerate(run.units)}
    return values[[pos[u] for u in units]]


def _diff_on(run: Run, units: np.ndarray) -> np.ndarray:
    """[pairs, units] main-contrast differences (A - B) from captures.npz, columns in `units` order."""
    caps = run.captures
    pos = {u: i for i, u in enumerate(caps.units)}
    cols = [pos[u] for u in units]
    return caps.a[:, cols].astype(np.float64) - caps.b[:, cols].astype(np.float64)


def _abs_t(diff: np.ndarray) -> np.ndarray:
    return np.abs(paired_t(diff, np.zeros_like(diff)).t)


def bootstrap_test(ref: Run, other: Run, units: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   ci: float = 0.95) -> dict:
    """The test of "ref > other": S = mean over units of |t_ref| - |t_other|, bootstrapped over pairs."""
    if ref.captures is None or other.captures is None:
        return {"available": False, "why": "needs captures.npz in both runs"}
    d_ref, d_oth = _diff_on(ref, units), _diff_on(other, units)
    s_obs = float(np.mean(_abs_t(d_ref)) - np.mean(_abs_t(d_oth)))
    same_pairs = list(ref.captures.pair_ids) == list(other.captures.pair_ids)
    rng = np.random.default_rng([seed, 17])
    w_ref = resample_weights(d_ref.shape[0], n_boot, rng)
    w_oth = w_ref if same_pairs else resample_weights(d_oth.shape[0], n_boot, rng)
    s_boot = resampled_abs_t_mean(d_ref, w_ref) - resampled_abs_t_mean(d_oth, w_oth)
    lo_q, hi_q = np.percentile(s_boot, [50 * (1 - ci), 100 - 50 * (1 - ci)])
    p_greater = (1 + int(np.count_nonzero(s_boot - s_obs >= s_obs))) / (1 + n_boot)
    p_less = (1 + int(np.count_nonzero(s_boot - s_obs <= s_obs))) / (1 + n_boot)
    return {
        "available": True, "statistic": "S = mean over units of (|t| in run 1 - |t| in this run)",
        "S": s_obs, "ci": [2 * s_obs - float(hi_q), 2 * s_obs - float(lo_q)], "ci_level": ci,
        "ci_kind": "basic bootstrap over pairs", "p_run1_greater": p_greater,
        "p_two_sided": min(1.0, 2 * min(p_greater, p_less)), "n_boot": n_boot, "min_attainable_p": 1 / (1 + n_boot),
        "resampling": ("the same pairs in both runs (same pair ids: paired)" if same_pairs
                       else "pairs of each run resampled independently (different pair ids)"),
        "n_pairs": [int(d_ref.shape[0]), int(d_oth.shape[0])], "seed": seed,
        "bootstrap_mean_S": float(np.mean(s_boot)), "bootstrap_sd_S": float(np.std(s_boot, ddof=1)),
    }


def _resampled_t(diff: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[S, U] per-unit paired t in each resample of the pairs (rows of multiplicities `w` [S, n])."""
    n = diff.shape[0]
    mean = (w @ diff) / n
    var = np.maximum((w @ (diff * diff)) / n - mean * mean, 0.0) * n / max(n - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / np.sqrt(var / n)
    return np.where(np.isfinite(t), t, 0.0)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho between matching rows of x and y [S, U] (average ranks for ties)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / den, np.nan)


def signed_agreement(d_ref: np.ndarray, d_oth: np.ndarray, same_pairs: bool, n_boot: int = 2000, seed: int = 0,
                     ci: float = 0.95, chunk: int = 200) -> dict:
    """Spearman rho of the signed per-unit t of two runs (differences [pairs, units], same unit columns), with a
    percentile interval from resampling the pairs (jointly when `same_pairs`)."""
    t_ref, t_oth = (paired_t(d, np.zeros_like(d)).t for d in (d_ref, d_oth))
    rho = float(_spearman_rows(np.nan_to_num(t_ref)[None], np.nan_to_num(t_oth)[None])[0])
    rng = np.random.default_rng([seed, 29])
    boot = []
    for lo in range(0, n_boot, chunk):
        k = min(chunk, n_boot - lo)
        w_ref = resample_weights(d_ref.shape[0], k, rng).astype(np.float64)
        w_oth = w_ref if same_pairs else resample_weights(d_oth.shape[0], k, rng).astype(np.float64)
        boot.append(_spearman_rows(_resampled_t(d_ref, w_ref), _resampled_t(d_oth, w_oth)))
    boot = np.concatenate(boot) if boot else np.array([])
    fin = boot[np.isfinite(boot)]
    lo_q, hi_q = (np.percentile(fin, [50 * (1 - ci), 100 - 50 * (1 - ci)]) if fin.size else (np.nan, np.nan))
    return {"statistic": "Spearman rho of the signed t of run 1 and this run over the shared units", "rho": rho,
            "ci": [float(lo_q), float(hi_q)], "ci_level": ci, "ci_kind": "percentile bootstrap over pairs",
            "n_boot": n_boot, "resampling": ("the same pairs in both runs" if same_pairs else
                                             "pairs of each run resampled independently"),
            "reading": "how alike the two runs' unit profiles are (sign included), beyond the pairs' sampling noise; "
                       "not a test of training: random weights give correlated profiles too"}


def _significant_overlap(ref: Run, other: Run, units: np.ndarray) -> dict:
    f1, f2 = _take(ref, units, ref.fwer), _take(other, units, other.fwer)
    t1, t2 = _take(ref, units, ref.t), _take(other, units, other.t)
    both = f1 & f2
    return {"n_fwer_run1": int(f1.sum()), "n_fwer_this_run": int(f2.sum()), "n_fwer_both": int(both.sum()),
            "n_fwer_both_same_sign": int(np.count_nonzero(both & (np.sign(t1) == np.sign(t2))))}


def _run_row(run: Run) -> dict:
    s = run.summary
    n = int(s.get("n_units") or run.units.size)
    at = np.abs(run.t)
    imax = int(np.argmax(at)) if at.size else -1
    return {
        "path": str(run.path), "label": run.label, "protocol": s.get("protocol"),
        "direction": s.get("direction", "A photograph - B albedo"), "stimuli": s.get("stimuli", "text"),
        "n_pairs": s.get("n_pairs"), "n_units": n,
        "random_weights": run.random_weights, "randomize": run.randomize,
        "model": (run.config.get("model") or {}).get("model"),
        "n_abs_t_gt_3": int(np.count_nonzero(at > 3)), "n_abs_t_gt_5": int(np.count_nonzero(at > 5)),
        "pct_abs_t_gt_3": 100.0 * np.count_nonzero(at > 3) / max(n, 1),
        "pct_abs_t_gt_5": 100.0 * np.count_nonzero(at > 5) / max(n, 1),
        "n_fwer_significant": int(np.count_nonzero(run.fwer)),
        "null_p99_abs_t_gt_3": s.get("null_p99_abs_t_gt_3"), "null_p99_abs_t_gt_5": s.get("null_p99_abs_t_gt_5"),
        "split_half_r_median": s.get("split_half_r_median"), "split_half_r_q25": s.get("split_half_r_q25"),
        "split_half_r_q75": s.get("split_half_r_q75"),
        "max_abs_t": float(at[imax]) if imax >= 0 else None, "max_abs_t_unit": str(run.units[imax]) if imax >= 0 else "",
        "n_selective_beyond_control": s.get("n_selective_beyond_control"),
        "contrast": s.get("viewed_contrast") or s.get("primary_contrast"),
        "notes": list(run.notes),
    }


def _block_table(runs: list[Run], units: np.ndarray | None) -> list[dict]:
    """Per block (run 1's order, then blocks only later runs have): each run's max |t| and count |t| > 3."""
    order: list[str] = []
    for r in runs:
        for b in dict.fromkeys(r.blocks.tolist()):
            if b not in order:
                order.append(b)
    keep = None if units is None else set(units.tolist())
    rows = []
    for b in order:
        row = {"block": b}
        for k, r in enumerate(runs):
            m = r.blocks == b
            if keep is not None:
                m &= np.isin(r.units, list(keep))
            at = np.abs(r.t[m])
            row[f"run{k + 1}"] = ({"n_units": int(m.sum()), "max_abs_t": float(at.max()),
                                   "n_abs_t_gt_3": int(np.count_nonzero(at > 3))} if at.size else None)
        rows.append(row)
    return rows


def compare_runs(paths, labels=None, units: str = "same", n_boot: int = 2000, seed: int = 0,
                 contrast: str | None = None) -> dict:
    """Everything compare.json holds (no files written). `paths`: run folders or already loaded `Run`s;
    `contrast`: see every image probe through that contrast (default: each run's primary one)."""
    paths = [p if isinstance(p, Run) else Path(p) for p in paths]
    if len(paths) < 2:
        raise CompareError("compare needs at least two run folders")
    if units not in UNIT_MODES:
        raise CompareError(f"--units must be one of {UNIT_MODES}, got {units!r}")
    labels = list(labels) if labels else [None] * len(paths)
    if len(labels) != len(paths):
        raise CompareError(f"--labels gives {len(labels)} labels for {len(paths)} runs")
    runs = [p if isinstance(p, Run) else load_run(p, lab, contrast) for p, lab in zip(paths, labels)]
    shared = _unit_sets(runs, units)
    out: dict = {"job": "probe compare", "units_mode": units, "contrast": contrast, "runs": [_run_row(r) for r in runs],
                 "n_units_compared": None if shared is None else int(shared.size)}
    out["blocks"] = _block_table(runs, shared)
    out["comparisons"] = []
    if shared is not None:
        ref = runs[0]
        t_ref = np.abs(_take(ref, shared, ref.t))
        out["units"] = {"unit": shared.tolist()}
        for k, r in enumerate(runs[1:], start=2):
            delta = t_ref - np.abs(_take(r, shared, r.t))
            out["units"][f"delta_abs_t_run1_minus_run{k}"] = [round(float(x), 5) for x in delta]
            out["comparisons"].append({
                "run": k, "label": r.label, "mean_delta_abs_t": float(delta.mean()),
                "median_delta_abs_t": float(np.median(delta)),
                "share_of_units_larger_in_run1": float(np.mean(delta > 0)),
                "test": bootstrap_test(ref, r, shared, n_boot=n_boot, seed=seed),
                "agreement": (signed_agreement(_diff_on(ref, shared), _diff_on(r, shared),
                                               list(ref.captures.pair_ids) == list(r.captures.pair_ids), n_boot, seed)
                              if ref.captures is not None and r.captures is not None else
                              {"available": False, "why": "needs captures.npz in both runs"}),
                "significant_in_both": _significant_overlap(ref, r, shared),
            })
    out["all_random_weights"] = all(r.random_weights for r in runs)
    out["any_random_init_control"] = any(r.randomize != "none" for r in runs)
    return out
