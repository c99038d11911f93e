"""JSON outputs (summary.json, config.json, compare.json, evaluate's records): written atomically, NaN-free,
with the library versions every resolved configuration records.

    from probe.io.jsonio import json_clean, versions, write_json
"""
from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

from render.imageio import atomic_path


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("ray-plantain", "numpy", "scipy", "scikit-image", "torch", "diffusers", "transformers", "bpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def json_clean(obj):
    """JSON has no NaN/inf: NaN -> None, +-inf -> "inf"/"-inf" (PSNR of a perfect prediction, an
    unreachable FWER threshold); numpy scalars and arrays -> Python values."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) else ("inf" if f == math.inf else "-inf" if f == -math.inf else f)
    return obj


def write_json(path: Path, obj) -> None:
    """Write `obj` as JSON atomically, after json_clean; anything else unknown is written as str()."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_clean(obj), indent=2, default=str, allow_nan=False))
