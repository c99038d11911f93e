"""The image probe's sections and figures of report.md (`probe.report.run_report.write_report` calls them for runs of
`probe run --stimuli images`): the contrasts with their orientation, the unit classes with the power of
the equivalence test, class counts per block, and the scatter of |t_lighting| against |t_albedo|.
numpy + matplotlib Agg; no torch.
"""
from __future__ import annotations

import numpy as np

from probe.design.image_stimuli import ORIENTATION_LIMITS
from probe.report.common import MAX_SCATTER_POINTS, fmt, fwer_threshold, md_table, new_figure, save_figure
from probe.stats.classify import CLASS_CHANGE_NOTE, CLASS_DEFINITION, CLASSES

__all__ = ["intro", "contrast_section", "classes_section", "luminance_section", "class_scatter", "contrast_picture",
           "contrast_figure", "files_section",
           "CLASS_COLOURS", "CLASS_MEANING"]

CLASS_COLOURS = {"lighting-selective": "C1", "albedo-selective": "C0", "both": "C4", "neither": "0.75",
                 "inconclusive": "0.45"}
CLASS_MEANING = {
    "lighting-selective": "reacts when only the light changes (same surfaces), and its change when only the surface "
                          "colours change is shown smaller than the margin times its change under the light: a "
                          "candidate carrier of lighting / shading",
    "albedo-selective": "reacts when only the surface colours change (same light), and its change when only the light "
                        "changes is shown smaller than the margin times its change under the colours: a candidate "
                        "carrier of albedo",
    "both": "reacts to both: it sees the image's appearance, not one factor of it",
    "neither": "no detectable reaction to either change (not shown to be unaffected)",
    "inconclusive": "reacts to one factor; that the other moves it less could not be shown (too few scenes, or it "
                    "does move it: see the ratio columns)",
}


def intro(res, summary: dict, design: dict) -> list[str]:
    """The paragraph under the title: what was compared, and the clustered flag when pairs are samples."""
    out = []
    if summary.get("clustered"):
        out += [f"**{summary.get('clustered_note')}**", ""]
    n_scenes = design.get("n_base_scenes", "?")
    prompt = summary.get("image_prompt")
    if design.get("dataset"):      # an imported dataset of photographs (render.mit), not our renders
        out += [f"**Real photographs**: the images are {design['dataset']}, imported by `python -m render "
                "import-mit` (below, a \"render\" is a photograph and a \"base scene\" an object)."
                + "".join(f" The `{k}` contrast is left out: {v}." for k, v in
                          (design.get("unavailable_contrasts") or {}).items())
                + ("" if not (design.get("orientation") or {}).get("lighting", {}).get("source") else
                   " The lighting contrast's A is the photograph whose implied shading (photograph / reflectance) has "
                   "the highest contrast: the dataset measured shading under one light only."), ""]
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
    """Counts of the unit classes (and of the signed rule beside them), their definition and meaning, the magnitude
    test's margin, bound and power, the signed TOST's, and the counts per block."""
    cls = res.classification
    if cls is None:
        return ["## Unit classes", "", "Not computed: the classes need both the lighting and the albedo contrast "
                "(this run has " + ", ".join(f"`{n}`" for n in res.contrasts) + ").", ""]
    n = int(res.units.size)
    counts = cls.counts()
    signed = cls.counts(signed=True) if cls.classes_signed is not None else None
    pct = lambda c: f"{c:,} ({100 * c / max(n, 1):.1f}%)"  # noqa: E731
    rows = [[f"`{k}`", pct(counts[k]), pct(signed[k]) if signed else "—", CLASS_MEANING[k]] for k in CLASSES]
    m = cls.magnitude_margin
    out = ["## Unit classes (direct tests only)", ""]
    out += md_table(["class", "units (`class`)", "signed rule (`class_signed`)", "what it means"], rows)
    out += ["", f"Definition: {CLASS_DEFINITION}", "",
            f"**The size of the change, not its signed mean.** Lighting and albedo pairs are oriented by a ground-truth "
            "quantity, so a unit that a colour change moves up in one scene and down in the next has a signed mean "
            "near zero while colour moves it a lot. `class` therefore asks that the other factor's change be shown "
            f"small in size: below {m:g} × the unit's change under this factor, per base scene (RMS over the scene's "
            "pairs), by a one-sided test over scenes. The yardstick is the unit's own change under the other factor, "
            "not the noise: every image of a scene shares its noise seed, so no independent noise draw enters a "
            "difference. `class_signed` keeps the earlier rule (the other factor's signed d_z shown within "
            f"±{cls.margin:g} by TOST), which such a unit passes. {CLASS_CHANGE_NOTE}", ""]
    rec = cls.magnitude_record()
    if not rec["available"]:
        out += [f"**Magnitude test not available:** {rec['why_unavailable']}. No unit can be called selective.", ""]
    else:
        prows = []
        for c, r in rec["per_contrast"].items():
            p0, ph = r["power_at_ratio_0"], r["power_at_half_margin"]
            cv = r["median_cv_of_yardstick"]
            prows.append([f"`{c}` change < {m:g} × `{r['shown_small_relative_to']}` change (for `{r['decides']}`)",
                          r["n_scenes"], f"upper bound < {m:g} (one-sided t < −{r['t_crit']:.2f})",
                          f"{r['n_units_shown']:,}", fmt(cv, 2),
                          f"{p0['cv_0.5']:.2f} / {p0['cv_1']:.2f} / {fmt(p0['cv_median'], 2)}",
                          f"{ph['cv_0.5']:.2f} / {ph['cv_1']:.2f} / {fmt(ph['cv_median'], 2)}"])
        out += [f"Magnitude test (decides `class`): margin {m:g} on the ratio of mean per-scene RMS changes "
                f"(`--magnitude-margin`), α = {cls.alpha:g}, per unit; {rec['size_at_margin']}. Power is the chance a "
                "unit whose other-factor change is 0 (or half the margin) is shown small, when its per-scene changes "
                "vary over scenes with coefficient of variation cv = 0.5, 1, or this run's median (over the units "
                "significant for the yardstick factor):", ""]
        out += md_table(["shown small", "scenes", "shown when", "units shown", "median cv",
                         "power at ratio 0 (cv 0.5 / 1 / median)", f"power at ratio {m / 2:g} (cv 0.5 / 1 / median)"],
                        prows)
        weak = [c for c, r in rec["per_contrast"].items() if r["power_at_half_margin"]["cv_1"] < 0.5]
        if weak:
            out += ["", "With this few scenes the magnitude test is weak (" + ", ".join(f"`{c}`" for c in weak)
                    + "): many units significant for one factor will be `inconclusive`, not selective. More scenes, "
                    "not more lightings or variants per scene, raise the power (scenes are the independent unit)."]
        out += [""]
    eq = cls.equivalence_record()
    prows = []
    for c, r in eq["per_contrast"].items():
        other = "albedo" if c == "lighting" else "lighting"
        prows.append([f"`{c}` signed d_z within ±{cls.margin:g} (for `{other}-selective` in `class_signed`)",
                      r["n_pairs"], f"|t| < {r['abs_t_below']:.2f}" if r["can_show_equivalence"] else
                      "never (too few pairs)", f"{r['power_at_dz_0']:.2f}"])
    out += [f"Signed rule (`class_signed`, kept for comparison): {eq['test']}, margin |d_z| < {cls.margin:g} "
            f"(`--equivalence-margin`), α = {cls.alpha:g}; columns `p_equiv_signed_C` (also under their earlier names "
            "`p_equiv_C`):", ""]
    out += md_table(["signed equivalence test", "pairs", "shown when", "power at d_z = 0"], prows)
    out += ["", "A unit is only called selective when the other factor's change is shown small, not merely not "
            "significant.", ""]
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
    """Left: |t_lighting| against |t_albedo| per unit, coloured by class, with the FWER thresholds. Right: the upper
    bounds of the two ratios of changes (albedo / lighting, lighting / albedo), with the margin."""
    cls = res.classification
    if cls is None:
        return None
    tl, ta = np.abs(res.stats["lighting"].unit.t), np.abs(res.stats["albedo"].unit.t)
    mag = cls.magnitude
    fig = new_figure(11.0 if mag is not None else 5.6, 4.6)
    axes = fig.subplots(1, 2 if mag is not None else 1, squeeze=False)[0]
    rng = np.random.default_rng(0)
    picks = {}
    for k in CLASSES:
        idx = np.flatnonzero(cls.classes == k)
        picks[k] = np.sort(rng.choice(idx, MAX_SCATTER_POINTS, replace=False)) if idx.size > MAX_SCATTER_POINTS else idx
    ax = axes[0]
    for k, idx in picks.items():
        ax.scatter(tl[idx], ta[idx], s=4 if idx.size > 2000 else 10, alpha=0.6, color=CLASS_COLOURS[k],
                   linewidths=0, label=f"{k} ({int(np.count_nonzero(cls.classes == k)):,})")
    notes = []
    for name, axis in (("lighting", "x"), ("albedo", "y")):
        thr = fwer_threshold(res.stats[name].null)
        if thr is not None:
            (ax.axvline if axis == "x" else ax.axhline)(thr, color="C3", ls="--", lw=1)
        else:
            notes.append(f"no {name} unit can reach the FWER level with {res.stats[name].null.n_perm} sign vectors")
    ax.set_xlabel(f"|t| lighting ({res.contrasts['lighting'].label})", fontsize=8)
    ax.set_ylabel(f"|t| albedo ({res.contrasts['albedo'].label})", fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    ax.tick_params(labelsize=7)
    if mag is not None:
        ax = axes[1]
        m = cls.magnitude_margin
        ua, ul = mag["albedo"].upper, mag["lighting"].upper
        fin = np.concatenate([ua[np.isfinite(ua) & (ua > 0)], ul[np.isfinite(ul) & (ul > 0)], [m]])
        lo, hi = max(float(fin.min()) / 2, 1e-3), float(fin.max()) * 2
        clip = lambda v: np.clip(np.where(np.isfinite(v), v, hi), lo, hi)  # noqa: E731
        for k, idx in picks.items():
            ax.scatter(clip(ua[idx]), clip(ul[idx]), s=4 if idx.size > 2000 else 10, alpha=0.6,
                       color=CLASS_COLOURS[k], linewidths=0)
        ax.axvline(m, color="C2", ls=":", lw=1)
        ax.axhline(m, color="C2", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi * 1.05)
        ax.set_ylim(lo, hi * 1.05)
        ax.set_xlabel("albedo change / lighting change (upper bound)", fontsize=8)
        ax.set_ylabel("lighting change / albedo change (upper bound)", fontsize=8)
        ax.tick_params(labelsize=7)
    save_figure(fig, path)
    return ("Each dot is a unit, coloured by class. Left: its |t| in the lighting contrast (x) against its |t| in the "
            "albedo contrast (y); red dashed lines: the FWER thresholds of each contrast. "
            + ("Right: the one-sided 95 % upper bounds of the ratio of per-scene RMS changes, albedo over lighting "
               "(x) and lighting over albedo (y), log scales (unbounded ratios at the edge); green dotted lines: the "
               f"margin {cls.magnitude_margin:g}. Lighting-selective units lie right of the red vertical line on the "
               "left and left of the green vertical line on the right; albedo-selective units above the red "
               "horizontal line and below the green horizontal one." if mag is not None else
               "The magnitude test was not available, so no unit is selective.")
            + (f" ({'; '.join(notes)})" if notes else ""))


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
        "averaged over its noise seeds), `image_keys` (`<sample id>/render` or `/albedo`), `image_scene_ids`; "
        "`contrast_NAME_sample_a`, `contrast_NAME_sample_b` (every contrast's sample-level pairs as image keys); `units`, "
        "`unit_blocks`, `meta_json` (protocol, direction, the contrast definitions and orientation, the text, the "
        "noise). Every statistic, class and per_sample.npz can be recomputed from it without the model.",
        f"- `units.csv`: one row per unit, columns {cols}. Top-level `t`, `d`, `p`, `q`, `p_fwer`, "
        f"`fwer_significant` are `{names[0]}`; `t_C`, `d_C` (= d_z), `d_av_C`, `p_fwer_C` per contrast C; "
        "`rms_change_C`: mean over scenes of the per-scene RMS change under C; `ratio_C_to_O`, `ratio_C_to_O_ub`, "
        "`p_equiv_magnitude_C`: C's change over the other factor O's, its upper bound (empty: unbounded) and the p that "
        "it is below the magnitude margin; `class` (from them); `p_equiv_signed_C` (= `p_equiv_C`) and `class_signed`: "
        "the signed rule; `direction`: what a positive top-level t means.",
        "- `per_sample.npz`: `diff` float32 [samples, units] = the unit on the rendered image minus on that sample's "
        "albedo image (averaged over noise seeds; in every protocol), `sample_ids`, `scene_ids` (base scenes: the "
        "clusters), `units` (units.csv order), `contrast` = \"render_vs_albedo\"; per contrast C `diff_C` [pairs, "
        "units] in units.csv's sign, `pair_ids_C`, `a_keys_C`, `b_keys_C`, `scene_ids_C`; `contrasts`, `direction`, "
        "`sign_convention` (the convention in words).",
        "- `summary.json`: `stimuli` = \"images\", the primary contrast at top level, the others under `contrasts`, "
        "`classes` (counts, per block, definition, the magnitude test's margin, bound and power under `magnitude`, the "
        "signed rule's under `equivalence` and `signed`), `image_design` (contrast "
        "definitions, orientation and its ground-truth values, pairs over, clustered).",
        "- `config.json`: the resolved capture configuration (editing calls, reference preparation), model record, "
        "the render folder and text, noise seeds per scene, statistics settings and library versions.",
        "- `figures/`: the PNGs above.", "",
        "Recompute the statistics and this report from the captures alone (no model, no torch):", "",
        "```", "python -m probe stats --from captures.npz --out DIR", "```", "",
    ]
