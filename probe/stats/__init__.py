"""Statistics of the probe, in pure numpy/scipy (no torch): paired t, sign-flip and tmax nulls, split-half,
per-block bootstrap, unit classes, the comparison of runs. May import probe.io only.

`probe.stats.analyse`, `analyse_captures`, `StatsConfig`, `Contrast`, `Direct`, `load_captures`, ... (the names of
`probe.stats.analysis.__all__`) stay importable from here, loaded on first use.
"""
from __future__ import annotations

import importlib


def __getattr__(name: str):
    analysis = importlib.import_module("probe.stats.analysis")
    if name in analysis.__all__:
        return getattr(analysis, name)
    raise AttributeError(f"module 'probe.stats' has no attribute {name!r}")


def __dir__():
    analysis = importlib.import_module("probe.stats.analysis")
    return sorted(set(globals()) | set(analysis.__all__))
