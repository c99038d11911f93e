"""A finished probe run folder read back (summary.json, config.json, units.csv, captures.npz): what `probe
compare` and a run's baseline comparison read. numpy only.

    from probe.io.runs import load_run
    run = load_run("runs/probe")          # Run(path, label, summary, config, units, t, fwer, blocks, captures, notes)
    run = load_run("runs/probe-images", contrast="lighting")   # an image probe seen through another contrast
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.io.captures import Captures, CapturesError, load_captures
from probe.io.units_csv import read_units_csv

__all__ = ["Run", "load_run", "default_label", "CompareError"]


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
               caps, notes)
