"""The error every job shows its user as one paragraph with exit code 2 (evaluate's jobs raise it too)."""
from __future__ import annotations


class UsageError(ValueError):
    """A bad argument or input file; printed as one line, exit code 2."""
