"""The probe's modes: `main_run` (model -> captures -> statistics -> report) and `main_stats`
(captures.npz -> statistics -> report, no model and no torch). `probe compare` is probe/compare.py.

    python -m probe run --model tiny --out runs/probe
    python -m probe stats --from runs/probe/captures.npz --out runs/probe-restat

    python -m probe run --stimuli images --data runs/render --out runs/probe-images

Outputs in --out: captures.npz (the interchange format, probe/captures.py: a, b [pairs, units]
float32, units, pair_ids, the paraphrase control in control_a/control_b/control_pair_ids, other
control sets as control_<NAME>_a/_b/_pair_ids, unit_blocks, meta_json; image probe: the other
contrasts as contrast_<NAME>_a/_b/_pair_ids and the per-image values), units.csv, summary.json,
config.json (the resolved configuration, model record, noise seeds and library versions), report.md,
figures/; the image probe also per_sample.npz (CONTRACTS C3). `finish_run` is the step after capture
that `probe run` and `probe merge` share.
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
    try:
        from probe.image_stimuli import StimuliError

        errs.append(StimuliError)
    except ImportError:  # pragma: no cover
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


def _stats_config(args, protocol: str, margin: float | None = None):
    """StatsConfig from the arguments; the equivalence margin from --equivalence-margin, else `margin` (the
    one recorded in captures.npz), else the default."""
    from probe.stats import StatsConfig

    n_perm = args.n_perm if args.n_perm is not None else (1000 if protocol == "card" else 10_000)
    for flag, v, lo in (("--n-perm", n_perm, 1), ("--n-splits", args.n_splits, 0), ("--n-boot", args.n_boot, 0)):
        if v < lo:
            raise UsageError(f"{flag} must be at least {lo}, got {v}")
    given = getattr(args, "equivalence_margin", None)
    margin = given if given is not None else margin
    if margin is not None and not margin > 0:
        raise UsageError(f"--equivalence-margin must be a positive Cohen's d_z (e.g. 0.5), got {margin}")
    extra = {} if margin is None else {"equivalence_margin": float(margin)}
    return StatsConfig(n_perm=n_perm, n_splits=args.n_splits, n_boot=args.n_boot, seed=args.stats_seed, **extra)


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
    summary["stimuli"] = caps.stimuli
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
    if caps.stimuli == "images":
        design = caps.meta.get("image_design") or {}
        summary["image_design"] = {k: design.get(k) for k in ("data", "pairs_over", "clustered", "n_samples",
                                                               "n_images", "n_base_scenes", "contrasts",
                                                               "orientation", "unavailable_contrasts", "dataset")
                                   if k in design or k not in ("unavailable_contrasts", "dataset")}
        summary["image_prompt"] = caps.meta.get("image_prompt")
        summary["pairs_over"] = design.get("pairs_over", "scenes")
        summary["clustered"] = bool(design.get("clustered", False))
        if summary["clustered"]:
            summary["clustered_note"] = CLUSTERED_NOTE
    out.mkdir(parents=True, exist_ok=True)
    res.write_units_csv(out / "units.csv")
    if caps.images is not None:
        write_per_sample(out / "per_sample.npz", caps)
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", full)
    if not no_report:
        from probe.report import write_report

        write_report(out, caps, res, summary, full, comparison=comparison)
    return summary


CLUSTERED_NOTE = ("CLUSTERED (--pairs-over samples): every sample-level pair is a pair of its own, but samples of one "
                  "scene (its lightings and colour variants) are not independent, so p-values, FWER and CIs here treat "
                  "dependent pairs as independent and are too small; the default pairs over base scenes.")


def write_per_sample(path: Path, caps) -> Path | None:
    """per_sample.npz (CONTRACTS C3) from an image probe's captures: diff float32 [samples, units] = the unit on
    the rendered image minus on its ground-truth albedo image (averaged over noise seeds), sample_ids,
    scene_ids (base scenes), units (units.csv order), contrast "render_vs_albedo". None (nothing written)
    when the run has no albedo images."""
    from probe.image_stimuli import per_sample_render_vs_albedo

    try:
        per = per_sample_render_vs_albedo(caps.images.keys, caps.images.values, caps.images.scene_ids)
    except KeyError:
        return None
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:   # a file object: np.savez would append .npz to the temp name
            np.savez(f, diff=per["diff"], sample_ids=per["sample_ids"], scene_ids=per["scene_ids"],
                     units=np.asarray(caps.units).astype(str), contrast=per["contrast"])
    return path


def _check_seeds(args) -> None:
    if args.seeds_per_pair < 1:
        raise UsageError(f"--seeds-per-pair must be at least 1 (noise samples averaged per "
                         f"{'scene' if getattr(args, 'stimuli', 'text') == 'images' else 'prompt'}), got "
                         f"{args.seeds_per_pair}; nothing was written")


def _load_image_design(args):
    """The image probe's design (render folder, contrasts, text, noise), checked before anything is written."""
    from probe.image_stimuli import ImageDesign, build_image_plan
    from probe.prompts import load_edit_instructions

    if args.max_side is not None and args.max_side < 64:
        raise UsageError(f"--max-side must be at least 64 (klein's smallest reference side), got {args.max_side}; "
                         "nothing was written")
    for flag, given in (("--pairs", args.pairs), ("--control", args.control), ("--height", args.height),
                        ("--width", args.width)):
        if given:
            why = ("the generated image takes the reference image's size, as in evaluate generate"
                   if flag in ("--height", "--width") else "the image probe's pairs are the render's images")
            raise UsageError(f"{flag} applies to the text probe only ({why}); nothing was written")
    if not args.data:
        raise UsageError("--stimuli images needs --data RENDER_DIR (a folder written by `python -m render`, with "
                         "--recolor K for the albedo contrast); nothing was written")
    contrasts = [c.strip() for c in args.contrasts.split(",") if c.strip()] if args.contrasts else None
    plan = build_image_plan(args.data, pairs_over=args.pairs_over, albedo_order=args.albedo_order,
                            limit=args.limit, **({"contrasts": contrasts} if contrasts else {}))
    for name, why in plan.unavailable:
        print(f"note: the `{name}` contrast is left out: {why} (said in summary.json image_design)", file=sys.stderr)
    if len(plan.scenes) < 2 and args.pairs_over == "scenes":
        raise UsageError(f"{args.data} holds {len(plan.scenes)} base scene: a paired test over scenes needs at least "
                         "2 (render more scenes, or --pairs-over samples, flagged as clustered); nothing was written")
    instruction = "--image-prompt"
    prompt = args.image_prompt
    if prompt is None:
        prompt = load_edit_instructions()[0]
        instruction = "the first instruction of prompts/edit_instructions.json (what evaluate generate uses by default)"
    design = ImageDesign(plan, prompt, seed=args.seed, seeds_per_pair=args.seeds_per_pair, noise=args.noise)
    sources = {"data": str(args.data), "image_prompt": prompt, "image_prompt_source": instruction}
    return design, {}, sources


def _load_design(args):
    """The run's design (text pairs and control sets, or the image probe's render images) and noise design
    from the arguments, all checked before anything is written."""
    from probe.prompts import resolve_control_sets
    from probe.stimuli import TextDesign

    _check_seeds(args)
    if getattr(args, "stimuli", "text") == "images":
        return _load_image_design(args)
    if getattr(args, "data", None) or getattr(args, "image_prompt", None) or getattr(args, "max_side", None):
        raise UsageError("--data, --image-prompt and --max-side belong to the image probe: add --stimuli images; "
                         "nothing was written")
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
    editing = getattr(args, "stimuli", "text") == "images"
    if editing:
        size = dict(height=None, width=None, editing=True, reference_prep=_reference_prep(args, loaded).describe())
        source = "the reference image's size (editing calls, as evaluate generate makes them)"
    elif args.protocol == "card":
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


def _reference_prep(args, loaded):
    """The image probe's reference preparation: evaluate generate's own, with its --max-side."""
    from probe.edit_capture import ReferencePrep

    return ReferencePrep.like_evaluate(loaded, getattr(args, "max_side", None))


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
    _stats_config(args, args.protocol)          # bad statistics options fail before anything is written
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
    prepare = _reference_prep(args, loaded) if design.kind == "images" else None
    every = design.stimuli()
    values, units, info = capture_stimuli(loaded, shard_stimuli(every, shard), cfg, cache_path=cache,
                                          progress=not args.quiet, log=log, prepare_reference=prepare)
    config = {
        "job": "probe run", "argv": sys.argv, "capture": asdict(cfg), "resolution_source": resolution_source,
        "model": loaded.describe(), "stimuli": design.kind, "n_pairs": len(design.pair_ids),
        "noise": design.record(), "capture_info": info,
        "captured_forward": ("conditional (first of the two CFG forwards per step)" if info["forwards_per_step"] == 2
                             else "the only forward per step (no CFG)"),
        "direction": CARD_SIGN if cfg.protocol == "card" else "a-b", "shard": shard.as_dict(),
    }
    if design.kind == "images":
        sources = {**sources, "reference_prep": prepare.describe(), "max_side": prepare.max_side}
        config.update({"images": sources, "text_lengths": {
            "image_prompt": real_text_lengths(loaded.pipe, [design.prompt], cfg.max_sequence_length)}})
    else:
        lengths = {"a": real_text_lengths(loaded.pipe, design.a, cfg.max_sequence_length),
                   "b": real_text_lengths(loaded.pipe, design.b, cfg.max_sequence_length)}
        for name, prompts in design.controls.items():
            lengths[name] = real_text_lengths(loaded.pipe, list(prompts.values()), cfg.max_sequence_length)
        config.update({
            "prompts": sources, "n_control_pairs": len(controls.get("paraphrase", ([],))[0]),
            "control_sets": {name: {"n_pairs": len(cs), "source": src} for name, (cs, src) in controls.items()},
            "text_lengths": lengths})
    if not shard.is_whole:
        from probe.shards import write_shard_of_run

        return write_shard_of_run(out, shard, cache, args, every, values, units, info, config)
    return finish_run(out, design, values, units, config, args, baseline)


def finish_run(out: Path, design, values: dict, units, config: dict, args, baseline=None) -> int:
    """The step after capture, shared by `probe run` and `probe merge` (CONTRACTS C5): the captured values
    {Stimulus.key(): [units]} of a design (text pairs or the image probe's images) -> captures.npz ->
    statistics -> units.csv, summary.json, config.json, report, and per_sample.npz for the image probe.

    `config` is the run record (config.json without the statistics: capture settings, model, the design's
    sources, noise, capture_info, direction); `args` gives the statistics options. No model is needed."""
    from probe.stats import blocks_from_units, save_captures

    protocol = config["capture"]["protocol"]
    stats_cfg = _stats_config(args, protocol)
    meta = {"protocol": protocol, "direction": config["direction"]}
    if design.kind == "images":
        meta["equivalence_margin"] = stats_cfg.equivalence_margin     # `probe stats` keeps the run's own
    else:
        meta["controls"] = dict(config["prompts"]["controls"])
    units = np.asarray(units).astype(str)
    caps = design.captures(values, units, meta, unit_blocks=blocks_from_units(units))
    out.mkdir(parents=True, exist_ok=True)
    save_captures(out / "captures.npz", caps)
    summary = analyse_and_write(caps, out, config, stats_cfg, args.no_report, baseline)
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
    stats_cfg = _stats_config(args, protocol, caps.meta.get("equivalence_margin"))
    baseline = _baseline(args, out)
    config = {"job": "probe stats", "argv": sys.argv, "from": str(src), "stimuli": caps.stimuli,
              **{k: prior[k] for k in ("capture", "model", "prompts", "images", "resolution_source", "noise",
                                       "control_sets", "n_pairs", "text_lengths", "captured_forward") if k in prior}}
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
    if s.get("stimuli") == "images":
        by = {name: c.get("n_fwer_significant") for name, c in (s.get("contrasts") or {}).items()}
        print(f"{s.get('primary_contrast')} FWER-significant {s.get('n_fwer_significant')}; "
              + ", ".join(f"{name} {v}" for name, v in by.items())
              + ("" if not s.get("classes") else "; classes: " + ", ".join(
                  f"{k} {v}" for k, v in s["classes"]["counts"].items()))
              + (" (CLUSTERED: pairs over samples)" if s.get("clustered") else ""))
    sel = [f"{k[len('n_selective_vs_'):]} {v}" for k, v in s.items() if k.startswith("n_selective_vs_")]
    if sel:
        print(f"selective beyond each control (main and direct test FWER-significant, same sign): {', '.join(sel)}; "
              f"beyond all: {s.get('n_selective_beyond_control')}")
    written = [n for n in ("captures.npz", "units.csv", "per_sample.npz", "summary.json", "config.json", "report.md")
               if (out / n).exists()]
    print(f"wrote {out}: {', '.join(written)}")
