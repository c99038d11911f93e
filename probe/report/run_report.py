"""report.md and figures for one probe run (numpy + matplotlib Agg; no torch, no GPU).

    from probe.report.run_report import write_report
    path = write_report(Path("runs/probe"), caps, res, summary, config)   # -> runs/probe/report.md

`caps` is a `probe.io.captures.Captures`, `res` the `probe.stats.Analysis` of it, `summary` is
`res.summary()` plus `protocol` and `random_weights`, `config` the dict written to config.json
(`capture`, `model`, `prompts`, `capture_info`, `text_lengths`, `captured_forward`; every key may
be missing, e.g. after `python -m probe stats` on a captures.npz without its config.json).

Writes OUT/figures/*.png and OUT/report.md (images linked relatively, so the folder can be moved):
what was run and what a unit is, the published card's numbers beside this run's, the card's top
blocks beside ours (with bootstrap CIs), then five figures, each with a caption saying how to read
it: t heatmap (site x head or block x slice, one panel per step), observed counts against the
sign-flip null and the tmax null, split-half scatter, main vs control |t|, per-step profile. A
figure that cannot be drawn (no control set, one step, too few pairs) becomes a one-line note.

Honest labelling: with random weights (`--model tiny`) the first line says that nothing in the
report is a finding.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from probe.design.card import protocol_facts
from probe.report import images as image_report
from probe.report.common import dig, finite, fmt, fmt_ci, fmt_count, fmt_ratio, fwer_threshold, md_table
from probe.report.compare import test_sentence
from probe.report.controls import lexicon_section
from probe.report.figures import (control_figure, heatmap, is_images, null_figure, signs, step_rows, split_figure,
                                  step_figure)
from probe.report.units import SITE_RE, UnitLayout, parse_units
from probe.stats.analysis import SELECTIVE_DEFINITION
from render.imageio import atomic_path

__all__ = ["write_report", "UnitLayout", "parse_units", "CARD", "CARD_TOP_BLOCKS", "RANDOM_WEIGHTS_LINE",
           "RANDOMIZED_LINE", "RANDOM_REFERENCE", "FIGURE_NAMES", "IMAGE_FIGURE_NAMES"]

RANDOM_WEIGHTS_LINE = "**RANDOM WEIGHTS (--model tiny): a dry run; nothing in this report is a finding.**"
RANDOMIZED_LINE = ("**RANDOM WEIGHTS (--randomize {mode}, seed {seed}): a random-init control; nothing in this report "
                   "is a finding about the trained model.**")
# Random-weight reference numbers of the card statistics, measured with this code on the tiny model (the 25 shipped
# pairs, every option at its default: the card protocol at the pipeline's default resolution, 512² for tiny, gives
# 40 slices; the heads protocol 24 heads x 4 captured steps = 96 units).
# Cited in the first lines of every report that has no random-init comparison.
RANDOM_REFERENCE = {
    "card": {"pct_abs_t_gt_3": 60.0, "n_abs_t_gt_3": 24, "n_units": 40, "split_half_r": 0.915,
             "command": "python -m probe run --model tiny --protocol card --out runs/tiny-card"},
    "heads": {"pct_abs_t_gt_3": 62.5, "n_abs_t_gt_3": 60, "n_units": 96, "split_half_r": 0.908,
              "command": "python -m probe run --model tiny --out runs/tiny-heads"},
}


# The published card's numbers (huggingface.co/phanerozoic/ray-plantain, README c5e54f5), copied verbatim. What
# the card states about its protocol and what we reconstruct is in probe.design.card.protocol_facts; n_perm is ours.
CARD = {
    "n_units": 16_320, "n_pairs": 25, "n_perm": 1_000,
    "t3": "10,846 (66.5%)", "t3_ratio": "7.6×", "t3_p99": "≈1,427 (implied: 10,846 / 7.6)",
    "t5": "7,445 (45.6%)", "t5_ratio": "1,489×", "t5_p99": "5 (implied: 7,445 / 1,489)",
    "d08": "9,136 (56.0%)", "split": "0.912 [0.91, 0.92]", "max_t": "34.48",
}
# (card's block name, our site name, max|t|, units |t| > 3, units in block, median |d|)
CARD_TOP_BLOCKS = (
    ("single[0]", "single.0", 34.48, 510, 768, 1.00),
    ("joint[0]", "double.0.img", 28.91, 169, 192, 2.54),
    ("joint[4]", "double.4.img", 27.84, 149, 192, 1.32),
    ("joint[3]", "double.3.img", 26.80, 151, 192, 1.22),
    ("joint[1]", "double.1.img", 26.76, 135, 192, 1.10),
)
FIGURE_NAMES = ("t_heatmap.png", "null_counts.png", "split_half.png", "control.png", "step_profile.png")
IMAGE_FIGURE_NAMES = ("contrasts.png", "t_heatmap_lighting.png", "t_heatmap_albedo.png",   # image probe only
                      "class_scatter.png")
MAX_BLOCK_TABLE_ROWS = 200    # the full per-block table; longer ones stay in summary.json only
# ------------------------------------------------------------------------------------- unit names

# ------------------------------------------------------------------------------------- formatting

# ---------------------------------------------------------------------------------------- figures

# ----------------------------------------------------------------------------------- text sections


def _random_weights(summary: dict, config: dict) -> bool:
    return bool(summary.get("random_weights")) or bool(dig(config, "model", "random_weights", default=False))


def known_answer_line(summary: dict, config: dict) -> str | None:
    """The first line of a report on a known-answer model with trained weights (probe.klein.known: the record's
    banner, "a model trained here on synthetic renders: a check of the tool, not a finding about klein"); None
    for any other model. Random weights keep their own first line."""
    known = summary.get("known_answer") or dig(config, "model", "known_answer", default=None)
    if not known or _random_weights(summary, config):
        return None
    return f"**{known.get('name', 'known-answer model')}: {known['banner']}.**"


def _protocol(summary: dict, config: dict, layout: UnitLayout) -> str:
    p = summary.get("protocol") or dig(config, "capture", "protocol")
    if p:
        return str(p)
    return {"card": "card", "heads": "heads"}.get(layout.kind, "unknown")


def _sites_summary(layout: UnitLayout) -> str:
    """'10 double sites x 24 heads + 20 single x 24 = 720 units per step' style description."""
    if layout.kind == "other":
        return f"{len(layout.rows())} blocks"
    first = layout.step == (layout.steps[0] if layout.steps else -1)
    parts: dict[tuple[str, int], int] = {}
    for site in layout.rows():
        n = int(np.count_nonzero(first & (layout.site == site)))
        if not n:
            continue
        m = SITE_RE.match(site)
        key = (f"{m['kind']}.{m['stream']}" if m["stream"] else m["kind"]) if m else "other"
        parts[(key, n)] = parts.get((key, n), 0) + 1
    what = "heads" if layout.kind == "heads" else "slices"
    terms = [f"{k} {key} sites × {n} {what}" for (key, n), k in parts.items()]
    return " + ".join(terms) + f" = {int(first.sum()):,} units per step"


def _what_was_run(caps, res, config: dict, layout: UnitLayout, protocol: str) -> list[str]:
    cap = config.get("capture") or {}
    model = config.get("model") or {}
    info = config.get("capture_info") or {}
    steps = cap.get("steps")
    cap_steps = cap.get("capture_steps") or (layout.steps if layout.has_steps else None)
    guidance = cap.get("guidance")
    forward = config.get("captured_forward")
    if not forward and finite(guidance):
        forward = ("not recorded (guidance > 1 means CFG; the probe captures the conditional forward)"
                   if float(guidance) > 1 else "the only forward per step (guidance ≤ 1: no CFG)")
    nl = res.main.null
    lengths = config.get("text_lengths") or {}
    own = config.get("prompt_token_lengths") or {}
    text_tokens = caps.meta.get("text_tokens") or cap.get("text_tokens", "all")
    len_txt = "; ".join(f"{k}: {min(v)}–{max(v)} tokens" + (
        f" ({min(own[k])}–{max(own[k])} of the prompt, {min(a - b for a, b in zip(v, own[k]))}–"
        f"{max(a - b for a, b in zip(v, own[k]))} of the chat template)" if own.get(k) else "")
        for k, v in lengths.items() if v) or "not recorded"
    if protocol == "card":
        tokens = ("every position of the sequence, text padding included (the card's RMS over batch, sequence "
                  "and channel); joint blocks: image stream only")
        reducer = "RMS over sequence and the slice's 16 channels (the card's quantity)"
    else:
        single = cap.get("single_tokens", "img")
        txt = ("the prompt's own tokens (klein's chat template and the padding left out)" if text_tokens == "prompt"
               else "the real (non-padding) text tokens, the chat template's fixed tokens included")
        tokens = (f"joint blocks: image stream over the generated image's tokens, text stream over {txt}; single "
                  f"blocks: {single} tokens (reference-image tokens and text padding left out)")
        reducer = str(cap.get("reducer", "rms")) + " over the unit's tokens and channels"
    sources = config.get("prompts") or {}
    control_sources = sources.get("controls") or ({"paraphrase": sources["control"]} if sources.get("control") else {})
    sets = caps.control_sets()
    control = "; ".join(
        f"{name}: {cs.a.shape[0]} pairs" + (f" from {control_sources[name]}" if control_sources.get(name) else "")
        for name, cs in sets.items()) or "none"
    noise = config.get("noise") or {}
    if noise:
        seeds = (f"{noise.get('noise', '?')} noise seeds (from run seed {noise.get('seed', '?')} and the pair id), "
                 f"{noise.get('seeds_per_pair', 1)} per pair, the same for A, B and the pair's control prompts")
    else:
        seeds = f"{cap.get('seed', 'not recorded')} (one noise sample for every pair: an earlier run)"
    res_src = config.get("resolution_source")
    rnd = model.get("randomize") or {}
    weights = ("random-init control: --randomize " + str(rnd.get("mode")) + f" (seed {rnd.get('seed')})"
               if rnd.get("mode", "none") != "none" else
               "random (tiny model)" if model.get("source") == "tiny" else "trained")
    rows = [
        ["model", f"{model.get('model', 'not recorded')} (source {model.get('source', '?')}, revision "
                  f"{model.get('revision') or 'default'}, {model.get('dtype', '?')} on {model.get('device', '?')})"],
        ["weights", weights],
        ["protocol", protocol + (f", slice layout {cap.get('slice_layout', 'contiguous')}" if protocol == "card" else "")],
        ["sampling steps", steps if steps is not None else "not recorded"],
        ["captured steps", ", ".join(map(str, cap_steps)) if cap_steps else "not recorded"],
        ["guidance (CFG scale)", guidance if guidance is not None else "not recorded"],
        ["captured forward", forward or "not recorded"],
        ["resolution", (f"{cap['height']}×{cap['width']}" if "height" in cap and "width" in cap else "not recorded")
                       + (f" ({res_src})" if res_src else "")],
        ["noise", seeds],
        ["reducer", reducer],
        ["token sets", tokens],
        ["real text lengths", len_txt],
        ["pairs", f"{caps.n_pairs} (A rendered photograph vs B albedo of the same scene)"
                  + (f", from {sources['pairs']}" if sources.get("pairs") else "")],
        ["control sets", control],
        ["units", f"{caps.n_units:,} ({_sites_summary(layout)})"],
        ["sign-flip null", f"{nl.n_perm:,} sign vectors"
                           + (" (exact enumeration)" if nl.exact else " (random, seeded)")],
        ["split-half", f"{res.main.split.r.size} random 50/50 splits"],
        ["block bootstrap", f"{res.config.n_boot:,} resamples of pairs, {100 * res.config.ci:g}% percentile CIs"],
        ["stats seed", res.config.seed],
    ]
    if info:
        rows.append(["capture time", f"{info.get('seconds', '?')} s, {info.get('forwards_per_step', '?')} forward(s) "
                                     f"per step, {info.get('n_image_tokens', '?')} image tokens"])
    if is_images(res):
        rows = _image_rows(rows, caps, config, cap)
    out = ["## What was run", ""] + md_table(["", ""], rows) + [""]
    label, pos, neg = signs(res)
    out += [f"Sign convention: t = {label}: t > 0 means the unit is larger for {pos} than for {neg}; every "
            "statistic is on that per-pair difference"
            + (" (the card family's t = mean(second − first) / (sd / √N), with A first)" if protocol == "card" else "")
            + (". Every contrast follows its own A − B as in the contrast table above." if is_images(res) else
               ". The same direction holds for every control contrast and direct test, so 'same sign' compares "
               "like with like."), ""]
    if protocol == "card":
        out += ["**Unit (card protocol).** A unit is a 16-channel slice of an output projection's input (forward "
                "pre-hook), reduced by RMS over the whole sequence, padding included, and its 16 channels. In "
                "single blocks the slices cover the fused projection input, so three quarters of them are MLP "
                "channels, not attention; the text stream of the joint blocks is not counted. Names: "
                "`s00/double.0.img/c0000-0015`, `s00/single.3/c0016-0031` (step / site / channels).", ""]
    else:
        out += ["**Unit (heads protocol).** A unit is one attention head at one site and one captured step: its "
                "head_dim channels (128 in klein: 24 heads × 128 = 3072) of the attention output before the output "
                "projection (input of `to_out[0]` for a joint block's image stream, `to_add_out` for its text "
                "stream, the first inner_dim channels of a single block's fused `to_out`, whose other channels "
                "are MLP activations), reduced to one number per prompt over real tokens only (text padding "
                "masked; text units over the prompt's own tokens, klein's chat template masked too, unless the run "
                "used --text-tokens all). Names: `s12/double.3.img/h07` (step 12, joint block 3, image stream, head 7), "
                "`s12/double.3.txt/h07`, `s12/single.9/h07` (or `single.9.txt/h07` for text tokens)."
                + (" Editing calls add the reference image's tokens as units of their own: `s12/double.3.ref/h07`, "
                   "`s12/single.9.ref/h07` (the same head over the reference tokens, which klein appends after the "
                   "generated ones)." if is_images(res) else ""), ""]
    return out


def _image_rows(rows: list, caps, config: dict, cap: dict) -> list:
    """The 'What was run' rows of an image-probe run: images and editing calls instead of prompt pairs."""
    design = caps.meta.get("image_design") or {}
    info = config.get("capture_info") or {}
    noise = config.get("noise") or {}
    layouts = info.get("token_layouts_seen") or []
    size = ", ".join(f"{d['n_img']} generated + {d['n_ref']} reference tokens" for d in layouts) or "not recorded"
    replace = {
        "resolution": f"the reference image's size (editing calls, as evaluate generate makes them): {size}",
        "noise": (f"{noise.get('noise', '?')} noise seeds from run seed {noise.get('seed', '?')} and the base scene, "
                  f"{noise.get('seeds_per_pair', 1)} per scene, the same for every image of a scene"
                  if noise else "not recorded"),
        "pairs": f"{caps.n_pairs} ({design.get('pairs_over', 'scenes')}: "
                 + ("base scenes, each scene's sample pairs averaged first)" if design.get("pairs_over", "scenes") ==
                    "scenes" else "sample-level pairs, CLUSTERED)"),
        "control sets": None,
        "real text lengths": f"{(config.get('text_lengths') or {}).get('image_prompt', ['?'])[0]} tokens (the "
                             "editing text" + (f", {own[0]} of them its own, the rest klein's chat template)" if (
                                 own := (config.get("prompt_token_lengths") or {}).get("image_prompt")) else ")"),
    }
    if cap.get("protocol", "heads") != "card":
        txt = ("the editing text's own tokens (chat template and padding left out)"
               if (caps.meta.get("text_tokens") or cap.get("text_tokens", "all")) == "prompt"
               else "the real text tokens (chat template included)")
        replace["token sets"] = ("joint blocks: image stream over the generated image's tokens (`.img`) and over the "
                                 f"reference image's tokens (`.ref`), text stream over {txt}; single "
                                 f"blocks: {cap.get('single_tokens', 'img')} tokens and the reference tokens (`.ref`)")
    out = []
    for row in rows:
        if row[0] in replace:
            if replace[row[0]] is not None:
                out.append([row[0], replace[row[0]]])
        else:
            out.append(row)
    out.insert(3, ["stimuli", f"{design.get('n_images', '?')} images (rendered and ground-truth albedo, sRGB PNG) of "
                              f"{design.get('n_samples', '?')} samples in {design.get('data', '?')}, each one klein "
                              f"editing call with the text “{caps.meta.get('image_prompt', '?')}”"])
    out.insert(4, ["reference preparation", cap.get("reference_prep", "not recorded")])
    return out


CARD_VS_HEADS = [
    "## Card units vs heads", "",
    "The card states only that it tested \"16,320 heads\". In our reconstruction they are 16-channel slices of each "
    "block's output-projection input: 5 joint blocks × 192 + 20 single blocks × 768 = 960 + 15,360 = 16,320, where "
    "192 = 3072 / 16 (a joint block's image-stream attention output) and 768 = 12,288 / 16 (a single block's fused "
    "input: 3072 attention channels + 9,216 MLP channels); that is the only reading of the family's RMS pre-hook on "
    "the output projections that gives exactly 16,320 (the text stream of the joint blocks is then not counted). "
    "Which 16 channels form a slice is not stated: `--slice-layout contiguous` takes 16 consecutive channels (a real "
    "head of 128 channels spans 8 slices, and in single blocks three quarters of the slices are MLP channels), "
    "`--slice-layout strided` every (C/16)-th channel. That the RMS covers the whole sequence including the text "
    "padding is also our reconstruction; one inference step and guidance 1.0 are stated by a sibling card.",
    "",
    "The heads protocol counts real heads instead: per step 5 × 24 image-stream + 5 × 24 text-stream + 20 × 24 "
    "single-block heads = 720 units, padding masked, at several steps of a real sampling run. Counts from the two "
    "protocols are not comparable one to one (different unit sets and totals); percentages and null ratios are "
    "the closest common ground.", "",
]


def _protocol_table(config: dict) -> list[str]:
    rows = [[fact, kind, value] for fact, kind, value in protocol_facts(config)]
    return (["## The card's protocol: stated, stated by a sibling card, reconstructed", ""]
            + md_table(["protocol fact", "source", "this run"], rows)
            + ["", "Only the first group is the card's own statement. The second comes from another card of the same "
               "plantain family, which the card points to (\"per-head capture protocol identical to the rest of the "
               "plantain probe family\"). Everything in the third group is our reconstruction and none of it is "
               "quoted from the card.", ""])


def _headline(res, protocol: str, random_weights: bool) -> list[str]:
    u, nl = res.main.unit, res.main.null
    n_units = int(u.t.size)
    thr = list(nl.thresholds)
    at = np.abs(u.t)

    def thr_stats(c):
        if c in thr:
            k = thr.index(c)
            return int(nl.observed[k]), float(nl.p99[k]), float(nl.ratio[k])
        return int(np.count_nonzero(at > c)), float("nan"), float("nan")

    n3, p3, r3 = thr_stats(3.0)
    n5, p5, r5 = thr_stats(5.0)
    d_thr = res.config.d_threshold
    n_d = int(np.count_nonzero(np.abs(u.d) > d_thr))
    d_av = res.main.d_av
    n_dav = int(np.count_nonzero(np.abs(d_av[np.isfinite(d_av)]) > d_thr)) if d_av is not None else 0
    sp = res.main.split
    split_txt = f"{fmt(sp.median, 3)} [{fmt(sp.q25)}, {fmt(sp.q75)}]" if finite(sp.median) else "n/a (needs ≥ 4 pairs)"
    imax = int(np.argmax(at))
    run_col = f"this run ({protocol}, {n_units:,} units, {res.main.n_pairs} pairs"
    run_col += ", RANDOM WEIGHTS)" if random_weights else ")"
    card_col = f"published card ({CARD['n_units']:,} slices, {CARD['n_pairs']} pairs)"
    rows = [
        ["units with |t| > 3", CARD["t3"], fmt_count(n3, n_units)],
        ["… ratio to null p99 (|t| > 3)" + (" (exact null, identity left out)" if nl.exact else ""), CARD["t3_ratio"],
         fmt_ratio(r3)],
        ["… null p99 of that count", CARD["t3_p99"], fmt(p3, 1)],
        ["units with |t| > 5", CARD["t5"], fmt_count(n5, n_units)],
        ["… ratio to null p99 (|t| > 5)" + (" (exact null, identity left out)" if nl.exact else ""), CARD["t5_ratio"],
         fmt_ratio(r5)],
        ["… null p99 of that count", CARD["t5_p99"], fmt(p5, 1)],
        [f"units with |d_z| > {d_thr:g} (the card's “|d| > {d_thr:g} (large)”)", CARD["d08"], fmt_count(n_d, n_units)],
        [f"units with |d_av| > {d_thr:g} (between-condition scale)", "not reported", fmt_count(n_dav, n_units)],
        ["split-half r, median [IQR]", CARD["split"], split_txt],
        ["max |t|", CARD["max_t"], f"{fmt(at[imax])} ({res.units[imax]})"],
    ]
    fw = int(np.count_nonzero(nl.significant))
    fwer_t = fwer_threshold(nl)
    if fwer_t is None:
        fw_txt = fmt_count(fw, n_units) + f" (no unit can reach p ≤ {nl.alpha:g} with {nl.n_perm:,} sign vectors)"
    else:
        fw_txt = fmt_count(fw, n_units) + f", i.e. |t| > {fwer_t:.2f}"
    n_q = int(np.count_nonzero(u.q <= res.config.alpha))
    beyond = [
        [f"FWER-significant units (tmax null, α = {nl.alpha:g})", "not reported", fw_txt],
        [f"BH q ≤ {res.config.alpha:g}", "not reported", fmt_count(n_q, n_units)],
    ]
    for name, dr in res.directs.items():
        if name not in res.selective:
            continue
        cname = dr.minus
        c, d = res.stats[cname], res.direct_stats[name]
        cat = np.abs(c.unit.t)
        what = {"paraphrase": "A vs a paraphrase of A", "vocabulary": "A vs B's words meaning a lit photograph",
                "shuffled": "A vs B's words shuffled"}.get(
            cname, f"A vs the {cname} control prompt")
        beyond += [
            [f"{cname} control ({c.n_pairs} pairs, {what}): units with |t| > 3 / > 5", "not reported",
             f"{fmt_count(np.count_nonzero(cat > 3), n_units)} / {fmt_count(np.count_nonzero(cat > 5), n_units)}"],
            [f"{cname} control: FWER-significant units", "not reported", fmt_count(int(c.null.significant.sum()), n_units)],
            [f"direct test {cname} control prompt vs B: FWER-significant units", "not reported",
             fmt_count(int(d.null.significant.sum()), n_units)],
            [f"units selective beyond the {cname} control (`selective_{name}`)", "not reported",
             fmt_count(int(res.selective[name].sum()), n_units)],
        ]
    if res.selective:
        err = res.selective_error()
        beyond.append(["units selective beyond every control (`selective_beyond_control`)", "not reported",
                       fmt_count(int(res.selective_beyond_control.sum()), n_units)
                       + f"; family-wise error ≤ {err['n_families']} × α = {err['family_wise_bound']:g}"])
        beyond.append([f"… with every family at α/{err['n_families']} (`selective_beyond_control_joint`; family-wise "
                       f"error ≤ α = {res.config.alpha:g})", "not reported",
                       fmt_count(int(res.selective_beyond_control_joint.sum()), n_units)
                       + ("" if err["joint_attainable"] else
                          f" (unattainable: the smallest p_fwer these nulls give is above α/{err['n_families']})")])
    elif not is_images(res):
        beyond.append(["control sets (direct tests)", "not reported", "none in this run"])
    if res.classification is not None:
        for k, v in res.classification.counts().items():
            beyond.append([f"units of class `{k}` (lighting vs albedo, direct tests)", "not reported",
                           fmt_count(v, n_units)])
    if int(u.degenerate.sum()):
        beyond.append(["zero-variance units (t set to 0)", "—", f"{int(u.degenerate.sum()):,}"])
    out = ["## Headline: the published card beside this run", ""]
    out += md_table(["metric", card_col, run_col], rows + [["**beyond the card**", "", ""]] + beyond)
    out += ["", "Ratios are observed count / max(null p99, 1), as the card's. The card's null p99 values are not "
            "published; the rows marked 'implied' are its count divided by its ratio. Counts and percentages are "
            "over all units of the run (all captured steps together); the per-step profile below splits them. "
            f"Effect sizes: {_effect_sentence(res.main.n_pairs, d_thr)}"
            + (f" With {res.main.n_pairs} pairs every one of the {nl.n_perm:,} sign vectors is enumerated; the null "
               f"p99 is taken over the {nl.null_counts.shape[0]:,} that are not the identity (the observed "
               "labelling, which would otherwise cap the ratio near 1)." if nl.exact else ""),
            ""]
    if res.selective:
        err = res.selective_error()
        out += [f"Definition: {SELECTIVE_DEFINITION}. The direct test is the paired t of (control prompt − albedo "
                "prompt) over the pairs, with the same sign-flip tmax null as the main contrast; a unit that merely "
                "passes the main test and fails the control contrast is not counted (significant here and not there "
                "is no test of a difference).", "",
                f"**Error level of `selective_beyond_control`.** It combines {err['n_families']} families "
                f"({', '.join(f'`{f}`' for f in err['families'])}), each FWER-controlled at α = {res.config.alpha:g}. "
                f"For one unit this is an intersection-union test at level α; over all units the chance that any "
                f"unit is falsely in the set is only bounded by {err['n_families']} × α = "
                f"{err['family_wise_bound']:g}. `selective_beyond_control_joint` asks p_fwer ≤ α/{err['n_families']} "
                f"= {err['joint_alpha_per_family']:.4g} in every family, so its family-wise error is at most α.", ""]
    return out


def _effect_sentence(n: int, d_thr: float) -> str:
    """The d_z / d_av sentence under the headline table (issue 17.4)."""
    return (f"the card's “|d| > {d_thr:g} (large)” counts d_z = mean(diff) / sd(diff) = t / √n: at {n} pairs it is "
            f"exactly |t| > {d_thr * np.sqrt(n):.3g}, adds no evidence beyond the t counts, and Cohen's “large” "
            "refers to a between-condition d, which the strong within-pair correlation inflates d_z far above. d_av "
            "(mean difference over the average of the two conditions' standard deviations across pairs, the `d_av` "
            "column) is on that between-condition scale; the `d` columns of units.csv are d_z.")


def _block_cells(b, i: int, k3: int) -> list[str]:
    """This run's cells for block i: name, max|t|, count over the |t| threshold / units, median|d|, with CIs."""
    return [b.names[i], f"{b.max_abs_t[i]:.2f} {fmt_ci(b.max_abs_t_ci[i])}",
            f"{int(b.n_abs_t_gt[i, k3])}/{int(b.n_units[i])} {fmt_ci(b.n_abs_t_gt_ci[i, k3], 0)}",
            f"{b.median_abs_d[i]:.2f} {fmt_ci(b.median_abs_d_ci[i])}"]


def _blocks_section(res) -> list[str]:
    b = res.main.blocks
    thr = list(b.thresholds)
    k3 = thr.index(3.0) if 3.0 in thr else 0
    order = np.argsort(-b.max_abs_t, kind="stable")
    top = order[:5]
    ci_pct = f"{100 * b.ci:g}%"
    rows = []
    for rank in range(max(len(top), len(CARD_TOP_BLOCKS))):
        card = CARD_TOP_BLOCKS[rank] if rank < len(CARD_TOP_BLOCKS) else None
        row = [rank + 1]
        row += ([f"{card[0]} (= {card[1]})", f"{card[2]:.2f}", f"{card[3]}/{card[4]}", f"{card[5]:.2f}"]
                if card else ["", "", "", ""])
        if rank < len(top):
            row += _block_cells(b, top[rank], k3)
        else:
            row += ["", "", "", ""]
        rows.append(row)
    out = ["## Top blocks by max |t|", ""]
    out += md_table(["#", "card block", "card max|t|", f"card |t|>{thr[k3]:g}", "card median|d|",
                   "this run: block", f"max|t| [{ci_pct} CI]", f"|t|>{thr[k3]:g} / units [CI]",
                   "median|d_z| [CI]"], rows)
    out += ["", f"Bootstrap: {b.n_boot:,} resamples of the pairs with replacement, percentile intervals. Caveat: "
            "these intervals describe how max |t|, the count and median |d| spread over resampled experiments "
            "and need not cover the point estimate: resampling pairs adds noise to every unit's t, which inflates "
            "|t| of null units (max |t| and counts of mostly-null blocks sit above the observed value) and can "
            "pull counts of nearly saturated blocks below it. Compare blocks with each other through them, not "
            "with zero. The card's joint[i] is our double.i.img (the card counts no "
            "text stream) and its single[i] our single.i; the card captured one step, so its blocks are sites, "
            "while here a block is one site at one captured step (`s12/double.3.img`).", ""]
    out += _card_blocks_here(res)
    if len(b.names) <= MAX_BLOCK_TABLE_ROWS:
        rows = []
        for i in range(len(b.names)):
            cells = [b.names[i], int(b.n_units[i]), f"{b.max_abs_t[i]:.2f} {fmt_ci(b.max_abs_t_ci[i])}"]
            cells += [f"{int(b.n_abs_t_gt[i, k])} {fmt_ci(b.n_abs_t_gt_ci[i, k], 0)}" for k in range(len(thr))]
            cells += [f"{b.median_abs_d[i]:.2f} {fmt_ci(b.median_abs_d_ci[i])}"]
            rows.append(cells)
        out += ["<details><summary>All blocks</summary>", ""]
        out += md_table(["block", "units", "max|t| [CI]"] + [f"|t|>{c:g} [CI]" for c in thr] + ["median|d_z| [CI]"],
                      rows)
        out += ["", "</details>", ""]
    else:
        out += [f"{len(b.names)} blocks: the full table is in summary.json (`blocks`).", ""]
    return out


def _card_blocks_here(res) -> list[str]:
    """The card's top blocks looked up in this run (same site, earliest captured step), when present."""
    b = res.main.blocks
    thr = list(b.thresholds)
    k3 = thr.index(3.0) if 3.0 in thr else 0
    index = {name: i for i, name in enumerate(b.names)}
    by_site: dict[str, tuple[int, str]] = {}
    for name in b.names:   # names are "sNN/site" (or a bare site); keep the earliest step per site
        m = re.match(r"^s(\d+)/(.+)$", name)
        step, site = (int(m[1]), m[2]) if m else (-1, name)
        if site not in by_site or step < by_site[site][0]:
            by_site[site] = (step, name)
    rows = []
    for card_name, site, mx, n3, nu, md in CARD_TOP_BLOCKS:
        if site not in by_site:
            continue
        i = index[by_site[site][1]]
        rows.append([f"{card_name} (= {site})", f"{mx:.2f}", f"{n3}/{nu}", f"{md:.2f}", *_block_cells(b, i, k3)])
    if not rows:
        return []
    out = ["The card's top blocks, looked up in this run (same site, earliest captured step):", ""]
    out += md_table(["card block", "card max|t|", f"card |t|>{thr[k3]:g}", "card median|d|", "this run: block",
                   "max|t| [CI]", f"|t|>{thr[k3]:g} / units [CI]", "median|d_z| [CI]"], rows)
    return out + [""]


def _files_section(res) -> list[str]:
    cols = ", ".join(f"`{c}`" for c in res.units_table())
    return [
        "## Files", "",
        "- `captures.npz`: `a`, `b` float32 [pairs, units] (A = photograph prompt, B = albedo prompt, row i of "
        "both is the same scene), `units` (unit names, columns of a and b), `pair_ids`; the paraphrase control set in "
        "`control_a`, `control_b` [control pairs, units] and `control_pair_ids`; every other control set NAME in "
        "`control_NAME_a`, `control_NAME_b`, `control_NAME_pair_ids`; `control_names`; `unit_blocks` (block of each "
        "unit); `meta_json` (protocol, t direction, noise design). Everything here can be recomputed from it "
        "without the model.",
        f"- `units.csv`: one row per unit, columns {cols}. `d` is d_z = t/√n, `d_av` the mean difference over the "
        "two conditions' average sd; `t_vs_NAME`, `p_fwer_vs_NAME`: the direct test of control "
        "set NAME (control prompt − albedo prompt, same pair and noise); `selective_vs_NAME`: main and direct test "
        "FWER-significant with the same sign; `selective_beyond_control`: beyond every set (family-wise error ≤ K α "
        "over K families), `selective_beyond_control_joint`: every family at α/K (≤ α); `direction`: what a "
        "positive t means.",
        "- `summary.json`: the headline numbers (n_pairs, n_units, n_abs_t_gt_3, n_abs_t_gt_5, null p99s and "
        "ratios, split-half r, max |t|, FWER and BH counts, per-block rows, `n_selective_vs_NAME` per control set, "
        "every control contrast under `contrasts`, every direct test under `directs`, the paraphrase control also "
        "under `control`, `direction` (\"a-b\" or \"b-a\"), `direction_label` and `sign_convention`).",
        "- `config.json`: the resolved capture configuration, model record, prompt files, statistics settings "
        "and library versions.",
        "- `figures/`: the PNGs above.", "",
        "Recompute the statistics and this report from the captures alone (no model, no torch):", "",
        "```", "python -m probe stats --from captures.npz --out DIR", "```", "",
    ]


# -------------------------------------------------------------------------------------------- main


def _untrained_note(config: dict, out: Path) -> list[str]:
    """The first lines of a report that no random-init run has been compared with."""
    r = RANDOM_REFERENCE
    argv = [a for a in (config.get("argv") or [])[1:]]
    if config.get("job") == "probe run" and argv:
        if argv and argv[0] == "run":
            argv = argv[1:]
        keep, skip = [], False
        for a in argv:
            if skip:
                skip = False
                continue
            if a in ("--out", "--baseline", "--randomize", "--randomize-seed", "--randomize-seeds"):
                skip = True
                continue
            if a.startswith(("--out=", "--baseline=", "--randomize")):
                continue
            keep.append(a)
        rerun = "python -m probe run " + " ".join(keep + ["--randomize", "transformer", "--randomize-seeds", "0-18",
                                                         "--out", f"{out}-population"])
    else:
        rerun = (f"python -m probe run <the options of this run> --randomize transformer --randomize-seeds 0-18 "
                 f"--out {out}-population")
    return [
        "**The card's statistics do not tell a trained network from an untrained one, and no random-init run has "
        "been compared with this one.** On klein's architecture with random weights (the tiny model, 25 pairs) the "
        f"card protocol gives {r['card']['pct_abs_t_gt_3']:.1f} % of units at |t| > 3 "
        f"({r['card']['n_abs_t_gt_3']} of {r['card']['n_units']}) and a split-half r of "
        f"{r['card']['split_half_r']:.3f} (the card: 66.5 % and 0.912), the heads protocol "
        f"{r['heads']['pct_abs_t_gt_3']:.1f} % ({r['heads']['n_abs_t_gt_3']} of {r['heads']['n_units']}) and "
        f"{r['heads']['split_half_r']:.3f} (measured with "
        f"`{r['card']['command']}` and `{r['heads']['command']}`): any network's units move when its prompt changes. "
        f"Run a population of architecture-matched untrained networks and rank this run among them: `{rerun}` (19 "
        f"networks, so that a rank p can reach 0.05), then `python -m probe compare {out} --population "
        f"{out}-population --out {out}-compare`. One random-init run is not enough: the within-network test between "
        "two runs resamples pairs, never networks, and said 'different' for two untrained networks in 19-45 % of "
        "simulations.", ""]


def _comparison_section(comparison: dict) -> tuple[list[str], list[str]]:
    """(first lines, section) for a run compared with a random-init baseline (`--baseline`)."""
    runs = comparison["runs"]
    c = comparison["comparisons"][0] if comparison["comparisons"] else None
    verdict = ("with S = mean over units of (|t| here − |t| in the control), "
               + test_sentence((c or {}).get("test") or {}, "control", "this run"))
    first = [f"**Compared with the random-init control {runs[1]['label']} (within-network noise only: it resamples "
             f"pairs, never networks, and says nothing about training; rank this run among untrained networks with "
             f"`python -m probe compare RUN --population FOLDER`):** {verdict}.", ""]
    rows = [[k, *(r[k] if not isinstance(r[k], float) else f"{r[k]:.3f}" for r in runs)]
            for k in ("n_abs_t_gt_3", "pct_abs_t_gt_3", "n_abs_t_gt_5", "n_fwer_significant", "split_half_r_median",
                      "max_abs_t")]
    sec = ["## Against the random-init control (within-network noise only)", ""]
    sec += md_table(["", f"this run ({runs[0]['label']})", f"control ({runs[1]['label']})"], rows)
    sec += ["", f"Test: {verdict}. Units are not independent (they share the pairs), so the test resamples pairs and "
            "recomputes every unit's t in both runs; see `python -m probe compare` for the per-block table and "
            "figure. This measures the sampling noise of the pairs within each network only: two untrained networks "
            "of one architecture differ by it far more often than 5 %, so it cannot say what training did; a rank "
            "among a population of untrained networks can (`probe run --randomize transformer --randomize-seeds "
            "0-18`, then `probe compare RUN --population FOLDER`).", ""]
    return first, sec


def write_report(out: Path, caps, res, summary: dict, config: dict, comparison: dict | None = None) -> Path:
    """Write OUT/report.md and OUT/figures/*.png for one analysed run; returns the report's path.

    `comparison`: the `probe.stats.compare.compare_runs` result of this run against a random-init baseline;
    without one the report opens by saying that the card's statistics cannot tell trained from untrained."""
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    summary = summary or {}
    config = config or {}
    layout = parse_units(res.units, res.unit_blocks)
    protocol = _protocol(summary, config, layout)
    random_weights = _random_weights(summary, config)
    t = np.asarray(res.main.unit.t, dtype=np.float64)

    figures: list[tuple[str, str | None, str]] = []   # (title, file name or None, caption or note)
    written: set[str] = set()

    def add(title: str, name: str, draw, *args, skip_note: str | None = None):
        try:
            caption = draw(fig_dir / name, *args)
        except Exception as e:  # one broken figure must not cost the whole report
            warnings.warn(f"probe report: figure {name} failed: {type(e).__name__}: {e}", RuntimeWarning)
            figures.append((title, None, f"Not drawn: {type(e).__name__}: {e}."))
            return
        if caption is None:
            figures.append((title, None, skip_note or "Not drawn."))
        else:
            figures.append((title, name, caption))
            written.add(name)

    images = is_images(res)
    if images:
        add("The three contrasts on one scene of this run", "contrasts.png", image_report.contrast_figure,
            caps.meta.get("image_design") or {},
            skip_note="Not drawn: the render folder is not readable from here (or has no scene with two lightings "
                      "and a colour variant).")
    by = "t by block and head" if layout.kind != "card" else "t by block and slice"
    add(f"{by}: {res.primary}" if images else by, "t_heatmap.png", heatmap, layout, t, res)
    if images:
        for name in ("lighting", "albedo"):
            if name in res.contrasts and name != res.primary:
                add(f"{by}: {name}", f"t_heatmap_{name}.png", heatmap, layout,
                    np.asarray(res.stats[name].unit.t, dtype=np.float64), res, name)
    add("Observed counts against the sign-flip null", "null_counts.png", null_figure, res)
    add("Split-half consistency", "split_half.png", split_figure, res,
        skip_note=f"Not drawn: split-half needs at least 4 pairs (this run has {res.main.n_pairs}).")
    if images:
        add("|t| lighting against |t| albedo, by class", "class_scatter.png", image_report.class_scatter, res,
            skip_note="Not drawn: the classes need both the lighting and the albedo contrast.")
    elif res.selective:
        add("Main contrast vs the control sets (direct tests)", "control.png", control_figure, res)
    else:
        figures.append(("Main contrast vs the control sets (direct tests)", None,
                        "Not drawn: this run has no control set (run with `--control vocabulary` or `--control "
                        "paraphrase` to test each unit directly against a prompt that shares B's wording or rewords "
                        "A)."))
    per_step = step_rows(layout, res) if layout.has_steps else []
    if len(per_step) >= 2:
        add("Per-timestep profile", "step_profile.png", step_figure, per_step, res)
    else:
        figures.append(("Per-timestep profile", None,
                        "Not drawn: one captured step only." if per_step else
                        "Not drawn: the unit names carry no step."))
    for stale in FIGURE_NAMES + IMAGE_FIGURE_NAMES:   # a rerun must not leave an earlier run's figures beside it
        if stale not in written and (fig_dir / stale).exists():
            (fig_dir / stale).unlink()

    randomize = (dig(config, "model", "randomize", "mode", default="none") or "none")
    title = (f"# ray-plantain probe on images: lighting and albedo in rendered pixels ({protocol} protocol)" if images
             else f"# ray-plantain probe: rendered photograph vs albedo ({protocol} protocol)")
    if randomize != "none":
        lines = [RANDOMIZED_LINE.format(mode=randomize, seed=dig(config, "model", "randomize", "seed")), "", title, "",
                 "This run is the architecture-matched random-init control: its numbers are what the protocol gives "
                 "without training, to be compared with a trained run (`python -m probe compare TRAINED THIS`).", ""]
    elif random_weights:
        lines = [RANDOM_WEIGHTS_LINE, "", title, "",
                 "The model has random weights: every number and figure below only shows that the pipeline "
                 "runs end to end.", ""]
    elif known_answer_line(summary, config):
        known = summary.get("known_answer") or dig(config, "model", "known_answer")
        lines = [known_answer_line(summary, config), "", title, "",
                 f"The model is a small klein trained here that {known.get('what', '')}. Its answer is known, so this "
                 "run measures the tool on it; nothing below is about FLUX.2 klein.", ""]
    else:
        lines = [title, ""]
    sec_cmp: list[str] = []
    if comparison is not None:
        first, sec_cmp = _comparison_section(comparison)
        lines += first
    elif randomize == "none":
        lines += _untrained_note(config, out)
    label, pos, neg = signs(res)
    if images:
        design = caps.meta.get("image_design") or {}
        lines += image_report.intro(res, summary, design)
        lines += image_report.contrast_section(res, design)
        lines += image_report.classes_section(res)
        lines += image_report.luminance_section(res, design)
        lines += [f"The card's headline below is set beside this run's top-level contrast ({res.primary}, t = "
                  f"{label}): the card compared two texts, this run a rendered image with its albedo image.", ""]
    else:
        lines += ["Does FLUX.2 klein separate a description of a lit, rendered photograph (A) from a request for the "
                  "lighting-free albedo of the same scene (B)? Each unit gets a paired test over scene pairs, a "
                  "sign-flip null, split-half consistency and, per control set, a direct paired test of the control "
                  f"prompt against the albedo prompt. Sign: t = {label} (t > 0: larger for {pos}).", ""]
    lines += _headline(res, protocol, random_weights)
    if not images:
        lines += lexicon_section(summary.get("control_lexicon") or caps.meta.get("control_lexicon"))
    lines += _blocks_section(res)
    lines += sec_cmp
    lines += _what_was_run(caps, res, config, layout, protocol)
    if not images or protocol == "card":
        lines += _protocol_table(config)
        lines += CARD_VS_HEADS
    lines += ["## Figures", ""]
    for k, (title, name, caption) in enumerate(figures, 1):
        lines += [f"### {k}. {title}", ""]
        if name is not None:
            lines += [f"![{title}](figures/{name})", "", f"*Figure {k}.* {caption}", ""]
        else:
            lines += [caption, ""]
        if title == "Per-timestep profile" and per_step:
            hdr = ["step", "units"] + [f"|t|>{c:g}" for c in res.config.thresholds] + ["FWER", "max|t|"]
            if res.control is not None:
                hdr += ["control |t|>3", "control FWER", "control max|t|"]
            if res.selective:
                hdr += ["selective beyond every control"]
            rows = []
            for r in per_step:
                row = [r["step"], f"{r['units']:,}"] + [f"{r[f'gt_{c:g}']:,}" for c in res.config.thresholds]
                row += [f"{r['fwer']:,}", fmt(r["max_abs_t"])]
                if res.control is not None:
                    row += [f"{r['control_gt_3']:,}", f"{r['control_fwer']:,}", fmt(r["control_max_abs_t"])]
                if res.selective:
                    row += [f"{r['selective']:,}"]
                rows.append(row)
            lines += md_table(hdr, rows) + [""]
    if images:
        lines += image_report.files_section(res)
    else:
        lines += _files_section(res)
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path
