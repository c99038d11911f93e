"""A finished probe run folder read back (summary.json, config.json, units.csv, captures.npz): what `probe
compare` and a run's baseline comparison read. numpy only.

    from probe.io.runs import load_run, load_population
    run = load_run("runs/probe")          # Run(path, label, summary, config, units, t, fwer, blocks, captures, notes)
    run = load_run("runs/probe-images", contrast="lighting")   # an image probe seen through another contrast
    run.design()                          # what makes two runs comparable: stimuli, pairs, seeds per pair, steps, ...
    pop = load_population("runs/population")   # Population(path, record, members): `probe run --randomize-seeds`
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.io.captures import Captures, CapturesError, load_captures
from probe.io.units_csv import read_units_csv

__all__ = ["Run", "load_run", "default_label", "CompareError", "Population", "load_population", "POPULATION_FILE"]

POPULATION_FILE = "population.json"     # the record of a population folder


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
    captures: object | None = None   # probe.io.captures.Captures, when captures.npz is there
    notes: list = field(default_factory=list)
    columns: dict = field(default_factory=dict)   # every units.csv column (numeric ones as float arrays)

    @property
    def random_weights(self) -> bool:
        return bool(self.summary.get("random_weights") or (self.config.get("model") or {}).get("random_weights"))

    @property
    def randomize(self) -> str:
        return ((self.config.get("model") or {}).get("randomize") or {}).get("mode", "none")

    @property
    def n_pairs(self) -> int | None:
        """Pairs of the primary contrast (the rows the unit-by-unit test resamples)."""
        if self.captures is not None:
            return int(self.captures.n_pairs)
        n = self.summary.get("n_pairs")
        return int(n) if n is not None else None

    @property
    def seeds_per_pair(self) -> int | None:
        """Noise draws averaged per stimulus (`--seeds-per-pair`); None when the run does not record it."""
        v = (self.config.get("noise") or {}).get("seeds_per_pair")
        if v is None and self.captures is not None:
            v = self.captures.meta.get("seeds_per_pair")
        return int(v) if v is not None else None

    @property
    def stimuli(self) -> str:
        return str(self.summary.get("stimuli") or self.config.get("stimuli") or "text")

    @property
    def primary_contrast(self) -> str:
        return str(self.summary.get("primary_contrast") or "main")

    @property
    def pairs_over(self) -> str:
        """What a pair is: prompts (text), base scenes or samples (image probe; samples are CLUSTERED)."""
        if self.stimuli != "images":
            return "prompt pairs"
        return str(self.summary.get("pairs_over") or (self.summary.get("image_design") or {}).get("pairs_over")
                   or "scenes")

    @property
    def clustered(self) -> bool:
        return bool(self.summary.get("clustered") or (self.summary.get("image_design") or {}).get("clustered"))

    def design(self) -> dict:
        """Everything that makes the statistics of two runs comparable value for value, from config.json,
        captures.npz and summary.json: stimuli, protocol, contrasts, pairs (ids, count, what a pair is), noise
        (mode, run seed, seeds per pair), the capture settings (steps, captured steps, guidance, size, reducer,
        tokens, text length, slices, editing, reference preparation), the text or image prompt, and the
        statistics settings that move the counts (permutations, alpha, thresholds, the class margins). A field
        the run does not record is None. The unit set is compared apart (it is long)."""
        cfg, s = self.config, self.summary
        cap = dict(cfg.get("capture") or {})
        noise = cfg.get("noise") or {}
        stats = cfg.get("stats") or {}
        pair_ids = ([str(x) for x in self.captures.pair_ids] if self.captures is not None
                    else sorted(noise.get("pair_seeds") or []) or None)
        return {
            "stimuli": self.stimuli,
            "protocol": s.get("protocol") or cap.get("protocol"),
            "primary_contrast": self.primary_contrast,
            "contrasts": sorted([self.primary_contrast, *(s.get("contrasts") or {})]),
            "controls": sorted(s.get("controls") or []) if self.stimuli != "images" else None,
            "pairs_over": self.pairs_over,
            "n_pairs": self.n_pairs,
            "pair_ids": pair_ids,
            "seeds_per_pair": self.seeds_per_pair,
            "noise": noise.get("noise") if noise else (self.captures.meta.get("noise") if self.captures is not None
                                                       else None),
            "noise_seed": noise.get("seed"),
            **{f"capture.{k}": cap.get(k) for k in ("steps", "capture_steps", "guidance", "height", "width",
                                                     "reducer", "single_tokens", "max_sequence_length",
                                                     "slice_width", "slice_layout", "editing", "reference_prep")},
            "image_prompt": s.get("image_prompt") if self.stimuli == "images" else None,
            "text_lengths": cfg.get("text_lengths") if self.stimuli != "images" else None,
            **{f"stats.{k}": stats.get(k) for k in ("n_perm", "n_splits", "alpha", "thresholds",
                                                     "equivalence_margin", "magnitude_margin")},
        }


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path.parent} is not a finished probe run: {path.name} is missing ({what}); run "
                           f"`python -m probe run --out {path.parent}` (or `probe stats`) first") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON ({e})") from None


def _design_words(summary: dict, config: dict) -> str:
    """', images: CONTRAST, pairs over samples (CLUSTERED)' and ', N seeds per pair' from a run's own records."""
    words = ""
    if (summary.get("stimuli") or config.get("stimuli")) == "images":
        design = summary.get("image_design") or {}
        words += f", images: {summary.get('primary_contrast') or 'render_vs_albedo'}"
        if (summary.get("pairs_over") or design.get("pairs_over")) == "samples":
            words += ", pairs over samples" + (" (CLUSTERED)" if summary.get("clustered") or design.get("clustered")
                                               else "")
    spp = (config.get("noise") or {}).get("seeds_per_pair")
    if spp and int(spp) > 1:
        words += f", {int(spp)} seeds per pair"
    return words


def default_label(summary: dict, config: dict, path: Path) -> str:
    model = config.get("model") or {}
    rnd = (model.get("randomize") or {})
    name = str(model.get("model") or path.name)
    words = _design_words(summary, config)
    if rnd.get("mode", "none") != "none":
        return f"{path.name}: random-init ({rnd['mode']}, seed {rnd.get('seed')}{words})"
    if model.get("source") == "tiny":
        return f"{path.name}: tiny (random weights{words})"
    proto = summary.get("protocol") or (config.get("capture") or {}).get("protocol") or "?"
    return f"{path.name}: {name.rsplit('/', 1)[-1]} ({proto}{words})"


def _through_contrast(path: Path, summary: dict, cols: dict, caps, contrast: str):
    """(summary, t, fwer, captures) of an image probe seen through its contrast `contrast` (not the primary one)."""
    have = [summary.get("primary_contrast") or "main", *(summary.get("contrasts") or {})]
    if contrast not in (summary.get("contrasts") or {}) or f"t_{contrast}" not in cols:
        kind = ("an image probe with the contrasts " + ", ".join(have) if summary.get("stimuli") == "images" else
                "a text probe (one contrast, its A - B)")
        raise CompareError(f"{path} has no `{contrast}` contrast: it is {kind}. --contrast picks one contrast that "
                           "every compared run has (image probes: render_vs_albedo, lighting, albedo as built). "
                           "Nothing was written.")
    c = summary["contrasts"][contrast]
    alpha = float(summary.get("fwer_alpha", 0.05))
    t = np.asarray(cols[f"t_{contrast}"], dtype=np.float64)
    fwer = (np.asarray(cols[f"p_fwer_{contrast}"], dtype=np.float64) <= alpha) if f"p_fwer_{contrast}" in cols \
        else np.zeros(t.size, dtype=bool)
    seen = {**summary, **c, "direction": c.get("label", f"{contrast}: A - B"), "viewed_contrast": contrast}
    if caps is not None:
        cs = caps.contrasts.get(contrast)
        caps = None if cs is None else Captures(a=cs.a, b=cs.b, units=caps.units, pair_ids=cs.pair_ids,
                                                unit_blocks=caps.unit_blocks, meta=caps.meta)
    return seen, t, fwer, caps


def load_run(path, label: str | None = None, contrast: str | None = None) -> Run:
    """Read a finished run folder; CompareError when something needed is missing. `contrast`: see an image
    probe through that contrast (its t_NAME column and captures) instead of its primary one."""
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
    if contrast is not None and contrast != summary.get("primary_contrast"):
        summary, t, fwer, caps = _through_contrast(path, summary, cols, caps, contrast)
        label = label or f"{default_label(summary, config, path)} [{contrast}]"
    elif contrast is not None:
        summary = {**summary, "viewed_contrast": contrast}
    return Run(path, label or default_label(summary, config, path), summary, config, units, t, fwer, blocks,
               caps, notes, cols)


@dataclass(frozen=True, eq=False)
class Population:
    """A population folder (`probe run --randomize transformer --randomize-seeds 0-18 --out FOLDER`): its record
    (population.json) and its finished members, each a normal run folder (`seed-0000/`, ...), in seed order."""
    path: Path
    record: dict
    members: list            # [Run], finished members only
    seeds: list              # [int], the seed of each member
    missing: list            # [int], seeds the record plans that are not finished

    @property
    def k(self) -> int:
        return len(self.members)


def load_population(folder) -> Population:
    """Read a population folder; CompareError (one paragraph) when it is not one or holds fewer than two finished
    members (a population of one cannot rank anything)."""
    folder = Path(folder)
    made_by = (f"a population folder is made by `python -m probe run <the options of the run> --randomize transformer "
               f"--randomize-seeds 0-18 --out {folder}`")
    if not folder.is_dir():
        raise CompareError(f"population folder not found: {folder}; {made_by}. Nothing was written.")
    record = _read_json(folder / POPULATION_FILE, "the population's record") if (folder / POPULATION_FILE).is_file() \
        else None
    if record is None:
        raise CompareError(f"{folder} is not a population folder: {POPULATION_FILE} is missing; {made_by}. "
                           "Nothing was written.")
    members, seeds, missing = [], [], []
    for m in sorted(record.get("members") or [], key=lambda m: int(m["seed"])):
        sub = folder / m["folder"]
        if m.get("status") == "finished" and (sub / "summary.json").is_file() and (sub / "units.csv").is_file():
            members.append(load_run(sub))
            seeds.append(int(m["seed"]))
        else:
            missing.append(int(m["seed"]))
    if len(members) < 2:
        raise CompareError(
            f"{folder} holds {len(members)} finished untrained network{'s' if len(members) != 1 else ''}"
            + (f" ({len(missing)} more planned but not finished: run the same command again)" if missing else "")
            + ": a rank among K networks needs K >= 2, and its smallest attainable p is 1 / (1 + K), so reaching 0.05 "
            "takes K >= 19 (`--randomize-seeds 0-18`). A population of one is no population: a single random-init "
            "run said 'different' for two untrained networks in 19-45 % of simulations. Nothing was written.")
    return Population(folder, record, members, seeds, missing)
