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
           "FIGURE_NAMES"]

RANDOM_WEIGHTS_LINE = "**RANDOM WEIGHTS (--model tiny): a dry run; nothing in this report is a finding.**"

# The published card (huggingface.co/phanerozoic/ray-plantain, README c5e54f5), copied verbatim:
# 16,320 16-channel slices, 25 pairs, one inference step, guidance 1.0, 1,000 sign-flip permutations.
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
MAX_HEATMAP_PANELS = 8        # more steps than this: an evenly spread subset, named in the caption
MAX_SCATTER_POINTS = 40_000   # beyond this a fixed random subset is drawn (all units still count)
MAX_BLOCK_TABLE_ROWS = 200    # the full per-block table; longer ones stay in summary.json only
_DPI = 100

_UNIT_RE = re.compile(r"^(?:s(?P<step>\d+)/)?(?P<site>[^/]+)/(?:h(?P<head>\d+)|c(?P<c0>\d+)-(?P<c1>\d+))$")
_SITE_RE = re.compile(r"^(?P<kind>double|single)\.(?P<block>\d+)(?:\.(?P<stream>img|txt))?$")


# ------------------------------------------------------------------------------------- unit names

@dataclass(frozen=True, eq=False)
class UnitLayout:
    """Where each unit sits in the heatmap. kind: 'heads' (`s12/double.3.img/h07`), 'card'
    (`s00/single.3/c0016-0031`) or 'other' (any other names: rows are the unit blocks)."""
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
    return (0 if m["kind"] == "double" else 1, int(m["block"]), {None: 0, "img": 0, "txt": 1}[m["stream"]], "")


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
            widths = np.array([int(m["c1"]) - int(m["c0"]) + 1 for m in matches], dtype=np.int64)
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


def _heatmap(path: Path, layout: UnitLayout, t: np.ndarray) -> str:
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
        ax.set_xlabel({"heads": "head", "card": f"slice ({layout.slice_width} channels)"}.get(layout.kind,
                                                                                              "unit in block"),
                      fontsize=7)
    if im is not None:
        cb = fig.colorbar(im, ax=[a for a in axes if a.get_visible()], shrink=0.8)
        cb.set_label("paired t (A photograph − B albedo)", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    _save(fig, path)
    note = "" if shown == steps else f" (steps shown: {', '.join(map(str, shown))} of {len(steps)} captured)"
    if layout.kind == "card":
        return ("Paired t of every 16-channel slice: rows are blocks (double blocks' image stream, then single "
                "blocks), columns are slice indices; double rows end at their last slice and the grey remainder "
                "is padding; in single blocks the first quarter of slices are attention heads, the rest MLP "
                "channels; red means higher for the photograph prompt A, blue higher for the albedo prompt B"
                + note + ".")
    if layout.kind == "heads":
        return ("Paired t of every head, one panel per captured step: rows are capture sites in model order "
                "(double.i.img / double.i.txt are a joint block's image and text streams, single.i a single "
                "block), columns are heads; red means higher for the photograph prompt A, blue higher for the "
                f"albedo prompt B, colour saturates at |t| = {vmax:.1f}" + note + ".")
    return ("Paired t of every unit: rows are unit blocks, columns the unit's position in its block; red means "
            "higher for prompt A, blue higher for prompt B" + note + ".")


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
    m, c = res.main, res.control
    tm, tc = np.abs(m.unit.t), np.abs(c.unit.t)
    sel = res.selective_beyond_control
    sig = m.null.significant
    fig = _figure(8.4, 3.7)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 1])
    rng = np.random.default_rng(0)
    groups = [(~sig, "0.6", "other units"), (sig & ~sel, "C1", "FWER-significant (main), not beyond control"),
              (sel, "C3", "selective beyond control")]
    for mask, color, label in groups:
        idx = np.flatnonzero(mask)
        if idx.size > MAX_SCATTER_POINTS:
            idx = np.sort(rng.choice(idx, MAX_SCATTER_POINTS, replace=False))
        ax.scatter(tm[idx], tc[idx], s=3 if idx.size > 2000 else 8, alpha=0.5, color=color, linewidths=0,
                   label=f"{label} ({int(mask.sum()):,})")
    lim = float(max(np.max(tm), np.max(tc), 3.5)) * 1.05
    ax.plot([0, lim], [0, lim], color="0.4", lw=0.8, ls="--")
    ax.axvline(3, color="0.3", lw=0.6, ls=":")
    ax.axhline(3, color="0.3", lw=0.6, ls=":")
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel(f"|t| main: photograph vs albedo ({m.n_pairs} pairs)", fontsize=8)
    ax.set_ylabel(f"|t| control: A vs paraphrase ({c.n_pairs} pairs)", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    ax.tick_params(labelsize=7)
    labels = [f"|t|>{th:g}" for th in m.null.thresholds] + ["FWER"]
    main_counts = list(m.null.observed) + [int(sig.sum())]
    ctrl_counts = list(c.null.observed) + [int(c.null.significant.sum())]
    xs = np.arange(len(labels))
    ax2.bar(xs - 0.2, main_counts, 0.4, color="C0", label="main (A vs B)")
    ax2.bar(xs + 0.2, ctrl_counts, 0.4, color="C1", label="control (A vs paraphrase)")
    for x_, v in zip(xs - 0.2, main_counts):
        ax2.annotate(f"{int(v):,}", (x_, v), ha="center", va="bottom", fontsize=6)
    for x_, v in zip(xs + 0.2, ctrl_counts):
        ax2.annotate(f"{int(v):,}", (x_, v), ha="center", va="bottom", fontsize=6)
    ax2.set_xticks(xs)
    ax2.set_xticklabels(labels, fontsize=7)
    ax2.set_ylabel("units", fontsize=8)
    ax2.legend(fontsize=6)
    ax2.tick_params(labelsize=7)
    _save(fig, path)
    return ("Left: each dot is a unit, |t| of the photograph-vs-albedo contrast (x) against |t| of the lexical "
            "control, A against a lighting-neutral paraphrase of A (y); units below the diagonal respond more "
            "to the lighting change than to rewording, red ones pass the 'selective beyond control' test. "
            "Right: how many units pass each criterion in either contrast; a control count near the main count "
            "means most of the main count is any-prompt-change sensitivity.")


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
        rows.append(row)
    return rows


def _step_figure(path: Path, per_step: list[dict], res) -> str:
    steps = [r["step"] for r in per_step]
    fig = _figure(8.0, 3.2)
    ax, ax2 = fig.subplots(1, 2)
    for j, c in enumerate(res.config.thresholds):
        ax.plot(steps, [r[f"gt_{c:g}"] for r in per_step], marker="o", ms=3, color=f"C{j}", label=f"|t| > {c:g}")
    ax.plot(steps, [r["fwer"] for r in per_step], marker="s", ms=3, color="C3", label="FWER-significant")
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
    return ("For each captured step: how many units pass |t| thresholds and the family-wise test (left) and "
            "the largest |t| (right); solid lines are the photograph-vs-albedo contrast, dashed the lexical "
            "control, so a step where the two lines meet carries no lighting-specific signal.")


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
    control = (f"{caps.control_a.shape[0]} pairs: A against a lighting-neutral paraphrase of A (lexical control)"
               if caps.has_control else "none")
    sources = config.get("prompts") or {}
    rows = [
        ["model", f"{model.get('model', 'not recorded')} (source {model.get('source', '?')}, revision "
                  f"{model.get('revision') or 'default'}, {model.get('dtype', '?')} on {model.get('device', '?')})"],
        ["protocol", protocol],
        ["sampling steps", steps if steps is not None else "not recorded"],
        ["captured steps", ", ".join(map(str, cap_steps)) if cap_steps else "not recorded"],
        ["guidance (CFG scale)", guidance if guidance is not None else "not recorded"],
        ["captured forward", forward or "not recorded"],
        ["resolution", f"{cap['height']}×{cap['width']}" if "height" in cap and "width" in cap else "not recorded"],
        ["seed (same for A and B)", cap.get("seed", "not recorded")],
        ["reducer", reducer],
        ["token sets", tokens],
        ["real text lengths", len_txt],
        ["pairs", f"{caps.n_pairs} (A rendered photograph vs B albedo of the same scene)"
                  + (f", from {sources['pairs']}" if sources.get("pairs") else "")],
        ["control set", control + (f", from {sources['control']}" if sources.get("control") else "")],
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
    out = ["## What was run", ""] + _table(["", ""], rows) + [""]
    out += ["Sign convention: t > 0 means the unit is larger for A (photograph prompt) than for B (albedo "
            "prompt); every statistic is on the per-pair difference A − B.", ""]
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
                "`s12/double.3.txt/h07`, `s12/single.9/h07` (or `single.9.txt/h07` for text tokens).", ""]
    return out


CARD_VS_HEADS = [
    "## Card units vs heads", "",
    "The card's 16,320 \"heads\" are 16-channel slices of each block's output-projection input: 5 joint blocks × 192 "
    "+ 20 single blocks × 768 = 960 + 15,360 = 16,320, where 192 = 3072 / 16 (a joint block's image-stream attention "
    "output) and 768 = 12,288 / 16 (a single block's fused input: 3072 attention channels + 9,216 MLP channels). So "
    "in single blocks three quarters of the card's units are MLP channels, a real head (128 channels) spans 8 "
    "slices, and the joint blocks' text stream is not counted at all. The card also reduces over the whole sequence "
    "including the text padding (prompts are padded to 512 tokens), at one inference step with guidance 1.0.",
    "",
    "The heads protocol counts real heads instead: per step 5 × 24 image-stream + 5 × 24 text-stream + 20 × 24 "
    "single-block heads = 720 units, padding masked, at several steps of a real sampling run. `--protocol card` "
    "reproduces the card's units exactly, so its numbers can be set beside the card's; counts from the two "
    "protocols are not comparable one to one (different unit sets and totals), percentages and null ratios are "
    "the closest common ground.", "",
]


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
    if res.control is not None:
        c = res.control
        cat = np.abs(c.unit.t)
        beyond += [
            [f"control ({c.n_pairs} pairs): units with |t| > 3 / > 5", "not reported",
             f"{_count(np.count_nonzero(cat > 3), n_units)} / {_count(np.count_nonzero(cat > 5), n_units)}"],
            ["control: FWER-significant units", "not reported", _count(int(c.null.significant.sum()), n_units)],
            ["control: max |t|", "not reported", _f(cat.max())],
            ["units selective beyond the control", "not reported",
             _count(int(res.selective_beyond_control.sum()), n_units)],
        ]
    else:
        beyond.append(["lexical control", "not reported", "no control set in this run"])
    if int(u.degenerate.sum()):
        beyond.append(["zero-variance units (t set to 0)", "—", f"{int(u.degenerate.sum()):,}"])
    out = ["## Headline: the published card beside this run", ""]
    out += _table(["metric", card_col, run_col], rows + [["**beyond the card**", "", ""]] + beyond)
    out += ["", "Ratios are observed count / max(null p99, 1), as the card's. The card's null p99 values are not "
            "published; the rows marked 'implied' are its count divided by its ratio. Counts and percentages are "
            "over all units of the run (all captured steps together); the per-step profile below splits them.",
            ""]
    if res.control is not None:
        from probe.stats import SELECTIVE_DEFINITION

        out += [f"Definition: {SELECTIVE_DEFINITION}.", ""]
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
        "both is the same scene), `units` (unit names, columns of a and b), `pair_ids`; with a control set "
        "`control_a`, `control_b` [control pairs, units] and `control_pair_ids`; `unit_blocks` (block of each "
        "unit). Everything here can be recomputed from it without the model.",
        f"- `units.csv`: one row per unit, columns {cols}.",
        "- `summary.json`: the headline numbers (n_pairs, n_units, n_abs_t_gt_3, n_abs_t_gt_5, null p99s and "
        "ratios, split-half r, max |t|, FWER and BH counts, per-block rows, the control under `control`).",
        "- `config.json`: the resolved capture configuration, model record, prompt files, statistics settings "
        "and library versions.",
        "- `figures/`: the PNGs above.", "",
        "Recompute the statistics and this report from the captures alone (no model, no torch):", "",
        "```", "python -m probe stats --from captures.npz --out DIR", "```", "",
    ]


# -------------------------------------------------------------------------------------------- main

def write_report(out: Path, caps, res, summary: dict, config: dict) -> Path:
    """Write OUT/report.md and OUT/figures/*.png for one analysed run; returns the report's path."""
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

    add("t by block and head" if layout.kind != "card" else "t by block and slice", "t_heatmap.png", _heatmap,
        layout, t)
    add("Observed counts against the sign-flip null", "null_counts.png", _null_figure, res)
    add("Split-half consistency", "split_half.png", _split_figure, res,
        skip_note=f"Not drawn: split-half needs at least 4 pairs (this run has {res.main.n_pairs}).")
    if res.control is not None:
        add("Main contrast vs lexical control", "control.png", _control_figure, res)
    else:
        figures.append(("Main contrast vs lexical control", None,
                        "Not drawn: this run has no control set (run with a control pair file to measure how many "
                        "units any rewording of the prompt moves)."))
    per_step = _per_step(layout, res) if layout.has_steps else []
    if len(per_step) >= 2:
        add("Per-timestep profile", "step_profile.png", _step_figure, per_step, res)
    else:
        figures.append(("Per-timestep profile", None,
                        "Not drawn: one captured step only." if per_step else
                        "Not drawn: the unit names carry no step."))
    for stale in FIGURE_NAMES:   # a rerun must not leave figures of an earlier run beside this report
        if stale not in written and (fig_dir / stale).exists():
            (fig_dir / stale).unlink()

    lines = [RANDOM_WEIGHTS_LINE if random_weights else
             f"# ray-plantain probe: rendered photograph vs albedo ({protocol} protocol)", ""]
    if random_weights:
        lines += [f"# ray-plantain probe: rendered photograph vs albedo ({protocol} protocol)", "",
                  "The model has random weights: every number and figure below only shows that the pipeline "
                  "runs end to end.", ""]
    lines += ["Does FLUX.2 klein separate a description of a lit, rendered photograph (A) from a request for the "
              "lighting-free albedo of the same scene (B)? Each unit gets a paired test over scene pairs, a "
              "sign-flip null, split-half consistency and, where present, a lexical control.", ""]
    lines += _headline(res, protocol, random_weights)
    lines += _blocks_section(res)
    lines += _what_was_run(caps, res, config, layout, protocol)
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
            rows = []
            for r in per_step:
                row = [r["step"], f"{r['units']:,}"] + [f"{r[f'gt_{c:g}']:,}" for c in res.config.thresholds]
                row += [f"{r['fwer']:,}", _f(r["max_abs_t"])]
                if res.control is not None:
                    row += [f"{r['control_gt_3']:,}", f"{r['control_fwer']:,}", _f(r["control_max_abs_t"])]
                rows.append(row)
            lines += _table(hdr, rows) + [""]
    lines += _files_section(res)
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path
