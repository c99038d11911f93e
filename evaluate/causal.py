"""The causal test's bookkeeping: which heads each ablation run silences, and what it did.

    from evaluate.causal import ablation_plan, summarise_ablation
    plan = ablation_plan(probe, ks=[8, 32], n_random=19, seed=0, select="lighting")
    summarise_ablation(out, plan["methods"], [8, 32], 19, "lmse_linear_scalar", n_boot=1000, seed=0,
                       selection=plan["selection"])                 # after the runs were generated and scored

For each k: `klein__ablate_top{k}` silences the k heads chosen by evaluate.selection's rule, and
`klein__ablate_rand{k}_r{i}` (i < n_random) k heads drawn from the same unit groups (block and
token region). Effects are evaluate.stats.ablation_effects: top-k harm with a cluster-bootstrap CI,
random-k harm with the interval from the spread between draws, and the rank p with the smallest p
the number of draws can reach. With fewer than 19 draws the rank p cannot reach 0.05.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from evaluate.metrics import metric_direction
from evaluate.stats import ablation_effects, harm_vs_n_eligible

__all__ = ["BASE_METHOD", "MIN_DRAWS_FOR_005", "ablation_plan", "summarise_ablation", "read_scores",
           "metric_by_sample", "clusters_from_scores", "harm_definition"]

BASE_METHOD = "klein"
MIN_DRAWS_FOR_005 = 19     # (1 + 0) / (1 + 19) = 0.05


def read_scores(path: Path) -> list[dict]:
    from probe.io.errors import UsageError

    if not Path(path).is_file():
        raise UsageError(f"{path} not found: run `python -m evaluate score` first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metric_by_sample(rows: list[dict], method: str, metric: str) -> dict[str, float]:
    from probe.io.errors import UsageError

    if rows and metric not in rows[0]:
        raise UsageError(f"metric column {metric!r} is not in scores.csv (columns: {', '.join(list(rows[0])[:40])} ...)")
    out = {}
    for r in rows:
        if r["method"] == method and r.get("status") == "ok" and r.get(metric, "") != "":
            out[r["sample"]] = float(r[metric])
    return out


def clusters_from_scores(rows: list[dict]) -> dict[str, str]:
    """Sample id -> cluster (base_scene; `scene` for scores.csv files written before base_scene existed)."""
    return {r["sample"]: (r.get("base_scene") or r.get("scene") or r["sample"]) for r in rows}


def harm_definition(metric: str) -> str:
    """What `harm` means for one metric column (written beside every effect in ablation.json)."""
    from evaluate.metrics import SIGNED_COLUMNS, metric_kind

    kind = metric_kind(metric)
    if kind == "signed":
        return (f"NOT a harm: the signed shift ablated - unablated of {metric} (> 0: the prediction follows the "
                f"lighting more, < 0: less or inverted); the rank p asks whether top-k shifts it up more than random "
                f"k. The harm of leakage is {SIGNED_COLUMNS[metric]} (its magnitude)")
    if kind == "score":
        return f"unablated - ablated {metric} per sample (larger is better, so > 0 = worse)"
    return f"ablated - unablated {metric} per sample (> 0 = worse)"


def ablation_plan(probe, ks: list[int], n_random: int, seed: int, select: str | None = None,
                  match: str = "group") -> dict:
    """{"methods": {method: heads}, "selection": {k: selection record}, "random_overlap": {method: n}} for
    every k. Random draws never contain a top-k head (evaluate.selection.random_matched_units refuses a
    block group that cannot supply enough others); `random_overlap` records, per random method, how many
    top-k heads it holds, so the plan shows it (0 for every draw). The draws of one k are all different: a rank p
    over repeated draws would claim more alternatives than exist, so a top-k whose pools allow fewer than
    `n_random` different draws gets all of them and no more (said on stderr and in the selection record:
    `n_distinct_possible`, `n_random_draws`; the rank p's floor follows; match="block" widens the pool to the same
    block in either token region). The selection record's `random_pool` says what the draws come from (how many
    heads, how many of them selective by the same rule, their token regions) and `random_n_eligible` how many
    selective heads each draw holds (in draw order): whether harm follows selectivity can be read from the draws
    themselves (summarise_ablation's `harm_vs_n_eligible`)."""
    from evaluate.selection import (eligible_heads, n_distinct_matched, overlap_with_top, pool_composition,
                                    random_matched_units, select_heads)

    rng = np.random.default_rng(seed)
    methods, selections, overlap = {}, {}, {}
    eligible = eligible_heads(probe, select)
    for k in ks:
        sel = select_heads(probe, k, select)
        methods[f"{BASE_METHOD}__ablate_top{k}"] = sel.heads
        possible = n_distinct_matched(sel.heads, probe.unit_names, match)
        if possible == 0:           # a pool without enough other heads: its own message names it
            random_matched_units(sel.heads, probe.unit_names, rng, match)
        n_k = min(n_random, possible)
        if n_k < n_random:
            print(f"note: ablate top-{k}: its heads allow only {possible} different random draws matched by {match} "
                  f"(each draw takes as many heads from each "
                  f"{'block and token region' if match == 'group' else 'block'} as the top-{k} has there, never a "
                  f"top-k head), so {possible} draws are made, not {n_random}: the rank p cannot go below "
                  f"1/{possible + 1} = {1 / (possible + 1):.3g}"
                  + (" (--match block widens the pool)" if match == "group" else ""), file=sys.stderr)
        selections[str(k)] = {**sel.as_dict(), "match": match, "n_distinct_possible": possible,
                              "n_random_draws": n_k,
                              "random_pool": pool_composition(sel.heads, probe.unit_names, match, eligible)}
        seen: set = set()
        n_eligible = selections[str(k)]["random_n_eligible"] = []
        for r in range(n_k):
            name = f"{BASE_METHOD}__ablate_rand{k}_r{r}"
            while True:
                draw = random_matched_units(sel.heads, probe.unit_names, rng, match)
                if frozenset(draw) not in seen:
                    break
            seen.add(frozenset(draw))
            methods[name] = draw
            overlap[name] = overlap_with_top(methods[name], sel.heads)
            n_eligible.append(sum(h in eligible for h in draw))
    return {"methods": methods, "selection": selections, "random_overlap": overlap}


def summarise_ablation(out: Path, plan: dict, ks: list[int], n_random: int, metric: str, n_boot: int, seed: int,
                       selection: dict | None = None) -> dict:
    """ablation.json and ablation.csv from scores.csv; prints one line per k. `plan`: method -> heads."""
    from probe.io.jsonio import write_json

    out = Path(out)
    rows = read_scores(out / "scores.csv")
    metric_cols = [c for c in rows[0] if c.split("_")[0] in ("mse", "lmse", "psnr", "dssim", "lpips")
                   or c in ("shading_leakage_linear", "shading_leakage_abs_linear")]
    cluster_of = clusters_from_scores(rows)
    base = {m: metric_by_sample(rows, BASE_METHOD, m) for m in metric_cols}
    p_min = 1.0 / (1 + n_random) if n_random else float("nan")
    result: dict = {"primary_metric": metric, "ks": ks, "n_random": n_random, "p_min_attainable": p_min,
                    "p_note": (f"rank p over {n_random} random draws: the smallest attainable is 1/(1 + {n_random}) = "
                               f"{p_min:.3g}" + ("" if n_random >= MIN_DRAWS_FOR_005 else
                                                  f"; with fewer than {MIN_DRAWS_FOR_005} draws it cannot reach 0.05")),
                    "clusters": "base_scene", "by_k": {}}
    table = []
    for k in ks:
        per_metric = {}
        for m in metric_cols:
            if not base[m]:
                continue
            top = metric_by_sample(rows, f"{BASE_METHOD}__ablate_top{k}", m)
            rands = [metric_by_sample(rows, f"{BASE_METHOD}__ablate_rand{k}_r{r}", m) for r in range(n_random)
                     if f"{BASE_METHOD}__ablate_rand{k}_r{r}" in plan]      # fewer when fewer different draws exist
            eff = ablation_effects(base[m], top, rands, direction=metric_direction(m), n_boot=n_boot, seed=seed,
                                   cluster_of=cluster_of)
            eff["harm_definition"] = harm_definition(m)
            per_metric[m] = eff
            table.append({"k": k, "metric": m, **{kk: (json.dumps(v) if isinstance(v, list) else v)
                                                   for kk, v in eff.items()}})
        top_heads = plan[f"{BASE_METHOD}__ablate_top{k}"]
        entry = {"heads": top_heads, "metrics": per_metric,
                 "random_overlap_with_top": [len(set(plan[f"{BASE_METHOD}__ablate_rand{k}_r{r}"]) & set(top_heads))
                                             for r in range(n_random) if f"{BASE_METHOD}__ablate_rand{k}_r{r}" in plan],
                 "random_overlap_definition": "per random draw, how many of its heads are top-k heads (draws are "
                                              "made from the other heads of the top-k's block groups: 0)"}
        if selection and str(k) in selection:
            entry["selection"] = selection[str(k)]
            entry["harm_vs_n_eligible"] = harm_vs_n_eligible(per_metric.get(metric), selection[str(k)])
        result["by_k"][str(k)] = entry
    write_json(out / "ablation.json", result)
    if table:
        from evaluate.predictions import atomic_write_text

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
        atomic_write_text(out / "ablation.csv", buf.getvalue())
    for k in ks:
        e = result["by_k"][str(k)]["metrics"].get(metric)
        if e:
            print(f"ablate top-{k}: {metric} harm {e['top_harm_mean']:.4g} vs random {e['random_harm_mean']:.4g} "
                  f"(rank p = {e['rank_p_top_hurts_more']:.3f}, smallest attainable {e['p_min_attainable']:.3f}, "
                  f"{e['n_random_draws']} draws)")
    return result
