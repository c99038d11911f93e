"""Paired per-unit statistics for the probe: numpy/scipy only (no torch), vectorised over units.

    from probe.stats.analysis import Contrast, Direct, analyse, analyse_captures
    from probe.stats.config import StatsConfig
    from probe.io.captures import load_captures
    res = analyse_captures(load_captures("runs/probe/captures.npz"), StatsConfig(n_perm=10_000, seed=0))

    # contrasts are data: any number of named paired contrasts and direct comparisons between them
    res = analyse([Contrast("main", a, b, pair_ids, label="A photograph - B albedo", columns=None),
                   Contrast("vocabulary", a, v, pair_ids, columns="control_{name}_{stat}")],
                  units, directs=[Direct("vs_vocabulary", of="main", minus="vocabulary")])
    res.summary()        # JSON-able dict (summary.json)
    res.units_table()    # {column: array} for units.csv (unit, block, t, d, p, q, p_fwer, ...)

A `Contrast` is two arrays [pairs, units] with pair ids: per pair, diff = a - b (or b - a with
`reverse=True`); row i of a and b is the same pair. A `Direct` comparison of contrasts X and Y is the
paired test of diff_X - diff_Y over the pairs they share. Each contrast and each direct comparison
gets the same machinery, on its per-pair differences [n, U] in float64:

- `paired_t` (probe.stats.paired): paired t, d_z, p, BH q;
- `sign_flip_null` (probe.stats.null): the sign-flip null of counts and the tmax FWER p;
- `split_half` (probe.stats.splithalf): split-half r of per-unit t;
- `block_stats` (probe.stats.blocks): per-block statistics with bootstrap CIs over pairs.

Columns of units.csv follow one rule (`Analysis.units_table`): the primary (first) contrast gives
the top-level `t, d, p, q, p_fwer, fwer_significant, mean_a, mean_b, mean_diff, sd_diff`; each
contrast with a `columns` pattern adds `pattern.format(stat=..., name=...)` for its `column_stats`
(the image probe: `t_C, d_C, p_fwer_C`); each direct comparison D adds `t_D, d_D, p_fwer_D` and, when
`selective`, `selective_D` = its `of` contrast and D both FWER-significant with the same sign; the
column `direction` says what a positive top-level t means.

The text probe (`text_contrasts`, `analyse_text`, `analyse_captures`): main = A (lit photograph) vs
B (albedo); per control set NAME (paraphrase: A vs a lighting-neutral paraphrase of A, legacy columns
`control_t, control_d, control_d_av, control_p, control_q, control_p_fwer`; vocabulary: A vs a prompt describing
the lit photograph with B's fixed words, columns `control_vocabulary_{t,d,d_av,p_fwer}`) the contrast A vs control
prompt, and the direct comparison `vs_NAME` = main minus it = control prompt minus albedo prompt of
the same pair (same noise): `t_vs_NAME`, `p_fwer_vs_NAME`, `selective_vs_NAME`, and
`selective_beyond_control` = selective beyond every control set (see SELECTIVE_DEFINITION). Under
the card protocol the sign is reversed (direction "b-a": t = mean(B - A) / (sd / sqrt(N)), the card
family's definition), for every contrast alike, so "same sign" is unaffected.

The image probe (`image_contrasts`, `analyse_images`; `analyse_captures` on a captures.npz with meta
stimuli = "images"): the contrasts render_vs_albedo (primary: the top-level columns), lighting and
albedo, each with columns t_C, d_C, d_av_C, p_fwer_C, no direct comparisons; then the unit classes of
`probe.stats.classify` (FWER-significance of lighting and albedo; the magnitude test on the per-scene RMS
changes within `StatsConfig.magnitude_margin` decides `class`; the signed TOST within
`StatsConfig.equivalence_margin` on d_z decides `class_signed`): columns p_equiv_lighting, p_equiv_albedo
(signed, also as p_equiv_signed_C), rms_change_C, ratio_C_to_O, ratio_C_to_O_ub, p_equiv_magnitude_C, class,
class_signed, and a constant `pairs_over` column ("samples (CLUSTERED)" when pairs are not scenes).

Effect sizes: `d` / `d_C` are d_z = t / sqrt(n); `d_av` / `d_av_C` = mean difference / the average of the
two conditions' sds (see `effect_size_note`).

Seeds: the sign vectors, splits and bootstrap resamples come from independent streams derived
from `StatsConfig.seed`; every contrast reuses them (same sign vectors when its pair count is the
same). `StatsConfig.threads` contrasts are analysed at once; results do not depend on it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The captures.npz format lives in probe.io.captures; its names stay importable from here.
from probe.io.captures import (PARAPHRASE, Captures, CapturesError, ControlSet, check_control_name,  # noqa: F401
                               load_captures, save_captures)
from probe.stats.blocks import BlockStats, block_stats
from probe.stats.config import DEGENERATE_RTOL, StatsConfig, threshold_key
from probe.stats.null import PermutationNull, sign_flip_null
from probe.stats.paired import UnitStats, _as_diff, _unit_stats, bh_q, paired_t
from probe.stats.splithalf import SplitHalf, split_half

__all__ = [
    "StatsConfig", "UnitStats", "PermutationNull", "SplitHalf", "BlockStats", "ContrastStats", "Analysis",
    "Contrast", "Direct", "Captures", "CapturesError", "ControlSet", "paired_t", "bh_q", "sign_flip_null",
    "split_half", "block_stats", "analyse_contrast", "analyse", "analyse_text", "analyse_captures",
    "text_contrasts", "blocks_from_units", "save_captures", "load_captures", "threshold_key",
    "SELECTIVE_DEFINITION", "image_contrasts", "analyse_images",
]

# -------------------------------------------------------------------------------------- contrasts


@dataclass(frozen=True, eq=False)
class ContrastStats:
    """Everything computed for one contrast or one direct comparison."""
    n_pairs: int
    mean_a: np.ndarray | None   # [U] mean of the contrast's `a` (None for a direct comparison)
    mean_b: np.ndarray | None   # [U]
    unit: UnitStats
    null: PermutationNull
    split: SplitHalf
    blocks: BlockStats
    pair_ids: np.ndarray | None = None   # [n_pairs] the pairs it was computed on (None: by position)
    sd_a: np.ndarray | None = None       # [U] sd over pairs (ddof 1) of the contrast's `a` (None: a direct comparison)
    sd_b: np.ndarray | None = None       # [U]

    @property
    def d_av(self) -> np.ndarray | None:
        """[U] d_av = mean difference / the average of the two conditions' sds over pairs (a between-condition
        scale, unlike d_z = t / sqrt(n)); nan where both sds are 0; None for a direct comparison (no conditions)."""
        if self.sd_a is None or self.sd_b is None:
            return None
        avg = 0.5 * (self.sd_a + self.sd_b)
        zero = avg <= DEGENERATE_RTOL * (np.abs(self.mean_a) + np.abs(self.mean_b))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(zero, np.nan, self.unit.mean_diff / np.where(zero, 1.0, avg))

    def summary(self, config: StatsConfig) -> dict:
        """JSON-able numbers of this contrast (non-finite values are float('nan'))."""
        u, nl = self.unit, self.null
        s: dict = {"n_pairs": self.n_pairs, "n_units": int(u.t.size)}
        for k, c in enumerate(nl.thresholds):
            key = threshold_key(c)
            s[f"n_abs_t_gt_{key}"] = int(nl.observed[k])
            s[f"null_p99_abs_t_gt_{key}"] = float(nl.p99[k])
            s[f"ratio_vs_null_p99_abs_t_gt_{key}"] = float(nl.ratio[k])
            s[f"null_p_abs_t_gt_{key}"] = float(nl.p_count[k])
            s[f"null_mean_abs_t_gt_{key}"] = float(nl.null_counts[:, k].mean())
            s[f"null_max_abs_t_gt_{key}"] = int(nl.null_counts[:, k].max())
        s["null_quantile"] = nl.quantile
        s["null_ratio_note"] = "observed count / max(null p99, 1)"
        s["null_excludes_identity"] = bool(nl.exact)
        s["null_counts_note"] = (
            f"exact enumeration of {nl.n_perm} sign vectors: the null p99, mean and max leave out the identity (the "
            f"observed labelling), {nl.null_counts.shape[0]} vectors remain; the permutation p keeps it"
            if nl.exact else f"{nl.n_perm} random sign vectors (the identity is not among them)")
        s["split_half_r_median"] = self.split.median
        s["split_half_r_q25"] = self.split.q25
        s["split_half_r_q75"] = self.split.q75
        s["split_half_r_iqr"] = self.split.iqr
        s["split_half_sizes"] = list(self.split.half_sizes)
        s["max_abs_t"] = float(np.max(np.abs(u.t))) if u.t.size else float("nan")
        s["max_abs_t_unit_index"] = int(np.argmax(np.abs(u.t))) if u.t.size else -1
        dk = threshold_key(config.d_threshold)
        s["median_abs_d"] = float(np.median(np.abs(u.d))) if u.d.size else float("nan")
        s[f"n_abs_d_gt_{dk}"] = int(np.count_nonzero(np.abs(u.d) > config.d_threshold))    # the card's count: d_z
        s["median_abs_d_z"] = s["median_abs_d"]
        s[f"n_abs_d_z_gt_{dk}"] = s[f"n_abs_d_gt_{dk}"]
        d_av = self.d_av
        if d_av is not None:
            fin = np.abs(d_av[np.isfinite(d_av)])
            s["median_abs_d_av"] = float(np.median(fin)) if fin.size else float("nan")
            s[f"n_abs_d_av_gt_{dk}"] = int(np.count_nonzero(fin > config.d_threshold))
        s["effect_size_note"] = effect_size_note(self.n_pairs, config.d_threshold)
        s["n_fwer_significant"] = int(np.count_nonzero(nl.significant))
        s["fwer_alpha"] = nl.alpha
        s["fwer_abs_t_threshold"] = nl.fwer_t
        s["null_tmax_p95"] = float(np.percentile(nl.tmax, 95))
        s[f"n_q_le_{threshold_key(config.alpha)}"] = int(np.count_nonzero(u.q <= config.alpha))
        s["n_zero_variance_units"] = int(np.count_nonzero(u.degenerate))
        s["n_perm"] = nl.n_perm
        s["null_exact"] = nl.exact
        s["blocks"] = self.blocks.rows()
        return s


def effect_size_note(n: int, d_threshold: float = 0.8) -> str:
    """What the d columns and counts are (summary.json `effect_size_note`, the report)."""
    return (f"d (d_C, median_abs_d, n_abs_d_gt_*) is d_z = mean(diff) / sd(diff) = t / sqrt(n): at {n} pairs "
            f"|d_z| > {d_threshold:g} is exactly |t| > {d_threshold * np.sqrt(n):.3g}, so its count adds no evidence "
            "beyond the t counts, and Cohen's 'large' refers to a between-condition d, which the strong within-pair "
            "correlation inflates d_z far above; d_av = mean(diff) / the average of the two conditions' sds over "
            "pairs is on that between-condition scale (the card's column is kept as n_abs_d_gt_*, also named "
            "n_abs_d_z_gt_*)")


def _side_moments(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd (ddof 1) over pairs of one side of a contrast [pairs, units]."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=0), x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1])


def _analyse_diff(diff: np.ndarray, unit_blocks, config: StatsConfig, a=None, b=None,
                  pair_ids=None) -> ContrastStats:
    """Unit stats, sign-flip/tmax null, split-half and per-block stats of per-pair differences [n, U]; `a`, `b`:
    the contrast's two sides [n, U] (their means and sds; None for a direct comparison)."""
    unit = _unit_stats(diff)
    null = sign_flip_null(diff, unit.t, config, degenerate=unit.degenerate)
    split = split_half(diff, config.n_splits, config.seed)
    blocks = block_stats(diff, unit_blocks, config, unit=unit)
    (mean_a, sd_a), (mean_b, sd_b) = ((_side_moments(x) if x is not None else (None, None)) for x in (a, b))
    return ContrastStats(n_pairs=diff.shape[0], mean_a=mean_a, mean_b=mean_b, unit=unit, null=null, split=split,
                         blocks=blocks, pair_ids=pair_ids, sd_a=sd_a, sd_b=sd_b)


def analyse_contrast(a, b, unit_blocks, config: StatsConfig = StatsConfig(), what: str = "a/b") -> ContrastStats:
    """Unit stats, sign-flip/tmax null, split-half and per-block stats of one paired contrast a - b."""
    diff = _as_diff(a, b, what)
    return _analyse_diff(diff, unit_blocks, config, a, b)


def blocks_from_units(units) -> np.ndarray:
    """Block label of each unit name: the name without its last '/' part ('s12/double.3.img/h07' ->
    's12/double.3.img'); names without '/' all fall in one block 'all'."""
    units = np.asarray(units).astype(str)
    if units.size and all("/" in u for u in units):
        return np.array([u.rsplit("/", 1)[0] for u in units])
    return np.full(units.shape, "all")


@dataclass(frozen=True, eq=False)
class Contrast:
    """A named paired contrast: per pair i and unit u, diff = a - b (b - a with `reverse`).

    `columns` is the units.csv column pattern of its per-unit statistics (`{stat}` and `{name}` are
    filled in; None: no columns of its own, e.g. the text probe's main contrast, whose columns are the
    top-level t, d, ...); `column_stats` lists which statistics get a column (t, d, p, q, p_fwer,
    mean_diff). `label` says in words what a positive t means ("A photograph − B albedo").
    """
    name: str
    a: np.ndarray                            # [pairs, units]
    b: np.ndarray                            # [pairs, units]
    pair_ids: np.ndarray | None = None       # [pairs] str; None: rows are matched by position
    reverse: bool = False
    label: str = ""
    columns: str | None = "{stat}_{name}"
    column_stats: tuple[str, ...] = ("t", "d", "p_fwer")

    def diff(self) -> np.ndarray:
        d = _as_diff(self.a, self.b, f"contrast {self.name!r}")
        return -d if self.reverse else d


@dataclass(frozen=True)
class Direct:
    """A direct paired test between two contrasts: per shared pair, diff(`of`) - diff(`minus`), with the
    same t / sign-flip / tmax / split-half / block machinery. For the text probe, of = main (A - B) and
    minus = a control set (A - C) give C - B: the control prompt minus the albedo prompt, same noise.

    Columns: `{stat}_{name}` for t, d, p_fwer; with `selective`, also `selective_{name}` = 1 where `of`
    and this comparison are both FWER-significant with the same sign.
    """
    name: str
    of: str
    minus: str
    label: str = ""
    selective: bool = True
    column_stats: tuple[str, ...] = ("t", "d", "p_fwer")


SELECTIVE_DEFINITION = (
    "selective beyond a control set C (selective_vs_C): the main contrast and the direct paired test of the "
    "control prompt against the albedo prompt of the same pair (same noise; t_vs_C) are both FWER-significant "
    "(tmax sign-flip null, p_fwer <= alpha) with the same sign; selective_beyond_control: selective beyond "
    "every control set of the run. Its error level: each of the K families it combines (the main contrast and "
    "one direct test per control set) is FWER-controlled at alpha, so for one unit the conjunction is an "
    "intersection-union test at level alpha, but over all units the chance that any unit is falsely in the set is "
    "only bounded by K x alpha (a false member needs a false rejection in one of the K families); "
    "selective_beyond_control_joint asks p_fwer <= alpha / K in every family (Bonferroni over the families), so "
    "its family-wise error over units and families together is at most alpha")

_STAT_COLUMNS = ("t", "d", "d_av", "p", "q", "p_fwer", "mean_diff", "sd_diff")


def _stat_column(cs: ContrastStats, stat: str) -> np.ndarray:
    if stat == "p_fwer":
        return cs.null.p_fwer
    if stat == "d_av":
        return cs.d_av if cs.d_av is not None else np.full(cs.unit.t.shape, np.nan)
    if stat not in _STAT_COLUMNS:
        raise ValueError(f"unknown column statistic {stat!r}; one of {_STAT_COLUMNS}")
    return getattr(cs.unit, stat)


@dataclass(frozen=True, eq=False)
class Analysis:
    """Result of `analyse`: statistics of every named contrast and direct comparison, by name.

    `main` is the primary contrast; `control` the `paraphrase` contrast when there is one (the lexical
    control the report and the legacy `control_*` columns describe).
    """
    config: StatsConfig
    units: np.ndarray                               # [U] unit names
    unit_blocks: np.ndarray                         # [U] block label per unit
    primary: str
    contrasts: dict                                 # name -> Contrast (definitions, arrays included)
    stats: dict                                     # name -> ContrastStats
    directs: dict                                   # name -> Direct
    direct_stats: dict                              # name -> ContrastStats
    selective: dict                                 # direct name -> [U] bool (directs with selective=True)
    all_selective: str | None = None                # column: selective beyond every selective direct
    classification: object | None = None            # image probe: probe.stats.classify.Classification of the units
    constant_columns: tuple = ()                    # (name, value) columns of units.csv with one value for all
    change: object | None = None                    # image probe with change vectors: probe.stats.change.ChangeClasses

    @property
    def main(self) -> ContrastStats:
        return self.stats[self.primary]

    @property
    def control(self) -> ContrastStats | None:
        return self.stats.get("paraphrase")

    @property
    def selective_beyond_control(self) -> np.ndarray | None:
        """[U] bool: selective beyond every control set (None without control sets)."""
        if not self.selective:
            return None
        return np.logical_and.reduce(list(self.selective.values()))

    @property
    def selective_families(self) -> list[str]:
        """The FWER-controlled families `selective_beyond_control` is a conjunction of: the contrast the selective
        direct tests are taken against (main) and each selective direct test."""
        fams: list[str] = []
        for name in self.selective:
            if self.directs[name].of not in fams:
                fams.append(self.directs[name].of)
        return fams + list(self.selective)

    @property
    def selective_beyond_control_joint(self) -> np.ndarray | None:
        """[U] bool: selective beyond every control set with every family at alpha / K (K = the number of
        families): the family-wise error of the whole set, over units and families, is at most alpha."""
        if not self.selective:
            return None
        level = self.config.alpha / len(self.selective_families)
        out = np.ones(self.units.shape, dtype=bool)
        for name in self.selective:
            m, x = self.stats[self.directs[name].of], self.direct_stats[name]
            out &= ((m.null.p_fwer <= level) & (x.null.p_fwer <= level) & (np.sign(m.unit.t) == np.sign(x.unit.t))
                    & (m.unit.t != 0))
        return out

    def selective_error(self) -> dict | None:
        """summary.json's statement of the error level `selective_beyond_control` controls (None without controls)."""
        if not self.selective:
            return None
        fams = self.selective_families
        k, alpha = len(fams), self.config.alpha
        nulls = {f: (self.stats[f] if f in self.stats else self.direct_stats[f]).null for f in fams}
        smallest = {f: 1.0 / (nl.n_perm + (0 if nl.exact else 1)) for f, nl in nulls.items()}
        min_p = {f: float(nl.p_fwer.min()) for f, nl in nulls.items()}
        return {
            "families": fams, "n_families": k, "alpha_per_family": alpha,
            "per_unit": f"intersection-union test: a unit that is not selective (some family's null holds for it) "
                        f"is called selective with probability <= {alpha:g}",
            "family_wise_bound": min(1.0, round(k * alpha, 12)),
            "family_wise_note": f"over all units, P(any unit falsely in selective_beyond_control) <= {k} x {alpha:g} "
                                f"(union bound over the {k} FWER-controlled families); not <= {alpha:g}",
            "joint_column": f"{self.all_selective}_joint" if self.all_selective else None,
            "joint_alpha_per_family": round(alpha / k, 12), "joint_family_wise_bound": alpha,
            "joint_attainable": all(smallest[f] <= alpha / k for f in fams),
            "smallest_attainable_p_fwer": smallest, "smallest_p_fwer": min_p,
        }

    @property
    def direction(self) -> str:
        return self.contrasts[self.primary].label

    @property
    def t(self) -> np.ndarray:
        return self.main.unit.t

    @property
    def p_fwer(self) -> np.ndarray:
        return self.main.null.p_fwer

    def units_table(self) -> dict[str, np.ndarray]:
        """Columns of units.csv, one row per unit, by rule: the primary contrast's top-level columns, each
        contrast's `columns` pattern, `selective_beyond_control` (with selective directs), each direct's
        `{stat}_{name}` and `selective_{name}`, and `direction` (what a positive top-level t means)."""
        u, nl = self.main.unit, self.main.null
        cols: dict[str, np.ndarray] = {
            "unit": self.units, "block": self.unit_blocks, "t": u.t, "d": u.d, "p": u.p, "q": u.q,
            "p_fwer": nl.p_fwer, "fwer_significant": nl.significant.astype(np.int8),
            "mean_a": self.main.mean_a, "mean_b": self.main.mean_b, "mean_diff": u.mean_diff, "sd_diff": u.sd_diff,
            "d_av": _stat_column(self.main, "d_av"),
        }
        for name, c in self.contrasts.items():
            if c.columns is None:
                continue
            for stat in c.column_stats:
                cols[c.columns.format(stat=stat, name=name)] = _stat_column(self.stats[name], stat)
        if self.all_selective and self.selective:
            cols[self.all_selective] = self.selective_beyond_control.astype(np.int8)
            cols[f"{self.all_selective}_joint"] = self.selective_beyond_control_joint.astype(np.int8)
        for name, dr in self.directs.items():
            for stat in dr.column_stats:
                cols[f"{stat}_{name}"] = _stat_column(self.direct_stats[name], stat)
            if name in self.selective:
                cols[f"selective_{name}"] = self.selective[name].astype(np.int8)
        if self.classification is not None:
            cls = self.classification
            for name, p in cls.p_equiv.items():
                cols[f"p_equiv_{name}"] = p                     # the signed TOST (its name predates the magnitude test)
            for name, p in cls.p_equiv.items():
                cols[f"p_equiv_signed_{name}"] = p
            if cls.magnitude is not None:
                for name, mt in cls.magnitude.items():
                    cols[f"rms_change_{name}"] = mt.mean_x
                for name, mt in cls.magnitude.items():
                    other = "albedo" if name == "lighting" else "lighting"
                    cols[f"ratio_{name}_to_{other}"] = mt.ratio
                    cols[f"ratio_{name}_to_{other}_ub"] = mt.upper
                    cols[f"p_equiv_magnitude_{name}"] = mt.p
            cols["class"] = cls.classes
            if cls.classes_signed is not None:
                cols["class_signed"] = cls.classes_signed
        if self.change is not None:     # units without a change vector (text units) get empty cells
            pos = {str(u): i for i, u in enumerate(self.change.units)}
            rows = np.array([pos.get(str(u), -1) for u in self.units])
            for name, col in self.change.columns().items():
                col = np.asarray(col)
                if col.dtype.kind in "US":
                    cols[name] = np.where(rows >= 0, col[np.maximum(rows, 0)], "")
                else:
                    cols[name] = np.where(rows >= 0, col[np.maximum(rows, 0)].astype(np.float64), np.nan)
        for name, value in self.constant_columns:
            cols[name] = np.full(self.units.shape, value)
        cols["direction"] = np.full(self.units.shape, self.direction or "a-b")
        return cols

    def summary(self) -> dict:
        """JSON-able summary (summary.json). Primary-contrast keys at top level; every other contrast under
        `contrasts`, every direct comparison under `directs`, the paraphrase control also under `control`.

        Always present: n_pairs, n_units, n_abs_t_gt_3, n_abs_t_gt_5, null_p99_abs_t_gt_3,
        null_p99_abs_t_gt_5, split_half_r_median, max_abs_t (the 3/5 keys follow `thresholds`), and
        `n_selective_<direct>` for each selective direct (text probe: n_selective_vs_<control>).
        Undefined numbers (e.g. split-half with < 4 pairs) are float('nan').
        """
        cfg = self.config
        s = self.main.summary(cfg)
        s["max_abs_t_unit"] = str(self.units[s["max_abs_t_unit_index"]]) if self.units.size else ""
        s["thresholds"] = list(cfg.thresholds)
        s["n_splits"] = int(self.main.split.r.size)
        s["n_boot"] = cfg.n_boot
        s["bootstrap_ci"] = cfg.ci
        s["seed"] = cfg.seed
        s["primary_contrast"] = self.primary
        s["direction"] = self.direction
        # machine-readable: which way round the primary contrast's per-pair difference (and t) is taken
        s["t_direction"] = "b-a" if self.contrasts[self.primary].reverse else "a-b"
        s["sign_convention"] = (f"t > 0 means the unit is larger on the first term of '{self.direction}'; every "
                                f"statistic is on that per-pair difference")
        s["contrasts"] = {}
        for name, c in self.contrasts.items():
            if name == self.primary:
                continue
            s["contrasts"][name] = {"label": c.label, **self.stats[name].summary(cfg)}
        s["directs"] = {}
        for name, dr in self.directs.items():
            d = {"label": dr.label, "of": dr.of, "minus": dr.minus, **self.direct_stats[name].summary(cfg)}
            if name in self.selective:
                d["n_selective"] = int(np.count_nonzero(self.selective[name]))
                s[f"n_selective_{name}"] = d["n_selective"]
            s["directs"][name] = d
        if self.selective:
            s["selective_definition"] = SELECTIVE_DEFINITION
            if self.all_selective:
                s[f"n_{self.all_selective}"] = int(np.count_nonzero(self.selective_beyond_control))
                s[f"n_{self.all_selective}_joint"] = int(np.count_nonzero(self.selective_beyond_control_joint))
                s[f"{self.all_selective}_error"] = self.selective_error()
        if self.control is not None:
            c = dict(s["contrasts"]["paraphrase"])
            if "vs_paraphrase" in self.selective:
                c["n_selective_vs_paraphrase"] = int(np.count_nonzero(self.selective["vs_paraphrase"]))
            if self.all_selective:
                c[f"n_{self.all_selective}"] = s[f"n_{self.all_selective}"]
            c["selective_definition"] = SELECTIVE_DEFINITION
            c["n_fwer_significant_in_both"] = int(np.count_nonzero(
                self.main.null.significant & self.control.null.significant))
            for k, th in enumerate(cfg.thresholds):
                key = threshold_key(th)
                m, ct = int(self.main.null.observed[k]), int(self.control.null.observed[k])
                c[f"main_minus_control_abs_t_gt_{key}"] = m - ct
                c[f"main_over_control_abs_t_gt_{key}"] = m / max(ct, 1)
            c["ratio_note"] = "main count / max(control count, 1)"
            s["control"] = c
        else:
            s["control"] = None
        if self.classification is not None:
            s["classes"] = self.classification.summary(self.unit_blocks)
            for k in ("lighting_selective", "albedo_selective", "both", "neither", "inconclusive"):
                s[f"n_{k}"] = s["classes"][f"n_{k}"]
        if self.change is not None:
            s["change_classes"] = self.change.summary()
            for k in ("lighting-selective", "albedo-selective"):
                s[f"n_change_{k.replace('-', '_')}"] = s["change_classes"]["counts"][k]
        return s

    def write_units_csv(self, path) -> None:
        """units.csv (floats as %.6g, empty for non-finite), written atomically."""
        import csv

        table = self.units_table()
        cols = list(table)
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(cols)
                for i in range(len(self.units)):
                    row = []
                    for c in cols:
                        v = table[c][i]
                        if isinstance(v, (float, np.floating)):
                            v = f"{float(v):.6g}" if np.isfinite(v) else ""
                        row.append(v)
                    w.writerow(row)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _map(fn, items: list, threads: int) -> list:
    """[fn(x) for x in items], on `threads` threads (numpy's kernels release the GIL); order kept."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        return list(ex.map(fn, items))


def _aligned_rows(of: Contrast, minus: Contrast, n_of: int, n_minus: int, what: str):
    """Row indices of the pairs two contrasts share, in `of`'s order."""
    if of.pair_ids is None or minus.pair_ids is None:
        if of.pair_ids is not None or minus.pair_ids is not None:
            raise CapturesError(f"{what}: give pair ids for both contrasts or for neither")
        if n_of != n_minus:
            raise CapturesError(f"{what}: without pair ids both contrasts need the same number of pairs "
                                f"({n_of} vs {n_minus})")
        return np.arange(n_of), np.arange(n_minus), None
    pos = {str(p): i for i, p in enumerate(np.asarray(minus.pair_ids).astype(str))}
    ids = [str(p) for p in np.asarray(of.pair_ids).astype(str) if str(p) in pos]
    of_pos = {str(p): i for i, p in enumerate(np.asarray(of.pair_ids).astype(str))}
    return (np.array([of_pos[p] for p in ids], dtype=np.int64), np.array([pos[p] for p in ids], dtype=np.int64),
            np.array(ids))


def analyse(contrasts, units, directs=(), unit_blocks=None, config: StatsConfig = StatsConfig(),
            all_selective: str | None = None) -> Analysis:
    """Run every statistic on each named contrast and each direct comparison between them.

    contrasts: a sequence of `Contrast` (the first is the primary one: units.csv's top-level columns);
    directs: a sequence of `Direct` naming two of the contrasts; units [U] names; unit_blocks [U] block
    labels (default `blocks_from_units(units)`); all_selective: name of a column that is 1 where every
    selective direct comparison is (the text probe: `selective_beyond_control`).
    Raises CapturesError for mismatched shapes, unknown names or non-finite values.
    """
    contrasts = list(contrasts)
    directs = list(directs)
    if not contrasts:
        raise CapturesError("analyse needs at least one contrast")
    units = np.asarray(units).astype(str)
    names = [c.name for c in contrasts] + [d.name for d in directs]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise CapturesError(f"contrast and direct-comparison names must be unique: {dupes} repeat")
    diffs = {}
    for c in contrasts:
        if not isinstance(c, Contrast):
            raise TypeError("analyse(contrasts, ...): every contrast must be a probe.stats.Contrast")
        d = c.diff()
        if units.shape != (d.shape[1],):
            raise CapturesError(f"units: need {d.shape[1]} names (one per column of contrast {c.name!r}), got "
                                f"shape {units.shape}")
        if c.pair_ids is not None and np.asarray(c.pair_ids).shape != (d.shape[0],):
            raise CapturesError(f"contrast {c.name!r}: need {d.shape[0]} pair ids, got "
                                f"shape {np.asarray(c.pair_ids).shape}")
        diffs[c.name] = d
    unit_blocks = blocks_from_units(units) if unit_blocks is None else np.asarray(unit_blocks).astype(str)
    if unit_blocks.shape != units.shape:
        raise CapturesError(f"unit_blocks: need {units.size} labels, got shape {unit_blocks.shape}")
    by_name = {c.name: c for c in contrasts}
    jobs = []   # (kind, name, diff, a, b, pair_ids)
    for c in contrasts:
        jobs.append(("contrast", c.name, diffs[c.name], c.a, c.b,
                     None if c.pair_ids is None else np.asarray(c.pair_ids).astype(str)))
    for dr in directs:
        if dr.of not in by_name or dr.minus not in by_name:
            raise CapturesError(f"direct comparison {dr.name!r} names contrasts {dr.of!r} and {dr.minus!r}; "
                                f"known contrasts: {', '.join(by_name)}")
        what = f"direct comparison {dr.name!r}"
        ro, rm, ids = _aligned_rows(by_name[dr.of], by_name[dr.minus], diffs[dr.of].shape[0],
                                    diffs[dr.minus].shape[0], what)
        if ro.size < 2:
            raise CapturesError(f"{what}: contrasts {dr.of!r} and {dr.minus!r} share {ro.size} pairs; a paired "
                                f"test needs at least 2")
        jobs.append(("direct", dr.name, diffs[dr.of][ro] - diffs[dr.minus][rm], None, None, ids))

    def run(job):
        _, _, diff, a, b, ids = job
        return _analyse_diff(diff, unit_blocks, config, a, b, ids)

    results = _map(run, jobs, config.threads)
    stats = {j[1]: r for j, r in zip(jobs, results) if j[0] == "contrast"}
    direct_stats = {j[1]: r for j, r in zip(jobs, results) if j[0] == "direct"}
    selective = {}
    for dr in directs:
        if dr.selective:
            m, x = stats[dr.of], direct_stats[dr.name]
            selective[dr.name] = (m.null.significant & x.null.significant
                                  & (np.sign(m.unit.t) == np.sign(x.unit.t)) & (m.unit.t != 0))
    return Analysis(config=config, units=units, unit_blocks=unit_blocks, primary=contrasts[0].name,
                    contrasts=by_name, stats=stats, directs={d.name: d for d in directs}, direct_stats=direct_stats,
                    selective=selective, all_selective=all_selective if selective else None)


# ------------------------------------------------------------------------------------ text probe

TEXT_DIRECTIONS = ("a-b", "b-a")


def text_contrasts(a, b, pair_ids=None, controls=None, direction: str = "a-b") -> tuple[list, list]:
    """The text probe's contrasts and direct comparisons.

    main: A (lit-photograph prompt) vs B (albedo prompt); per control set NAME (`controls`: {name:
    ControlSet or (a, b[, pair_ids])}, where `a` is the pair's A and `b` the control prompt): the contrast
    A vs control prompt (columns `control_{stat}` for `paraphrase`, the legacy names, else
    `control_NAME_{stat}`), and the direct comparison `vs_NAME` = main minus that contrast = control
    prompt minus albedo prompt (columns t_vs_NAME, d_vs_NAME, p_fwer_vs_NAME, selective_vs_NAME).
    direction "a-b" (t > 0: higher for A) or "b-a" (the card family's t = mean(second - first)).
    """
    if direction not in TEXT_DIRECTIONS:
        raise ValueError(f"direction must be one of {TEXT_DIRECTIONS}, got {direction!r}")
    reverse = direction == "b-a"
    ids = None if pair_ids is None else np.asarray(pair_ids).astype(str)

    def lab(first: str, second: str) -> str:
        return f"{second} - {first}" if reverse else f"{first} - {second}"

    out = [Contrast("main", a, b, ids, reverse, lab("A photograph", "B albedo"), columns=None)]
    dirs = []
    for name, cs in (controls or {}).items():
        check_control_name(name)
        if name == "main":
            raise CapturesError("'main' is the name of the main contrast, not a control set")
        ca, cb, cids = (cs.a, cs.b, cs.pair_ids) if isinstance(cs, ControlSet) else (tuple(cs) + (None,))[:3]
        if cids is None and ids is not None:
            m = np.asarray(ca).shape[0]
            if m > ids.size:
                raise CapturesError(f"control set {name!r}: {m} rows without pair ids, but only {ids.size} pairs")
            cids = ids[:m]
        legacy = name == PARAPHRASE
        out.append(Contrast(name, ca, cb, None if cids is None else np.asarray(cids).astype(str), reverse,
                            lab("A photograph", f"{name} control prompt"),
                            columns="control_{stat}" if legacy else "control_{name}_{stat}",
                            column_stats=("t", "d", "d_av", "p", "q", "p_fwer") if legacy else ("t", "d", "d_av", "p_fwer")))
        dirs.append(Direct(f"vs_{name}", of="main", minus=name,
                           label=lab(f"{name} control prompt", "B albedo")))
    return out, dirs


def analyse_text(a, b, units, pair_ids=None, controls=None, unit_blocks=None, config: StatsConfig = StatsConfig(),
                 direction: str = "a-b", control=None) -> Analysis:
    """`analyse` on the text probe's design (`text_contrasts`); selective_beyond_control over all controls.

    control=(ca, cb): shorthand for controls={"paraphrase": (ca, cb)} ((None, None) counts as no control).
    """
    if control is not None and not (control[0] is None and control[1] is None):
        if control[0] is None or control[1] is None:
            raise CapturesError("control: need both arrays (A and its paraphrase) or neither")
        ca = np.asarray(control[0])
        if ca.ndim != 2 or ca.shape[1] != np.asarray(a).shape[1]:
            raise CapturesError(f"control: need [control_pairs, {np.asarray(a).shape[1]}] arrays, got {ca.shape}")
        controls = {PARAPHRASE: tuple(control), **(controls or {})}
    contrasts, directs = text_contrasts(a, b, pair_ids, controls, direction)
    return analyse(contrasts, units, directs, unit_blocks, config, all_selective="selective_beyond_control")


def analyse_captures(captures: Captures, config: StatsConfig = StatsConfig()) -> Analysis:
    """`analyse_text` on a Captures of the text probe (every control set in the file), `analyse_images` on
    one of the image probe (meta 'stimuli' = 'images': every contrast in the file); the sign from
    meta['direction'] (default 'a-b', the convention of files written before the key existed)."""
    if captures.stimuli == "images":
        described = (captures.meta.get("image_design") or {}).get("contrasts") or {}
        labels = {n: (c.get("a", "A"), c.get("b", "B")) for n, c in described.items()}
        samples = {n: (sl.diff, sl.clusters) for n in ("lighting", "albedo")
                   if (sl := captures.sample_level(n)) is not None}
        import dataclasses

        from probe.stats.change import change_classes

        res = analyse_images(captures.contrast_sets(), captures.units, captures.unit_blocks, config,
                             direction=captures.meta.get("direction", "a-b"), labels=labels,
                             pairs_over=(captures.meta.get("image_design") or {}).get("pairs_over", "scenes"),
                             samples=samples or None)
        cc = change_classes(captures.change, config.magnitude_margin, config.alpha)
        return res if cc is None else dataclasses.replace(res, change=cc)
    return analyse_text(captures.a, captures.b, captures.units, captures.pair_ids, captures.control_sets(),
                        captures.unit_blocks, config, direction=captures.meta.get("direction", "a-b"))


# ----------------------------------------------------------------------------------- image probe

IMAGE_LABELS = {"render_vs_albedo": ("render", "albedo"), "lighting": ("harder lighting", "softer lighting"),
                "albedo": ("higher albedo luminance", "lower albedo luminance")}


def image_contrasts(sets, direction: str = "a-b", labels=None) -> list[Contrast]:
    """The image probe's contrasts, in order (the first is the primary one): `sets` {name: ControlSet or
    (a, b[, pair_ids])}. Every contrast gets the columns t_NAME, d_NAME, p_fwer_NAME (CONTRACTS C3; the
    primary one besides the top-level t, d, p, ...), and d_av_NAME beside them. direction "a-b", or "b-a" (card
    protocol) for all."""
    if direction not in TEXT_DIRECTIONS:
        raise ValueError(f"direction must be one of {TEXT_DIRECTIONS}, got {direction!r}")
    reverse = direction == "b-a"
    out = []
    for name, cs in sets.items():
        check_control_name(name, "contrast")
        a, b, ids = (cs.a, cs.b, cs.pair_ids) if isinstance(cs, ControlSet) else (tuple(cs) + (None,))[:3]
        first, second = (labels or {}).get(name) or IMAGE_LABELS.get(name, ("A", "B"))
        out.append(Contrast(name, a, b, None if ids is None else np.asarray(ids).astype(str), reverse,
                            f"{second} - {first}" if reverse else f"{first} - {second}", columns="{stat}_{name}",
                            column_stats=("t", "d", "d_av", "p_fwer")))
    return out


def analyse_images(sets, units, unit_blocks=None, config: StatsConfig = StatsConfig(), direction: str = "a-b",
                   labels=None, pairs_over: str = "scenes", samples=None) -> Analysis:
    """`analyse` on the image probe's contrasts (`image_contrasts`), then the unit classes from the lighting
    and albedo contrasts (`probe.stats.classify`: FWER-significance at `config.alpha`, the magnitude test at
    `config.magnitude_margin` on `samples`, the signed TOST at `config.equivalence_margin` for class_signed).
    samples: {"lighting": (diff [pairs, U], base scene per pair), "albedo": ...}, the sample-level differences
    (`Captures.sample_level`); without them no unit can be shown selective. units.csv gets a `pairs_over` column:
    "scenes", or "samples (CLUSTERED)" when pairs are samples."""
    import dataclasses

    from probe.stats.classify import classify_units

    res = analyse(image_contrasts(sets, direction, labels), units, (), unit_blocks, config)
    cls = None
    if "lighting" in res.stats and "albedo" in res.stats:
        cls = classify_units(res.stats["lighting"], res.stats["albedo"], config.equivalence_margin, config.alpha,
                             magnitude=samples, magnitude_margin=config.magnitude_margin)
    flag = "scenes" if pairs_over == "scenes" else f"{pairs_over} (CLUSTERED)"
    return dataclasses.replace(res, classification=cls, constant_columns=(("pairs_over", flag),))
