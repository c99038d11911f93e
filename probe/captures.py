"""Deprecated: moved to `probe.io.captures` (issue 15). This thin re-export keeps `probe.captures.<name>` working for
notebooks and scripts; import from `probe.io.captures` instead."""
from __future__ import annotations

import warnings

from probe.io import captures as _moved

warnings.warn("probe.captures moved to probe.io.captures; import from there (probe.captures is a deprecated re-export)",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_moved, name)


def __dir__():
    return dir(_moved)
