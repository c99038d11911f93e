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
from pathlib import Path

import numpy as np

from evaluate.metrics import metric_direction
from evaluate.stats import ablation_effects

__all__ = ["BASE_METHOD", "MIN_DRAWS_FOR_005", "ablation_plan", "summarise_ablation", "read_scores",
           "metric_by_sample", "clusters_from_scores"]

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


def ablation_plan(probe, ks: list[int], n_random: int, seed: int, select: str | None = None) -> dict:
    """{"methods": {method: heads}, "selection": {k: selection record}} for every k."""
    from evaluate.selection import random_matched_units, select_heads

    rng = np.random.default_rng(seed)
    methods, selections = {}, {}
    for k in ks:
        sel = select_heads(probe, k, select)
        methods[f"{BASE_METHOD}__ablate_top{k}"] = sel.heads
        selections[str(k)] = sel.as_dict()
        for r in range(n_random):
            methods[f"{BASE_METHOD}__ablate_rand{k}_r{r}"] = random_matched_units(sel.heads, probe.unit_names, rng)
    return {"methods": methods, "selection": selections}


def summarise_ablation(out: Path, plan: dict, ks: list[int], n_random: int, metric: str, n_boot: int, seed: int,
                       selection: dict | None = None) -> dict:
    """ablation.json and ablation.csv from scores.csv; prints one line per k. `plan`: method -> heads."""
    from probe.io.jsonio import write_json

    out = Path(out)
    rows = read_scores(out / "scores.csv")
    metric_cols = [c for c in rows[0] if c.split("_")[0] in ("mse", "lmse", "psnr", "dssim", "lpips")
                   or c == "shading_leakage_linear"]
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
            rands = [metric_by_sample(rows, f"{BASE_METHOD}__ablate_rand{k}_r{r}", m) for r in range(n_random)]
            eff = ablation_effects(base[m], top, rands, direction=metric_direction(m), n_boot=n_boot, seed=seed,
                                   cluster_of=cluster_of)
            per_metric[m] = eff
            table.append({"k": k, "metric": m, **{kk: (json.dumps(v) if isinstance(v, list) else v)
                                                   for kk, v in eff.items()}})
        entry = {"heads": plan[f"{BASE_METHOD}__ablate_top{k}"], "metrics": per_metric}
        if selection and str(k) in selection:
            entry["selection"] = selection[str(k)]
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
