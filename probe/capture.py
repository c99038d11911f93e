"""Deprecated: moved to `probe.klein.capture` (issue 15). This thin re-export keeps `probe.capture.<name>` working for
notebooks and scripts; import from `probe.klein.capture` instead."""
from __future__ import annotations

import warnings

from probe.klein import capture as _moved

warnings.warn("probe.capture moved to probe.klein.capture; import from there (probe.capture is a deprecated re-export)",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_moved, name)


def __dir__():
    return dir(_moved)
