"""report.md and figures for one probe run (numpy + matplotlib Agg; no torch, no GPU).

    from probe.report import write_report
    path = write_report(Path("runs/probe"), caps, res, summary, config)   # -> runs/probe/report.md

`caps` is a `probe.stats.Captures`, `res` the `probe.stats.Analysis` of it, `summary` is
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

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
# the card states about its protocol and what we reconstruct is in probe.card.protocol_facts; n_perm is ours.
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
MAX_HEATMAP_PANELS = 8        # more steps than this: an evenly spread subset, named in the caption
MAX_SCATTER_POINTS = 40_000   # beyond this a fixed random subset is drawn (all units still count)
MAX_BLOCK_TABLE_ROWS = 200    # the full per-block table; longer ones stay in summary.json only
_DPI = 100

_UNIT_RE = re.compile(r"^(?:s(?P<step>\d+)/)?(?P<site>[^/]+)/(?:h(?P<head>\d+)|c(?P<c0>\d+)(?:-(?P<c1>\d+)|s(?P<stride>\d+)))$")
_SITE_RE = re.compile(r"^(?P<kind>double|single)\.(?P<block>\d+)(?:\.(?P<stream>img|txt|ref))?$")


# ------------------------------------------------------------------------------------- unit names

@dataclass(frozen=True, eq=False)
class UnitLayout:
    """Where each unit sits in the heatmap. kind: 'heads' (`s12/double.3.img/h07`), 'card'
    (`s00/single.3/c0016-0031`; strided slices `s00/single.3/c0001s0768`, slice_width 0) or 'other'
    (any other names: rows are the unit blocks)."""
    kind: str
    step: np.ndarray        # [U] int step, -1 when the names carry none
    site: np.ndarray        # [U] str row label (site group, or block for 'other')
    col: np.ndarray         # [U] int column: head index, slice index, or position within the block
    slice_width: int        # channels per card slice (0 for heads)

    @property
    def steps(self) -> list[int]:
        return sorted(set(int(s) for s in self.step))

    @property
    def has_steps(self) -> bool:
        return bool(self.step.size) and bool((self.step >= 0).all())

    def rows(self) -> list[str]:
        """Row labels in model order: double.0.img, double.0.txt, double.1.img, ..., single.0, ..."""
        return sorted(set(self.site.tolist()), key=_site_key)


def _site_key(name: str):
    m = _SITE_RE.match(name)
    if m is None:
        return (2, 0, 0, name)
    return (0 if m["kind"] == "double" else 1, int(m["block"]), {None: 0, "img": 0, "txt": 1, "ref": 2}[m["stream"]],
            "")


def parse_units(units, unit_blocks=None) -> UnitLayout:
    """Parse unit names into heatmap coordinates (see UnitLayout); never raises on odd names."""
    units = np.asarray(units).astype(str)
    matches = [_UNIT_RE.match(u) for u in units]
    n = units.size
    if n and all(m is not None for m in matches):
        heads = [m["head"] is not None for m in matches]
        if all(heads) or not any(heads):
            step = np.array([int(m["step"]) if m["step"] is not None else -1 for m in matches], dtype=np.int64)
            site = np.array([m["site"] for m in matches])
            if all(heads):
                col = np.array([int(m["head"]) for m in matches], dtype=np.int64)
                return UnitLayout("heads", step, site, col, 0)
            c0 = np.array([int(m["c0"]) for m in matches], dtype=np.int64)
            if all(m["stride"] is not None for m in matches):       # strided card slices: column = slice index
                return UnitLayout("card", step, site, c0, 0)
            mixed = any(m["c1"] is None for m in matches)
            widths = np.array([0 if mixed else int(m["c1"]) - int(m["c0"]) + 1 for m in matches], dtype=np.int64)
            width = int(widths[0]) if widths.size and (widths == widths[0]).all() and widths[0] > 0 else 0
            if width:
                return UnitLayout("card", step, site, c0 // width, width)
    blocks = (np.asarray(unit_blocks).astype(str) if unit_blocks is not None
              else np.array([u.rsplit("/", 1)[0] if "/" in u else "all" for u in units]))
    col = np.zeros(n, dtype=np.int64)
    seen: dict[str, int] = {}
    for i, b in enumerate(blocks):
        col[i] = seen.get(b, 0)
        seen[b] = col[i] + 1
    return UnitLayout("other", np.full(n, -1, dtype=np.int64), blocks, col, 0)


# ------------------------------------------------------------------------------------- formatting

def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _f(x, digits: int = 2) -> str:
    return f"{float(x):.{digits}f}" if _finite(x) else "n/a"


def _count(n, total) -> str:
    n = int(n)
    return f"{n:,} ({100.0 * n / total:.1f}%)" if total else f"{n:,}"


def _ratio(x) -> str:
    if not _finite(x):
        return "n/a"
    x = float(x)
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×"


def _ci(lo_hi, digits: int = 2) -> str:
    lo, hi = (float(v) for v in lo_hi)
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]" if _finite(lo) and _finite(hi) else ""


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def _md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return out


# ---------------------------------------------------------------------------------------- figures

def _figure(w: float, h: float):
    # Figure without pyplot: no global state, no backend switching, always Agg-rendered PNG
    from matplotlib.figure import Figure

    return Figure(figsize=(min(w, 16.0), min(h, 16.0)), layout="constrained")


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)


def _fwer_threshold(nl) -> float | None:
    """|t| a unit must exceed for p_fwer <= alpha; None when no unit can (too few sign vectors)."""
    min_p = 1.0 / (nl.n_perm + (0 if nl.exact else 1))   # the identity counts among enumerated vectors
    return float(nl.fwer_t) if min_p <= nl.alpha and _finite(nl.fwer_t) else None


def _diverging():
    import matplotlib

    return matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")


def _is_images(res) -> bool:
    """True for an image-probe analysis (its contrasts are named render_vs_albedo, lighting, albedo)."""
    from probe.stats import IMAGE_LABELS

    return res.primary in IMAGE_LABELS


def _signs(res, name: str | None = None) -> tuple[str, str, str]:
    """(label of a contrast (default: the top-level one), the side a positive t favours, the side a negative
    t favours)."""
    c = res.contrasts[name or res.primary]
    if _is_images(res):
        first, _, second = (c.label or "A - B").partition(" - ")
        return c.label, f"the {first} side", f"the {second} side"
    hi, lo = "the photograph prompt A", "the albedo prompt B"
    return (c.label or "A photograph - B albedo"), *((lo, hi) if c.reverse else (hi, lo))


def _heatmap(path: Path, layout: UnitLayout, t: np.ndarray, res=None, contrast: str | None = None) -> str:
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
    fig = _figure(ncols * panel_w + 1.0, nrows * panel_h + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    cmap = _diverging()
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
    label, pos, neg = _signs(res, contrast) if res is not None else ("A photograph - B albedo",
                                                                     "the photograph prompt A", "the albedo prompt B")
    if im is not None:
        cb = fig.colorbar(im, ax=[a for a in axes if a.get_visible()], shrink=0.8)
        cb.set_label(f"paired t ({label})", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    _save(fig, path)
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


def _null_figure(path: Path, res) -> str:
    nl = res.main.null
    k_n = len(nl.thresholds)
    fig = _figure(3.6 * (k_n + 1), 3.1)
    axes = fig.subplots(1, k_n + 1, squeeze=False)[0]
    for k, c in enumerate(nl.thresholds):
        ax = axes[k]
        counts = nl.counts[:, k]
        obs = int(nl.observed[k])
        # observed far beyond the null: a symlog axis keeps both the null bars and the line in view
        log = obs > 5 * max(int(counts.max()), 1) and obs > 20
        _int_hist(ax, counts, "0.55", f"null ({nl.n_perm:,} sign vectors)", log)
        ax.axvline(float(nl.p99[k]), color="C0", ls="--", lw=1.2, label=f"null p{nl.quantile:g} = {nl.p99[k]:g}")
        ax.axvline(obs, color="C3", lw=1.6, label=f"observed = {obs:,} ({_ratio(nl.ratio[k])})")
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
    fwer_t = _fwer_threshold(nl)
    if fwer_t is not None:
        ax.axvline(fwer_t, color="C0", ls="--", lw=1.2, label=f"FWER {nl.alpha:g} threshold |t| = {fwer_t:.2f}")
    obs_max = float(np.max(np.abs(res.main.unit.t)))
    if _finite(obs_max):
        ax.axvline(obs_max, color="C3", lw=1.6, label=f"observed max |t| = {obs_max:.2f}")
    ax.set_title("max |t| over all units (tmax null)", fontsize=9)
    ax.set_xlabel("|t|", fontsize=8)
    ax.legend(fontsize=6, loc="upper center")
    ax.tick_params(labelsize=7)
    _save(fig, path)
    return ("Grey bars are the null distribution (pairs' A and B swapped at random) of how many units pass each "
            "|t| threshold, the dashed line its p99 and the red line the observed count, so the card's "
            "'×  null p99' is red over dashed; the right panel is the null of the largest |t| anywhere, whose "
            f"top {100 * nl.alpha:g}% (dashed) is the family-wise threshold a unit's |t| must exceed.")


def _split_figure(path: Path, res) -> str | None:
    sp = res.main.split
    if sp.t_half1 is None or not np.isfinite(sp.r).any():
        return None
    x, y = np.asarray(sp.t_half1), np.asarray(sp.t_half2)
    keep = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(keep)
    if idx.size > MAX_SCATTER_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(idx, MAX_SCATTER_POINTS, replace=False))
    fig = _figure(8.0, 3.6)
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
    ax.set_title(f"one split: r = {_f(r0, 3)}", fontsize=9)
    ax.tick_params(labelsize=7)
    r = sp.r[np.isfinite(sp.r)]
    ax2.hist(r, bins=min(30, max(5, r.size // 3)), color="0.55")
    ax2.axvline(sp.median, color="C3", lw=1.6, label=f"median {_f(sp.median, 3)}")
    ax2.axvspan(sp.q25, sp.q75, color="C3", alpha=0.15, label=f"IQR [{_f(sp.q25)}, {_f(sp.q75)}]")
    ax2.set_title(f"Pearson r over {r.size} random splits", fontsize=9)
    ax2.set_xlabel("split-half r", fontsize=8)
    ax2.legend(fontsize=7)
    ax2.tick_params(labelsize=7)
    _save(fig, path)
    return ("Left: each dot is a unit, its t from one half of the pairs against its t from the other half (one "
            "random split); dots along the dashed diagonal mean the contrast reproduces across independent "
            "halves. Right: the Pearson r of such scatters over all random splits, median and IQR as the card "
            f"reports (median {_f(sp.median, 3)} [{_f(sp.q25)}, {_f(sp.q75)}]).")


def _control_figure(path: Path, res) -> str:
    """One scatter per control set (main t against the direct test's t), and the counts side by side."""
    directs = [name for name in res.directs if name in res.selective]
    m = res.main
    sig = m.null.significant
    n_d = len(directs)
    fig = _figure(3.6 * n_d + 4.2, 3.7)
    axes = fig.subplots(1, n_d + 1, width_ratios=[1.0] * n_d + [1.1])
    rng = np.random.default_rng(0)
    label, _, _ = _signs(res)
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
    _save(fig, path)
    return ("Left panels, one per control set: each dot is a unit, its t in the main contrast (x) against its t in the "
            "direct paired test of the control prompt against the albedo prompt of the same pair, same noise (y). "
            "Red units are selective beyond that control: both tests FWER-significant with the same sign, so the "
            "albedo prompt moves them beyond what the control prompt, which shares its wording (vocabulary) or "
            "rewords the photograph (paraphrase), does. Orange units pass the main test only. Right: how many units "
            "pass each test; a control contrast whose count nears the main count means most of the main count is "
            "wording.")


def _per_step(layout: UnitLayout, res) -> list[dict]:
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


def _step_figure(path: Path, per_step: list[dict], res) -> str:
    steps = [r["step"] for r in per_step]
    fig = _figure(8.0, 3.2)
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
    fwer_t = _fwer_threshold(res.main.null)
    if fwer_t is not None:
        ax2.axhline(fwer_t, color="0.4", ls=":", lw=1, label="FWER threshold (main)")
    ax2.set_xlabel("sampling step", fontsize=8)
    ax2.set_ylabel("max |t| at that step", fontsize=8)
    ax2.legend(fontsize=6)
    ax2.tick_params(labelsize=7)
    _save(fig, path)
    if _is_images(res):
        return ("For each captured step: how many units pass |t| thresholds and the family-wise test (left) and "
                f"the largest |t| (right), for the top-level contrast ({res.contrasts[res.primary].label}).")
    return ("For each captured step: how many units pass |t| thresholds and the family-wise test (left) and "
            "the largest |t| (right); solid lines are the photograph-vs-albedo contrast, dashed the paraphrase "
            "control, so a step where the two lines meet carries no lighting-specific signal; the green line counts "
            "the units selective beyond every control set (main and direct tests FWER-significant, same sign).")


# ----------------------------------------------------------------------------------- text sections

def _random_weights(summary: dict, config: dict) -> bool:
    return bool(summary.get("random_weights")) or bool(_get(config, "model", "random_weights", default=False))


def _protocol(summary: dict, config: dict, layout: UnitLayout) -> str:
    p = summary.get("protocol") or _get(config, "capture", "protocol")
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
        m = _SITE_RE.match(site)
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
    if not forward and _finite(guidance):
        forward = ("not recorded (guidance > 1 means CFG; the probe captures the conditional forward)"
                   if float(guidance) > 1 else "the only forward per step (guidance ≤ 1: no CFG)")
    nl = res.main.null
    lengths = config.get("text_lengths") or {}
    len_txt = "; ".join(f"{k}: {min(v)}–{max(v)} tokens" for k, v in lengths.items() if v) or "not recorded"
    if protocol == "card":
        tokens = ("every position of the sequence, text padding included (the card's RMS over batch, sequence "
                  "and channel); joint blocks: image stream only")
        reducer = "RMS over sequence and the slice's 16 channels (the card's quantity)"
    else:
        single = cap.get("single_tokens", "img")
        tokens = ("joint blocks: image stream over the generated image's tokens, text stream over the real "
                  f"(non-padding) text tokens; single blocks: {single} tokens "
                  "(reference-image tokens and text padding left out)")
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
    if _is_images(res):
        rows = _image_rows(rows, caps, config, cap)
    out = ["## What was run", ""] + _table(["", ""], rows) + [""]
    label, pos, neg = _signs(res)
    out += [f"Sign convention: t = {label}: t > 0 means the unit is larger for {pos} than for {neg}; every "
            "statistic is on that per-pair difference"
            + (" (the card family's t = mean(second − first) / (sd / √N), with A first)" if protocol == "card" else "")
            + (". Every contrast follows its own A − B as in the contrast table above." if _is_images(res) else
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
                "masked). Names: `s12/double.3.img/h07` (step 12, joint block 3, image stream, head 7), "
                "`s12/double.3.txt/h07`, `s12/single.9/h07` (or `single.9.txt/h07` for text tokens)."
                + (" Editing calls add the reference image's tokens as units of their own: `s12/double.3.ref/h07`, "
                   "`s12/single.9.ref/h07` (the same head over the reference tokens, which klein appends after the "
                   "generated ones)." if _is_images(res) else ""), ""]
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
                             "editing text)",
    }
    if cap.get("protocol", "heads") != "card":
        replace["token sets"] = ("joint blocks: image stream over the generated image's tokens (`.img`) and over the "
                                 "reference image's tokens (`.ref`), text stream over the real text tokens; single "
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
    from probe.card import protocol_facts

    rows = [[fact, kind, value] for fact, kind, value in protocol_facts(config)]
    return (["## The card's protocol: stated, stated by a sibling card, reconstructed", ""]
            + _table(["protocol fact", "source", "this run"], rows)
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
    sp = res.main.split
    split_txt = f"{_f(sp.median, 3)} [{_f(sp.q25)}, {_f(sp.q75)}]" if _finite(sp.median) else "n/a (needs ≥ 4 pairs)"
    imax = int(np.argmax(at))
    run_col = f"this run ({protocol}, {n_units:,} units, {res.main.n_pairs} pairs"
    run_col += ", RANDOM WEIGHTS)" if random_weights else ")"
    card_col = f"published card ({CARD['n_units']:,} slices, {CARD['n_pairs']} pairs)"
    rows = [
        ["units with |t| > 3", CARD["t3"], _count(n3, n_units)],
        ["… ratio to null p99 (|t| > 3)", CARD["t3_ratio"], _ratio(r3)],
        ["… null p99 of that count", CARD["t3_p99"], _f(p3, 1)],
        ["units with |t| > 5", CARD["t5"], _count(n5, n_units)],
        ["… ratio to null p99 (|t| > 5)", CARD["t5_ratio"], _ratio(r5)],
        ["… null p99 of that count", CARD["t5_p99"], _f(p5, 1)],
        [f"units with |d| > {d_thr:g} (large)", CARD["d08"], _count(n_d, n_units)],
        ["split-half r, median [IQR]", CARD["split"], split_txt],
        ["max |t|", CARD["max_t"], f"{_f(at[imax])} ({res.units[imax]})"],
    ]
    fw = int(np.count_nonzero(nl.significant))
    fwer_t = _fwer_threshold(nl)
    if fwer_t is None:
        fw_txt = _count(fw, n_units) + f" (no unit can reach p ≤ {nl.alpha:g} with {nl.n_perm:,} sign vectors)"
    else:
        fw_txt = _count(fw, n_units) + f", i.e. |t| > {fwer_t:.2f}"
    n_q = int(np.count_nonzero(u.q <= res.config.alpha))
    beyond = [
        [f"FWER-significant units (tmax null, α = {nl.alpha:g})", "not reported", fw_txt],
        [f"BH q ≤ {res.config.alpha:g}", "not reported", _count(n_q, n_units)],
    ]
    for name, dr in res.directs.items():
        if name not in res.selective:
            continue
        cname = dr.minus
        c, d = res.stats[cname], res.direct_stats[name]
        cat = np.abs(c.unit.t)
        what = {"paraphrase": "A vs a paraphrase of A", "vocabulary": "A vs the lit photograph in B's words"}.get(
            cname, f"A vs the {cname} control prompt")
        beyond += [
            [f"{cname} control ({c.n_pairs} pairs, {what}): units with |t| > 3 / > 5", "not reported",
             f"{_count(np.count_nonzero(cat > 3), n_units)} / {_count(np.count_nonzero(cat > 5), n_units)}"],
            [f"{cname} control: FWER-significant units", "not reported", _count(int(c.null.significant.sum()), n_units)],
            [f"direct test {cname} control prompt vs B: FWER-significant units", "not reported",
             _count(int(d.null.significant.sum()), n_units)],
            [f"units selective beyond the {cname} control (`selective_{name}`)", "not reported",
             _count(int(res.selective[name].sum()), n_units)],
        ]
    if res.selective:
        beyond.append(["units selective beyond every control (`selective_beyond_control`)", "not reported",
                       _count(int(res.selective_beyond_control.sum()), n_units)])
    elif not _is_images(res):
        beyond.append(["control sets (direct tests)", "not reported", "none in this run"])
    if res.classification is not None:
        for k, v in res.classification.counts().items():
            beyond.append([f"units of class `{k}` (lighting vs albedo, direct tests)", "not reported",
                           _count(v, n_units)])
    if int(u.degenerate.sum()):
        beyond.append(["zero-variance units (t set to 0)", "—", f"{int(u.degenerate.sum()):,}"])
    out = ["## Headline: the published card beside this run", ""]
    out += _table(["metric", card_col, run_col], rows + [["**beyond the card**", "", ""]] + beyond)
    out += ["", "Ratios are observed count / max(null p99, 1), as the card's. The card's null p99 values are not "
            "published; the rows marked 'implied' are its count divided by its ratio. Counts and percentages are "
            "over all units of the run (all captured steps together); the per-step profile below splits them.",
            ""]
    if res.selective:
        from probe.stats import SELECTIVE_DEFINITION

        out += [f"Definition: {SELECTIVE_DEFINITION}. The direct test is the paired t of (control prompt − albedo "
                "prompt) over the pairs, with the same sign-flip tmax null as the main contrast; a unit that merely "
                "passes the main test and fails the control contrast is not counted (significant here and not there "
                "is no test of a difference).", ""]
    return out


def _block_cells(b, i: int, k3: int) -> list[str]:
    """This run's cells for block i: name, max|t|, count over the |t| threshold / units, median|d|, with CIs."""
    return [b.names[i], f"{b.max_abs_t[i]:.2f} {_ci(b.max_abs_t_ci[i])}",
            f"{int(b.n_abs_t_gt[i, k3])}/{int(b.n_units[i])} {_ci(b.n_abs_t_gt_ci[i, k3], 0)}",
            f"{b.median_abs_d[i]:.2f} {_ci(b.median_abs_d_ci[i])}"]


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
    out += _table(["#", "card block", "card max|t|", f"card |t|>{thr[k3]:g}", "card median|d|",
                   "this run: block", f"max|t| [{ci_pct} CI]", f"|t|>{thr[k3]:g} / units [CI]",
                   "median|d| [CI]"], rows)
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
            cells = [b.names[i], int(b.n_units[i]), f"{b.max_abs_t[i]:.2f} {_ci(b.max_abs_t_ci[i])}"]
            cells += [f"{int(b.n_abs_t_gt[i, k])} {_ci(b.n_abs_t_gt_ci[i, k], 0)}" for k in range(len(thr))]
            cells += [f"{b.median_abs_d[i]:.2f} {_ci(b.median_abs_d_ci[i])}"]
            rows.append(cells)
        out += ["<details><summary>All blocks</summary>", ""]
        out += _table(["block", "units", "max|t| [CI]"] + [f"|t|>{c:g} [CI]" for c in thr] + ["median|d| [CI]"],
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
    out += _table(["card block", "card max|t|", f"card |t|>{thr[k3]:g}", "card median|d|", "this run: block",
                   "max|t| [CI]", f"|t|>{thr[k3]:g} / units [CI]", "median|d| [CI]"], rows)
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
        f"- `units.csv`: one row per unit, columns {cols}. `t_vs_NAME`, `p_fwer_vs_NAME`: the direct test of control "
        "set NAME (control prompt − albedo prompt, same pair and noise); `selective_vs_NAME`: main and direct test "
        "FWER-significant with the same sign; `direction`: what a positive t means.",
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
            if a in ("--out", "--baseline", "--randomize", "--randomize-seed"):
                skip = True
                continue
            if a.startswith(("--out=", "--baseline=", "--randomize")):
                continue
            keep.append(a)
        rerun = "python -m probe run " + " ".join(keep + ["--randomize", "transformer", "--out", f"{out}-random"])
    else:
        rerun = f"python -m probe run <the options of this run> --randomize transformer --out {out}-random"
    return [
        "**The card's statistics do not tell a trained network from an untrained one, and no random-init run has "
        "been compared with this one.** On klein's architecture with random weights (the tiny model, 25 pairs) the "
        f"card protocol gives {r['card']['pct_abs_t_gt_3']:.1f} % of units at |t| > 3 "
        f"({r['card']['n_abs_t_gt_3']} of {r['card']['n_units']}) and a split-half r of "
        f"{r['card']['split_half_r']:.3f} (the card: 66.5 % and 0.912), the heads protocol "
        f"{r['heads']['pct_abs_t_gt_3']:.1f} % ({r['heads']['n_abs_t_gt_3']} of {r['heads']['n_units']}) and "
        f"{r['heads']['split_half_r']:.3f} (measured with "
        f"`{r['card']['command']}` and `{r['heads']['command']}`): any network's units move when its prompt changes. "
        f"Run the architecture-matched control and compare: `{rerun}`, then `python -m probe compare {out} "
        f"{out}-random --out {out}-compare` (or add `--baseline {out}-random` to `probe stats` to put the comparison "
        "in this report).", ""]


def _comparison_section(comparison: dict) -> tuple[list[str], list[str]]:
    """(first lines, section) for a run compared with a random-init baseline (`--baseline`)."""
    runs = comparison["runs"]
    c = comparison["comparisons"][0] if comparison["comparisons"] else None
    from probe.compare import test_sentence

    verdict = ("with S = mean over units of (|t| here − |t| in the control), "
               + test_sentence((c or {}).get("test") or {}, "control", "this run"))
    first = [f"**Compared with the random-init control {runs[1]['label']}:** {verdict}.", ""]
    rows = [[k, *(r[k] if not isinstance(r[k], float) else f"{r[k]:.3f}" for r in runs)]
            for k in ("n_abs_t_gt_3", "pct_abs_t_gt_3", "n_abs_t_gt_5", "n_fwer_significant", "split_half_r_median",
                      "max_abs_t")]
    sec = ["## Against the random-init control", ""]
    sec += _table(["", f"this run ({runs[0]['label']})", f"control ({runs[1]['label']})"], rows)
    sec += ["", f"Test: {verdict}. Units are not independent (they share the pairs), so the test resamples pairs and "
            "recomputes every unit's t in both runs; see `python -m probe compare` for the per-block table and "
            "figure.", ""]
    return first, sec


def write_report(out: Path, caps, res, summary: dict, config: dict, comparison: dict | None = None) -> Path:
    """Write OUT/report.md and OUT/figures/*.png for one analysed run; returns the report's path.

    `comparison`: the `probe.compare.compare_runs` result of this run against a random-init baseline;
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

    images = _is_images(res)
    if images:
        from probe.image_report import contrast_figure

        add("The three contrasts on one scene of this run", "contrasts.png", contrast_figure,
            caps.meta.get("image_design") or {},
            skip_note="Not drawn: the render folder is not readable from here (or has no scene with two lightings "
                      "and a colour variant).")
    by = "t by block and head" if layout.kind != "card" else "t by block and slice"
    add(f"{by}: {res.primary}" if images else by, "t_heatmap.png", _heatmap, layout, t, res)
    if images:
        for name in ("lighting", "albedo"):
            if name in res.contrasts and name != res.primary:
                add(f"{by}: {name}", f"t_heatmap_{name}.png", _heatmap, layout,
                    np.asarray(res.stats[name].unit.t, dtype=np.float64), res, name)
    add("Observed counts against the sign-flip null", "null_counts.png", _null_figure, res)
    add("Split-half consistency", "split_half.png", _split_figure, res,
        skip_note=f"Not drawn: split-half needs at least 4 pairs (this run has {res.main.n_pairs}).")
    if images:
        from probe.image_report import class_scatter

        add("|t| lighting against |t| albedo, by class", "class_scatter.png", class_scatter, res,
            skip_note="Not drawn: the classes need both the lighting and the albedo contrast.")
    elif res.selective:
        add("Main contrast vs the control sets (direct tests)", "control.png", _control_figure, res)
    else:
        figures.append(("Main contrast vs the control sets (direct tests)", None,
                        "Not drawn: this run has no control set (run with `--control vocabulary` or `--control "
                        "paraphrase` to test each unit directly against a prompt that shares B's wording or rewords "
                        "A)."))
    per_step = _per_step(layout, res) if layout.has_steps else []
    if len(per_step) >= 2:
        add("Per-timestep profile", "step_profile.png", _step_figure, per_step, res)
    else:
        figures.append(("Per-timestep profile", None,
                        "Not drawn: one captured step only." if per_step else
                        "Not drawn: the unit names carry no step."))
    for stale in FIGURE_NAMES + IMAGE_FIGURE_NAMES:   # a rerun must not leave an earlier run's figures beside it
        if stale not in written and (fig_dir / stale).exists():
            (fig_dir / stale).unlink()

    randomize = (_get(config, "model", "randomize", "mode", default="none") or "none")
    title = (f"# ray-plantain probe on images: lighting and albedo in rendered pixels ({protocol} protocol)" if images
             else f"# ray-plantain probe: rendered photograph vs albedo ({protocol} protocol)")
    if randomize != "none":
        lines = [RANDOMIZED_LINE.format(mode=randomize, seed=_get(config, "model", "randomize", "seed")), "", title, "",
                 "This run is the architecture-matched random-init control: its numbers are what the protocol gives "
                 "without training, to be compared with a trained run (`python -m probe compare TRAINED THIS`).", ""]
    elif random_weights:
        lines = [RANDOM_WEIGHTS_LINE, "", title, "",
                 "The model has random weights: every number and figure below only shows that the pipeline "
                 "runs end to end.", ""]
    else:
        lines = [title, ""]
    sec_cmp: list[str] = []
    if comparison is not None:
        first, sec_cmp = _comparison_section(comparison)
        lines += first
    elif randomize == "none":
        lines += _untrained_note(config, out)
    label, pos, neg = _signs(res)
    if images:
        from probe import image_report

        design = caps.meta.get("image_design") or {}
        lines += image_report.intro(res, summary, design)
        lines += image_report.contrast_section(res, design)
        lines += image_report.classes_section(res)
        lines += [f"The card's headline below is set beside this run's top-level contrast ({res.primary}, t = "
                  f"{label}): the card compared two texts, this run a rendered image with its albedo image.", ""]
    else:
        lines += ["Does FLUX.2 klein separate a description of a lit, rendered photograph (A) from a request for the "
                  "lighting-free albedo of the same scene (B)? Each unit gets a paired test over scene pairs, a "
                  "sign-flip null, split-half consistency and, per control set, a direct paired test of the control "
                  f"prompt against the albedo prompt. Sign: t = {label} (t > 0: larger for {pos}).", ""]
    lines += _headline(res, protocol, random_weights)
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
                row += [f"{r['fwer']:,}", _f(r["max_abs_t"])]
                if res.control is not None:
                    row += [f"{r['control_gt_3']:,}", f"{r['control_fwer']:,}", _f(r["control_max_abs_t"])]
                if res.selective:
                    row += [f"{r['selective']:,}"]
                rows.append(row)
            lines += _table(hdr, rows) + [""]
    if images:
        from probe.image_report import files_section

        lines += files_section(res)
    else:
        lines += _files_section(res)
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path
