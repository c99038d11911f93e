"""One function per `python -m evaluate` subcommand (argparse namespaces in, exit codes out).

    main_generate  klein editing predictions (+ baselines)      -> OUT/pred/<method>/
    main_baselines image-as-albedo and colour Retinex           -> OUT/pred/<baseline>/
    main_score     every prediction folder vs ground truth      -> OUT/scores.csv, score_summary.json, invariance.csv
    main_ablate    top-k vs random-k head ablations             -> OUT/pred/klein__ablate_*/, OUT/ablation.json/.csv
    main_link      probe selectivity vs albedo error            -> OUT/link.json, link.csv, figures/link_scatter.png
    main_report    report.md / report.html from what is in OUT
    main_all       all of the above in order (and main_mit on an MIT import)
    main_mit       the MIT intrinsic images benchmark's protocol -> OUT/mit_protocol.json/.csv (evaluate.mit_protocol)
    main_verdict   the card's claims H1-H6 from the outputs above -> OUT/verdict.json, verdict.md (evaluate.verdict)

Every job checks its inputs (render folder, probe folder, --k, --select, --resume strict) before it
loads a model or writes a file, so a bad input overwrites nothing.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from evaluate.baselines import WeightsUnavailableError
from evaluate.causal import (BASE_METHOD, MIN_DRAWS_FOR_005, ablation_plan, clusters_from_scores, metric_by_sample,
                             read_scores, summarise_ablation)
from evaluate.generate import DataError, GenerateConfig, generate_predictions, load_render_manifest
from evaluate.link import CONTROL_METHOD, LinkError, link_image_probe, link_text_probe
from evaluate.mit_protocol import MitProtocolError, is_mit_import, main_mit
from evaluate.predictions import StalePredictionError
from evaluate.score import ScoreError, score
from evaluate.selection import ProbeError, read_probe
from probe.io.errors import UsageError
from probe.io.jsonio import versions, write_json
from probe.klein.model import ModelNotAvailable

USER_ERRORS = (DataError, ScoreError, UsageError, ModelNotAvailable, WeightsUnavailableError, FileNotFoundError,
               ProbeError, LinkError, StalePredictionError, MitProtocolError)
DEFAULT_METRIC = "lmse_linear_scalar"     # the headline alignment (was lmse_linear_per_channel)

__all__ = ["main_generate", "main_baselines", "main_score", "main_ablate", "main_link", "main_report", "main_all",
           "main_verdict", "main_study", "USER_ERRORS", "DEFAULT_METRIC", "read_scores", "metric_by_sample", "summarise_ablation"]


def _pred_dir(args) -> Path:
    return Path(getattr(args, "pred", None) or Path(args.out) / "pred")


def _resume(args) -> str:
    return "off" if getattr(args, "no_resume", False) else getattr(args, "resume", "on") or "on"


def _gen_config(args, method: str, ablate: tuple[str, ...] = (), text_tokens: str = "prompt") -> GenerateConfig:
    return GenerateConfig(
        data=args.data, out=str(_pred_dir(args)), method=method, instruction=args.instruction,
        instructions_file=args.instructions_file, steps=args.steps, guidance=args.guidance, seed=args.seed,
        shard=getattr(args, "shard", None), limit=args.limit, ablate=ablate, max_side=args.max_side,
        resume=_resume(args), ablate_text_tokens=text_tokens)


def _load_model(args):
    from probe.klein.model import load_pipeline, spec_from_args

    load_render_manifest(args.data)  # a bad --data fails before minutes of model loading
    loaded = load_pipeline(spec_from_args(args), progress=not getattr(args, "quiet", False))
    if loaded.randomized:
        print(f"note: --randomize {loaded.randomized['mode']}: fresh random weights (seed "
              f"{loaded.randomized.get('seed')}): an untrained network, a control, not a finding", file=sys.stderr)
    elif loaded.random_weights:
        print("note: --model tiny has random weights: a dry run, not findings", file=sys.stderr)
    elif loaded.known:
        print(f"note: --model {loaded.spec.model} is {loaded.known['banner']}", file=sys.stderr)
    return loaded


def main_baselines(args) -> int:
    from evaluate.baselines import BASELINE_METHODS, HDR_BASELINE_METHODS, write_baselines

    load_render_manifest(args.data)
    shard = getattr(args, "shard", None)
    methods = BASELINE_METHODS + (HDR_BASELINE_METHODS if getattr(args, "hdr", False) else ())
    written = write_baselines(args.data, _pred_dir(args), methods=methods, shard=shard, resume=_resume(args),
                              progress=not getattr(args, "quiet", False), limit=getattr(args, "limit", None))
    print("baselines: " + ", ".join(f"{m} {w['written']} written, {w['skipped_finished']} kept"
                                    for m, w in written.items()))
    if getattr(args, "marigold", None):
        from evaluate.baselines import write_marigold

        write_marigold(args.data, _pred_dir(args), args.marigold, shard=shard, resume=_resume(args))
    return 0


def main_generate(args, loaded=None) -> int:
    if getattr(args, "status", None) is not None:
        from evaluate.status import main_generate_status

        return main_generate_status(args)
    load_render_manifest(args.data)
    loaded = loaded or _load_model(args)
    info = generate_predictions(loaded, _gen_config(args, args.method), progress=not args.quiet)
    print(f"{info['method']}: {info['generated']} generated ({info['regenerated_stale']} of them replacing predictions "
          f"made with other settings), {info['skipped_finished']} already finished "
          f"(steps {info['steps']}, guidance {info['guidance'] if info['guidance'] is not None else 'off (no CFG)'})")
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


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in str(text).split(",") if k.strip()})
    except ValueError:
        raise UsageError(f"--k takes comma-separated positive integers (e.g. 8,32), got {text!r}") from None
    if not ks or min(ks) < 1:
        raise UsageError(f"--k takes comma-separated positive integers (e.g. 8,32), got {text!r}")
    return ks


def _check_ablation_args(args) -> tuple[list[int], object, dict]:
    """Everything the ablation needs, checked before any model load or write."""
    ks = _parse_ks(args.k)
    if args.n_random < 1:
        raise UsageError(f"--n-random must be >= 1 (random draws per k; >= {MIN_DRAWS_FOR_005} for a rank p that can "
                         f"reach 0.05), got {args.n_random}")
    probe = read_probe(args.probe)
    plan = ablation_plan(probe, ks, args.n_random, args.seed, getattr(args, "select", None),
                         getattr(args, "match", "group"))
    plan["text_tokens"] = probe.text_tokens      # `.txt` heads are ablated over the tokens the probe measured
    if args.n_random < MIN_DRAWS_FOR_005 and not probe.random_weights:
        print(f"note: {args.n_random} random draws per k: the rank p cannot go below 1/{args.n_random + 1} = "
              f"{1 / (args.n_random + 1):.3f} (use --n-random {MIN_DRAWS_FOR_005} or more to reach 0.05)",
              file=sys.stderr)
    return ks, probe, plan


CLASS_SELECTS = ("change_albedo", "change_lighting")     # --select rules whose heads must be selective, never filled


def main_ablate(args, loaded=None, checked=None) -> int:
    from probe.klein.ablation import ablation_definition

    load_render_manifest(args.data)
    ks, probe, plan = checked or _check_ablation_args(args)
    shard = _ablation_shard(args)
    loaded = loaded or _load_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if shard is not None:
        return _ablate_shard(args, loaded, plan, shard)
    write_json(out / "ablation_plan.json", {"probe": str(args.probe), "ks": ks, "n_random": args.n_random,
                                            "select": getattr(args, "select", None) or "the probe's primary contrast",
                                            "match": getattr(args, "match", "group"),
                                            "definition": ablation_definition(plan.get("text_tokens", "prompt")),
                                            "text_tokens": plan.get("text_tokens", "prompt"),
                                            "selection": plan["selection"],
                                            "methods": plan["methods"], "random_overlap": plan["random_overlap"]})
    for k, sel in plan["selection"].items():
        print(f"ablate top-{k}: {sel['rule']}")
    short = {k: sel for k, sel in plan["selection"].items() if sel.get("n_filled")}
    if short and getattr(args, "select", None) in CLASS_SELECTS:
        # a class rule with fewer selective heads than k: the top-k would be mostly other heads, and "removing the
        # selective heads" cannot be asked; say so instead of spending (1 + draws) x k generations on it
        why = {k: (f"only {sel['n_eligible']} heads are {args.select.replace('change_', '')}-selective (change "
                   f"classes), fewer than k = {k}: there is no set of {k} selective heads to ablate; not run")
               for k, sel in short.items()}
        for k, w in why.items():
            print(f"note: ablate top-{k}: {w}", file=sys.stderr)
        _generate_ablation(args, loaded, {**plan, "methods": {}})
        main_score(args)
        write_json(out / "ablation.json", {
            "primary_metric": args.metric or DEFAULT_METRIC, "ks": ks, "n_random": args.n_random, "skipped": why,
            "by_k": {k: {"heads": plan["methods"].get(f"{BASE_METHOD}__ablate_top{k}"), "selection": sel,
                         "skipped": why.get(k), "metrics": {}} for k, sel in plan["selection"].items()}})
        return 0
    _generate_ablation(args, loaded, plan)
    main_score(args)
    summarise_ablation(out, plan["methods"], ks, args.n_random, args.metric or DEFAULT_METRIC, args.n_boot, args.seed,
                       selection=plan["selection"])
    return 0


def _generate_ablation(args, loaded, plan: dict) -> None:
    """The unablated predictions and one prediction set per planned head set (this shard's share, if any)."""
    generate_predictions(loaded, _gen_config(args, BASE_METHOD), progress=not args.quiet)
    for method, heads in plan["methods"].items():
        generate_predictions(loaded, _gen_config(args, method, tuple(heads), plan.get("text_tokens", "prompt")),
                             progress=not args.quiet)


def _ablation_shard(args):
    """The ablation's --shard when it splits the work (K/N with N > 1, or auto resolving to one), else None."""
    if not getattr(args, "shard", None):
        return None
    from render.shard import Shard

    shard = Shard.parse(args.shard)
    return None if shard.is_whole else shard


def _ablate_shard(args, loaded, plan: dict, shard) -> int:
    """One shard of `evaluate ablate`: its share of the plain and ablated predictions, nothing shared.

    The head sets come from the probe and --seed alone, so every shard draws the same ones; a shard writes
    only its samples' predictions and its own shards/shard-K-of-N.json record per method (no
    ablation_plan.json, scores or summary: those need every sample). The same command without --shard then
    finds every prediction finished with an identical generation key, reuses them, scores and summarises."""
    _generate_ablation(args, loaded, plan)
    print(f"ablate {shard.describe()}: its share of the predictions of "
          f"{BASE_METHOD} and {len(plan['methods'])} ablation methods is written; when every shard has finished, "
          f"run the same `python -m evaluate ablate` without --shard to score and summarise (it reuses them)")
    return 0


def main_link(args) -> int:
    probe = read_probe(args.probe, need_per_sample=True)
    out = Path(args.out)
    metric = args.metric or DEFAULT_METRIC
    rows = read_scores(out / "scores.csv")
    errors = metric_by_sample(rows, args.method, metric)
    if not errors:
        raise UsageError(f"no scored {args.method!r} predictions in {out}/scores.csv")
    select = getattr(args, "select", None)
    control = metric_by_sample(rows, CONTROL_METHOD, metric) or None     # the confound's measure (evaluate.link)
    if probe.per_sample is not None:
        link = link_image_probe(probe, errors, k=args.top_k, select=select, n_boot=args.n_boot, control=control)
    else:
        from probe.io.captures import load_captures

        caps_path = probe.path / "captures.npz"
        if not caps_path.is_file():
            raise UsageError(f"{caps_path} not found: the text-probe link needs the probe's captures")
        caps = load_captures(caps_path)
        if probe.unit_names != [str(u) for u in caps.units]:
            raise UsageError(f"{probe.path}/units.csv and captures.npz list different units: rerun `probe stats`")
        link = link_text_probe(probe, caps.a, caps.b, [str(p) for p in caps.pair_ids], errors,
                               clusters_from_scores(rows), k=args.top_k, select=select, n_boot=args.n_boot,
                               control=control)
    corr = link["spearman"]
    link = {"method": args.method, "metric": metric, "top_k": args.top_k, "random_weights": probe.random_weights,
            "probe": str(probe.path), "stimuli": probe.stimuli, **link}
    write_json(out / "link.json", link)
    from evaluate.predictions import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "selectivity", metric, "cluster", f"{CONTROL_METHOD}_{metric}"])
    w.writerows([p["id"], p["selectivity"], p["error"], p["cluster"],
                 "" if p.get("control_error") is None or not np.isfinite(p["control_error"]) else p["control_error"]]
                for p in link["pairs"])
    atomic_write_text(out / "link.csv", buf.getvalue())
    _link_plot(out / "figures" / "link_scatter.png", link, metric, probe.random_weights)
    print(f"link ({link['kind']}): Spearman rho = {corr['rho']:.3f} [{corr['ci_low']:.3f}, {corr['ci_high']:.3f}] over "
          f"{link['n_matched']} points in {link['n_clusters']} scenes; half-width expected at rho = 0: "
          f"{link['expected_halfwidth_at_0']:.2f}"
          + (f"; over scene means rho = {cm['rho']:.3f}, p = {cm['p']:.3g}" if (cm := corr.get("cluster_means")) else "")
          + (f"; controlling for {CONTROL_METHOD}'s error (shading strength) rho = {ps['rho']:.3f}, p = {ps['p']:.3g}"
             if (ps := link.get("partial_spearman") or {}).get("available") else "")
          + (" (random weights: not a finding)" if probe.random_weights else ""))
    return 0


def _link_plot(path: Path, link: dict, metric: str, random_weights: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = link["pairs"]
    xs, ys = [p["selectivity"] for p in pts], [p["error"] for p in pts]
    corr = link["spearman"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    ax.scatter(xs, ys, s=22, color="tab:blue")
    if len(pts) <= 60:
        for p in pts:
            ax.annotate(p["id"], (p["selectivity"], p["error"]), fontsize=5, alpha=0.7, xytext=(2, 2),
                        textcoords="offset points")
    unit = "sample" if link["kind"].startswith("direct") else "scene (INDIRECT: text probe)"
    ax.set_xlabel(f"probe selectivity per {unit} (selected units, z units)", fontsize=8)
    from evaluate.metrics import metric_kind

    kind = metric_kind(metric)
    ax.set_ylabel(f"{metric} ({ {'error': 'lower is better', 'score': 'higher is better'}.get(kind, 'signed: 0 is best')})")
    title = (f"Spearman rho = {corr['rho']:.2f} [{corr['ci_low']:.2f}, {corr['ci_high']:.2f}], n = {corr['n']}, "
             f"{corr['n_clusters']} scenes\nhalf-width expected at rho = 0: {link['expected_halfwidth_at_0']:.2f}")
    ps = link.get("partial_spearman") or {}
    if ps.get("available"):
        title += (f"\nover scene means: rho = {ps['rho_plain']:.2f}; with {ps['control']}'s error (shading "
                  f"strength)\npartialled out: rho = {ps['rho']:.2f}, p = {ps['p']:.2g}")
    ax.set_title(("RANDOM WEIGHTS - not a finding\n" if random_weights else "") + title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main_report(args) -> int:
    from evaluate.report import write_report

    path = write_report(Path(args.out), data=Path(args.data), probe=Path(args.probe), max_grid=getattr(args, "max_grid", 12))
    print(f"wrote {path}")
    return 0


def main_verdict(args) -> int:
    from evaluate.verdict import main_verdict as verdict

    return verdict(args)


def main_study(args) -> int:
    from evaluate.study import main_study as study

    return study(args)


def main_all(args) -> int:
    load_render_manifest(args.data)
    probe_ok = (Path(args.probe) / "units.csv").is_file()
    checked = _check_ablation_args(args) if probe_ok and not args.no_ablate else None
    if probe_ok:
        read_probe(args.probe)          # an unreadable probe folder fails before the model loads
    loaded = _load_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"job": "evaluate all", "argv": sys.argv, "args": vars(args), "versions": versions()})
    args.method, args.no_baselines, args.methods = BASE_METHOD, False, None
    main_generate(args, loaded)
    if checked is not None:
        main_ablate(args, loaded, checked)          # generates, then scores every method
    else:
        if not probe_ok:
            print(f"note: no probe run in {args.probe}: ablation and link skipped", file=sys.stderr)
        main_score(args)
    if probe_ok:
        main_link(args)
    if is_mit_import(args.data):
        main_mit(args)                              # the benchmark's own protocol beside our metrics
    return main_report(args)
