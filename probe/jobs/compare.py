"""python -m probe compare: finished probe runs side by side, and a test of "run 1 > run k" over units.

    python -m probe compare runs/probe runs/probe-random --out runs/compare
    python -m probe compare runs/card runs/card-random runs/card-seed1 --out runs/compare-card --labels a,b,c

Reads each RUN's summary.json, units.csv, config.json and (for the test) captures.npz; writes
OUT/compare.md, OUT/compare.json and OUT/compare_blocks.png (per-block max |t|, runs as bars). No
model, no torch. Typical use is the architecture-matched random-init control (`probe run
--randomize transformer`): the card's statistics (share of units over |t| > 3, split-half r) come out
nearly as high on random weights, so only a comparison with such a run says whether training did
anything. It serves as well for different seeds, heads vs card runs (`--units any`) and text vs image
probes (`--units shared`).

The test. Per unit, delta_u = |t_u(run 1)| - |t_u(run k)|, and the statistic S = mean over units of
delta_u (> 0: run 1's units separate A from B more). Units are not independent observations: every
unit's t is computed from the same pairs, and units of one block (or of neighbouring steps) move
together, so a test that treats the units as a sample (a Wilcoxon or a t test over 16,320 units)
has a false-positive rate far above its nominal level. The independent units are the pairs. So S is
bootstrapped over pairs: each resample draws the pairs with replacement, recomputes every unit's t
in both runs from the resampled pairs and recomputes S (the same resample in both runs when they
hold the same pair ids, i.e. the same prompts and noise; independent resamples otherwise). The
one-sided p for "run 1 > run k" is the basic-bootstrap p, (1 + #{S* - S >= S}) / (1 + B) (the
centred bootstrap distribution S* - S stands in for the null distribution of S; this also removes
the upward drift of |t| that resampling causes), and the interval is the basic-bootstrap
interval [2 S - q_hi, 2 S - q_lo]. With B resamples the smallest attainable p is 1 / (1 + B).
Calibration (benchmarks/bench_compare.py, 200 simulated run pairs with correlated units): 4 % and 3 %
false positives at alpha 0.05 under weak and strong unit dependence (a Wilcoxon over units: 8 % and
42 %), 81 % power for a shift in 10 % of the units.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Run", "load_run", "compare_runs", "write_compare", "add_compare_arguments", "main_compare",
           "CompareError", "UNIT_MODES"]

UNIT_MODES = ("same", "shared", "any")
FIGURE = "compare_blocks.png"


class CompareError(ValueError):
    """Runs that cannot be compared as asked (missing files, different unit sets): one paragraph."""


@dataclass(frozen=True, eq=False)
class Run:
    path: Path
    label: str
    summary: dict
    config: dict
    units: np.ndarray            # [U] unit names (units.csv order)
    t: np.ndarray                # [U] top-level t
    fwer: np.ndarray             # [U] bool FWER-significant
    blocks: np.ndarray           # [U] block of each unit
    captures: object | None = None   # probe.captures.Captures, when captures.npz is there
    notes: list = field(default_factory=list)

    @property
    def random_weights(self) -> bool:
        return bool(self.summary.get("random_weights") or (self.config.get("model") or {}).get("random_weights"))

    @property
    def randomize(self) -> str:
        return ((self.config.get("model") or {}).get("randomize") or {}).get("mode", "none")


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path.parent} is not a finished probe run: {path.name} is missing ({what}); run "
                           f"`python -m probe run --out {path.parent}` (or `probe stats`) first") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON ({e})") from None


def default_label(summary: dict, config: dict, path: Path) -> str:
    model = config.get("model") or {}
    rnd = (model.get("randomize") or {})
    name = str(model.get("model") or path.name)
    if rnd.get("mode", "none") != "none":
        return f"{path.name}: random-init ({rnd['mode']}, seed {rnd.get('seed')})"
    if model.get("source") == "tiny":
        return f"{path.name}: tiny (random weights)"
    proto = summary.get("protocol") or (config.get("capture") or {}).get("protocol") or "?"
    kind = ", images" if summary.get("stimuli") == "images" else ""
    return f"{path.name}: {name.rsplit('/', 1)[-1]} ({proto}{kind})"


def load_run(path, label: str | None = None) -> Run:
    """Read a finished run folder; CompareError when something needed is missing."""
    from probe.job import read_units_csv

    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run folder not found: {path}")
    summary = _read_json(path / "summary.json", "the run's headline numbers")
    config = _read_json(path / "config.json", "the run's configuration") if (path / "config.json").is_file() else {}
    if not (path / "units.csv").is_file():
        raise CompareError(f"{path} is not a finished probe run: units.csv is missing")
    cols = read_units_csv(path / "units.csv")
    units = np.asarray(cols["unit"]).astype(str)
    t = np.asarray(cols["t"], dtype=np.float64)
    fwer = (np.asarray(cols["fwer_significant"], dtype=np.float64) > 0) if "fwer_significant" in cols else \
        np.zeros(units.size, dtype=bool)
    blocks = np.asarray(cols.get("block", [u.rsplit("/", 1)[0] for u in units])).astype(str)
    caps, notes = None, []
    if (path / "captures.npz").is_file():
        from probe.captures import CapturesError, load_captures

        try:
            caps = load_captures(path / "captures.npz")
        except CapturesError as e:
            notes.append(f"captures.npz unreadable ({e}); no bootstrap test for this run")
        else:
            if set(caps.units.tolist()) != set(units.tolist()):
                notes.append("captures.npz and units.csv list different units; no bootstrap test for this run")
                caps = None
    else:
        notes.append("no captures.npz: the bootstrap test over pairs needs it")
    return Run(path, label or default_label(summary, config, path), summary, config, units, t, fwer, blocks,
               caps, notes)


def _unit_sets(runs: list[Run], mode: str) -> np.ndarray | None:
    """The units compared unit by unit (in run 1's order), per `mode`; None for 'any'."""
    if mode == "any":
        return None
    first = runs[0]
    if mode == "same":
        for r in runs[1:]:
            a, b = set(first.units.tolist()), set(r.units.tolist())
            if a != b:
                only_a, only_b = sorted(a - b), sorted(b - a)
                raise CompareError(
                    f"runs have different unit sets: {first.path} has {len(a):,} units, {r.path} has {len(b):,}, "
                    f"{len(a & b):,} in common (e.g. only in the first: {only_a[:2]}, only in the second: "
                    f"{only_b[:2]}). Units are compared one by one, so compare runs made with the same protocol, "
                    f"capture steps, slice layout and token sets; `--units shared` compares on the common units, "
                    f"`--units any` sets only run-level numbers side by side. Nothing was written.")
        return first.units
    common = set(first.units.tolist())
    for r in runs[1:]:
        common &= set(r.units.tolist())
    if not common:
        raise CompareError("the runs share no unit (different protocols or sites?): `--units shared` needs "
                           "common unit names; `--units any` sets only run-level numbers side by side. "
                           "Nothing was written.")
    return np.array([u for u in first.units if u in common])


def _take(run: Run, units: np.ndarray, values: np.ndarray) -> np.ndarray:
    pos = {u: i for i, u in enumerate(run.units)}
    return values[[pos[u] for u in units]]


def _diff_on(run: Run, units: np.ndarray) -> np.ndarray:
    """[pairs, units] main-contrast differences (A - B) from captures.npz, columns in `units` order."""
    caps = run.captures
    pos = {u: i for i, u in enumerate(caps.units)}
    cols = [pos[u] for u in units]
    return caps.a[:, cols].astype(np.float64) - caps.b[:, cols].astype(np.float64)


def _abs_t(diff: np.ndarray) -> np.ndarray:
    from probe.stats import paired_t

    return np.abs(paired_t(diff, np.zeros_like(diff)).t)


def bootstrap_test(ref: Run, other: Run, units: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   ci: float = 0.95) -> dict:
    """The test of "ref > other": S = mean over units of |t_ref| - |t_other|, bootstrapped over pairs."""
    from probe.stats import resample_weights, resampled_abs_t_mean

    if ref.captures is None or other.captures is None:
        return {"available": False, "why": "needs captures.npz in both runs"}
    d_ref, d_oth = _diff_on(ref, units), _diff_on(other, units)
    s_obs = float(np.mean(_abs_t(d_ref)) - np.mean(_abs_t(d_oth)))
    same_pairs = list(ref.captures.pair_ids) == list(other.captures.pair_ids)
    rng = np.random.default_rng([seed, 17])
    w_ref = resample_weights(d_ref.shape[0], n_boot, rng)
    w_oth = w_ref if same_pairs else resample_weights(d_oth.shape[0], n_boot, rng)
    s_boot = resampled_abs_t_mean(d_ref, w_ref) - resampled_abs_t_mean(d_oth, w_oth)
    lo_q, hi_q = np.percentile(s_boot, [50 * (1 - ci), 100 - 50 * (1 - ci)])
    p_greater = (1 + int(np.count_nonzero(s_boot - s_obs >= s_obs))) / (1 + n_boot)
    p_less = (1 + int(np.count_nonzero(s_boot - s_obs <= s_obs))) / (1 + n_boot)
    return {
        "available": True, "statistic": "S = mean over units of (|t| in run 1 - |t| in this run)",
        "S": s_obs, "ci": [2 * s_obs - float(hi_q), 2 * s_obs - float(lo_q)], "ci_level": ci,
        "ci_kind": "basic bootstrap over pairs", "p_run1_greater": p_greater,
        "p_two_sided": min(1.0, 2 * min(p_greater, p_less)), "n_boot": n_boot, "min_attainable_p": 1 / (1 + n_boot),
        "resampling": ("the same pairs in both runs (same pair ids: paired)" if same_pairs
                       else "pairs of each run resampled independently (different pair ids)"),
        "n_pairs": [int(d_ref.shape[0]), int(d_oth.shape[0])], "seed": seed,
        "bootstrap_mean_S": float(np.mean(s_boot)), "bootstrap_sd_S": float(np.std(s_boot, ddof=1)),
    }


def test_sentence(t: dict, other: str = "run 2", first: str = "run 1") -> str:
    """One line stating a `bootstrap_test` result (or why there is none)."""
    if not t.get("available"):
        return f"not run: {t.get('why', 'no shared units')}"
    return (f"S = {t['S']:.3f}, {100 * t['ci_level']:g}% CI [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}], "
            f"p({first} > {other}) = {t['p_run1_greater']:.4g} (two-sided {t['p_two_sided']:.4g}; "
            f"{t['n_boot']:,} resamples of the pairs, {t['resampling']})")


def _run_row(run: Run) -> dict:
    s = run.summary
    n = int(s.get("n_units") or run.units.size)
    at = np.abs(run.t)
    imax = int(np.argmax(at)) if at.size else -1
    return {
        "path": str(run.path), "label": run.label, "protocol": s.get("protocol"),
        "direction": s.get("direction", "A photograph - B albedo"), "stimuli": s.get("stimuli", "text"),
        "n_pairs": s.get("n_pairs"), "n_units": n,
        "random_weights": run.random_weights, "randomize": run.randomize,
        "model": (run.config.get("model") or {}).get("model"),
        "n_abs_t_gt_3": int(np.count_nonzero(at > 3)), "n_abs_t_gt_5": int(np.count_nonzero(at > 5)),
        "pct_abs_t_gt_3": 100.0 * np.count_nonzero(at > 3) / max(n, 1),
        "pct_abs_t_gt_5": 100.0 * np.count_nonzero(at > 5) / max(n, 1),
        "n_fwer_significant": int(np.count_nonzero(run.fwer)),
        "null_p99_abs_t_gt_3": s.get("null_p99_abs_t_gt_3"), "null_p99_abs_t_gt_5": s.get("null_p99_abs_t_gt_5"),
        "split_half_r_median": s.get("split_half_r_median"), "split_half_r_q25": s.get("split_half_r_q25"),
        "split_half_r_q75": s.get("split_half_r_q75"),
        "max_abs_t": float(at[imax]) if imax >= 0 else None, "max_abs_t_unit": str(run.units[imax]) if imax >= 0 else "",
        "n_selective_beyond_control": s.get("n_selective_beyond_control"),
        "notes": list(run.notes),
    }


def _block_table(runs: list[Run], units: np.ndarray | None) -> list[dict]:
    """Per block (run 1's order, then blocks only later runs have): each run's max |t| and count |t| > 3."""
    order: list[str] = []
    for r in runs:
        for b in dict.fromkeys(r.blocks.tolist()):
            if b not in order:
                order.append(b)
    keep = None if units is None else set(units.tolist())
    rows = []
    for b in order:
        row = {"block": b}
        for k, r in enumerate(runs):
            m = r.blocks == b
            if keep is not None:
                m &= np.isin(r.units, list(keep))
            at = np.abs(r.t[m])
            row[f"run{k + 1}"] = ({"n_units": int(m.sum()), "max_abs_t": float(at.max()),
                                   "n_abs_t_gt_3": int(np.count_nonzero(at > 3))} if at.size else None)
        rows.append(row)
    return rows


def compare_runs(paths, labels=None, units: str = "same", n_boot: int = 2000, seed: int = 0) -> dict:
    """Everything compare.json holds (no files written). `paths`: run folders or already loaded `Run`s."""
    paths = [p if isinstance(p, Run) else Path(p) for p in paths]
    if len(paths) < 2:
        raise CompareError("compare needs at least two run folders")
    if units not in UNIT_MODES:
        raise CompareError(f"--units must be one of {UNIT_MODES}, got {units!r}")
    labels = list(labels) if labels else [None] * len(paths)
    if len(labels) != len(paths):
        raise CompareError(f"--labels gives {len(labels)} labels for {len(paths)} runs")
    runs = [p if isinstance(p, Run) else load_run(p, lab) for p, lab in zip(paths, labels)]
    shared = _unit_sets(runs, units)
    out: dict = {"job": "probe compare", "units_mode": units, "runs": [_run_row(r) for r in runs],
                 "n_units_compared": None if shared is None else int(shared.size)}
    out["blocks"] = _block_table(runs, shared)
    out["comparisons"] = []
    if shared is not None:
        ref = runs[0]
        t_ref = np.abs(_take(ref, shared, ref.t))
        out["units"] = {"unit": shared.tolist()}
        for k, r in enumerate(runs[1:], start=2):
            delta = t_ref - np.abs(_take(r, shared, r.t))
            out["units"][f"delta_abs_t_run1_minus_run{k}"] = [round(float(x), 5) for x in delta]
            out["comparisons"].append({
                "run": k, "label": r.label, "mean_delta_abs_t": float(delta.mean()),
                "median_delta_abs_t": float(np.median(delta)),
                "share_of_units_larger_in_run1": float(np.mean(delta > 0)),
                "test": bootstrap_test(ref, r, shared, n_boot=n_boot, seed=seed),
            })
    out["all_random_weights"] = all(r.random_weights for r in runs)
    out["any_random_init_control"] = any(r.randomize != "none" for r in runs)
    return out


# ------------------------------------------------------------------------------------------- writing

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

    from render.imageio import atomic_path

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
        ["stimuli", *[r["stimuli"] + (" (A − B = render − albedo image, pairs = base scenes)" if r["stimuli"] ==
                                      "images" else " (A − B = photograph prompt − albedo prompt)") for r in runs]],
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
    from probe.job import write_json
    from render.imageio import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", res)
    _figure(out / FIGURE, res)
    with atomic_path(out / "compare.md") as tmp:
        tmp.write_text(render_markdown(res), encoding="utf-8")
    return [out / "compare.md", out / "compare.json", out / FIGURE]


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more finished probe run folders (run 1 is "
                   "the reference: the test asks whether its |t| exceed each other run's)")
    p.add_argument("--out", required=True, help="output folder (compare.md, compare.json, compare_blocks.png)")
    p.add_argument("--labels", default=None, help="comma-separated labels, one per run (default: from each config)")
    p.add_argument("--units", choices=UNIT_MODES, default="same",
                   help="same: the runs must have the same unit set (default); shared: compare on the units they "
                        "share; any: only run-level numbers side by side")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the pairs for the test")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples")


def main_compare(args) -> int:
    if args.n_boot < 1:
        raise CompareError(f"--n-boot must be at least 1, got {args.n_boot}")
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    res = compare_runs(args.runs, labels, args.units, args.n_boot, args.seed)
    written = write_compare(res, Path(args.out))
    for c in res["comparisons"]:
        t = c["test"]
        msg = (f"S = {t['S']:.3f} [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}], p(run 1 > run {c['run']}) = "
               f"{t['p_run1_greater']:.4g}" if t.get("available") else f"test not run ({t.get('why')})")
        print(f"run 1 vs run {c['run']} ({c['label']}): mean delta |t| {c['mean_delta_abs_t']:.3f}; {msg}")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stdout)
    return 0
