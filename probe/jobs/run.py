"""`python -m probe run`: model -> captures -> statistics -> report, on text pairs or on a render folder's
images. The statistics and outputs after capture are probe.jobs.finish (shared with `probe merge` and
`probe stats`); `probe compare` is probe.jobs.compare.

    python -m probe run --model tiny --out runs/probe
    python -m probe stats --from runs/probe/captures.npz --out runs/probe-restat

    python -m probe run --stimuli images --data runs/render --out runs/probe-images

Outputs in --out: captures.npz (the interchange format, probe/io/captures.py: a, b [pairs, units]
float32, units, pair_ids, the paraphrase control in control_a/control_b/control_pair_ids, other
control sets as control_<NAME>_a/_b/_pair_ids, unit_blocks, meta_json; image probe: the other
contrasts as contrast_<NAME>_a/_b/_pair_ids and the per-image values), units.csv, summary.json,
config.json (the resolved configuration, model record, noise seeds and library versions), report.md,
figures/; the image probe also per_sample.npz (CONTRACTS C3). `finish_run` is the step after capture
that `probe run` and `probe merge` share.
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from probe.design.prompts import default_pairs_path, load_pairs
from probe.io.errors import UsageError
from probe.jobs.finish import check_out, finish_run, load_baseline, stats_config


def _check_seeds(args) -> None:
    if args.seeds_per_pair < 1:
        raise UsageError(f"--seeds-per-pair must be at least 1 (noise samples averaged per "
                         f"{'scene' if getattr(args, 'stimuli', 'text') == 'images' else 'prompt'}), got "
                         f"{args.seeds_per_pair}; nothing was written")


def _load_image_design(args):
    """The image probe's design (render folder, contrasts, text, noise), checked before anything is written."""
    from probe.design.image_stimuli import ImageDesign, build_image_plan
    from probe.design.prompts import load_edit_instructions

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


def load_design(args):
    """The run's design (text pairs and control sets, or the image probe's render images) and noise design
    from the arguments, all checked before anything is written."""
    from probe.design.prompts import resolve_control_sets
    from probe.design.stimuli import TextDesign

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
    from probe.klein.capture_loop import CaptureConfig, card_config, pipeline_default_guidance, pipeline_default_size

    native = loaded.default_size        # tiny: 64; a known-answer model: the side it was trained at
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
        size = dict(height=args.height or native or 512, width=args.width or native or 512)
        source = ("--height/--width" if args.height and args.width else
                  f"the heads protocol's default ({f'{native} for --model {loaded.spec.model}' if native else '512'})")
    text_len = args.max_sequence_length or loaded.max_sequence_length
    if args.max_sequence_length and args.max_sequence_length != loaded.max_sequence_length:
        print(f"note: --max-sequence-length {args.max_sequence_length} differs from the {loaded.max_sequence_length} "
              f"text tokens this model reads", file=sys.stderr)
    common = dict(seed=args.seed, batch_size=args.batch_size, max_sequence_length=text_len, **size)
    steps_list = tuple(int(s) for s in args.capture_steps.split(",")) if args.capture_steps else ()
    if args.protocol == "card":
        over = {k: v for k, v in dict(steps=args.steps, guidance=args.guidance,
                                      capture_steps=steps_list or None).items() if v is not None}
        return card_config(**common, slice_layout=args.slice_layout, **over).resolved(), source
    if args.slice_layout != "contiguous":
        raise UsageError("--slice-layout applies to --protocol card only (the heads protocol captures whole heads)")
    change_dim = int(getattr(args, "change_dim", 0) or 0) if editing else 0
    if change_dim < 0:
        raise UsageError(f"--change-dim must be >= 0, got {change_dim}")
    return CaptureConfig(protocol="heads", steps=args.steps or 50, capture_steps=steps_list, change_dim=change_dim,
                         guidance=pipeline_default_guidance(loaded.pipe) if args.guidance is None else args.guidance,
                         reducer=args.reducer, single_tokens=args.single_tokens,
                         text_tokens=getattr(args, "text_tokens", "prompt"), **common).resolved(), source


def _reference_prep(args, loaded):
    """The image probe's reference preparation: evaluate generate's own, with its --max-side."""
    from probe.klein.edit_capture import ReferencePrep

    return ReferencePrep.like_evaluate(loaded, getattr(args, "max_side", None))


def _shard(args):
    """The run's --shard (K/N, auto, or none: the whole run), resolved before anything is loaded."""
    from render.shard import Shard

    try:
        return Shard.parse(getattr(args, "shard", None))
    except ValueError as e:
        raise UsageError(str(e)) from None


def run_record(args, loaded, cfg, resolution_source, design, controls, sources, info, shard, prepare) -> dict:
    """config.json of a run without its statistics (capture settings, model, design, noise, capture_info,
    direction, shard); `probe run` and every member of a population (probe.jobs.population) write it alike."""
    from probe.design.card import CARD_SIGN
    from probe.klein.capture_loop import prompt_token_lengths, real_text_lengths

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
            "image_prompt": real_text_lengths(loaded.pipe, [design.prompt], cfg.max_sequence_length)},
            "prompt_token_lengths": {
            "image_prompt": prompt_token_lengths(loaded.pipe, [design.prompt], cfg.max_sequence_length)}})
    else:
        roles = {"a": list(design.a), "b": list(design.b),
                 **{name: list(prompts.values()) for name, prompts in design.controls.items()}}
        # text_lengths: every non-padding token (prompt + chat template), the key earlier runs had;
        # prompt_token_lengths: the prompt's own tokens, what `.txt` units reduce over with --text-tokens prompt
        lengths = {k: real_text_lengths(loaded.pipe, v, cfg.max_sequence_length) for k, v in roles.items()}
        config["prompt_token_lengths"] = {k: prompt_token_lengths(loaded.pipe, v, cfg.max_sequence_length)
                                          for k, v in roles.items()}
        config.update({
            "prompts": sources, "n_control_pairs": len(controls.get("paraphrase", ([],))[0]),
            "control_sets": {name: {"n_pairs": len(cs), "source": src} for name, (cs, src) in controls.items()},
            "text_lengths": lengths})
    return config


def main_run(args) -> int:
    from probe.klein.model import load_pipeline, spec_from_args
    from probe.klein.capture_loop import capture_stimuli
    from probe.design.shards import shard_path, shard_stimuli

    out = Path(args.out)
    shard = _shard(args)
    design, controls, sources = load_design(args)
    stats_config(args, args.protocol)          # bad statistics options fail before anything is written
    baseline = load_baseline(args, out) if shard.is_whole else None     # a sharded run's statistics wait for the merge
    check_out(out)
    loaded = load_pipeline(spec_from_args(args), progress=not getattr(args, "quiet", False))
    cfg, resolution_source = _capture_config(args, loaded)
    if loaded.randomized:
        print(f"note: --randomize {args.randomize}: the {', '.join(c['name'] for c in loaded.randomized['components'])}"
              f" has fresh random weights (seed {args.randomize_seed}): a random-init control, not a finding",
              file=sys.stderr)
    elif loaded.random_weights:
        print("note: --model tiny has random weights: this is a dry run and its numbers are not findings",
              file=sys.stderr)
    elif loaded.known:
        print(f"note: --model {args.model} is {loaded.known['banner']}", file=sys.stderr)
    cache = out / "partial_captures.npz" if shard.is_whole else shard_path(out, shard)
    if args.no_resume and cache.exists():
        cache.unlink()
    log = lambda msg: print(f"note: {msg}", file=sys.stderr)  # noqa: E731
    prepare = _reference_prep(args, loaded) if design.kind == "images" else None
    every = design.stimuli()
    change: dict = {}
    values, units, info = capture_stimuli(loaded, shard_stimuli(every, shard), cfg, cache_path=cache,
                                          progress=not args.quiet, log=log, prepare_reference=prepare,
                                          change_out=change)
    config = run_record(args, loaded, cfg, resolution_source, design, controls, sources, info, shard, prepare)
    full = {name: sum(n >= cfg.max_sequence_length for n in ns) for name, ns in
            (config.get("text_lengths") or {}).items() if isinstance(ns, list)}
    if any(full.values()):
        print(f"note: prompts that fill all {cfg.max_sequence_length} text tokens the model reads were cut to that "
              f"length: " + ", ".join(f"{k} {v}" for k, v in full.items() if v), file=sys.stderr)
    if not shard.is_whole:
        from probe.design.shards import write_shard_of_run

        return write_shard_of_run(out, shard, cache, args, every, values, units, info, config)
    return finish_run(out, design, values, units, config, args, baseline, change=change or None)
