"""compare.md, compare.json and compare_blocks.png of `python -m probe compare` (matplotlib Agg, no torch),
and the one line that states a comparison test (the run report's baseline section uses it too).

    from probe.report.compare import write_compare
    write_compare(probe.stats.compare.compare_runs([...]), Path("runs/compare"))
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from probe.io.jsonio import write_json
from render.imageio import atomic_path

__all__ = ["FIGURE", "test_sentence", "render_markdown", "write_compare"]

FIGURE = "compare_blocks.png"


def test_sentence(t: dict, other: str = "run 2", first: str = "run 1") -> str:
    """One line stating a `bootstrap_test` result (or why there is none)."""
    if not t.get("available"):
        return f"not run: {t.get('why', 'no shared units')}"
    return (f"S = {t['S']:.3f}, {100 * t['ci_level']:g}% CI [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}], "
            f"p({first} > {other}) = {t['p_run1_greater']:.4g} (two-sided {t['p_two_sided']:.4g}; "
            f"{t['n_boot']:,} resamples of the pairs, {t['resampling']})")


def _f(x, spec=".2f") -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, spec) if math.isfinite(v) else "n/a"


def _md_table(header, rows) -> list[str]:
    cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    return (["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def _figure(path: Path, res: dict) -> None:
    from matplotlib.figure import Figure

    blocks = res["blocks"]
    runs = res["runs"]
    nb, nr = len(blocks), len(runs)
    fig = Figure(figsize=(min(16.0, max(6.0, 0.22 * nb * nr + 2.0)), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / nr
    x = np.arange(nb)
    for k, run in enumerate(runs):
        vals = [(b[f"run{k + 1}"] or {}).get("max_abs_t", np.nan) for b in blocks]
        ax.bar(x - 0.4 + width * (k + 0.5), vals, width, label=run["label"], color=f"C{k}")
    ax.axhline(3, color="0.4", ls=":", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([b["block"] for b in blocks], rotation=90, fontsize=6 if nb > 30 else 7)
    ax.set_ylabel("max |t| in block", fontsize=8)
    ax.set_title("per-block max |t|, one bar per run", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def render_markdown(res: dict) -> str:
    runs = res["runs"]
    first = ("**RANDOM WEIGHTS: every run compared here has random weights; nothing in this comparison is a "
             "finding.**" if res["all_random_weights"] else
             "# Probe runs side by side" + (" (with a random-init control)" if res["any_random_init_control"] else ""))
    lines = [first, ""]
    if res["all_random_weights"]:
        lines += ["# Probe runs side by side", ""]
    lines += ["Sign convention: each run's t is stated in its `direction` row; the comparison uses |t|, so it does "
              "not depend on the sign.", ""]
    hdr = ["", *[f"run {k + 1}: {r['label']}" for k, r in enumerate(runs)]]
    rows = [
        ["folder", *[r["path"] for r in runs]],
        ["protocol", *[r["protocol"] or "?" for r in runs]],
        ["stimuli", *[r["stimuli"] + ((f" (contrast `{r.get('contrast') or 'render_vs_albedo'}`, pairs = base scenes)")
                                      if r["stimuli"] == "images" else " (A − B = photograph prompt − albedo prompt)")
                      for r in runs]],
        ["t direction", *[r["direction"] for r in runs]],
        ["weights", *["random" + (f" (--randomize {r['randomize']})" if r["randomize"] != "none" else "")
                      if r["random_weights"] else "trained" for r in runs]],
        ["pairs / units", *[f"{r['n_pairs']} / {r['n_units']:,}" for r in runs]],
        ["units with |t| > 3", *[f"{r['n_abs_t_gt_3']:,} ({r['pct_abs_t_gt_3']:.1f}%)" for r in runs]],
        ["units with |t| > 5", *[f"{r['n_abs_t_gt_5']:,} ({r['pct_abs_t_gt_5']:.1f}%)" for r in runs]],
        ["FWER-significant units", *[f"{r['n_fwer_significant']:,}" for r in runs]],
        ["split-half r, median [IQR]", *[f"{_f(r['split_half_r_median'], '.3f')} [{_f(r['split_half_r_q25'])}, "
                                         f"{_f(r['split_half_r_q75'])}]" for r in runs]],
        ["max |t|", *[f"{_f(r['max_abs_t'])} ({r['max_abs_t_unit']})" for r in runs]],
        ["selective beyond every control", *[str(r["n_selective_beyond_control"])
                                             if r["n_selective_beyond_control"] is not None else "n/a"
                                             for r in runs]],
    ]
    lines += ["## Runs", ""] + _md_table(hdr, rows) + [""]
    for r in runs:
        for note in r["notes"]:
            lines.append(f"- {r['label']}: {note}")
    if any(r["notes"] for r in runs):
        lines.append("")
    if res["comparisons"]:
        lines += ["## Unit by unit: is run 1 larger?", "",
                  f"On the {res['n_units_compared']:,} units the runs share, per unit delta = |t| in run 1 − |t| in "
                  "run k, and S = the mean of delta over units.", ""]
        trows = []
        for c in res["comparisons"]:
            test = test_sentence(c["test"], f"run {c['run']}")
            trows.append([f"run 1 vs run {c['run']} ({c['label']})", f"{c['mean_delta_abs_t']:.3f}",
                          f"{c['median_delta_abs_t']:.3f}", f"{100 * c['share_of_units_larger_in_run1']:.1f}%", test])
        lines += _md_table(["comparison", "mean delta", "median delta", "units larger in run 1",
                            "bootstrap test over pairs"], trows) + [""]
        arows = []
        for c in res["comparisons"]:
            ag, sb = c.get("agreement") or {}, c.get("significant_in_both") or {}
            rho = (f"{ag['rho']:.3f} [{_f(ag['ci'][0], '.3f')}, {_f(ag['ci'][1], '.3f')}]" if "rho" in ag
                   else f"not computed: {ag.get('why', 'n/a')}")
            arows.append([f"run 1 vs run {c['run']} ({c['label']})", rho,
                          f"{sb.get('n_fwer_run1', 0):,} / {sb.get('n_fwer_this_run', 0):,}",
                          f"{sb.get('n_fwer_both', 0):,} ({sb.get('n_fwer_both_same_sign', 0):,} with the same sign)"])
        lines += ["## Unit by unit: do the same units move the same way?", "",
                  "Spearman rho between the two runs' signed t over the shared units, with a 95 % percentile "
                  "interval from the same bootstrap over pairs (every unit's t recomputed in both runs per resample)"
                  ": how alike the unit profiles are, sign included" + (f", for the `{res['contrast']}` contrast"
                                                                        if res.get("contrast") else "")
                  + ". It describes agreement beyond the pairs' sampling noise; it is not a test of what training "
                  "did (random weights give correlated profiles too: set a random-init run beside them).", ""]
        lines += _md_table(["comparison", "Spearman rho of signed t [95% CI]", "FWER-significant: run 1 / run k",
                            "significant in both"], arows) + [""]
        lines += ["Why a bootstrap over pairs: every unit's t comes from the same pairs, and units of a block move "
                  "together, so the units are not independent observations; a Wilcoxon or t test over units would "
                  "claim a difference far too often. The pairs are the independent units: each resample draws the "
                  "pairs with replacement, recomputes every unit's t in both runs and recomputes S (paired when the "
                  "runs hold the same pair ids). p is the basic-bootstrap p, (1 + #{S* − S ≥ S}) / (1 + B); the "
                  "interval is the basic-bootstrap interval. The share of units larger in run 1 is a description, "
                  "not a test.", ""]
    else:
        lines += ["No unit-by-unit comparison (`--units any`): the runs' unit sets differ.", ""]
    blocks = res["blocks"]
    brows = []
    for b in blocks[:200]:
        cells = [b["block"]]
        for k in range(len(runs)):
            v = b[f"run{k + 1}"]
            cells.append(f"{v['max_abs_t']:.2f} / {v['n_abs_t_gt_3']}/{v['n_units']}" if v else "—")
        brows.append(cells)
    lines += ["## Per block: max |t| / units with |t| > 3", ""]
    lines += _md_table(["block", *[f"run {k + 1}" for k in range(len(runs))]], brows) + [""]
    if len(blocks) > 200:
        lines += [f"{len(blocks)} blocks: the full table is in compare.json.", ""]
    lines += [f"![per-block max |t|]({FIGURE})", "",
              "*Figure.* For each block, the largest |t| of any of its units in each run (bars side by side); the "
              "dotted line is |t| = 3. A trained model whose blocks stand no higher than the random-init control's "
              "has shown nothing the architecture alone does not give.", ""]
    return "\n".join(lines)


def write_compare(res: dict, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", res)
    _figure(out / FIGURE, res)
    with atomic_path(out / "compare.md") as tmp:
        tmp.write_text(render_markdown(res), encoding="utf-8")
    return [out / "compare.md", out / "compare.json", out / FIGURE]
