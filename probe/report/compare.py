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
    """One line stating a within-network test (`probe.stats.compare.within_network_test`; or why there is none)."""
    if not t.get("available"):
        return f"not run: {t.get('why', 'no shared units')}"
    if "se" not in t:            # a result written before the test changed: the basic bootstrap
        how = f"basic bootstrap, {t['n_boot']:,} resamples of the pairs"
    elif "jackknife" in t.get("ci_kind", ""):
        how = "SE from the jackknife over each run's pairs"
    else:
        how = f"SE from {t['n_boot']:,} resamples of the pairs"
    return (f"S = {t['S']:.3f}, {100 * t['ci_level']:g}% CI [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}], "
            f"p({first} > {other}) = {t['p_run1_greater']:.4g} (two-sided {t['p_two_sided']:.4g}; {how}, "
            f"{t['resampling']}; within-network noise only)")


def stimuli_words(r: dict) -> str:
    """What a run's A − B is, read from its own records (compare.json's run row)."""
    if r["stimuli"] != "images":
        return f"text (A − B = {r['direction']})"
    pairs = ("samples, CLUSTERED: a scene's samples are not independent" if r.get("pairs_over") == "samples"
             else "base scenes")
    contrast = r.get("contrast") or r.get("primary_contrast") or "render_vs_albedo"   # --contrast, else the primary
    return (f"images (contrast `{contrast}`: A − B = {r['direction']}, "
            f"pairs = {pairs})")


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


def _range(row: dict, spec: str) -> str:
    if row.get("rank_p") is None:
        return "n/a"
    return (f"{_f(row['population_median'], spec)} [{_f(row['population_min'], spec)}, "
            f"{_f(row['population_max'], spec)}]")


def _rank(row: dict) -> str:
    if row.get("rank_p") is None:
        return f"not ranked ({row.get('why', 'n/a')})"
    mark = " *" if row["rank_p"] <= 0.05 + 1e-12 else ""
    return f"{row['rank_p']:.3g}{mark}"


def population_section(pop: dict) -> list[str]:
    """compare.md's section for `--population`: each run's headline statistics ranked among K untrained networks."""
    k = pop["K"]
    seeds = pop["seeds"]
    lines = ["## Against K untrained networks: did training do anything?", "",
             f"Each statistic of the run is ranked among **K = {k} networks of the same architecture with fresh random "
             f"{'transformer ' if pop.get('randomize') == 'transformer' else ''}weights** (seeds "
             f"{seeds[0]}..{seeds[-1]}, `{pop['folder']}`), each measured with the run's own design (checked equal: "
             "stimuli, protocol, contrasts, "
             "pair ids and count, seeds per pair, noise, steps and every capture setting, the statistics settings "
             "that move counts, the unit set; `design_fields_checked` in compare.json). "
             f"rank p = (1 + number of untrained networks at least as large) / (1 + K): one-sided, exact when the "
             f"run's network is one more untrained draw; **its floor is 1 / (1 + K) = {pop['floor']:.3g}**"
             + ("" if pop["alpha_reachable"] else " (0.05 needs K >= 19)")
             + ". The networks are the units here, so unlike the within-network test this asks what training did. "
             "Rank p's of different statistics are not corrected for their number; * marks rank p <= 0.05.", ""]
    for r in pop["runs"]:
        rows = [x for x in r["statistics"] if x["level"] == "run"]
        ranked = [x for x in rows if x.get("rank_p") is not None]
        lines += [f"### run {r['run']}: {r['label']}", ""]
        trows = []
        for x in ranked:
            spec = ".3f" if x["statistic"] in ("max_abs_t", "split_half_r_median") else ".0f"
            sd = x.get("population_sd")
            trows.append([x["description"], _f(x["observed"], spec), _range(x, spec),
                          f"{_f(x['population_mean'], '.2f')} ± {_f(sd, '.2f')}", _rank(x)])
        lines += _md_table(["statistic", "run", f"untrained (K = {k}): median [min, max]", "mean ± sd",
                            "rank p"], trows) + [""]
        skipped = [x["key"] for x in rows if x.get("rank_p") is None]
        if skipped:
            lines += [f"Not ranked (no value in the run or in some networks): {', '.join(skipped)}.", ""]
        if r.get("unchecked_design_fields"):
            lines += [f"Not recorded by this run, so not checked against the population: "
                      f"{', '.join(r['unchecked_design_fields'])}.", ""]
        blocks = [x for x in r["statistics"] if x["level"] == "block" and x["statistic"] in ("max_abs_t",
                                                                                               "n_fwer_significant")]
        primary = blocks[0]["contrast"] if blocks else None
        by_block: dict = {}
        for x in blocks:
            if x["contrast"] == primary:
                by_block.setdefault(x["block"], {})[x["statistic"]] = x
        if by_block:
            brows = []
            for b, d in list(by_block.items())[:200]:
                mx, fw = d.get("max_abs_t", {}), d.get("n_fwer_significant", {})
                brows.append([b, _f(mx.get("observed"), ".2f"), _range(mx, ".2f"), _rank(mx),
                              _f(fw.get("observed"), ".0f"), _range(fw, ".0f"), _rank(fw)])
            lines += [f"Per block, contrast `{primary}` (every contrast's and every class's per-block rows are in "
                      "compare.json):", ""]
            lines += _md_table(["block", "max |t|", "untrained median [min, max]", "rank p", "FWER-significant",
                                "untrained median [min, max]", "rank p"], brows) + [""]
    cal = pop["calibration"]
    rate = cal.get("rate_p_le_alpha")
    lines += [f"Calibration of this population (measured, not assumed): each of its {cal['n_members']} networks "
              f"ranked against the other {cal['each_against']} on the {cal['n_statistics']} statistics all of them "
              f"have gives rank p <= {cal['alpha']:g} in "
              + (f"{100 * rate:.1f} %" if rate is not None else "n/a")
              + f" of cases (without ties exactly floor({cal['alpha']:g} K) / K = "
              f"{cal['expected_rate_without_ties']:.3g}"
              f"; {cal['n_statistics_tie_free']} statistics are tie-free"
              + (", and their leave-one-out rank p's are uniform on {1/K, ..., 1}" if cal["uniform_on_grid"] else
                 ", but their leave-one-out rank p's are NOT uniform: check the population")
              + (f"; with {cal['n_members']} networks each one's floor is 1 / {cal['n_members']} > 0.05" if not
                 cal["alpha_reachable"] else "") + ").", ""]
    for note in pop.get("notes") or []:
        lines.append(f"- {note}")
    if pop.get("notes"):
        lines.append("")
    return lines


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
    pop = res.get("population")
    if pop and pop["runs"]:
        rows = [r for r in pop["runs"][0]["statistics"] if r["level"] == "block" and r["statistic"] == "max_abs_t"
                and r.get("rank_p") is not None]
        primary = rows[0]["contrast"] if rows else None
        where = {b["block"]: i for i, b in enumerate(blocks)}
        rows = [r for r in rows if r["contrast"] == primary and r["block"] in where]
        if rows:
            xs = np.array([where[r["block"]] for r in rows], dtype=float) + 0.45
            lo = np.array([r["population_min"] for r in rows])
            hi = np.array([r["population_max"] for r in rows])
            med = np.array([r["population_median"] for r in rows])
            ax.vlines(xs, lo, hi, color="0.3", lw=2.5, alpha=0.5,
                      label=f"{pop['K']} untrained networks: range, median")
            ax.plot(xs, med, "_", color="k", ms=7)
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
        ["stimuli", *[stimuli_words(r) for r in runs]],
        ["t direction", *[r["direction"] for r in runs]],
        ["pairs over", *[(r.get("pairs_over") or "?") + (" (CLUSTERED)" if r.get("clustered") else "") for r in runs]],
        ["seeds per pair", *[str(r.get("seeds_per_pair") or "not recorded") for r in runs]],
        ["steps (captured)", *[f"{r.get('steps') or '?'} ({', '.join(map(str, r.get('capture_steps') or [])) or '?'})"
                               for r in runs]],
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
    for k, r in enumerate(runs, start=1):
        if r.get("clustered"):
            lines += [f"**CLUSTERED (run {k}: --pairs-over samples):** every sample-level pair counts as a pair, but "
                      "samples of one scene (its lightings and colour variants) are not independent, so this run's "
                      "p-values, FWER counts and the tests below treat dependent pairs as independent.", ""]
    for r in runs:
        for note in r["notes"]:
            lines.append(f"- {r['label']}: {note}")
    if any(r["notes"] for r in runs):
        lines.append("")
    if res["comparisons"]:
        lines += ["## Within-network noise only: is run 1's mean |t| larger than run k's?", "",
                  "**This test resamples the pairs of each run, never the networks: it says whether run 1's units "
                  "separate A from B more than run k's beyond the sampling noise of these pairs, and nothing about "
                  "training.** Two untrained networks of one architecture differ here far more often than 5 % "
                  "(benchmarks/RESULTS.md); to ask what training did, rank a run among untrained networks "
                  "(`python -m probe compare RUN --population FOLDER`).", "",
                  f"On the {res['n_units_compared']:,} units the runs share, per unit delta = |t| in run 1 − |t| in "
                  "run k, and S = the mean of delta over units.", ""]
        trows = []
        for c in res["comparisons"]:
            test = test_sentence(c["test"], f"run {c['run']}")
            trows.append([f"run 1 vs run {c['run']} ({c['label']})", f"{c['mean_delta_abs_t']:.3f}",
                          f"{c['median_delta_abs_t']:.3f}", f"{100 * c['share_of_units_larger_in_run1']:.1f}%", test])
        lines += _md_table(["comparison", "mean delta", "median delta", "units larger in run 1",
                            "within-network test (pairs resampled)"], trows) + [""]
        if res.get("unequal_pairs"):
            lines += ["**No mean-|t| test (--allow-unequal-pairs):** the runs differ in what sets the size of |t| "
                      f"whatever the networks do ({'; '.join(res['unequal_pairs'])}); only the scale-free parts "
                      "below are computed.", ""]
        lines += ["How: every unit's t comes from the same pairs, and units of a block move together, so the units "
                  "are not independent observations (a Wilcoxon or t test over units would claim a difference far "
                  "too often); the pairs are. p is one-sided, S / SE against Student's t with n − 1 degrees of "
                  "freedom, and the interval S ± t SE; SE is the spread of S over resamples of the pairs (each "
                  "recomputes every unit's t in both runs, the same resample in both when the runs hold the same "
                  "pair ids) or, for runs with different pairs, the jackknife over each run's pairs. Not the basic "
                  "bootstrap it replaced: resampling raises |t| of null units more than of clear ones, so its "
                  "centring was off whenever the runs mix effect sizes differently (a false 'run 1 > run 2' in "
                  "22-67 % of such simulations). The runs must have the same number of pairs and seeds per pair "
                  "(|t| grows with both). The share of units larger in run 1 is a description, not a test.", ""]
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
                  "did (random weights give correlated profiles too: rank the runs among untrained networks with "
                  "`--population`).", ""]
        lines += _md_table(["comparison", "Spearman rho of signed t [95% CI]", "FWER-significant: run 1 / run k",
                            "significant in both"], arows) + [""]
    elif len(runs) > 1:
        lines += ["No unit-by-unit comparison (`--units any`): the runs' unit sets differ.", ""]
    if res.get("population"):
        lines += population_section(res["population"])
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
              "dotted line is |t| = 3"
              + (f"; the grey bar right of each block is the range over the {res['population']['K']} untrained "
                 "networks of the population, with their median" if res.get("population") else "")
              + ". A trained model whose blocks stand no higher than untrained networks' has shown nothing the "
              "architecture alone does not give.", ""]
    return "\n".join(lines)


def write_compare(res: dict, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", res)
    _figure(out / FIGURE, res)
    with atomic_path(out / "compare.md") as tmp:
        tmp.write_text(render_markdown(res), encoding="utf-8")
    return [out / "compare.md", out / "compare.json", out / FIGURE]
