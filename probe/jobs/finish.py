"""The step after capture that `probe run`, `probe merge` and `probe stats` share: captures -> statistics ->
units.csv, summary.json, config.json, report (and per_sample.npz for the image probe). No model is needed.
"""
from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from probe.io.errors import UsageError
from probe.io.jsonio import versions, write_json
from render.imageio import atomic_path


def stats_config(args, protocol: str, margin: float | None = None, magnitude_margin: float | None = None):
    """StatsConfig from the arguments; the margins from --equivalence-margin / --magnitude-margin, else `margin` /
    `magnitude_margin` (the ones recorded in captures.npz), else the defaults."""
    from probe.stats.config import StatsConfig

    n_perm = args.n_perm if args.n_perm is not None else (1000 if protocol == "card" else 10_000)
    for flag, v, lo in (("--n-perm", n_perm, 1), ("--n-splits", args.n_splits, 0), ("--n-boot", args.n_boot, 0)):
        if v < lo:
            raise UsageError(f"{flag} must be at least {lo}, got {v}")
    extra = {}
    for flag, key, recorded, what in (
            ("--equivalence-margin", "equivalence_margin", margin, "Cohen's d_z (e.g. 0.5)"),
            ("--magnitude-margin", "magnitude_margin", magnitude_margin, "ratio of changes (e.g. 0.5)")):
        given = getattr(args, key, None)
        value = given if given is not None else recorded
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be a positive {what}, got {value}")
        if value is not None:
            extra[key] = float(value)
    return StatsConfig(n_perm=n_perm, n_splits=args.n_splits, n_boot=args.n_boot, seed=args.stats_seed, **extra)


def load_baseline(args, out: Path):
    """The --baseline run (a random-init control) checked before anything is written; None if not given."""
    if not getattr(args, "baseline", None):
        return None
    from probe.io.runs import load_run

    base = Path(args.baseline)
    if base.resolve() == out.resolve():
        raise UsageError("--baseline must be another run folder than --out")
    return load_run(base)


def analyse_and_write(caps, out: Path, config: dict, stats_cfg, no_report: bool = False, baseline=None) -> dict:
    """Statistics on captures, then units.csv, summary.json, config.json and the report (with a comparison
    against `baseline`, a loaded random-init run, when given)."""
    from probe.stats.analysis import analyse_captures

    caps, pairs_note = with_sample_pairs(caps)
    res = analyse_captures(caps, config=stats_cfg)
    summary = res.summary()
    if pairs_note:
        summary["sample_pairs_note"] = pairs_note
    summary["protocol"] = config.get("capture", {}).get("protocol", config.get("protocol"))
    summary["random_weights"] = bool(config.get("model", {}).get("random_weights", False))
    summary["known_answer"] = config.get("model", {}).get("known_answer")
    summary["randomize"] = (config.get("model", {}).get("randomize") or {}).get("mode", "none")
    summary["stimuli"] = caps.stimuli
    cap = config.get("capture") or {}
    if summary["protocol"] != "card":   # what `.txt` units reduce over; runs before the option measured "all"
        summary["text_tokens"] = caps.meta.get("text_tokens") or cap.get("text_tokens", "all")
    summary["controls"] = list(caps.control_sets())
    if caps.meta.get("control_lexicon"):      # per control set: tokens vs B, word overlap with A and B
        summary["control_lexicon"] = caps.meta["control_lexicon"]
    full = {**config, "direction": res.direction, "sign_convention": summary["sign_convention"],
            "n_units": int(caps.n_units), "stats": asdict(stats_cfg), "versions": versions()}
    comparison = None
    if baseline is not None:
        from probe.io.runs import CompareError, Run, default_label
        from probe.stats.compare import compare_runs

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
        from probe.stats.luminance import luminance_row

        row = luminance_row(res)
        if row is not None:     # the units that follow mean albedo luminance, beside the classes
            row["albedo_variants"] = ((design.get("orientation") or {}).get("albedo") or {}).get("variants", "hsv")
            summary["luminance_row"] = row
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
        from probe.report.run_report import write_report

        write_report(out, caps, res, summary, full, comparison=comparison)
    return summary


CLUSTERED_NOTE = ("CLUSTERED (--pairs-over samples): every sample-level pair is a pair of its own, but samples of one "
                  "scene (its lightings and colour variants) are not independent, so p-values, FWER and CIs here treat "
                  "dependent pairs as independent and are too small; the default pairs over base scenes.")


PER_SAMPLE_SIGN = (
    "diff_C [pairs_C, units] = the unit on side A minus on side B of each sample-level pair of contrast C, multiplied "
    "by the run's sign ({direction}: {how}), the same convention as units.csv's t_C and d_C: a base scene's "
    "difference, whose mean over scenes t_C tests, is the mean of its pairs' diff_C (scene_ids_C; with --pairs-over "
    "samples each pair is its own row). A and B as the contrast table and a_keys_C / b_keys_C say. `diff` "
    "(the first array of this file, kept as it was) is always the rendered image minus its albedo image, whatever "
    "the protocol: under the card protocol (b-a) it is the negative of diff_render_vs_albedo.")


def with_sample_pairs(caps):
    """An image probe's captures with the sample-level pairs of every contrast: as stored, or (files written before
    captures.npz held them) rebuilt from the design record; (captures, note or None)."""
    import dataclasses

    if caps.stimuli != "images" or caps.images is None or caps.sample_pairs:
        return caps, None
    from probe.design.image_stimuli import sample_pairs_from_record

    pairs = sample_pairs_from_record(caps.images.keys, caps.images.scene_ids, caps.meta.get("image_design") or {})
    if not pairs:
        return caps, ("captures.npz holds no sample-level pairs and they could not be rebuilt from its design record: "
                      "the classes cannot show any change small")
    return dataclasses.replace(caps, sample_pairs=pairs), (
        "captures.npz was written before it stored the sample-level pairs (contrast_NAME_sample_a/_b); they were "
        "rebuilt from its image keys and design record (the same pairing rules and ground-truth orientation values)")


def write_per_sample(path: Path, caps) -> Path | None:
    """per_sample.npz (CONTRACTS C3) from an image probe's captures: diff float32 [samples, units] = the unit on
    the rendered image minus on its ground-truth albedo image (averaged over noise seeds), sample_ids,
    scene_ids (base scenes), units (units.csv order), contrast "render_vs_albedo"; and for every contrast C with
    sample-level pairs: diff_C float32 [pairs_C, units] in units.csv's sign convention, pair_ids_C, a_keys_C,
    b_keys_C, scene_ids_C, with `contrasts`, `direction` and `sign_convention` saying what they are. None (nothing
    written) when the run has no albedo images (no render_vs_albedo contrast): readers of the file (evaluate
    link) need its `diff`."""
    from probe.design.image_stimuli import per_sample_render_vs_albedo

    try:
        per = per_sample_render_vs_albedo(caps.images.keys, caps.images.values, caps.images.scene_ids)
    except KeyError:
        return None
    arrays: dict = dict(diff=per["diff"], sample_ids=per["sample_ids"], scene_ids=per["scene_ids"],
                        units=np.asarray(caps.units).astype(str), contrast=per["contrast"])
    direction = str(caps.meta.get("direction", "a-b"))
    sign = -1.0 if direction == "b-a" else 1.0
    names = [n for n in caps.contrast_sets() if caps.sample_level(n) is not None]
    for name in names:
        sl = caps.sample_level(name)
        arrays[f"diff_{name}"] = (sign * sl.diff).astype(np.float32)
        arrays[f"pair_ids_{name}"] = sl.pair_ids
        arrays[f"a_keys_{name}"] = sl.a_keys
        arrays[f"b_keys_{name}"] = sl.b_keys
        arrays[f"scene_ids_{name}"] = sl.clusters
    arrays["contrasts"] = np.array(names, dtype=str)
    arrays["direction"] = np.array(direction)
    arrays["sign_convention"] = np.array(PER_SAMPLE_SIGN.format(
        direction=direction, how="B minus A, the card family's t" if sign < 0 else "A minus B"))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:   # a file object: np.savez would append .npz to the temp name
            np.savez(f, **arrays)
    return path


def check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".write-test-{platform.node()}-{os.getpid()}"     # shards share the folder
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {out}: {e}") from e


def finish_run(out: Path, design, values: dict, units, config: dict, args, baseline=None, change=None) -> int:
    """The step after capture, shared by `probe run` and `probe merge` (CONTRACTS C5): the captured values
    {Stimulus.key(): [units]} of a design (text pairs or the image probe's images) -> captures.npz ->
    statistics -> units.csv, summary.json, config.json, report, and per_sample.npz for the image probe.

    `config` is the run record (config.json without the statistics: capture settings, model, the design's
    sources, noise, capture_info, direction); `args` gives the statistics options. No model is needed."""
    from probe.io.captures import save_captures
    from probe.stats.analysis import blocks_from_units

    protocol = config["capture"]["protocol"]
    stats_cfg = stats_config(args, protocol)
    meta = {"protocol": protocol, "direction": config["direction"]}
    if protocol != "card":
        meta["text_tokens"] = config["capture"].get("text_tokens", "all")
    if design.kind == "images":
        meta["equivalence_margin"] = stats_cfg.equivalence_margin     # `probe stats` keeps the run's own
        meta["magnitude_margin"] = stats_cfg.magnitude_margin
    else:
        meta["controls"] = dict(config["prompts"]["controls"])
        meta["control_lexicon"] = design.lexicon(config.get("prompt_token_lengths"))
    units = np.asarray(units).astype(str)
    if change:      # the image probe's change vectors ({stimulus key: [units, dim]}, "__units__")
        caps = design.captures(values, units, meta, unit_blocks=blocks_from_units(units), change=change)
    else:
        caps = design.captures(values, units, meta, unit_blocks=blocks_from_units(units))
    out.mkdir(parents=True, exist_ok=True)
    save_captures(out / "captures.npz", caps)
    summary = analyse_and_write(caps, out, config, stats_cfg, args.no_report, baseline)
    print_summary(out, summary)
    return 0


def print_summary(out: Path, s: dict) -> None:
    head = ("RANDOM WEIGHTS (not a finding): " if s.get("random_weights") else
            f"{s['known_answer']['name']}, {s['known_answer']['banner']}: " if s.get("known_answer") else "")
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
