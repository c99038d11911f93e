"""Locate the shipped data folders (`scenes/`, `prompts/`) at run time.

Works from a source checkout, an editable install, and a regular install (where
setuptools puts them under `<prefix>/share/ray-plantain/`).
"""
from __future__ import annotations

import sys
from pathlib import Path


def data_dir(name: str) -> Path:
    """Return the folder of shipped data files called `name` ("scenes" or "prompts")."""
    here = Path(__file__).resolve().parent.parent / name
    if here.is_dir():
        return here
    for prefix in (sys.prefix, sys.base_prefix):
        p = Path(prefix) / "share" / "ray-plantain" / name
        if p.is_dir():
            return p
    raise FileNotFoundError(
        f"Cannot find the ray-plantain data folder {name!r}: looked next to the source "
        f"({here}) and under {sys.prefix}/share/ray-plantain/. Reinstall the package."
    )
