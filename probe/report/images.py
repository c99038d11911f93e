"""The image probe's sections and figures of report.md (`probe.report.run_report.write_report` calls them for runs of
`probe run --stimuli images`): the contrasts with their orientation, the unit classes with the power of
the equivalence test, class counts per block, and the scatter of |t_lighting| against |t_albedo|.
numpy + matplotlib Agg; no torch.
"""
from __future__ import annotations

import numpy as np

from probe.design.image_stimuli import ORIENTATION_LIMITS
from probe.report.common import MAX_SCATTER_POINTS, fmt, fwer_threshold, md_table, new_figure, save_figure
from probe.stats.classify import CLASS_DEFINITION, CLASSES

__all__ = ["intro", "contrast_section", "classes_section", "luminance_section", "class_scatter", "contrast_picture",
           "contrast_figure", "files_section",
           "CLASS_COLOURS", "CLASS_MEANING"]

CLASS_COLOURS = {"lighting-selective": "C1", "albedo-selective": "C0", "both": "C4", "neither": "0.75",
                 "inconclusive": "0.45"}
CLASS_MEANING = {
    "lighting-selective": "reacts when only the light changes (same surfaces) and is shown not to react when only the "
                          "surface colours change: a candidate carrier of lighting / shading",
    "albedo-selective": "reacts when only the surface colours change (same light) and is shown not to react when "
                        "only the light changes: a candidate carrier of albedo",
    "both": "reacts to both: it sees the image's appearance, not one factor of it",
    "neither": "no detectable reaction to either change (not shown to be unaffected)",
    "inconclusive": "reacts to one factor; whether it ignores the other could not be shown at this number of scenes",
}


def intro(res, summary: dict, design: dict) -> list[str]:
    """The paragraph under the title: what was compared, and the clustered flag when pairs are samples."""
    out = []
    if summary.get("clustered"):
        out += [f"**{summary.get('clustered_note')}**", ""]
    n_scenes = design.get("n_base_scenes", "?")
    prompt = summary.get("image_prompt")
    out += [f"Which heads of FLUX.2 klein carry the lighting of a scene and which its surface colour (albedo)? No word "
            f"changes here: every stimulus is one klein editing call with a rendered image as its reference and one "
            f"fixed text{f' (“{prompt}”)' if prompt else ''}, with the same noise for every image of a scene, so the "
            f"heads are measured in the computation `evaluate generate` scores. {design.get('n_images', '?')} images of "
            f"{design.get('n_samples', '?')} render samples from {n_scenes} base scenes ({design.get('data', '?')}); "
            f"each contrast is a paired test over "
            + ("base scenes (a scene's lightings and colour variants averaged first, so pairs are independent)."
               if design.get("pairs_over", "scenes") == "scenes" else
               "sample-level pairs (CLUSTERED: pairs of one scene are not independent)."), ""]
    return out


def contrast_section(res, design: dict) -> list[str]:
    """One row per contrast: what A and B are, their orientation, pairs, and the headline numbers."""
    described = design.get("contrasts") or {}
    rows = []
    n_units = int(res.units.size)
    for name, c in res.contrasts.items():
        st = res.stats[name]
        d = described.get(name, {})
        nl = st.null
        k3 = list(nl.thresholds).index(3.0) if 3.0 in nl.thresholds else 0
        rows.append([f"`{name}`", c.label, d.get("orientation", ""),
                     f"{st.n_pairs}" + (f" ({d['n_sample_pairs']} sample pairs)" if d.get("n_sample_pairs") else ""),
                     f"{int(nl.significant.sum()):,} of {n_units:,}",
                     f"{int(nl.observed[k3]):,} (null p99 {nl.p99[k3]:g})",
                     fmt(float(np.max(np.abs(st.unit.t))) if st.unit.t.size else float("nan")),
                     fmt(st.split.median, 3)])
    out = ["## The contrasts", ""]
    out += md_table(["contrast", "t =", "A/B orientation", "pairs", "FWER-significant", f"|t| > {nl.thresholds[k3]:g}",
                   "max |t|", "split-half r"], rows)
    out += [""]
    for name in res.contrasts:
        d = described.get(name, {})
        if d.get("definition"):
            out += [f"- `{name}`: {d['definition']}"]
    out += ["", f"Orientation: lighting names and variant colours carry no order, so A and B are ordered by a "
            f"ground-truth quantity computed from the render's intrinsics, never from unit values (the sign-flip null "
            f"stays valid). {ORIENTATION_LIMITS}", ""]
    left = [f"`{n}`: {', '.join(d['left_out'])}" for n, d in described.items() if d.get("left_out")]
    if left:
        out += ["Scenes left out of a contrast (no pair): " + "; ".join(left) + ".", ""]
    return out


def classes_section(res) -> list[str]:
    """Counts of the unit classes, their definition and meaning, the equivalence test's margin and power,
    and the counts per block."""
    cls = res.classification
    if cls is None:
        return ["## Unit classes", "", "Not computed: the classes need both the lighting and the albedo contrast "
                "(this run has " + ", ".join(f"`{n}`" for n in res.contrasts) + ").", ""]
    n = int(res.units.size)
    counts = cls.counts()
    rows = [[f"`{k}`", f"{counts[k]:,} ({100 * counts[k] / max(n, 1):.1f}%)", CLASS_MEANING[k]] for k in CLASSES]
    out = ["## Unit classes (direct tests only)", ""]
    out += md_table(["class", "units", "what it would mean"], rows)
    eq = cls.equivalence_record()
    prows = []
    for c, r in eq["per_contrast"].items():
        other = "albedo" if c == "lighting" else "lighting"
        prows.append([f"`{c}` shown negligible (for `{other}-selective`)", r["n_pairs"],
                      f"|t| < {r['abs_t_below']:.2f}" if r["can_show_equivalence"] else "never (too few pairs)",
                      f"{r['power_at_dz_0']:.2f}"])
    out += ["", f"Definition: {CLASS_DEFINITION}", "",
            f"Equivalence: {eq['test']}, margin |d_z| < {cls.margin:g} (`--equivalence-margin`), α = {cls.alpha:g}. "
            "Its power is the chance that a unit with no effect at all of that factor is shown equivalent:", ""]
    out += md_table(["equivalence test", "pairs", "shown when", "power at d_z = 0"], prows)
    weak = [c for c, r in eq["per_contrast"].items() if r["power_at_dz_0"] < 0.5]
    out += ["", ("With this few pairs the equivalence test is weak (" + ", ".join(f"`{c}`" for c in weak) + "): most "
                 "units significant for one factor will be `inconclusive`, not selective. More scenes, not more "
                 "lightings or variants per scene, raise the power (pairs are scenes)." if weak else
                 "A unit is only called selective when the other factor's effect is shown small, not merely not "
                 "significant."), ""]
    rows = [[b["block"], b["n_units"], *(b[k] for k in CLASSES)] for b in cls.per_block(res.unit_blocks)]
    out += ["<details><summary>Class counts per block</summary>", ""]
    out += md_table(["block", "units", *CLASSES], rows)
    out += ["", "</details>", ""]
    return out


def luminance_section(res, design: dict) -> list[str]:
    """The luminance row beside the classes: how many units (of each class) follow the surfaces' mean albedo
    luminance (`probe.stats.luminance`), and whether the albedo contrast itself changed brightness."""
    from probe.stats.luminance import luminance_row

    variants = ((design.get("orientation") or {}).get("albedo") or {}).get("variants", "hsv")
    out = ["### Albedo luminance beside the classes", ""]
    if variants == "chroma":
        out += ["The `albedo` contrast is made of chroma variants (hue and saturation changed, every albedo pixel's "
                "luminance kept within 1e-4): a unit that follows brightness alone cannot pass it.", ""]
    elif "albedo" in res.contrasts:
        out += ["**The `albedo` contrast is made of hsv variants, which change the surfaces' brightness with their "
                "colour: a unit that follows brightness alone can come out `albedo-selective`.** Render chroma variants "
                "(`python -m render --recolor K --recolor-mode both`) for an albedo contrast without it.", ""]
    row = luminance_row(res)
    if row is None:
        return out + ["No `luminance` contrast in this run (it needs luminance-changing, hsv, colour variants), so "
                      "which units follow albedo brightness is not measured.", ""]
    n = max(row["n_units"], 1)
    rows = [["follow albedo luminance (`luminance` FWER-significant)",
             f"{row['n_follow_luminance']:,} ({100 * row['n_follow_luminance'] / n:.1f}%): {row['n_positive']:,} "
             f"larger, {row['n_negative']:,} smaller for the brighter surfaces"]]
    for k, v in (row.get("by_class") or {}).items():
        size = (row.get("class_sizes") or {}).get(k, 0)
        rows.append([f"… of them `{k}`", f"{v:,} of {size:,}"])
    out += md_table(["luminance row", "units"], rows)
    out += ["", f"Definition: {row['definition']}.", ""]
    return out


def class_scatter(path, res) -> str | None:
    """|t_lighting| against |t_albedo| per unit, coloured by class, with the FWER thresholds and equivalence bounds."""
    cls = res.classification
    if cls is None:
        return None
    tl, ta = np.abs(res.stats["lighting"].unit.t), np.abs(res.stats["albedo"].unit.t)
    fig = new_figure(5.6, 4.6)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for k in CLASSES:
        idx = np.flatnonzero(cls.classes == k)
        if idx.size > MAX_SCATTER_POINTS:
            idx = np.sort(rng.choice(idx, MAX_SCATTER_POINTS, replace=False))
        ax.scatter(tl[idx], ta[idx], s=4 if idx.size > 2000 else 10, alpha=0.6, color=CLASS_COLOURS[k],
                   linewidths=0, label=f"{k} ({int(np.count_nonzero(cls.classes == k)):,})")
    notes = []
    for name, axis in (("lighting", "x"), ("albedo", "y")):
        thr = fwer_threshold(res.stats[name].null)
        line = ax.axvline if axis == "x" else ax.axhline
        if thr is not None:
            line(thr, color="C3", ls="--", lw=1)
        else:
            notes.append(f"no {name} unit can reach the FWER level with {res.stats[name].null.n_perm} sign vectors")
        if cls.bound[name] > 0:
            line(cls.bound[name], color="C2", ls=":", lw=1)
    ax.set_xlabel(f"|t| lighting ({res.contrasts['lighting'].label})", fontsize=8)
    ax.set_ylabel(f"|t| albedo ({res.contrasts['albedo'].label})", fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    ax.tick_params(labelsize=7)
    save_figure(fig, path)
    return ("Each dot is a unit: its |t| in the lighting contrast (x) against its |t| in the albedo contrast (y), "
            "coloured by class. Red dashed lines: the FWER thresholds of each contrast; green dotted lines: the "
            "equivalence bound (a contrast is shown negligible when its |t| is below it, margin |d_z| < "
            f"{cls.margin:g}). Lighting-selective units lie right of the red vertical line and below the green "
            "horizontal one; albedo-selective units above the red horizontal line and left of the green vertical one"
            + (f" ({'; '.join(notes)})" if notes else "") + ".")


def _quartet(data, scene: str | None, truth: dict | None):
    """(scene, [(title, sample, kind)] x 4) for one base scene with two lightings and a colour variant: the scene
    under its harder lighting, its lighting twin, its colour twin (variant 1, same lighting), its albedo."""
    from render.dataset import list_samples

    samples = list_samples(data)
    by_base: dict = {}
    for s in samples:
        by_base.setdefault(s.base_scene, []).append(s)
    for base in ([scene] if scene else sorted(by_base)):
        group = by_base.get(base, [])
        at = {(s.variant, s.lighting): s for s in group}
        lights = sorted({s.lighting for s in group})
        if len(lights) < 2 or not any(s.variant == 1 for s in group):
            continue
        c = ((truth or {}).get("lighting") or {}).get("values", {}).get(base, {})
        lights.sort(key=lambda light: (-c.get(light, 0.0), light))
        hard, soft = lights[0], lights[1]
        if (0, hard) in at and (0, soft) in at and (1, hard) in at:
            return base, [(f"{base}, {hard}", at[(0, hard)], "render"),
                          (f"lighting twin: {soft}", at[(0, soft)], "render"),
                          (f"colour twin: ~c1, {hard}", at[(1, hard)], "render"),
                          ("its albedo (ground truth)", at[(0, hard)], "albedo")]
    raise ValueError(f"no base scene{' ' + scene if scene else ''} in {data} has two lightings and a colour variant")


def contrast_picture(path, data, scene: str | None = None, truth: dict | None = None) -> str:
    """One scene of a render folder as the three contrasts see it: the scene, its lighting twin (lighting
    contrast), its colour twin (albedo contrast) and its ground-truth albedo (render_vs_albedo); returns a
    caption. `truth`: the orientation record (summary.json image_design.orientation) puts the harder lighting
    first. ValueError when no scene has two lightings and a colour variant."""
    from PIL import Image as PILImage

    base, panels = _quartet(data, scene, truth)
    fig = new_figure(9.6, 2.9)
    axes = fig.subplots(1, 4)
    notes = ["", "lighting contrast:\nonly the light differs", "albedo contrast:\nonly the colours differ",
             "render_vs_albedo:\nthe card's question"]
    for ax, (title, s, kind), note in zip(axes, panels, notes):
        with PILImage.open(s.image_srgb if kind == "render" else (s.albedo_srgb or s.image_srgb)) as im:
            ax.imshow(np.asarray(im.convert("RGB")))
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(note or "the scene", fontsize=7)
    save_figure(fig, path)
    return (f"The three contrasts on one scene ({base}): the scene under its harder lighting (the A side of the "
            "lighting contrast), the same scene and colours under its other lighting, the same scene and lighting "
            "with variant colours, and the scene's ground-truth albedo image. Each image is one editing call "
            "with the same text and noise.")


def contrast_figure(path, design: dict) -> str | None:
    """`contrast_picture` of the run's render folder (its first scene with two lightings and a colour variant);
    None when the folder is not there any more (e.g. `probe stats` elsewhere) or has no such scene."""
    from pathlib import Path

    data = design.get("data")
    if not data or not (Path(data) / "manifest.json").is_file():
        return None
    try:
        return contrast_picture(path, data, truth=design.get("orientation"))
    except (ValueError, FileNotFoundError, OSError):
        return None


def files_section(res) -> list[str]:
    cols = ", ".join(f"`{c}`" for c in res.units_table())
    names = list(res.contrasts)
    return [
        "## Files", "",
        f"- `captures.npz`: `a`, `b` float32 [pairs, units] = the `{names[0]}` contrast (rows = `pair_ids`, the base "
        "scenes), every further contrast NAME in `contrast_NAME_a`, `contrast_NAME_b`, `contrast_NAME_pair_ids`; "
        "`contrast_names` (the first is the one in a/b); `image_values` float32 [images, units] (each image's values, "
        "averaged over its noise seeds), `image_keys` (`<sample id>/render` or `/albedo`), `image_scene_ids`; `units`, "
        "`unit_blocks`, `meta_json` (protocol, direction, the contrast definitions and orientation, the text, the "
        "noise). Every statistic, class and per_sample.npz can be recomputed from it without the model.",
        f"- `units.csv`: one row per unit, columns {cols}. Top-level `t`, `d`, `p`, `q`, `p_fwer`, "
        f"`fwer_significant` are `{names[0]}`; `t_C`, `d_C`, `p_fwer_C` per contrast C; `p_equiv_C`: TOST p that "
        "contrast C's |d_z| is below the margin; `class`; `direction`: what a positive top-level t means.",
        "- `per_sample.npz`: `diff` float32 [samples, units] = the unit on the rendered image minus on that sample's "
        "albedo image (averaged over noise seeds), `sample_ids`, `scene_ids` (base scenes: the clusters), `units` "
        "(units.csv order), `contrast` = \"render_vs_albedo\".",
        "- `summary.json`: `stimuli` = \"images\", the primary contrast at top level, the others under `contrasts`, "
        "`classes` (counts, per block, definition, equivalence margin and power), `image_design` (contrast "
        "definitions, orientation and its ground-truth values, pairs over, clustered).",
        "- `config.json`: the resolved capture configuration (editing calls, reference preparation), model record, "
        "the render folder and text, noise seeds per scene, statistics settings and library versions.",
        "- `figures/`: the PNGs above.", "",
        "Recompute the statistics and this report from the captures alone (no model, no torch):", "",
        "```", "python -m probe stats --from captures.npz --out DIR", "```", "",
    ]
