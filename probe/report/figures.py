"""The run report's figures: t heatmaps, the null counts, split-half, main vs control, the per-step profile
(matplotlib Agg, no pyplot, no torch). Each returns its caption; `probe.report.run_report` places them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from probe.report.common import (MAX_SCATTER_POINTS, diverging, finite, fmt, fmt_ratio, fwer_threshold, new_figure,
                                 save_figure)
from probe.report.units import UnitLayout
from probe.stats.analysis import IMAGE_LABELS


MAX_HEATMAP_PANELS = 8        # more steps than this: an evenly spread subset, named in the caption


def is_images(res) -> bool:
    """True for an image-probe analysis (its contrasts are named render_vs_albedo, lighting, albedo)."""
    return res.primary in IMAGE_LABELS


def signs(res, name: str | None = None) -> tuple[str, str, str]:
    """(label of a contrast (default: the top-level one), the side a positive t favours, the side a negative
    t favours)."""
    c = res.contrasts[name or res.primary]
    if is_images(res):
        first, _, second = (c.label or "A - B").partition(" - ")
        return c.label, f"the {first} side", f"the {second} side"
    hi, lo = "the photograph prompt A", "the albedo prompt B"
    return (c.label or "A photograph - B albedo"), *((lo, hi) if c.reverse else (hi, lo))


def heatmap(path: Path, layout: UnitLayout, t: np.ndarray, res=None, contrast: str | None = None) -> str:
    from matplotlib.ticker import MaxNLocator

    rows = layout.rows()
    row_of = {r: i for i, r in enumerate(rows)}
    ri = np.array([row_of[s] for s in layout.site], dtype=np.int64)
    n_cols = int(layout.col.max()) + 1 if layout.col.size else 1
    steps = layout.steps
    shown = steps
    if len(steps) > MAX_HEATMAP_PANELS:
        shown = [steps[int(round(i))] for i in np.linspace(0, len(steps) - 1, MAX_HEATMAP_PANELS)]
    finite = np.abs(t[np.isfinite(t)])
    vmax = max(float(finite.max()) if finite.size else 0.0, 3.0)
    n_p = len(shown)
    ncols = min(n_p, 4)
    nrows = math.ceil(n_p / ncols)
    # heads: ~0.16 in per column; card rows of 768 slices share a fixed width instead
    panel_w = min(12.0 / ncols, 12.0) if n_cols > 64 else min(max(0.16 * n_cols + 1.4, 2.6), 5.0)
    panel_h = min(max(0.17 * len(rows) + 0.9, 2.2), 8.0)
    fig = new_figure(ncols * panel_w + 1.0, nrows * panel_h + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    cmap = diverging()
    im = None
    label_every = max(1, math.ceil(len(rows) / 40))
    for k, ax in enumerate(axes):
        if k >= n_p:
            ax.set_visible(False)
            continue
        sel = layout.step == shown[k]
        mat = np.full((len(rows), n_cols), np.nan)
        mat[ri[sel], layout.col[sel]] = t[sel]
        im = ax.imshow(mat, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(f"step {shown[k]}" if shown[k] >= 0 else "all units", fontsize=9)
        ax.set_yticks(range(0, len(rows), label_every))
        ax.set_yticklabels(rows[::label_every] if k % ncols == 0 else [], fontsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelsize=6)
        slice_label = f"slice ({layout.slice_width} channels)" if layout.slice_width else "strided slice"
        ax.set_xlabel({"heads": "head", "card": slice_label}.get(layout.kind, "unit in block"), fontsize=7)
    label, pos, neg = signs(res, contrast) if res is not None else ("A photograph - B albedo",
                                                                     "the photograph prompt A", "the albedo prompt B")
    if im is not None:
        cb = fig.colorbar(im, ax=[a for a in axes if a.get_visible()], shrink=0.8)
        cb.set_label(f"paired t ({label})", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    save_figure(fig, path)
    note = "" if shown == steps else f" (steps shown: {', '.join(map(str, shown))} of {len(steps)} captured)"
    colours = f"red means higher for {pos}, blue higher for {neg} (t = {label})"
    if layout.kind == "card":
        quarter = ("in single blocks the first quarter of slices are attention heads, the rest MLP channels"
                   if layout.slice_width else "strided slices take every (C/16)-th channel, so in single blocks "
                   "each slice mixes 4 attention channels with 12 MLP channels")
        return ("Paired t of every 16-channel slice: rows are blocks (double blocks' image stream, then single "
                "blocks), columns are slice indices; double rows end at their last slice and the grey remainder "
                f"is padding; {quarter}; {colours}" + note + ".")
    if layout.kind == "heads":
        return ("Paired t of every head, one panel per captured step: rows are capture sites in model order "
                "(double.i.img / double.i.txt are a joint block's image and text streams, single.i a single "
                "block; a `.ref` row is the same site over the reference image's tokens), columns are heads; "
                f"{colours}, colour saturates at |t| = {vmax:.1f}" + note + ".")
    return ("Paired t of every unit: rows are unit blocks, columns the unit's position in its block; "
            f"{colours}" + note + ".")


def _int_hist(ax, counts: np.ndarray, color: str, label: str, log: bool) -> None:
    lo, hi = int(counts.min()), int(counts.max())
    if log and hi > 10:
        # integer bins up to 10, then geometric, so bars keep a steady width on the symlog axis
        bins = np.unique(np.concatenate([np.arange(lo - 0.5, min(hi, 10) + 1.0),
                                         np.geomspace(max(lo, 10) + 0.5, hi + 1.5, 25)]))
    else:
        bins = np.arange(lo - 0.5, hi + 1.5) if hi - lo <= 60 else 40
    ax.hist(counts, bins=bins, color=color, alpha=0.75, label=label)


def null_figure(path: Path, res) -> str:
    nl = res.main.null
    k_n = len(nl.thresholds)
    fig = new_figure(3.6 * (k_n + 1), 3.1)
    axes = fig.subplots(1, k_n + 1, squeeze=False)[0]
    for k, c in enumerate(nl.thresholds):
        ax = axes[k]
        counts = nl.null_counts[:, k]
        obs = int(nl.observed[k])
        # observed far beyond the null: a symlog axis keeps both the null bars and the line in view
        log = obs > 5 * max(int(counts.max()), 1) and obs > 20
        _int_hist(ax, counts, "0.55", f"null ({counts.shape[0]:,} sign vectors"
                  + (", identity left out)" if counts.shape[0] < nl.n_perm else ")"), log)
        ax.axvline(float(nl.p99[k]), color="C0", ls="--", lw=1.2, label=f"null p{nl.quantile:g} = {nl.p99[k]:g}")
        ax.axvline(obs, color="C3", lw=1.6, label=f"observed = {obs:,} ({fmt_ratio(nl.ratio[k])})")
        if log:
            ax.set_xscale("symlog", linthresh=1.0)
        ax.set_title(f"units with |t| > {c:g}", fontsize=9)
        ax.set_xlabel("count of units", fontsize=8)
        ax.set_ylabel("sign vectors", fontsize=8)
        ax.legend(fontsize=6, loc="upper center")
        ax.tick_params(labelsize=7)
    ax = axes[-1]
    tmax = nl.tmax[np.isfinite(nl.tmax)]
    if tmax.size:
        ax.hist(tmax, bins=min(40, max(5, tmax.size // 4)), color="0.55", alpha=0.75, label="null max |t|")
    fwer_t = fwer_threshold(nl)
    if fwer_t is not None:
        ax.axvline(fwer_t, color="C0", ls="--", lw=1.2, label=f"FWER {nl.alpha:g} threshold |t| = {fwer_t:.2f}")
    obs_max = float(np.max(np.abs(res.main.unit.t)))
    if finite(obs_max):
        ax.axvline(obs_max, color="C3", lw=1.6, label=f"observed max |t| = {obs_max:.2f}")
    ax.set_title("max |t| over all units (tmax null)", fontsize=9)
    ax.set_xlabel("|t|", fontsize=8)
    ax.legend(fontsize=6, loc="upper center")
    ax.tick_params(labelsize=7)
    save_figure(fig, path)
    return ("Grey bars are the null distribution (pairs' A and B swapped at random) of how many units pass each "
            "|t| threshold, the dashed line its p99 and the red line the observed count, so the card's "
            "'×  null p99' is red over dashed; the right panel is the null of the largest |t| anywhere, whose "
            f"top {100 * nl.alpha:g}% (dashed) is the family-wise threshold a unit's |t| must exceed."
            + (" Every sign vector is enumerated here; the count histogram and its p99 leave out the identity (the "
               "observed labelling), which would otherwise cap the ratio near 1 with this few vectors."
               if nl.exact else ""))


def split_figure(path: Path, res) -> str | None:
    sp = res.main.split
    if sp.t_half1 is None or not np.isfinite(sp.r).any():
        return None
    x, y = np.asarray(sp.t_half1), np.asarray(sp.t_half2)
    keep = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(keep)
    if idx.size > MAX_SCATTER_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(idx, MAX_SCATTER_POINTS, replace=False))
    fig = new_figure(8.0, 3.6)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 1])
    ax.scatter(x[idx], y[idx], s=3 if idx.size > 2000 else 8, alpha=0.4, color="C0", linewidths=0)
    if idx.size:
        lim = float(np.max(np.abs(np.concatenate([x[idx], y[idx]])))) * 1.05 or 1.0
        ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=0.8, ls="--")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_xlabel(f"t in half 1 ({sp.half_sizes[0]} pairs)", fontsize=8)
    ax.set_ylabel(f"t in half 2 ({sp.half_sizes[1]} pairs)", fontsize=8)
    r0 = float(sp.r[0])
    ax.set_title(f"one split: r = {fmt(r0, 3)}", fontsize=9)
    ax.tick_params(labelsize=7)
    r = sp.r[np.isfinite(sp.r)]
    ax2.hist(r, bins=min(30, max(5, r.size // 3)), color="0.55")
    ax2.axvline(sp.median, color="C3", lw=1.6, label=f"median {fmt(sp.median, 3)}")
    ax2.axvspan(sp.q25, sp.q75, color="C3", alpha=0.15, label=f"IQR [{fmt(sp.q25)}, {fmt(sp.q75)}]")
    ax2.set_title(f"Pearson r over {r.size} random splits", fontsize=9)
    ax2.set_xlabel("split-half r", fontsize=8)
    ax2.legend(fontsize=7)
    ax2.tick_params(labelsize=7)
    save_figure(fig, path)
    return ("Left: each dot is a unit, its t from one half of the pairs against its t from the other half (one "
            "random split); dots along the dashed diagonal mean the contrast reproduces across independent "
            "halves. Right: the Pearson r of such scatters over all random splits, median and IQR as the card "
            f"reports (median {fmt(sp.median, 3)} [{fmt(sp.q25)}, {fmt(sp.q75)}]).")


def control_figure(path: Path, res) -> str:
    """One scatter per control set (main t against the direct test's t), and the counts side by side."""
    directs = [name for name in res.directs if name in res.selective]
    m = res.main
    sig = m.null.significant
    n_d = len(directs)
    fig = new_figure(3.6 * n_d + 4.2, 3.7)
    axes = fig.subplots(1, n_d + 1, width_ratios=[1.0] * n_d + [1.1])
    rng = np.random.default_rng(0)
    label, _, _ = signs(res)
    for ax, name in zip(axes, directs):
        dt = res.direct_stats[name].unit.t
        sel = res.selective[name]
        groups = [(~sig, "0.6", "other units"), (sig & ~sel, "C1", "main FWER-significant, not beyond this control"),
                  (sel, "C3", "selective beyond this control")]
        for mask, color, lab in groups:
            idx = np.flatnonzero(mask)
            if idx.size > MAX_SCATTER_POINTS:
                idx = np.sort(rng.choice(idx, MAX_SCATTER_POINTS, replace=False))
            ax.scatter(m.unit.t[idx], dt[idx], s=3 if idx.size > 2000 else 8, alpha=0.5, color=color, linewidths=0,
                       label=f"{lab} ({int(mask.sum()):,})")
        lim = float(max(np.max(np.abs(m.unit.t)), np.max(np.abs(dt)), 3.5)) * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="0.4", lw=0.8, ls="--")
        ax.axhline(0, color="0.3", lw=0.5)
        ax.axvline(0, color="0.3", lw=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel(f"t main ({label})", fontsize=8)
        ax.set_ylabel(f"t direct: {res.directs[name].label}", fontsize=7)
        ax.set_title(name.replace("vs_", "vs ") + " control", fontsize=9)
        ax.legend(fontsize=5.5, loc="upper left")
        ax.tick_params(labelsize=7)
    ax2 = axes[-1]
    names = ["main"] + [res.directs[d].minus for d in directs]
    fw = [int(sig.sum())] + [int(res.stats[res.directs[d].minus].null.significant.sum()) for d in directs]
    xs = np.arange(len(names))
    ax2.bar(xs - 0.27, fw, 0.27, color="C0", label="contrast FWER-significant (main: A vs B; else A vs control)")
    dfw = [0] + [int(res.direct_stats[d].null.significant.sum()) for d in directs]
    ax2.bar(xs, dfw, 0.27, color="C2", label="direct test FWER-significant (control − B)")
    ssel = [0] + [int(res.selective[d].sum()) for d in directs]
    ax2.bar(xs + 0.27, ssel, 0.27, color="C3", label="selective (main and direct, same sign)")
    for x_, vals in zip((-0.27, 0.0, 0.27), (fw, dfw, ssel)):
        for xi, v in zip(xs + x_, vals):
            ax2.annotate(f"{int(v):,}", (xi, v), ha="center", va="bottom", fontsize=6)
    ax2.set_xticks(xs)
    ax2.set_xticklabels(names, fontsize=7)
    ax2.set_ylabel("units", fontsize=8)
    ax2.legend(fontsize=5.5)
    ax2.tick_params(labelsize=7)
    save_figure(fig, path)
    return ("Left panels, one per control set: each dot is a unit, its t in the main contrast (x) against its t in the "
            "direct paired test of the control prompt against the albedo prompt of the same pair, same noise (y). "
            "Red units are selective beyond that control: both tests FWER-significant with the same sign, so the "
            "albedo prompt moves them beyond what the control prompt, which shares its wording (vocabulary) or "
            "rewords the photograph (paraphrase), does. Orange units pass the main test only. Right: how many units "
            "pass each test; a control contrast whose count nears the main count means most of the main count is "
            "wording.")


def step_rows(layout: UnitLayout, res) -> list[dict]:
    t = np.abs(res.main.unit.t)
    sig = res.main.null.significant
    ct = np.abs(res.control.unit.t) if res.control is not None else None
    csig = res.control.null.significant if res.control is not None else None
    rows = []
    for s in layout.steps:
        m = layout.step == s
        row = {"step": s, "units": int(m.sum()), "max_abs_t": float(t[m].max())}
        for c in res.config.thresholds:
            row[f"gt_{c:g}"] = int(np.count_nonzero(t[m] > c))
        row["fwer"] = int(np.count_nonzero(sig[m]))
        if ct is not None:
            row["control_gt_3"] = int(np.count_nonzero(ct[m] > 3))
            row["control_fwer"] = int(np.count_nonzero(csig[m]))
            row["control_max_abs_t"] = float(ct[m].max())
        if res.selective:
            row["selective"] = int(np.count_nonzero(res.selective_beyond_control[m]))
        rows.append(row)
    return rows


def step_figure(path: Path, per_step: list[dict], res) -> str:
    steps = [r["step"] for r in per_step]
    fig = new_figure(8.0, 3.2)
    ax, ax2 = fig.subplots(1, 2)
    for j, c in enumerate(res.config.thresholds):
        ax.plot(steps, [r[f"gt_{c:g}"] for r in per_step], marker="o", ms=3, color=f"C{j}", label=f"|t| > {c:g}")
    ax.plot(steps, [r["fwer"] for r in per_step], marker="s", ms=3, color="C3", label="FWER-significant")
    if res.selective:
        ax.plot(steps, [r["selective"] for r in per_step], marker="^", ms=3, color="C2",
                label="selective beyond every control")
    if res.control is not None:
        ax.plot(steps, [r["control_gt_3"] for r in per_step], marker="o", ms=3, color="C0", ls="--",
                label="control |t| > 3")
        ax.plot(steps, [r["control_fwer"] for r in per_step], marker="s", ms=3, color="C3", ls="--",
                label="control FWER-significant")
    ax.set_xlabel("sampling step (0 = first, pure noise)", fontsize=8)
    ax.set_ylabel(f"units (of {per_step[0]['units']:,} per step)", fontsize=8)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)
    ax2.plot(steps, [r["max_abs_t"] for r in per_step], marker="o", ms=3, color="C3", label="main")
    if res.control is not None:
        ax2.plot(steps, [r["control_max_abs_t"] for r in per_step], marker="o", ms=3, color="C1", ls="--",
                 label="control")
    fwer_t = fwer_threshold(res.main.null)
    if fwer_t is not None:
        ax2.axhline(fwer_t, color="0.4", ls=":", lw=1, label="FWER threshold (main)")
    ax2.set_xlabel("sampling step", fontsize=8)
    ax2.set_ylabel("max |t| at that step", fontsize=8)
    ax2.legend(fontsize=6)
    ax2.tick_params(labelsize=7)
    save_figure(fig, path)
    if is_images(res):
        return ("For each captured step: how many units pass |t| thresholds and the family-wise test (left) and "
                f"the largest |t| (right), for the top-level contrast ({res.contrasts[res.primary].label}).")
    return ("For each captured step: how many units pass |t| thresholds and the family-wise test (left) and "
            "the largest |t| (right); solid lines are the photograph-vs-albedo contrast, dashed the paraphrase "
            "control, so a step where the two lines meet carries no lighting-specific signal; the green line counts "
            "the units selective beyond every control set (main and direct tests FWER-significant, same sign).")
