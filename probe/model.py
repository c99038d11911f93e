"""Deprecated: moved to `probe.klein.model` (issue 15). A thin re-export that keeps `probe.model.<name>` working for
notebooks and scripts; import from `probe.klein.model` instead."""
from probe._moved import moved

__getattr__, __dir__ = moved(__name__, "probe.klein.model")
