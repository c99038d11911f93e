"""One function per `python -m evaluate` subcommand (argparse namespaces in, exit codes out).

    main_generate  klein editing predictions (+ baselines)      -> OUT/pred/<method>/
    main_baselines image-as-albedo and colour Retinex           -> OUT/pred/<baseline>/
    main_score     every prediction folder vs ground truth      -> OUT/scores.csv, score_summary.json, invariance.csv
    main_ablate    top-k vs random-k head ablations             -> OUT/pred/klein__ablate_*/, OUT/ablation.json/.csv
    main_link      probe selectivity vs albedo error            -> OUT/link.json, link.csv, figures/link_scatter.png
    main_report    report.md / report.html from what is in OUT
    main_all       all of the above in order
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from evaluate.generate import DataError, GenerateConfig, generate_predictions, load_render_manifest
from evaluate.link import (ablation_effects, metric_direction, random_matched_units, selectivity_per_pair,
                           spearman_with_ci, top_head_units)
from evaluate.score import ScoreError, score
from probe.job import UsageError, read_units_csv, versions, write_json
from probe.model import ModelNotAvailable

from evaluate.baselines import WeightsUnavailableError

USER_ERRORS = (DataError, ScoreError, UsageError, ModelNotAvailable, WeightsUnavailableError, FileNotFoundError)
DEFAULT_METRIC = "lmse_linear_per_channel"
BASE_METHOD = "klein"


def _pred_dir(args) -> Path:
    return Path(getattr(args, "pred", None) or Path(args.out) / "pred")


def _gen_config(args, method: str, ablate: tuple[str, ...] = ()) -> GenerateConfig:
    return GenerateConfig(
        data=args.data, out=str(_pred_dir(args)), method=method, instruction=args.instruction,
        instructions_file=args.instructions_file, steps=args.steps, guidance=args.guidance, seed=args.seed,
        shard=getattr(args, "shard", None), limit=args.limit, ablate=ablate, max_side=args.max_side,
        resume=not getattr(args, "no_resume", False))


def _load_model(args):
    from probe.model import load_pipeline, spec_from_args

    load_render_manifest(args.data)  # a bad --data fails before minutes of model loading
    loaded = load_pipeline(spec_from_args(args))
    if loaded.random_weights:
        print("note: --model tiny has random weights: a dry run, not findings", file=sys.stderr)
    return loaded


def main_baselines(args) -> int:
    from evaluate.baselines import write_baselines

    load_render_manifest(args.data)
    shard = getattr(args, "shard", None)
    written = write_baselines(args.data, _pred_dir(args), shard=shard, progress=not getattr(args, "quiet", False))
    print("baselines: " + ", ".join(f"{m} {w['written']} written, {w['skipped_finished']} kept"
                                    for m, w in written.items()))
    if getattr(args, "marigold", None):
        from evaluate.baselines import write_marigold

        write_marigold(args.data, _pred_dir(args), args.marigold, shard=shard)
    return 0


def main_generate(args, loaded=None) -> int:
    if getattr(args, "status", None) is not None:
        from evaluate.status import main_generate_status

        return main_generate_status(args)
    loaded = loaded or _load_model(args)
    info = generate_predictions(loaded, _gen_config(args, args.method), progress=not args.quiet)
    print(f"{info['method']}: {info['generated']} generated, {info['skipped_finished']} already finished "
          f"(steps {info['steps']}, guidance {info['guidance']})")
    if not args.no_baselines:
        main_baselines(args)
    return 0


def main_score(args) -> int:
    methods = [m for m in args.methods.split(",") if m] if getattr(args, "methods", None) else None
    res = score(args.data, _pred_dir(args), args.out, methods, n_boot=args.n_boot, lpips=args.lpips,
                workers=getattr(args, "workers", None), progress=not getattr(args, "quiet", False))
    print(f"scored {res.n_rows} (method, sample) rows: {res.n_ok} ok, {res.n_errors} errors -> {res.scores_csv}")
    if not res.lpips.available:
        print(f"LPIPS columns empty: {res.lpips.reason}")
    return 0


def read_scores(path: Path) -> list[dict]:
    if not path.is_file():
        raise UsageError(f"{path} not found: run `python -m evaluate score` first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metric_by_sample(rows: list[dict], method: str, metric: str) -> dict[str, float]:
    if rows and metric not in rows[0]:
        raise UsageError(f"metric column {metric!r} is not in scores.csv (columns: {', '.join(list(rows[0])[:40])} ...)")
    out = {}
    for r in rows:
        if r["method"] == method and r.get("status") == "ok" and r.get(metric, "") != "":
            out[r["sample"]] = float(r[metric])
    return out


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in str(text).split(",") if k.strip()})
    except ValueError:
        raise UsageError(f"--k takes comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise UsageError("--k needs positive integers")
    return ks


def _probe_units(probe: Path) -> dict:
    path = probe / "units.csv"
    if not path.is_file():
        raise UsageError(f"{path} not found: run `python -m probe run --out {probe}` first")
    return read_units_csv(path)


def ablation_plan(units: dict, ks: list[int], n_random: int, seed: int) -> dict[str, list[str]]:
    """Method name -> head units to ablate: top-k by |t| and n_random block-matched draws per k."""
    rng = np.random.default_rng(seed)
    plan = {}
    for k in ks:
        top = top_head_units(units["unit"], units["t"], k)
        plan[f"{BASE_METHOD}__ablate_top{k}"] = top
        for r in range(n_random):
            plan[f"{BASE_METHOD}__ablate_rand{k}_r{r}"] = random_matched_units(top, units["unit"], rng)
    return plan


def main_ablate(args, loaded=None) -> int:
    units = _probe_units(Path(args.probe))
    ks = _parse_ks(args.k)
    plan = ablation_plan(units, ks, args.n_random, args.seed)
    loaded = loaded or _load_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ablation_plan.json", {"probe": str(args.probe), "ks": ks, "n_random": args.n_random,
                                            "definition": "token-mean ablation (probe.capture.HeadAblation)",
                                            "methods": plan})
    generate_predictions(loaded, _gen_config(args, BASE_METHOD), progress=not args.quiet)
    for method, heads in plan.items():
        generate_predictions(loaded, _gen_config(args, method, tuple(heads)), progress=not args.quiet)
    main_score(args)
    summarise_ablation(out, plan, ks, args.n_random, args.metric or DEFAULT_METRIC, args.n_boot, args.seed)
    return 0


def summarise_ablation(out: Path, plan: dict, ks: list[int], n_random: int, metric: str, n_boot: int, seed: int) -> dict:
    rows = read_scores(out / "scores.csv")
    metric_cols = [c for c in rows[0] if c.split("_")[0] in ("mse", "lmse", "psnr", "dssim", "lpips")]
    base = {m: metric_by_sample(rows, BASE_METHOD, m) for m in metric_cols}
    result: dict = {"primary_metric": metric, "ks": ks, "n_random": n_random, "by_k": {}}
    table = []
    for k in ks:
        per_metric = {}
        for m in metric_cols:
            if not base[m]:
                continue
            top = metric_by_sample(rows, f"{BASE_METHOD}__ablate_top{k}", m)
            rands = [metric_by_sample(rows, f"{BASE_METHOD}__ablate_rand{k}_r{r}", m) for r in range(n_random)]
            eff = ablation_effects(base[m], top, rands, direction=metric_direction(m), n_boot=n_boot, seed=seed)
            per_metric[m] = eff
            table.append({"k": k, "metric": m, **{kk: (json.dumps(v) if isinstance(v, list) else v)
                                                   for kk, v in eff.items()}})
        result["by_k"][str(k)] = {"heads": plan[f"{BASE_METHOD}__ablate_top{k}"], "metrics": per_metric}
    write_json(out / "ablation.json", result)
    if table:
        with open(out / "ablation.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    for k in ks:
        e = result["by_k"][str(k)]["metrics"].get(metric)
        if e:
            print(f"ablate top-{k}: {metric} harm {e['top_harm_mean']:.4g} vs random {e['random_harm_mean']:.4g} "
                  f"(p = {e['p_top_hurts_more']:.3f}, {e['n_random_draws']} draws)")
    return result


def main_link(args) -> int:
    from probe.stats import load_captures

    probe = Path(args.probe)
    caps = load_captures(probe / "captures.npz")
    units = _probe_units(probe)
    if list(units["unit"]) != [str(u) for u in caps.units]:
        raise UsageError(f"{probe}/units.csv and captures.npz list different units: rerun `probe stats`")
    out = Path(args.out)
    metric = args.metric or DEFAULT_METRIC
    rows = read_scores(out / "scores.csv")
    per_sample = metric_by_sample(rows, args.method, metric)
    if not per_sample:
        raise UsageError(f"no scored {args.method!r} predictions in {out}/scores.csv")
    scene_of = {r["sample"]: r["scene"] for r in rows}
    per_scene: dict[str, list[float]] = {}
    for s, v in per_sample.items():
        per_scene.setdefault(scene_of.get(s, s), []).append(v)
    sel = selectivity_per_pair(caps.a, caps.b, units["t"], k=args.top_k)
    xs, ys, ids = [], [], []
    for pid, sv in zip(caps.pair_ids, sel):
        pid = str(pid)
        err = per_sample.get(pid, np.mean(per_scene[pid]) if pid in per_scene else None)
        if err is not None:
            xs.append(float(sv)), ys.append(float(err)), ids.append(pid)
    if len(ids) < 3:
        raise UsageError(f"only {len(ids)} probe pairs match scored scenes/samples (pair ids: "
                         f"{[str(p) for p in caps.pair_ids[:3]]}..., scenes: {sorted(per_scene)[:3]}...)")
    corr = spearman_with_ci(xs, ys, n_boot=args.n_boot, seed=0)
    probe_summary = json.loads((probe / "summary.json").read_text()) if (probe / "summary.json").is_file() else {}
    random_weights = bool(probe_summary.get("random_weights"))
    link = {"method": args.method, "metric": metric, "top_k": args.top_k, "n_matched": len(ids),
            "spearman": corr.as_dict(), "random_weights": random_weights,
            "definition": "selectivity = mean over the top-k |t| units of sign(t) (a - b) / sd(a - b); "
                          "error = the scene's mean metric over its lightings",
            "pairs": [{"id": i, "selectivity": x, "error": y} for i, x, y in zip(ids, xs, ys)]}
    write_json(out / "link.json", link)
    with open(out / "link.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "selectivity", metric])
        w.writerows(zip(ids, xs, ys))
    _link_plot(out / "figures" / "link_scatter.png", xs, ys, ids, corr, metric, random_weights)
    print(f"link: Spearman rho = {corr.rho:.3f} [{corr.ci_low:.3f}, {corr.ci_high:.3f}] over {len(ids)} scenes"
          + (" (random weights: not a finding)" if random_weights else ""))
    return 0


def _link_plot(path: Path, xs, ys, ids, corr, metric: str, random_weights: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    ax.scatter(xs, ys, s=22, color="tab:blue")
    for x, y, i in zip(xs, ys, ids):
        ax.annotate(i, (x, y), fontsize=5, alpha=0.7, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("probe selectivity of the pair (top-k units, z units)")
    ax.set_ylabel(f"{metric} (lower is better)")
    title = f"Spearman rho = {corr.rho:.2f} [{corr.ci_low:.2f}, {corr.ci_high:.2f}], n = {corr.n}"
    ax.set_title(("RANDOM WEIGHTS - not a finding\n" if random_weights else "") + title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main_report(args) -> int:
    from evaluate.report import write_report

    path = write_report(Path(args.out), data=Path(args.data), probe=Path(args.probe), max_grid=getattr(args, "max_grid", 12))
    print(f"wrote {path}")
    return 0


def main_all(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"job": "evaluate all", "argv": sys.argv, "args": vars(args), "versions": versions()})
    loaded = _load_model(args)
    args.method, args.no_baselines, args.no_resume, args.methods = BASE_METHOD, False, False, None
    main_generate(args, loaded)
    probe_ok = (Path(args.probe) / "units.csv").is_file()
    if not args.no_ablate and probe_ok:
        main_ablate(args, loaded)          # generates, then scores every method
    else:
        if not probe_ok:
            print(f"note: no probe run in {args.probe}: ablation and link skipped", file=sys.stderr)
        main_score(args)
    if probe_ok:
        main_link(args)
    return main_report(args)
