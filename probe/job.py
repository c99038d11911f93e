"""The probe's two modes: `main_run` (model -> captures -> statistics -> report) and `main_stats`
(captures.npz -> statistics -> report, no model and no torch).

    python -m probe run --model tiny --out runs/probe
    python -m probe stats --from runs/probe/captures.npz --out runs/probe-restat

Outputs in --out: captures.npz (the interchange format: a, b [pairs, units] float32, units,
pair_ids, optional control_a/control_b/control_pair_ids, unit_blocks), units.csv, summary.json,
config.json (the resolved configuration, model record and library versions), report.md, figures/.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from probe.prompts import PromptFileError, check_control, default_control_path, default_pairs_path, load_pairs
from render.imageio import atomic_path


class UsageError(ValueError):
    """A bad argument or input file; printed as one line, exit code 2."""


def _user_errors() -> tuple:
    errs: list = [UsageError, PromptFileError, FileNotFoundError]
    try:
        from probe.model import ModelNotAvailable

        errs.append(ModelNotAvailable)
    except ImportError:  # pragma: no cover
        pass
    try:
        from probe.stats import CapturesError

        errs.append(CapturesError)
    except ImportError:
        pass
    return tuple(errs)


USER_ERRORS = _user_errors()


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("ray-plantain", "numpy", "scipy", "scikit-image", "torch", "diffusers", "transformers", "bpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def json_clean(obj):
    """JSON has no NaN/inf: NaN -> None, +-inf -> "inf"/"-inf" (PSNR of a perfect prediction, an
    unreachable FWER threshold); numpy scalars and arrays -> Python values."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) else ("inf" if f == math.inf else "-inf" if f == -math.inf else f)
    return obj


def write_json(path: Path, obj) -> None:
    """Write `obj` as JSON atomically, after json_clean; anything else unknown is written as str()."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_clean(obj), indent=2, default=str, allow_nan=False))


def read_units_csv(path: str | os.PathLike) -> dict[str, list]:
    """units.csv as columns (numeric columns as float arrays)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UsageError(f"{path} has no rows")
    cols: dict[str, list] = {k: [r[k] for r in rows] for k in rows[0]}
    for k, v in list(cols.items()):
        if k in ("unit", "block"):
            continue
        try:
            cols[k] = np.array([float(x) if x != "" else np.nan for x in v])
        except ValueError:
            pass
    return cols


def _stats_config(args, protocol: str):
    from probe.stats import StatsConfig

    n_perm = args.n_perm if args.n_perm is not None else (1000 if protocol == "card" else 10_000)
    return StatsConfig(n_perm=n_perm, n_splits=args.n_splits, n_boot=args.n_boot, seed=args.stats_seed)


def analyse_and_write(caps, out: Path, config: dict, stats_cfg, no_report: bool = False) -> dict:
    """Statistics on captures, then units.csv, summary.json, config.json and the report."""
    from probe.stats import analyse

    control = (caps.control_a, caps.control_b) if caps.control_a is not None else None
    res = analyse(caps.a, caps.b, caps.units, unit_blocks=caps.unit_blocks, control=control, config=stats_cfg)
    summary = res.summary()
    summary["protocol"] = config.get("capture", {}).get("protocol", config.get("protocol"))
    summary["random_weights"] = bool(config.get("model", {}).get("random_weights", False))
    res.write_units_csv(out / "units.csv")
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", {**config, "stats": asdict(stats_cfg), "versions": versions()})
    if not no_report:
        from probe.report import write_report

        write_report(out, caps, res, summary, config)
    return summary


def _load_prompt_sets(args):
    from probe.run import PromptSet

    pairs_path = Path(args.pairs) if args.pairs else default_pairs_path()
    pairs = load_pairs(pairs_path)
    if args.limit:
        pairs = pairs[: args.limit]
    control = []
    control_path = None
    if (args.control or "").lower() != "none":
        control_path = Path(args.control) if args.control else default_control_path()
        if args.control or args.pairs is None:
            control = load_pairs(control_path)
            ids = {p.id for p in pairs}
            control = [c for c in control if c.id in ids]
            check_control([p for p in pairs if p.id in {c.id for c in control}], control)
    if len(pairs) < 3:
        raise UsageError(f"{len(pairs)} pairs is too few for paired statistics (need >= 3)")
    return PromptSet(
        pair_ids=tuple(p.id for p in pairs), a=tuple(p.a for p in pairs), b=tuple(p.b for p in pairs),
        control_ids=tuple(c.id for c in control), control_a=tuple(c.a for c in control),
        control_b=tuple(c.b for c in control),
        sources={"pairs": str(pairs_path), "control": str(control_path) if control else None})


def _capture_config(args, loaded):
    from probe.run import CaptureConfig, card_config, pipeline_default_guidance

    tiny = loaded.source == "tiny"
    size = dict(height=args.height or (64 if tiny else 512), width=args.width or (64 if tiny else 512))
    common = dict(seed=args.seed, batch_size=args.batch_size, max_sequence_length=args.max_sequence_length, **size)
    steps_list = tuple(int(s) for s in args.capture_steps.split(",")) if args.capture_steps else ()
    if args.protocol == "card":
        over = {k: v for k, v in dict(steps=args.steps, guidance=args.guidance,
                                      capture_steps=steps_list or None).items() if v is not None}
        return card_config(**common, **over)
    return CaptureConfig(protocol="heads", steps=args.steps or 50, capture_steps=steps_list,
                         guidance=pipeline_default_guidance(loaded.pipe) if args.guidance is None else args.guidance,
                         reducer=args.reducer, single_tokens=args.single_tokens, **common).resolved()


def main_run(args) -> int:
    from probe.model import load_pipeline, spec_from_args
    from probe.run import capture_prompts, unit_block
    from probe.stats import Captures, save_captures

    out = Path(args.out)
    prompts = _load_prompt_sets(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / ".write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {out}: {e}") from e
    loaded = load_pipeline(spec_from_args(args))
    cfg = _capture_config(args, loaded)
    if loaded.random_weights:
        print("note: --model tiny has random weights: this is a dry run and its numbers are not findings",
              file=sys.stderr)
    cache = out / "partial_captures.npz"
    if args.no_resume and cache.exists():
        cache.unlink()
    values, units, info = capture_prompts(loaded, prompts.unique_prompts(), cfg, cache_path=cache,
                                          progress=not args.quiet)
    row = {p: i for i, p in enumerate(prompts.unique_prompts())}
    take = lambda ps: values[[row[p] for p in ps]] if ps else None  # noqa: E731
    caps = Captures(a=take(prompts.a), b=take(prompts.b), units=np.array(units), pair_ids=np.array(prompts.pair_ids),
                    control_a=take(prompts.control_a), control_b=take(prompts.control_b),
                    control_pair_ids=np.array(prompts.control_ids) if prompts.control_ids else None,
                    unit_blocks=np.array([unit_block(u) for u in units]))
    save_captures(out / "captures.npz", caps)
    from probe.run import real_text_lengths

    config = {
        "job": "probe run", "argv": sys.argv, "capture": asdict(cfg), "model": loaded.describe(),
        "prompts": prompts.sources, "n_pairs": len(prompts.pair_ids), "n_control_pairs": len(prompts.control_ids),
        "capture_info": info,
        "text_lengths": {"a": real_text_lengths(loaded.pipe, prompts.a, cfg.max_sequence_length),
                         "b": real_text_lengths(loaded.pipe, prompts.b, cfg.max_sequence_length)},
        "captured_forward": ("conditional (first of the two CFG forwards per step)" if info["forwards_per_step"] == 2
                             else "the only forward per step (no CFG)"),
    }
    summary = analyse_and_write(caps, out, config, _stats_config(args, cfg.protocol), args.no_report)
    _print_summary(out, summary)
    return 0


def main_stats(args) -> int:
    from probe.stats import load_captures

    src = Path(args.captures)
    if not src.is_file():
        raise UsageError(f"{src} not found: pass the captures.npz written by `python -m probe run`")
    caps = load_captures(src)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior = {}
    cfg_path = src.parent / "config.json"
    if cfg_path.is_file():
        try:
            prior = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            prior = {}
    protocol = prior.get("capture", {}).get("protocol", "heads")
    config = {"job": "probe stats", "argv": sys.argv, "from": str(src), "capture": prior.get("capture", {}),
              "model": prior.get("model", {}), "prompts": prior.get("prompts", {})}
    summary = analyse_and_write(caps, out, config, _stats_config(args, protocol), args.no_report)
    _print_summary(out, summary)
    return 0


def _print_summary(out: Path, s: dict) -> None:
    head = "RANDOM WEIGHTS (dry run, not a finding): " if s.get("random_weights") else ""
    f = lambda v, spec: "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)  # noqa: E731
    print(f"{head}{s['n_pairs']} pairs x {s['n_units']} units: |t|>3 in {s['n_abs_t_gt_3']} "
          f"(null p99 {f(s['null_p99_abs_t_gt_3'], '.1f')}), |t|>5 in {s['n_abs_t_gt_5']} "
          f"(null p99 {f(s['null_p99_abs_t_gt_5'], '.1f')}), FWER-significant {s.get('n_fwer_significant', 'n/a')}, "
          f"split-half r {f(s['split_half_r_median'], '.3f')}, max |t| {f(s['max_abs_t'], '.2f')}")
    written = [n for n in ("captures.npz", "units.csv", "summary.json", "config.json", "report.md") if (out / n).exists()]
    print(f"wrote {out}: {', '.join(written)}")
