"""The errors every probe command shows as one paragraph with exit code 2 (no traceback): bad arguments and
bad input files, from every layer."""
from __future__ import annotations

from probe.design.prompts import PromptFileError
from probe.io.errors import UsageError


def _user_errors() -> tuple:
    errs: list = [UsageError, PromptFileError, FileNotFoundError]
    try:
        from probe.io.runs import CompareError

        errs.append(CompareError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from probe.klein.model import ModelNotAvailable

        errs.append(ModelNotAvailable)
    except ImportError:  # pragma: no cover
        pass
    try:
        from probe.io.captures import CapturesError

        errs.append(CapturesError)
    except ImportError:
        pass
    try:
        from probe.klein.known import KnownModelError
        from probe.klein.train import KnownTrainError

        errs += [KnownModelError, KnownTrainError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from probe.design.image_stimuli import StimuliError

        errs.append(StimuliError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)

USER_ERRORS = _user_errors()
