"""Known-answer models: small kleins trained here, shipped as snapshot folders, loaded like any snapshot.

    from probe.klein.known import KNOWN_MODELS, known_model_dir, read_known_record, KNOWN_BANNER
    known_model_dir("known-albedo")        # models/known-albedo (source checkout) or <prefix>/share/ray-plantain/models/...
    read_known_record("models/known-albedo")["task"]        # "albedo"; None for a folder that is not one

A known-answer model is a Flux2KleinPipeline snapshot (the same diffusers/transformers classes as klein and the
tiny model) whose folder also holds RECORD_FILE: what it was trained to do, on which renders, with which
instruction, seeds, sizes, the text length it reads (`max_sequence_length`), its training time and loss curve.
`--model known-albedo` / `--model known-photo` (or the folder itself) load it through the same
`Flux2KleinPipeline.from_pretrained` as a hub snapshot; the loader reads the record, so every job passes the
model's own text length and every report says in its first line what KNOWN_BANNER says.

- known-albedo: edits the rendered photograph into its albedo under the albedo instruction `evaluate generate`
  uses by default: a network that really decomposes (the positive known answer);
- known-photo: the same architecture, data and budget, trained to give the photograph back under the keep-photo
  instruction: a trained network whose task needs no separation of light and colour (the specificity control).

Retrain either with `python -m probe known train` (see its --help, and each folder's README.md).
"""
from __future__ import annotations

import json
from pathlib import Path

KNOWN_MODELS = ("known-albedo", "known-photo")
RECORD_FILE = "ray_plantain_known.json"
RECORD_FORMAT = "ray-plantain-known/1"
KNOWN_BANNER = "a model trained here on synthetic renders: a check of the tool, not a finding about klein"


class KnownModelError(ValueError):
    """A known-answer model folder is missing or its record is unreadable (message is user-facing)."""


def models_root() -> Path:
    """The shipped models/ folder (source checkout, editable or regular install)."""
    from render.paths import data_dir

    return data_dir("models")


def known_model_dir(name: str) -> Path:
    """The snapshot folder of a shipped known-answer model, by short name."""
    if name not in KNOWN_MODELS:
        raise KnownModelError(f"unknown known-answer model {name!r}; shipped: {', '.join(KNOWN_MODELS)}")
    path = models_root() / name
    if not (path / "model_index.json").is_file():
        raise KnownModelError(
            f"the known-answer model {name!r} is not at {path} (model_index.json missing). It ships in the "
            f"repository's models/ folder: reinstall the package, or retrain it with `python -m probe known train`.")
    return path


def read_known_record(path: str | Path) -> dict | None:
    """The record of a known-answer snapshot folder; None when the folder has no record (any other snapshot)."""
    f = Path(path) / RECORD_FILE
    if not f.is_file():
        return None
    try:
        rec = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise KnownModelError(f"{f}: not valid JSON ({e})") from None
    missing = [k for k in ("format", "name", "task", "max_sequence_length", "banner") if k not in rec]
    if missing or rec.get("format") != RECORD_FORMAT:
        raise KnownModelError(f"{f}: not a {RECORD_FORMAT} record (missing {missing or 'the right format'})")
    return rec


def known_summary(record: dict | None) -> dict | None:
    """The part of a record every job writes beside its outputs (config.json's model block, reports)."""
    if not record:
        return None
    keys = ("name", "task", "banner", "what", "instruction", "max_sequence_length", "resolution", "data_recipe")
    return {k: record.get(k) for k in keys if k in record}


def report_banner(model_record: dict | None) -> str | None:
    """KNOWN_BANNER when a job's model record (LoadedModel.describe()) is a known-answer model with trained
    weights; None otherwise (random weights keep their own banner: it takes precedence)."""
    if not isinstance(model_record, dict) or model_record.get("random_weights"):
        return None
    known = model_record.get("known_answer")
    return (known or {}).get("banner") or (KNOWN_BANNER if known else None)
