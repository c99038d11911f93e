"""Deprecated: moved to `probe.klein.model` (issue 15). This thin re-export keeps `probe.model.<name>` working for
notebooks and scripts; import from `probe.klein.model` instead."""
from __future__ import annotations

import warnings

from probe.klein import model as _moved

warnings.warn("probe.model moved to probe.klein.model; import from there (probe.model is a deprecated re-export)",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_moved, name)


def __dir__():
    return dir(_moved)
