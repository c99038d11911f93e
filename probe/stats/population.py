"""A run ranked among a population of untrained networks (numpy only; `probe compare RUN --population FOLDER`).

    from probe.io.runs import load_population, load_run
    from probe.stats.population import population_comparison
    res = population_comparison([load_run("runs/probe")], load_population("runs/population"))

Why networks, not pairs. The within-network test of `probe compare` resamples the pairs of two runs, so it
measures how much a run's statistics move with the sampling of its pairs; two untrained networks of one
architecture differ from each other far beyond that (one random-init run as the control said "different"
at p < 0.05 for two untrained networks in 19-45 % of simulations). Whether training did anything is a
question about networks, so the unit of this test is the network: K untrained networks (fresh seeded
initialisations of the transformer, `probe run --randomize transformer --randomize-seeds 0-18`), each
measured with exactly the run's design, give each statistic's distribution over untrained networks.

The test. For each headline statistic x of the run (below), with x_1 .. x_K its values in the K untrained
networks, the one-sided rank p of "the run's x is larger than an untrained network's" is

    rank p = (1 + #{k : x_k >= x}) / (1 + K)

exact under the null that the run's network is one more draw of the untrained ones (then its rank among
the K + 1 is uniform), with ties counted against the run. Its floor is 1 / (1 + K): 0.05 needs K >= 19.
`rank_p_lower` is the mirror image (#{x_k <= x}), for statistics where smaller would be the finding. Each
row also gives the population's spread (min, median, max, mean, sd) beside the run's value. Rank p's of
different statistics are not corrected for their number (the run-level rows are the headline; the
per-block rows describe where a difference sits).

Headline statistics (`headline_statistics`), read generically from summary.json and units.csv so that new
classes or contrasts are ranked without code changes:
    per contrast (the primary one, every other contrast, every direct test against a control set):
        n_fwer_significant, n_abs_t_gt_3, n_abs_t_gt_5, max_abs_t, split_half_r_median
    n_selective_vs_<NAME>, n_selective_beyond_control (text probe)
    class counts (image probe): every key of summary.json's classes.counts and change_classes.counts
    per block: max |t| and the FWER-significant count of the primary contrast and of every image contrast
        that units.csv holds (t_<C>, p_fwer_<C>), and every class count of classes.per_block and
        change_classes.per_block

Calibration (`leave_one_out`): each member in turn ranked against the other K - 1. For a statistic
without ties these K rank p's are exactly {1/K, 2/K, ..., 1} (a member is the largest of K exchangeable
draws with probability 1/K), so the rate of rank p <= alpha is floor(alpha K) / K; ties make it smaller
(conservative). `population_comparison` reports it for the population at hand.

Runs that differ from the population in design (stimuli, protocol, contrasts, pairs, seeds per pair,
noise, steps and every other capture setting, the statistics settings that move counts, the unit set;
`probe.io.runs.Run.design`) are refused: a count over 25 pairs is not comparable to one over 12.
"""
from __future__ import annotations

import math

import numpy as np

from probe.io.runs import CompareError, Population, Run

__all__ = ["RUN_STATISTICS", "BLOCK_STATISTICS", "headline_statistics", "rank_p", "spread", "leave_one_out",
           "calibration", "check_design", "population_comparison", "DEFINITION"]

RUN_STATISTICS = {
    "n_fwer_significant": "units FWER-significant",
    "n_abs_t_gt_3": "units with |t| > 3",
    "n_abs_t_gt_5": "units with |t| > 5",
    "max_abs_t": "max |t|",
    "split_half_r_median": "split-half r (median)",
}
BLOCK_STATISTICS = {
    "max_abs_t": "max |t| in the block",
    "n_fwer_significant": "FWER-significant units in the block",
}

DEFINITION = ("rank p = (1 + number of the K untrained networks whose value is at least the run's) / (1 + K): the "
              "one-sided p of 'larger than an untrained network of the same architecture', exact when the run's "
              "network is exchangeable with the untrained ones; ties count against the run; its floor is 1 / (1 + K)")


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _row(key: str, statistic: str, value, description: str, level: str = "run", contrast: str | None = None,
         block: str | None = None, cls: str | None = None) -> dict:
    return {"key": key, "statistic": statistic, "contrast": contrast, "block": block, "class": cls, "level": level,
            "description": description, "value": _num(value)}


def _block_rows(run: Run) -> list[dict]:
    """Per-block max |t| and FWER-significant counts (primary contrast and the image contrasts in units.csv), and
    per-block class counts."""
    rows = []
    cols = run.columns or {}
    alpha = float(run.summary.get("fwer_alpha", 0.05))
    sets = [(run.primary_contrast, np.abs(np.asarray(run.t, dtype=np.float64)), np.asarray(run.fwer, dtype=bool))]
    if run.stimuli == "images":
        for name in (run.summary.get("contrasts") or {}):
            if f"t_{name}" in cols and f"p_fwer_{name}" in cols:
                sets.append((name, np.abs(np.asarray(cols[f"t_{name}"], dtype=np.float64)),
                             np.asarray(cols[f"p_fwer_{name}"], dtype=np.float64) <= alpha))
    blocks = np.asarray(run.blocks).astype(str)
    names = list(dict.fromkeys(blocks.tolist()))
    for name, at, fw in sets:
        for b in names:
            m = blocks == b
            rows.append(_row(f"block/{b}/{name}/max_abs_t", "max_abs_t", float(at[m].max()) if m.any() else None,
                             f"{BLOCK_STATISTICS['max_abs_t']}, {name}", "block", name, b))
            rows.append(_row(f"block/{b}/{name}/n_fwer_significant", "n_fwer_significant", int(fw[m].sum()),
                             f"{BLOCK_STATISTICS['n_fwer_significant']}, {name}", "block", name, b))
    for family, what in CLASS_FAMILIES.items():
        for brow in ((run.summary.get(family) or {}).get("per_block") or []):
            for cls, v in brow.items():
                if cls in ("block", "n_units") or _num(v) is None:
                    continue
                rows.append(_row(f"block/{brow['block']}/{family}/{cls}", "class_count", v, f"units of {what} "
                                 f"{cls} in the block", "block", family, str(brow["block"]), cls))
    return rows


def headline_statistics(run: Run) -> list[dict]:
    """The run's headline statistics as rows {key, statistic, contrast, block, class, level, description, value}
    (value None where the run has none, e.g. split-half r with too few pairs). Read generically from summary.json
    (contrasts, direct tests, selective counts, class counts) and units.csv (per block)."""
    s = run.summary
    rows = []
    contrasts = [(run.primary_contrast, s, s.get("direction") or "A - B")]
    contrasts += [(name, c, c.get("label") or name) for name, c in (s.get("contrasts") or {}).items()]
    contrasts += [(name, c, c.get("label") or name) for name, c in (s.get("directs") or {}).items()]
    for name, c, label in contrasts:
        for stat, desc in RUN_STATISTICS.items():
            rows.append(_row(f"{name}/{stat}", stat, c.get(stat), f"{desc}, {label}", "run", name))
    for k, v in s.items():
        if k.startswith("n_selective_vs_") or k == "n_selective_beyond_control":
            what = ("selective beyond every control set" if k == "n_selective_beyond_control" else
                    f"selective beyond the {k[len('n_selective_vs_'):]} control")
            rows.append(_row(f"selective/{k}", k, v, f"units {what}", "run", "selective"))
    for family, what in CLASS_FAMILIES.items():
        for cls, v in ((s.get(family) or {}).get("counts") or {}).items():
            rows.append(_row(f"{family}/{cls}", "class_count", v, f"units of {what} {cls}", "run", family, cls=cls))
    return rows + _block_rows(run)


# summary.json class families ranked as class counts: the scalar classes (units.csv `class`) and the change classes
# (units.csv `class_change`, probe.stats.change)
CLASS_FAMILIES = {"classes": "class", "change_classes": "change class"}


def rank_p(observed: float, population) -> dict:
    """The rank p of `observed` among the population's values (see the module docstring), both tails."""
    pop = np.asarray(population, dtype=np.float64)
    k = pop.size
    n_ge = int(np.count_nonzero(pop >= observed))
    n_le = int(np.count_nonzero(pop <= observed))
    return {"K": k, "n_at_least_as_extreme": n_ge, "rank_p": (1 + n_ge) / (1 + k), "floor": 1 / (1 + k),
            "n_at_most": n_le, "rank_p_lower": (1 + n_le) / (1 + k)}


def spread(population) -> dict:
    pop = np.asarray(population, dtype=np.float64)
    return {"population_min": float(pop.min()), "population_median": float(np.median(pop)),
            "population_max": float(pop.max()), "population_mean": float(pop.mean()),
            "population_sd": float(pop.std(ddof=1)) if pop.size > 1 else None}


def leave_one_out(values) -> np.ndarray:
    """values [K, S] (K members, S statistics) -> [K, S] rank p of each member against the other K - 1:
    (1 + #{j != i : x_j >= x_i}) / K."""
    v = np.asarray(values, dtype=np.float64)
    ge = (v[None, :, :] >= v[:, None, :]).sum(axis=1) - 1          # [K, S]: others at least as large (self removed)
    return (1 + ge) / v.shape[0]


def calibration(member_rows: list[list[dict]], alpha: float = 0.05) -> dict:
    """Each member ranked against the other K - 1 on every statistic they all have: the rate of rank p <= alpha
    (all statistics, run-level ones), whether every tie-free statistic's ranks are exactly {1/K, ..., 1}."""
    k = len(member_rows)
    idx = [_index(rows) for rows in member_rows]
    keys = [r["key"] for r in member_rows[0] if all(_num(ix.get(r["key"], {}).get("value")) is not None for ix in idx)]
    vals = np.array([[idx[i][key]["value"] for key in keys] for i in range(k)], dtype=np.float64).reshape(k, len(keys))
    ps = leave_one_out(vals) if keys else np.zeros((k, 0))
    tie_free = np.array([np.unique(vals[:, j]).size == k for j in range(len(keys))], dtype=bool)
    grid = np.arange(1, k + 1) / k
    uniform = bool(all(np.allclose(np.sort(ps[:, j]), grid) for j in np.flatnonzero(tie_free)))
    run_level = np.array([idx[0][key]["level"] == "run" for key in keys], dtype=bool)
    mc = math.sqrt(alpha * (1 - alpha) / k)

    def rate(mask):
        return float(np.mean(ps[:, mask] <= alpha)) if mask.any() else None

    return {
        "what": "each untrained network ranked against the other K - 1 on every statistic all of them have",
        "n_members": k, "each_against": k - 1, "floor": 1 / k, "alpha": alpha,
        "alpha_reachable": 1 / k <= alpha + 1e-12,
        "expected_rate_without_ties": math.floor(alpha * k + 1e-9) / k,
        "rate_p_le_alpha": rate(np.ones(len(keys), dtype=bool)),
        "rate_p_le_alpha_run_level": rate(run_level),
        "rate_p_le_alpha_tie_free": rate(tie_free),
        "n_statistics": len(keys), "n_statistics_tie_free": int(tie_free.sum()),
        "uniform_on_grid": uniform,
        "monte_carlo_se_one_statistic": mc,
        "note": ("without ties the K leave-one-out rank p's of a statistic are exactly 1/K, 2/K, ..., 1 (exchangeable "
                 "networks), so the rate is floor(alpha K) / K by construction; ties lower it. With K members each is "
                 "ranked against K - 1, so 0.05 is reachable only from K = 20; a run ranked against all K reaches it "
                 "from K = 19"),
    }


def _index(rows: list[dict]) -> dict:
    return {r["key"]: r for r in rows}


def _show(v) -> str:
    if isinstance(v, list) and len(v) > 4:
        return f"[{len(v)} values: {', '.join(map(str, v[:2]))}, ...]"
    if isinstance(v, dict):
        return "{...}"
    return repr(v)


def _differences(a: dict, b: dict) -> tuple[list[str], list[str]]:
    """(fields that differ, fields the second does not record) between two design records."""
    differ, unrecorded = [], []
    for k in a:
        if b.get(k) is None and a.get(k) is not None:
            unrecorded.append(k)
        elif a.get(k) != b.get(k):
            differ.append(k)
    return differ, unrecorded


def _unit_message(a: Run, b: Run) -> str | None:
    ua, ub = set(a.units.tolist()), set(b.units.tolist())
    if ua == ub:
        return None
    return (f"unit set ({len(ua):,} units in {a.path}, {len(ub):,} in {b.path}, {len(ua & ub):,} in common; e.g. only "
            f"in the first: {sorted(ua - ub)[:2]}, only in the second: {sorted(ub - ua)[:2]})")


def check_design(runs: list[Run], pop: Population) -> dict:
    """CompareError (one paragraph, naming the fields and their values) unless every member of the population has
    one design and every run has that design too; returns {"design": ..., "unchecked": {run index: [fields the
    run does not record]}}."""
    ref = pop.members[0]
    design = ref.design()
    for seed, m in zip(pop.seeds[1:], pop.members[1:]):
        differ, _ = _differences(design, m.design())
        units = _unit_message(ref, m)
        if differ or units:
            what = "; ".join([f"{k}: {_show(design[k])} vs {_show(m.design()[k])}" for k in differ]
                             + ([units] if units else []))
            raise CompareError(f"{pop.path} is not one population: its member {m.path.name} (seed {seed}) differs "
                               f"from {ref.path.name} in {what}. A population's networks must differ in their "
                               "random seed only; make it again into a new folder. Nothing was written.")
    unchecked = {}
    for i, r in enumerate(runs, start=1):
        d = r.design()
        differ, unrecorded = _differences(design, d)
        units = _unit_message(ref, r)
        if differ or units:
            what = "; ".join([f"{k}: population {_show(design[k])}, run {_show(d[k])}" for k in differ]
                             + ([units] if units else []))
            raise CompareError(
                f"run {i} ({r.path}) was not made with the population's design ({pop.path}): {what}. A rank among "
                "untrained networks compares one number across networks, so everything else must be equal: counts "
                "and |t| grow with the pairs and seeds per pair, and differ with steps, protocol and units. Make the "
                "population with the run's own options (`python -m probe run <the run's options> --randomize "
                "transformer --randomize-seeds 0-18 --out FOLDER`). Nothing was written.")
        if unrecorded:
            unchecked[i] = unrecorded
    return {"design": design, "unchecked": unchecked}


def population_comparison(runs: list[Run], pop: Population) -> dict:
    """compare.json's `population` section: each run's headline statistics ranked among the population's K
    networks (rows with statistic, contrast, block, observed, population values, rank p, floor, K and the
    spread), the design they share and the leave-one-out calibration of the population itself."""
    if pop.k < 2:
        raise CompareError(f"{pop.path} holds {pop.k} finished untrained network(s): a population of one cannot rank "
                           "anything. Nothing was written.")
    checked = check_design(runs, pop)
    member_rows = [headline_statistics(m) for m in pop.members]
    idx = [_index(rows) for rows in member_rows]
    out_runs = []
    for i, r in enumerate(runs, start=1):
        rows = []
        for row in headline_statistics(r):
            vals = [ix.get(row["key"], {}).get("value") for ix in idx]
            entry = {k: v for k, v in row.items() if k != "value"}
            entry["observed"] = row["value"]
            entry["population"] = vals
            complete = row["value"] is not None and all(v is not None for v in vals)
            if complete:
                entry.update(rank_p(row["value"], vals))
                entry.update(spread(vals))
            else:
                missing = sum(v is None for v in vals)
                entry.update({"K": pop.k, "rank_p": None, "floor": 1 / (1 + pop.k), "rank_p_lower": None,
                              "why": "the run has no value" if row["value"] is None else
                              f"{missing} of the {pop.k} networks have no value"})
            rows.append(entry)
        out_runs.append({"run": i, "label": r.label, "path": str(r.path), "statistics": rows,
                         "unchecked_design_fields": checked["unchecked"].get(i, [])})
    rec = pop.record
    base_model = (rec.get("model") or {}).get("model") or (pop.members[0].config.get("model") or {}).get("model")
    notes = []
    for i, r in enumerate(runs, start=1):
        m = (r.config.get("model") or {}).get("model")
        if base_model and m and m != base_model:
            notes.append(f"run {i} was made with --model {m}, the population with --model {base_model}: it must be "
                         "the same architecture (the unit sets match)")
        if r.randomize != "none":
            notes.append(f"run {i} is itself a random-init network (--randomize {r.randomize}): its ranks are a "
                         "check of the population, not a finding")
    if pop.missing:
        notes.append(f"{len(pop.missing)} planned member(s) not finished (seeds {pop.missing[:10]}): K counts the "
                     "finished ones; run the population's command again to finish them")
    return {
        "folder": str(pop.path), "K": pop.k, "seeds": list(pop.seeds), "missing_seeds": list(pop.missing),
        "randomize": rec.get("randomize"), "model": base_model,
        "floor": 1 / (1 + pop.k), "alpha_reachable": 1 / (1 + pop.k) <= 0.05 + 1e-12,
        "definition": DEFINITION, "direction": "one-sided: is the run's value larger than the untrained networks'?",
        "multiplicity": "rank p's of different statistics are not corrected for their number; the run-level rows "
                        "are the headline, the per-block rows say where a difference sits",
        "design": checked["design"], "design_fields_checked": sorted(checked["design"]) + ["units"],
        "runs": out_runs, "calibration": calibration(member_rows), "notes": notes,
        "keys": {"statistic": "what is counted or measured (n_fwer_significant, n_abs_t_gt_3, n_abs_t_gt_5, "
                              "max_abs_t, split_half_r_median, n_selective_vs_NAME, n_selective_beyond_control, "
                              "class_count)",
                 "contrast": "the contrast or direct test it is computed on ('classes' for class counts, "
                             "'selective' for the selective counts)",
                 "block": "the block (level 'block') or null (level 'run': the whole run)",
                 "class": "the unit class of a class_count",
                 "observed": "the run's value", "population": "the K untrained networks' values, in seed order",
                 "rank_p": DEFINITION, "floor": "1 / (1 + K), the smallest attainable rank p",
                 "rank_p_lower": "(1 + number at most the run's) / (1 + K): the other tail",
                 "K": "number of untrained networks", "n_at_least_as_extreme": "networks at least as large"},
    }
