"""Runs side by side and the within-network test of "run 1 > run k" over units (numpy/scipy; `python -m probe compare`).

    from probe.stats.compare import compare_runs
    res = compare_runs(["runs/probe", "runs/probe-random"], units="same", n_boot=2000, seed=0)
    res = compare_runs(["runs/probe"], population="runs/population")     # + ranked among untrained networks

The within-network test. Per unit, delta_u = |t_u(run 1)| - |t_u(run k)|, and the statistic S = mean over
units of delta_u (> 0: run 1's units separate A from B more). Units are not independent observations:
every unit's t is computed from the same pairs, and units of one block (or of neighbouring steps) move
together, so a test that treats the units as a sample (a Wilcoxon or a t test over 16,320 units) has a
false-positive rate far above its nominal level. The independent units are the pairs. S is unbiased for
its expectation over the pairs, so the test is S / SE against Student's t with n - 1 degrees of freedom
(n pairs), and the interval S +- t SE. SE is the standard deviation of S over B resamples of the pairs
(each draws the pairs with replacement, recomputes every unit's t in both runs and S; the same resample in
both runs when they hold the same pair ids, i.e. the same prompts and noise), or, for runs with different
pair ids, the jackknife over each run's pairs (independent resamples of two runs differ in how many
distinct pairs they draw, which moves every |t| of one run at once and inflates the spread ~2x).

Why not the basic bootstrap it replaced (kept in the output as `basic_bootstrap`): resampling pairs raises
|t| of units with no effect by ~0.3 and of units with a clear effect by almost nothing, so the centred
bootstrap distribution S* - S is shifted by an amount that depends on how each run mixes effect sizes. With
equal expected mean |t| (every unit d_z 0.35 in one run, half null and half 0.553 in the other) it said
"run 1 > run 2" at 0.05 in 67 % of simulations (2,000 units, paired); S / SE is not moved by that drift: 4.0
and 2.5 % (benchmarks/bench_compare.py, with the correlated-unit cases: 2.0 and 0.5 % false positives, 76 %
power for a shift in 10 % of the units, against 80 % for the basic bootstrap).

What it cannot say. It resamples the pairs of each run, never the networks: it is a test of within-network
noise only. Two untrained networks of one architecture differ by it far more often than 5 %, so it cannot
say what training did; ranking a run among a population of untrained networks can (`population=`,
probe.stats.population). Runs that differ in the number of pairs or in seeds per pair are refused
(`check_same_scale`): |t| grows with both whatever the networks do.

Agreement. S asks whether run 1's units separate A from B more; whether the *same* units move the *same*
way in both runs (e.g. do the heads that change with light on renders change with light on photographs?) is
the Spearman correlation rho of the signed t over the shared units, with a percentile interval from the same
bootstrap over pairs (each resample recomputes every unit's t in both runs). It describes how alike the two
unit profiles are beyond the sampling noise of the pairs; it is not a test of what training did (random
weights give correlated profiles too: rank the runs among untrained networks for that). Beside it, the units
FWER-significant in both runs and how many of them have the same sign. `contrast` sees image probes
through one of their contrasts (probe.io.runs.load_run), so e.g. the lighting contrast of a render-based
and of a photograph-based probe are compared.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from probe.io.runs import CompareError, Run, load_run
from probe.stats.blocks import resample_weights, resampled_abs_t_mean
from probe.stats.paired import paired_t

__all__ = ["UNIT_MODES", "within_network_test", "bootstrap_test", "jackknife_abs_t_mean", "check_same_scale",
           "signed_agreement", "compare_runs", "WITHIN_NETWORK_SCOPE"]

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


def jackknife_abs_t_mean(diff: np.ndarray) -> np.ndarray:
    """[n] mean over units of |t| with pair i left out, for each pair i (float64; diff [n, units], n >= 3).

    Each unit's leave-one-out mean and variance come from the full sums minus pair i, on data centred by
    the unit's own mean (no cancellation); a leave-one-out variance at or below (1e-9 x the unit's
    scale)^2 counts as zero (t = 0), judged against the data's scale rather than an absolute tolerance."""
    diff = np.asarray(diff, dtype=np.float64)
    n = diff.shape[0]
    if n < 3:
        raise ValueError(f"the jackknife needs at least 3 pairs, got {n}")
    dc = diff - diff.mean(axis=0)
    s1, s2 = dc.sum(axis=0), (dc * dc).sum(axis=0)
    m = (s1[None] - dc) / (n - 1)                                  # [n, U] leave-one-out mean (centred)
    var = (s2[None] - dc * dc - (n - 1) * m * m) / (n - 2)
    mean = m + diff.mean(axis=0)[None]
    scale = np.sqrt(s2 / n) + np.abs(diff.mean(axis=0))
    ok = var > (1e-9 * scale[None]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ok, np.abs(mean) / np.sqrt(np.where(ok, var, 1.0) / (n - 1)), 0.0)
    return t.mean(axis=1)


def _jackknife_var(values: np.ndarray) -> float:
    n = values.size
    return float((n - 1) / n * np.sum((values - values.mean()) ** 2))


WITHIN_NETWORK_SCOPE = ("within-network noise only: it resamples the pairs of each run, never the networks, so it "
                        "says whether run 1's units separate A from B more than run k's beyond the sampling noise of "
                        "these pairs, and nothing about training (two untrained networks of one architecture differ "
                        "here far more often than 5 %); rank a run among untrained networks for that "
                        "(`probe compare RUN --population FOLDER`)")


def within_network_test(ref: Run, other: Run, units: np.ndarray, n_boot: int = 2000, seed: int = 0,
                        ci: float = 0.95) -> dict:
    """The test of "ref > other" on S = mean over units of |t_ref| - |t_other|, against the sampling noise of
    the pairs (see the module docstring): S / SE against the normal, SE from B paired resamples of the pairs
    (same pair ids) or from the jackknife over each run's pairs (different pair ids)."""
    from scipy.stats import t as student_t

    if ref.captures is None or other.captures is None:
        return {"available": False, "why": "needs captures.npz in both runs", "scope": WITHIN_NETWORK_SCOPE}
    d_ref, d_oth = _diff_on(ref, units), _diff_on(other, units)
    if min(d_ref.shape[0], d_oth.shape[0]) < 3:
        return {"available": False, "why": f"needs at least 3 pairs in each run (has {d_ref.shape[0]} and "
                f"{d_oth.shape[0]})", "scope": WITHIN_NETWORK_SCOPE}
    s_obs = float(np.mean(_abs_t(d_ref)) - np.mean(_abs_t(d_oth)))
    same_pairs = list(ref.captures.pair_ids) == list(other.captures.pair_ids)
    rng = np.random.default_rng([seed, 17])
    w_ref = resample_weights(d_ref.shape[0], n_boot, rng)
    w_oth = w_ref if same_pairs else resample_weights(d_oth.shape[0], n_boot, rng)
    s_boot = resampled_abs_t_mean(d_ref, w_ref) - resampled_abs_t_mean(d_oth, w_oth)
    jk_ref, jk_oth = jackknife_abs_t_mean(d_ref), jackknife_abs_t_mean(d_oth)
    se_jack = math.sqrt(_jackknife_var(jk_ref - jk_oth) if same_pairs else
                        _jackknife_var(jk_ref) + _jackknife_var(jk_oth))
    se_boot = float(np.std(s_boot, ddof=1)) if n_boot > 1 else float("nan")
    use_boot = same_pairs and math.isfinite(se_boot)
    se = se_boot if use_boot else se_jack
    if se > 0:
        z = s_obs / se
    else:                       # identical runs (or no spread at all): no evidence either way
        z = 0.0 if s_obs == 0 else math.copysign(math.inf, s_obs)
    df = min(d_ref.shape[0], d_oth.shape[0]) - 1       # the spread is estimated from this many pairs
    p_greater = float(student_t.sf(z, df))
    half = float(student_t.ppf(0.5 + ci / 2, df)) * se
    # the basic-bootstrap numbers this test replaced, kept for comparison with earlier compare.json files
    lo_q, hi_q = np.percentile(s_boot, [50 * (1 - ci), 100 - 50 * (1 - ci)])
    basic_p = (1 + int(np.count_nonzero(s_boot - s_obs >= s_obs))) / (1 + n_boot)
    se_kind = ("the standard deviation of S over B resamples of the pairs, the same resample in both runs (same "
               "pair ids: paired)" if use_boot else
               "the jackknife over the pairs of each run, the runs independent (different pair ids)")
    return {
        "available": True, "name": "within-network noise test", "scope": WITHIN_NETWORK_SCOPE,
        "statistic": "S = mean over units of (|t| in run 1 - |t| in this run)",
        "S": s_obs, "se": se, "z": z, "ci": [s_obs - half, s_obs + half], "ci_level": ci,
        "ci_kind": f"S +- t(0.975, n - 1) SE, SE = {se_kind}",
        "p_run1_greater": p_greater, "p_two_sided": float(min(1.0, 2 * student_t.sf(abs(z), df))), "df": df,
        "p_kind": "one-sided p of S / SE against Student's t with n - 1 degrees of freedom (n: pairs; not limited to "
                  "1 / (1 + B): the resamples estimate the spread only)",
        "n_boot": n_boot, "min_attainable_p": None,
        "resampling": ("the same pairs in both runs (same pair ids: paired)" if same_pairs
                       else "pairs of each run resampled independently (different pair ids)"),
        "n_pairs": [int(d_ref.shape[0]), int(d_oth.shape[0])], "seed": seed,
        "se_bootstrap": se_boot, "se_jackknife": se_jack,
        "bootstrap_mean_S": float(np.mean(s_boot)), "bootstrap_sd_S": se_boot,
        "why_not_basic_bootstrap": (
            "resampling the pairs raises |t| of units with no effect more than of units with a clear one, so the "
            "centred bootstrap distribution S* - S is shifted by an amount that depends on how each run mixes effect "
            "sizes: with equal expected mean |t| (every unit d_z 0.35 vs half null, half 0.553) the basic bootstrap "
            "said 'run 1 > run 2' at 0.05 in 22-67 % of simulations (300 to 2,000 units; "
            "benchmarks/bench_compare.py); S / SE is not "
            "moved by that drift"),
        "basic_bootstrap": {"ci": [2 * s_obs - float(hi_q), 2 * s_obs - float(lo_q)], "p_run1_greater": basic_p,
                            "min_attainable_p": 1 / (1 + n_boot),
                            "note": "miscalibrated when the runs mix effect sizes differently; kept for comparison "
                                    "with compare.json files written before the change"},
    }


def bootstrap_test(ref: Run, other: Run, units: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   ci: float = 0.95) -> dict:
    """The earlier name of `within_network_test` (kept for notebooks and benchmarks)."""
    return within_network_test(ref, other, units, n_boot=n_boot, seed=seed, ci=ci)


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
        "max_abs_t": float(at[imax]) if imax >= 0 else None,
        "max_abs_t_unit": str(run.units[imax]) if imax >= 0 else "",
        "n_selective_beyond_control": s.get("n_selective_beyond_control"),
        "contrast": s.get("viewed_contrast") or s.get("primary_contrast"),
        "notes": list(run.notes),
        # the design, read from the run's own records (issue 17.2: labels from the run's config)
        "primary_contrast": run.primary_contrast, "pairs_over": run.pairs_over, "clustered": run.clustered,
        "seeds_per_pair": run.seeds_per_pair, "steps": (run.config.get("capture") or {}).get("steps"),
        "capture_steps": (run.config.get("capture") or {}).get("capture_steps"),
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


def check_same_scale(runs: list[Run], allow: bool = False) -> list[str]:
    """CompareError (one paragraph) when the runs differ in the number of pairs or in seeds per pair: |t| grows
    with the square root of the pairs, and with the noise draws averaged per pair (they shrink the spread of
    every difference), so mean |t| of such runs differs whatever the networks do. A run that does not record
    its seeds per pair is not refused for it. `allow`: return the differences instead (the caller then runs
    no mean-|t| test)."""
    first = runs[0]
    problems = []
    for k, r in enumerate(runs[1:], start=2):
        if first.n_pairs is not None and r.n_pairs is not None and first.n_pairs != r.n_pairs:
            problems.append(f"run 1 ({first.path}) has {first.n_pairs} pairs, run {k} ({r.path}) {r.n_pairs}")
        a, b = first.seeds_per_pair, r.seeds_per_pair
        if a is not None and b is not None and a != b:
            problems.append(f"run 1 averages {a} noise draws per pair (--seeds-per-pair), run {k} {b}")
    if problems and not allow:
        raise CompareError(
            "the unit-by-unit test compares mean |t|, and the runs differ in what sets the size of |t| whatever the "
            f"networks do: {'; '.join(problems)}. |t| grows with the square root of the number of pairs and with the "
            "noise draws averaged per pair (25 vs 12 pairs gave 'run 1 > run 2' in 40 of 40 simulations), and no "
            "rescaling makes them comparable unit by unit (units with no effect do not grow, units with one do). "
            "Compare runs made with the same pairs and --seeds-per-pair (`--limit N` takes the first N pairs); set "
            "them side by side without a test with `--units any`; or add --allow-unequal-pairs for the scale-free "
            "parts only (the signed agreement of t, units significant in both). Nothing was written.")
    return problems


def compare_runs(paths, labels=None, units: str = "same", n_boot: int = 2000, seed: int = 0,
                 contrast: str | None = None, population=None, allow_unequal_pairs: bool = False) -> dict:
    """Everything compare.json holds (no files written). `paths`: run folders or already loaded `Run`s;
    `contrast`: see every image probe through that contrast (default: each run's primary one); `population`:
    a population folder (or a loaded `probe.io.runs.Population`) to rank each run among
    (`probe.stats.population`; then one run is enough; not with `contrast`: every contrast is ranked);
    `allow_unequal_pairs`: runs that differ in pairs or seeds per pair get no mean-|t| test (refused otherwise)."""
    if population is not None and contrast is not None:
        raise CompareError("--contrast and --population cannot be combined: the population ranks every contrast of "
                           "the run already (one row per contrast and statistic in compare.json). Nothing was "
                           "written.")
    paths = [p if isinstance(p, Run) else Path(p) for p in paths]
    if len(paths) < (1 if population is not None else 2):
        raise CompareError("compare needs at least two run folders, or one run and --population FOLDER")
    if units not in UNIT_MODES:
        raise CompareError(f"--units must be one of {UNIT_MODES}, got {units!r}")
    labels = list(labels) if labels else [None] * len(paths)
    if len(labels) != len(paths):
        raise CompareError(f"--labels gives {len(labels)} labels for {len(paths)} runs")
    runs = [p if isinstance(p, Run) else load_run(p, lab, contrast) for p, lab in zip(paths, labels)]
    shared = _unit_sets(runs, units) if len(runs) > 1 else None
    unequal = check_same_scale(runs, allow_unequal_pairs) if shared is not None else []
    pop = None
    if population is not None:
        from probe.io.runs import Population, load_population

        pop = population if isinstance(population, Population) else load_population(population)
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
                "test": (test := within_network_test(ref, r, shared, n_boot=n_boot, seed=seed) if not unequal else
                         {"available": False, "scope": WITHIN_NETWORK_SCOPE,
                          "why": "the runs differ in pairs or seeds per pair (" + "; ".join(unequal) + "): mean |t| "
                                 "is not comparable (--allow-unequal-pairs)"}),
                "within_network_noise_test": test,     # the same test under the name that says what it covers
                "agreement": (signed_agreement(_diff_on(ref, shared), _diff_on(r, shared),
                                               list(ref.captures.pair_ids) == list(r.captures.pair_ids), n_boot, seed)
                              if ref.captures is not None and r.captures is not None else
                              {"available": False, "why": "needs captures.npz in both runs"}),
                "significant_in_both": _significant_overlap(ref, r, shared),
            })
    out["unequal_pairs"] = unequal
    out["all_random_weights"] = all(r.random_weights for r in runs)
    out["any_random_init_control"] = any(r.randomize != "none" for r in runs)
    if pop is not None:
        from probe.stats.population import population_comparison

        out["population"] = population_comparison(runs, pop)
    return out
