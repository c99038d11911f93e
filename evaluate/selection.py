"""Reading a probe run folder (CONTRACTS C3) and choosing the units evaluate ablates or links.

    from evaluate.selection import read_probe, rank_units, select_heads
    probe = read_probe("runs/probe")                  # units.csv, summary.json, per_sample.npz (image probes)
    sel = select_heads(probe, k=16, select="lighting")
    sel.heads, sel.rule                               # ["double.3.img/h07", ...], the rule in words

Which units count as selective (the same rule for the causal test and the link):
1. the contrast: `render_vs_albedo` (the probe's primary contrast, top-level t / p_fwer /
   fwer_significant; a text probe's A - B) unless `select` names `lighting` or `albedo`, which need
   an image probe (columns t_C, p_fwer_C and `class`);
2. family-wise significant for that contrast (p_fwer <= the probe's alpha);
3. for an image probe and select lighting / albedo: `class` is `lighting-selective` /
   `albedo-selective` (significant for that contrast and not the other);
4. when units.csv has `selective_vs_NAME` columns (the text probe's direct control tests): 1 in
   every one of them (the unit beats each control in a direct paired test, same sign).
Probe folders written before these columns existed keep working with the rules they support; the
rule actually used is returned in words and written into every output.

Eligible units are ranked by |t| of the contrast. A head is a unit without its step (`s12/`):
ablation acts at every step, so a head is eligible when any of its steps is, ranked by its largest
|t|. When fewer than k heads are eligible, the rest of the k are the next heads by |t| and the
selection says how many (`n_filled`): such a top-k is not a set of selective heads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["SELECT_CHOICES", "MATCH_CHOICES", "n_distinct_matched",
           "ProbeRun", "Selection", "read_probe", "rank_units", "select_heads", "ProbeError",
           "random_matched_units", "overlap_with_top", "eligible_heads", "pool_composition"]

SELECT_CHOICES = ("render_vs_albedo", "lighting", "albedo", "change_albedo", "change_lighting")
MATCH_CHOICES = ("group", "block")
# change_albedo / change_lighting: the image probe's change classes (probe.stats.change; units.csv class_change):
# eligible = class_change albedo-selective / lighting-selective, ranked by the Fieller upper bound of the other
# factor's gain ratio (smallest first: the unit shown most firmly to drop the other factor)
_CHANGE_SELECT = {"change_albedo": ("albedo-selective", "change_ratio_lighting_to_albedo_ub"),
                  "change_lighting": ("lighting-selective", "change_ratio_albedo_to_lighting_ub")}
DEFAULT_ALPHA = 0.05


class ProbeError(ValueError):
    """A probe folder that cannot serve the request (message is user-facing)."""


@dataclass(frozen=True)
class ProbeRun:
    path: Path
    units: dict                   # units.csv as columns (numeric columns as float arrays)
    summary: dict                 # summary.json ({} when absent)
    stimuli: str                  # "text" | "images"
    controls: tuple[str, ...]     # NAMEs with a selective_vs_NAME column
    alpha: float
    per_sample: dict | None = None  # per_sample.npz arrays (image probe), else None

    @property
    def random_weights(self) -> bool:
        return bool(self.summary.get("random_weights"))

    @property
    def unit_names(self) -> list[str]:
        return [str(u) for u in self.units["unit"]]

    @property
    def text_tokens(self) -> str:
        """The text tokens the probe's `.txt` units were measured on (summary.json `text_tokens`): "prompt" (the
        prompt's own tokens) or "all" (chat template too; every probe run before the key existed)."""
        return str(self.summary.get("text_tokens") or "all")


@dataclass(frozen=True)
class Selection:
    units: list[str]              # chosen units (with steps) or heads (without), best first
    rule: str                     # the rule in words (written into every output)
    contrast: str
    n_eligible: int               # eligible units/heads in the whole probe
    n_filled: int                 # of the chosen, how many are not eligible (filled by |t| rank)
    details: dict = field(default_factory=dict)

    @property
    def heads(self) -> list[str]:
        return self.units

    def as_dict(self) -> dict:
        return {"units": self.units, "rule": self.rule, "contrast": self.contrast, "n_eligible": self.n_eligible,
                "n_filled": self.n_filled, **self.details}


def read_probe(path: str | Path, need_per_sample: bool = False) -> ProbeRun:
    from probe.io.units_csv import read_units_csv

    path = Path(path)
    csv_path = path / "units.csv"
    if not csv_path.is_file():
        raise ProbeError(f"{csv_path} not found: run `python -m probe run --out {path}` first (or pass --probe)")
    try:
        units = read_units_csv(csv_path)
    except ValueError as e:
        raise ProbeError(str(e)) from e
    if "unit" not in units or "t" not in units:
        raise ProbeError(f"{csv_path} has no `unit` and `t` columns: not a probe units table")
    summary = {}
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except ValueError as e:
            raise ProbeError(f"{path / 'summary.json'} is not valid JSON ({e})") from e
    stimuli = str(summary.get("stimuli", "text"))
    controls = tuple(sorted(c[len("selective_vs_"):] for c in units if c.startswith("selective_vs_")))
    alpha = float(summary.get("fwer_alpha") or DEFAULT_ALPHA)
    per_sample = None
    ps_path = path / "per_sample.npz"
    if ps_path.is_file():
        try:
            with np.load(ps_path, allow_pickle=False) as z:
                per_sample = {k: z[k] for k in z.files}
        except Exception as e:
            raise ProbeError(f"{ps_path} is unreadable ({type(e).__name__}: {e})") from e
        missing = [k for k in ("diff", "sample_ids", "scene_ids", "units") if k not in per_sample]
        if missing:
            raise ProbeError(f"{ps_path} lacks {missing} (expected diff, sample_ids, scene_ids, units, contrast)")
        if [str(u) for u in per_sample["units"]] != [str(u) for u in units["unit"]]:
            raise ProbeError(f"{ps_path} and units.csv list different units: rerun the probe")
        if per_sample["diff"].shape != (len(per_sample["sample_ids"]), len(units["unit"])):
            raise ProbeError(f"{ps_path}: diff has shape {per_sample['diff'].shape}, expected "
                             f"[{len(per_sample['sample_ids'])} samples, {len(units['unit'])} units]")
    elif need_per_sample and stimuli == "images":
        raise ProbeError(f"{path} is an image probe without per_sample.npz: rerun it with the current probe")
    return ProbeRun(path, units, summary, stimuli, controls, alpha, per_sample)


def _column(probe: ProbeRun, name: str) -> np.ndarray:
    if name not in probe.units:
        raise ProbeError(f"{probe.path / 'units.csv'} has no `{name}` column")
    return np.asarray(probe.units[name], dtype=float)


def rank_units(probe: ProbeRun, select: str | None = None) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(order, eligible, rule, contrast): unit indices ranked eligible-first by |t| of the contrast,
    the boolean eligibility per unit, the rule in words and the contrast name (an image probe's
    render_vs_albedo / lighting / albedo; a text probe's a_minus_b)."""
    select = select or "render_vs_albedo"
    if select not in SELECT_CHOICES:
        raise ProbeError(f"--select must be one of {', '.join(SELECT_CHOICES)}, got {select!r}")
    image = probe.stimuli == "images"
    if select != "render_vs_albedo" and not image:
        raise ProbeError(f"--select {select} needs an image probe (`probe run --stimuli images`): {probe.path} is a "
                         "text probe, whose only contrast is A - B; leave --select out or pass an image probe")
    parts = []
    if select in _CHANGE_SELECT:
        want, col = _CHANGE_SELECT[select]
        if "class_change" not in probe.units:
            raise ProbeError(f"{probe.path / 'units.csv'} has no `class_change` column: --select {select} needs the "
                             "image probe's change classes (probe run --stimuli images with --change-dim > 0)")
        ub = _column(probe, col)
        eligible = np.array([str(c) == want for c in probe.units["class_change"]]) & np.isfinite(ub)
        rule = (f"class_change `{want}` (probe.stats.change: the other factor's gain shown below the margin times "
                f"this one's, per unit of input change); ranked by {col}, smallest first; no control test (image "
                "probe)")
        score = -np.where(np.isfinite(ub), ub, np.inf)
        order = np.lexsort((-score, ~eligible))
        return order, eligible, rule, select
    if select == "render_vs_albedo":
        t = _column(probe, "t")
        what = "render_vs_albedo (the primary contrast)" if image else "the text probe's A - B contrast"
        if "fwer_significant" in probe.units:
            sig = _column(probe, "fwer_significant") == 1
        else:
            sig = _column(probe, "p_fwer") <= probe.alpha
    else:
        t = _column(probe, f"t_{select}")
        what = f"the image probe's {select} contrast"
        sig = _column(probe, f"p_fwer_{select}") <= probe.alpha
    sig &= np.isfinite(t)
    parts.append(f"FWER-significant (p_fwer <= {probe.alpha:g}) for {what}")
    eligible = sig.copy()
    if image and select != "render_vs_albedo":
        if "class" not in probe.units:
            raise ProbeError(f"{probe.path / 'units.csv'} has no `class` column: --select {select} needs the probe's "
                             "unit classes (rerun the image probe)")
        want = f"{select}-selective"
        eligible &= np.array([str(c) == want for c in probe.units["class"]])
        parts.append(f"class `{want}`")
    if probe.controls:
        for name in probe.controls:
            eligible &= _column(probe, f"selective_vs_{name}") == 1
        parts.append("passing the direct control test against every control set ("
                     + ", ".join(f"selective_vs_{c}" for c in probe.controls) + ")")
    else:
        parts.append("no direct control test in this probe folder (no selective_vs_* columns): none applied")
    rule = "; ".join(parts) + "; ranked by |t| of that contrast"
    score = np.abs(np.nan_to_num(t, nan=0.0))
    order = np.lexsort((-score, ~eligible))      # eligible first, then by |t| descending (stable)
    return order, eligible, rule, (select if image else "a_minus_b")


def _parse(unit: str):
    from probe.klein.regions import parse_unit

    try:
        return parse_unit(unit)
    except ValueError as e:
        raise ProbeError(f"ablation needs real-head units (probe --protocol heads): {e}") from None


def select_heads(probe: ProbeRun, k: int, select: str | None = None) -> Selection:
    """The k heads to ablate (step prefix dropped), eligible heads first (see the module docstring)."""
    order, eligible, rule, contrast = rank_units(probe, select)
    names = probe.unit_names
    heads_all = [_parse(u).head_name for u in names]
    n_heads = len(set(heads_all))
    if k > n_heads:
        raise ProbeError(f"--k {k} is more than the {n_heads} heads this probe measured")
    eligible_heads = {heads_all[i] for i in np.flatnonzero(eligible)}
    chosen: list[str] = []
    for i in order:
        h = heads_all[i]
        if h not in chosen:
            chosen.append(h)
        if len(chosen) == k:
            break
    n_filled = sum(1 for h in chosen if h not in eligible_heads)
    rule = (f"heads (a unit without its step; ablated at every step) {rule}"
            + (f"; only {len(eligible_heads)} heads are eligible, so {n_filled} of the {k} were filled by |t| rank "
               "(not selective)" if n_filled else ""))
    return Selection(chosen, rule, contrast, len(eligible_heads), n_filled,
                     {"n_heads": n_heads, "controls": list(probe.controls), "stimuli": probe.stimuli})


def select_units(probe: ProbeRun, k: int, select: str | None = None) -> Selection:
    """The k units (with their steps) the link averages over, eligible first."""
    order, eligible, rule, contrast = rank_units(probe, select)
    k = max(1, min(int(k), len(order)))
    idx = [int(i) for i in order[:k]]
    n_filled = sum(1 for i in idx if not eligible[i])
    rule = (f"units {rule}" + (f"; only {int(eligible.sum())} units are eligible, so {n_filled} of the {k} were "
                               "filled by |t| rank (not selective)" if n_filled else ""))
    return Selection([probe.unit_names[i] for i in idx], rule, contrast, int(eligible.sum()), n_filled,
                     {"indices": idx, "stimuli": probe.stimuli, "controls": list(probe.controls)})


def _match_key(head: str, match: str) -> str:
    """The pool a head is matched within: its unit group (block and token region) or its block (both regions)."""
    group = head.rsplit("/", 1)[0]
    if match == "group":
        return group
    bits = group.split(".")
    return ".".join(bits[:2])


def _pools(top: Sequence[str], all_units: Sequence[str], match: str):
    from collections import Counter, defaultdict

    if match not in MATCH_CHOICES:
        raise ProbeError(f"--match must be one of {', '.join(MATCH_CHOICES)}, got {match!r}")
    pool: dict[str, list[str]] = defaultdict(list)
    for h in dict.fromkeys(_parse(u).head_name for u in all_units):
        pool[_match_key(h, match)].append(h)
    return pool, Counter(_match_key(h, match) for h in top)


def n_distinct_matched(top: Sequence[str], all_units: Sequence[str], match: str = "group") -> int:
    """How many different random draws `random_matched_units` can make for this top-k: the product over its pools
    of C(heads outside the top-k, heads the draw needs there). Fewer than the requested draws means repeated draws,
    and a rank p over repeated draws is smaller than the distinct alternatives allow."""
    from math import comb

    pool, need = _pools(top, all_units, match)
    top_set = set(top)
    total = 1
    for key, n in need.items():
        total *= comb(len([h for h in pool[key] if h not in top_set]), n)
    return total


def random_matched_units(top: Sequence[str], all_units: Sequence[str], rng: np.random.Generator,
                         match: str = "group") -> list[str]:
    """As many heads per unit group as `top` has, drawn from the *other* heads of the same groups (same
    block, same token region; match="block": the same block, either region), so a random draw differs from the
    top-k only in which heads, and never contains one of them. A group that cannot supply that many heads outside
    the top-k is refused with a ProbeError naming it and how many heads it has (the draw would otherwise have to
    reuse top-k heads, and "random k" would partly be the top-k)."""
    pool, need = _pools(top, all_units, match)
    chosen: list[str] = []
    top_set = set(top)
    short = []
    for group, n in need.items():
        others = [h for h in pool[group] if h not in top_set]
        if len(others) < n:
            short.append((group, len(pool[group]), n, len(others)))
            continue
        chosen += [str(x) for x in rng.choice(others, size=n, replace=False)]
    if short:
        what = "; ".join(f"block group `{g}` has {total} heads, {n} of them in the top-{len(top_set)}, so it can "
                         f"supply {left} other heads where the draw needs {n}" for g, total, n, left in short)
        raise ProbeError(f"random {len(top_set)}-head draws matched to the top-{len(top_set)} heads are impossible: "
                         f"each draw takes as many heads from each "
                         f"{'block group (block and token region)' if match == 'group' else 'block (either region)'} "
                         f"as the top-k has there, never a top-k head itself, and {what}. A smaller --k, "
                         f"{'--match block, ' if match == 'group' else ''}or a probe with more heads per block makes "
                         f"the random control possible; nothing was written.")
    return chosen


def eligible_heads(probe: ProbeRun, select: str | None = None) -> set[str]:
    """The heads (a unit without its step) that have at least one unit eligible under the selection rule."""
    _, eligible, _, _ = rank_units(probe, select)
    return {_parse(u).head_name for u, ok in zip(probe.unit_names, eligible) if ok}


def pool_composition(top: Sequence[str], all_units: Sequence[str], match: str, eligible: set[str]) -> dict:
    """What the random draws of a top-k are drawn from: the heads of its pools outside the top-k, how many of them
    are themselves eligible (selective by the same rule) and their token regions. A pool mostly made of selective
    heads gives the top-k-against-random comparison little contrast: it then asks which selective heads, not
    whether selective ones."""
    from collections import Counter

    from probe.klein.regions import group_site_region

    pool, need = _pools(top, all_units, match)
    top_set = set(top)
    heads = [h for key in need for h in pool[key] if h not in top_set]
    region = lambda h: group_site_region(h.rsplit("/", 1)[0])[1]
    n_el = sum(h in eligible for h in heads)
    return {"n_heads": len(heads), "n_eligible": n_el,
            "eligible_fraction": (n_el / len(heads)) if heads else None,
            "by_region": dict(Counter(region(h) for h in heads)),
            "eligible_by_region": dict(Counter(region(h) for h in heads if h in eligible)),
            "top_by_region": dict(Counter(region(h) for h in top)),
            "definition": "the heads random draws are taken from (the top-k's pools, top-k heads excluded); "
                          "n_eligible: of them, heads selective by the same rule as the top-k"}


def overlap_with_top(draw: Sequence[str], top: Sequence[str]) -> int:
    """How many heads of a random draw are top-k heads (0 by construction; recorded in the plan)."""
    return len(set(draw) & set(top))
