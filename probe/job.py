"""The probe's modes: `main_run` (model -> captures -> statistics -> report) and `main_stats`
(captures.npz -> statistics -> report, no model and no torch). `probe compare` is probe/compare.py.

    python -m probe run --model tiny --out runs/probe
    python -m probe stats --from runs/probe/captures.npz --out runs/probe-restat

Outputs in --out: captures.npz (the interchange format, probe/captures.py: a, b [pairs, units]
float32, units, pair_ids, the paraphrase control in control_a/control_b/control_pair_ids, other
control sets as control_<NAME>_a/_b/_pair_ids, unit_blocks, meta_json), units.csv, summary.json,
config.json (the resolved configuration, model record, noise seeds and library versions), report.md,
figures/.
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

from probe.prompts import PromptFileError, default_pairs_path, load_pairs
from render.imageio import atomic_path


class UsageError(ValueError):
    """A bad argument or input file; printed as one line, exit code 2."""


def _user_errors() -> tuple:
    errs: list = [UsageError, PromptFileError, FileNotFoundError]
    try:
        from probe.compare import CompareError

        errs.append(CompareError)
    except ImportError:  # pragma: no cover
        pass
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
    for flag, v, lo in (("--n-perm", n_perm, 1), ("--n-splits", args.n_splits, 0), ("--n-boot", args.n_boot, 0)):
        if v < lo:
            raise UsageError(f"{flag} must be at least {lo}, got {v}")
    return StatsConfig(n_perm=n_perm, n_splits=args.n_splits, n_boot=args.n_boot, seed=args.stats_seed)


def _baseline(args, out: Path):
    """The --baseline run (a random-init control) checked before anything is written; None if not given."""
    if not getattr(args, "baseline", None):
        return None
    from probe.compare import load_run

    base = Path(args.baseline)
    if base.resolve() == out.resolve():
        raise UsageError("--baseline must be another run folder than --out")
    return load_run(base)


def analyse_and_write(caps, out: Path, config: dict, stats_cfg, no_report: bool = False, baseline=None) -> dict:
    """Statistics on captures, then units.csv, summary.json, config.json and the report (with a comparison
    against `baseline`, a loaded random-init run, when given)."""
    from probe.stats import analyse_captures

    res = analyse_captures(caps, config=stats_cfg)
    summary = res.summary()
    summary["protocol"] = config.get("capture", {}).get("protocol", config.get("protocol"))
    summary["random_weights"] = bool(config.get("model", {}).get("random_weights", False))
    summary["randomize"] = (config.get("model", {}).get("randomize") or {}).get("mode", "none")
    summary["stimuli"] = caps.meta.get("stimuli", "text")
    summary["controls"] = list(caps.control_sets())
    full = {**config, "direction": res.direction, "sign_convention": summary["sign_convention"],
            "n_units": int(caps.n_units), "stats": asdict(stats_cfg), "versions": versions()}
    comparison = None
    if baseline is not None:
        from probe.compare import CompareError, Run, compare_runs, default_label

        this = Run(out, default_label(summary, full, out), summary, full, res.units, res.t, res.main.null.significant,
                   res.unit_blocks, caps)
        try:
            comparison = compare_runs([this, baseline], units="shared", n_boot=2000, seed=stats_cfg.seed)
        except CompareError as e:   # after a capture, a useless baseline must not cost the run's outputs
            print(f"note: --baseline {baseline.path} not compared: {e}", file=sys.stderr)
        else:
            summary["baseline"] = {"path": str(baseline.path), "label": baseline.label,
                                   "comparison": comparison["comparisons"][0] if comparison["comparisons"] else None}
    out.mkdir(parents=True, exist_ok=True)
    res.write_units_csv(out / "units.csv")
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", full)
    if not no_report:
        from probe.report import write_report

        write_report(out, caps, res, summary, full, comparison=comparison)
    return summary


def _load_design(args):
    """Pairs, control sets and noise design from the arguments, all checked before anything is written."""
    from probe.prompts import resolve_control_sets
    from probe.stimuli import TextDesign

    if args.seeds_per_pair < 1:
        raise UsageError(f"--seeds-per-pair must be at least 1 (noise samples averaged per prompt), got "
                         f"{args.seeds_per_pair}; nothing was written")
    pairs_path = Path(args.pairs) if args.pairs else default_pairs_path()
    pairs = load_pairs(pairs_path)
    if args.limit:
        pairs = pairs[: args.limit]
    if len(pairs) < 3:
        raise UsageError(f"{len(pairs)} pairs is too few for paired statistics (need >= 3)")
    shipped = args.pairs is None or pairs_path.resolve() == default_pairs_path().resolve()
    controls = resolve_control_sets(args.control, pairs, shipped_pairs=shipped)
    design = TextDesign.from_pairs(pairs, {name: cs for name, (cs, _) in controls.items()}, seed=args.seed,
                                   seeds_per_pair=args.seeds_per_pair, noise=args.noise)
    sources = {"pairs": str(pairs_path), "controls": {name: src for name, (_, src) in controls.items()}}
    if "paraphrase" in controls:
        sources["control"] = controls["paraphrase"][1]       # the key earlier config.json files had
    return design, controls, sources


def _capture_config(args, loaded):
    from probe.run import CaptureConfig, card_config, pipeline_default_guidance, pipeline_default_size

    tiny = loaded.source == "tiny"
    if args.protocol == "card":
        dh, dw = pipeline_default_size(loaded.pipe)
        size = dict(height=args.height or dh, width=args.width or dw)
        source = ("--height/--width" if args.height and args.width else
                  "pipeline default (default_sample_size x vae_scale_factor)" if not (args.height or args.width)
                  else "--height/--width, the other side from the pipeline default")
    else:
        size = dict(height=args.height or (64 if tiny else 512), width=args.width or (64 if tiny else 512))
        source = ("--height/--width" if args.height and args.width else
                  f"the heads protocol's default ({'64 for --model tiny' if tiny else '512'})")
    common = dict(seed=args.seed, batch_size=args.batch_size, max_sequence_length=args.max_sequence_length, **size)
    steps_list = tuple(int(s) for s in args.capture_steps.split(",")) if args.capture_steps else ()
    if args.protocol == "card":
        over = {k: v for k, v in dict(steps=args.steps, guidance=args.guidance,
                                      capture_steps=steps_list or None).items() if v is not None}
        return card_config(**common, slice_layout=args.slice_layout, **over).resolved(), source
    if args.slice_layout != "contiguous":
        raise UsageError("--slice-layout applies to --protocol card only (the heads protocol captures whole heads)")
    return CaptureConfig(protocol="heads", steps=args.steps or 50, capture_steps=steps_list,
                         guidance=pipeline_default_guidance(loaded.pipe) if args.guidance is None else args.guidance,
                         reducer=args.reducer, single_tokens=args.single_tokens, **common).resolved(), source


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".write-test-{platform.node()}-{os.getpid()}"     # shards share the folder
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {out}: {e}") from e


def _shard(args):
    """The run's --shard (K/N, auto, or none: the whole run), resolved before anything is loaded."""
    from render.shard import Shard

    try:
        return Shard.parse(getattr(args, "shard", None))
    except ValueError as e:
        raise UsageError(str(e)) from None


def main_run(args) -> int:
    from probe.card import CARD_SIGN
    from probe.model import load_pipeline, spec_from_args
    from probe.run import capture_stimuli, real_text_lengths
    from probe.shards import shard_path, shard_stimuli

    out = Path(args.out)
    shard = _shard(args)
    design, controls, sources = _load_design(args)
    baseline = _baseline(args, out) if shard.is_whole else None     # a sharded run's statistics wait for the merge
    _check_out(out)
    loaded = load_pipeline(spec_from_args(args))
    cfg, resolution_source = _capture_config(args, loaded)
    if loaded.randomized:
        print(f"note: --randomize {args.randomize}: the {', '.join(c['name'] for c in loaded.randomized['components'])}"
              f" has fresh random weights (seed {args.randomize_seed}): a random-init control, not a finding",
              file=sys.stderr)
    elif loaded.random_weights:
        print("note: --model tiny has random weights: this is a dry run and its numbers are not findings",
              file=sys.stderr)
    cache = out / "partial_captures.npz" if shard.is_whole else shard_path(out, shard)
    if args.no_resume and cache.exists():
        cache.unlink()
    log = lambda msg: print(f"note: {msg}", file=sys.stderr)  # noqa: E731
    every = design.stimuli()
    values, units, info = capture_stimuli(loaded, shard_stimuli(every, shard), cfg, cache_path=cache,
                                          progress=not args.quiet, log=log)
    lengths = {"a": real_text_lengths(loaded.pipe, design.a, cfg.max_sequence_length),
               "b": real_text_lengths(loaded.pipe, design.b, cfg.max_sequence_length)}
    for name, prompts in design.controls.items():
        lengths[name] = real_text_lengths(loaded.pipe, list(prompts.values()), cfg.max_sequence_length)
    config = {
        "job": "probe run", "argv": sys.argv, "capture": asdict(cfg), "resolution_source": resolution_source,
        "model": loaded.describe(), "prompts": sources, "n_pairs": len(design.pair_ids),
        "n_control_pairs": len(controls.get("paraphrase", ([],))[0]),
        "control_sets": {name: {"n_pairs": len(cs), "source": src} for name, (cs, src) in controls.items()},
        "noise": design.record(), "capture_info": info, "text_lengths": lengths,
        "captured_forward": ("conditional (first of the two CFG forwards per step)" if info["forwards_per_step"] == 2
                             else "the only forward per step (no CFG)"),
        "direction": CARD_SIGN if cfg.protocol == "card" else "a-b", "shard": shard.as_dict(),
    }
    if not shard.is_whole:
        from probe.shards import write_shard_of_run

        return write_shard_of_run(out, shard, cache, args, every, values, units, info, config)
    return finish_run(out, design, values, units, config, args, baseline)


def finish_run(out: Path, design, values: dict, units: list[str], config: dict, args, baseline=None) -> int:
    """The step after capture, shared by `probe run` and `probe merge` (CONTRACTS C5): the captured values
    {Stimulus.key(): [units]} -> captures.npz -> statistics -> units.csv, summary.json, config.json, report.

    `config` is the run record (config.json without the statistics: capture settings, model, prompts, noise,
    capture_info, direction); `args` gives the statistics options. No model is needed."""
    from probe.captures import ControlSet
    from probe.run import unit_block
    from probe.stats import Captures, save_captures

    protocol = config["capture"]["protocol"]
    arrays = design.assemble(values)
    meta = {"protocol": protocol, "direction": config["direction"], "stimuli": "text",
            "controls": dict(config["prompts"]["controls"]),
            "seeds_per_pair": design.seeds_per_pair, "noise": design.noise}
    named = {n: ControlSet(*v) for n, v in arrays["controls"].items() if n != "paraphrase"}
    para = arrays["controls"].get("paraphrase")
    caps = Captures(a=arrays["a"], b=arrays["b"], units=np.array(units), pair_ids=np.array(design.pair_ids),
                    control_a=para[0] if para else None, control_b=para[1] if para else None,
                    control_pair_ids=para[2] if para else None, controls=named,
                    unit_blocks=np.array([unit_block(u) for u in units]), meta=meta)
    save_captures(out / "captures.npz", caps)
    summary = analyse_and_write(caps, out, config, _stats_config(args, protocol), args.no_report, baseline)
    _print_summary(out, summary)
    return 0


def main_stats(args) -> int:
    from probe.stats import load_captures

    src = Path(args.captures)
    if not src.is_file():
        raise UsageError(f"{src} not found: pass the captures.npz written by `python -m probe run`")
    caps = load_captures(src)
    out = Path(args.out)
    prior = {}
    cfg_path = src.parent / "config.json"
    if cfg_path.is_file():
        try:
            prior = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            prior = {}
    protocol = caps.meta.get("protocol") or prior.get("capture", {}).get("protocol", "heads")
    stats_cfg = _stats_config(args, protocol)
    baseline = _baseline(args, out)
    config = {"job": "probe stats", "argv": sys.argv, "from": str(src),
              **{k: prior[k] for k in ("capture", "model", "prompts", "resolution_source", "noise", "control_sets",
                                       "n_pairs", "text_lengths", "captured_forward") if k in prior}}
    config.setdefault("capture", {"protocol": protocol})
    summary = analyse_and_write(caps, out, config, stats_cfg, args.no_report, baseline)
    _print_summary(out, summary)
    return 0


def _print_summary(out: Path, s: dict) -> None:
    head = "RANDOM WEIGHTS (not a finding): " if s.get("random_weights") else ""
    f = lambda v, spec: "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)  # noqa: E731
    print(f"{head}{s['n_pairs']} pairs x {s['n_units']} units, t = {s.get('direction', 'A - B')}: |t|>3 in "
          f"{s['n_abs_t_gt_3']} (null p99 {f(s['null_p99_abs_t_gt_3'], '.1f')}), |t|>5 in {s['n_abs_t_gt_5']} "
          f"(null p99 {f(s['null_p99_abs_t_gt_5'], '.1f')}), FWER-significant {s.get('n_fwer_significant', 'n/a')}, "
          f"split-half r {f(s['split_half_r_median'], '.3f')}, max |t| {f(s['max_abs_t'], '.2f')}")
    sel = [f"{k[len('n_selective_vs_'):]} {v}" for k, v in s.items() if k.startswith("n_selective_vs_")]
    if sel:
        print(f"selective beyond each control (main and direct test FWER-significant, same sign): {', '.join(sel)}; "
              f"beyond all: {s.get('n_selective_beyond_control')}")
    written = [n for n in ("captures.npz", "units.csv", "summary.json", "config.json", "report.md") if (out / n).exists()]
    print(f"wrote {out}: {', '.join(written)}")
