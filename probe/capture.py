"""Deprecated: moved to `probe.klein.capture` (issue 15). A thin re-export that keeps `probe.capture.<name>` working for
notebooks and scripts; import from `probe.klein.capture` instead."""
from probe._moved import moved

__getattr__, __dir__ = moved(__name__, "probe.klein.capture")
