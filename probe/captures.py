"""Deprecated: moved to `probe.io.captures` (issue 15). A thin re-export that keeps `probe.captures.<name>` working for
notebooks and scripts; import from `probe.io.captures` instead."""
from probe._moved import moved

__getattr__, __dir__ = moved(__name__, "probe.io.captures")
