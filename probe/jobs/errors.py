"""The errors every probe command shows as one paragraph with exit code 2 (no traceback): bad arguments and
bad input files, from every layer."""
from __future__ import annotations

import importlib

from probe.design.prompts import PromptFileError
from probe.io.errors import UsageError

# (module, exception class) of every layer's user-facing errors
_LAYER_ERRORS = (("probe.io.runs", "CompareError"), ("probe.klein.model", "ModelNotAvailable"),
                 ("probe.io.captures", "CapturesError"), ("probe.klein.known", "KnownModelError"),
                 ("probe.klein.train", "KnownTrainError"), ("probe.design.image_stimuli", "StimuliError"))


def _user_errors() -> tuple:
    errs: list = [UsageError, PromptFileError, FileNotFoundError]
    for module, name in _LAYER_ERRORS:
        try:
            errs.append(getattr(importlib.import_module(module), name))
        except ImportError:  # pragma: no cover
            pass
    return tuple(errs)


USER_ERRORS = _user_errors()
