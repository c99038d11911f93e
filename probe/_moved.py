"""The deprecated re-exports of modules that moved when the probe was redrawn by layers (issue 15)."""
from __future__ import annotations

import importlib
import warnings


def moved(old: str, new: str):
    """(__getattr__, __dir__) for the module `old`, forwarding every name to `new`, with a DeprecationWarning."""
    target = importlib.import_module(new)
    warnings.warn(f"{old} moved to {new}; import from there ({old} is a deprecated re-export)",
                  DeprecationWarning, stacklevel=3)
    return (lambda name: getattr(target, name)), (lambda: dir(target))
