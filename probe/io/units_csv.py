"""units.csv read back as columns (`probe compare`, `evaluate ablate` and `evaluate link` read finished runs).

    from probe.io.units_csv import read_units_csv
"""
from __future__ import annotations

import csv
import os

import numpy as np

from probe.io.errors import UsageError


def read_units_csv(path: str | os.PathLike) -> dict[str, list]:
    """units.csv as columns (numeric columns as float arrays)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UsageError(f"{path} has no rows")
    cols: dict[str, list] = {k: [r[k] for r in rows] for k in rows[0]}
    for k, v in list(cols.items()):
        if k in ("unit", "block"):
            continue
        try:
            cols[k] = np.array([float(x) if x != "" else np.nan for x in v])
        except ValueError:
            pass
    return cols
