"""Unit names read back for the report's layout: step, site, head or channel slice of every unit
(`s12/double.3.img/h07`, `s0/single.9/c0-15`, ...), and the rows and columns of the heatmaps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["UnitLayout", "parse_units", "UNIT_RE", "SITE_RE"]


UNIT_RE = re.compile(r"^(?:s(?P<step>\d+)/)?(?P<site>[^/]+)/(?:h(?P<head>\d+)|c(?P<c0>\d+)(?:-(?P<c1>\d+)|s(?P<stride>\d+)))$")


SITE_RE = re.compile(r"^(?P<kind>double|single)\.(?P<block>\d+)(?:\.(?P<stream>img|txt|ref))?$")


@dataclass(frozen=True, eq=False)
class UnitLayout:
    """Where each unit sits in the heatmap. kind: 'heads' (`s12/double.3.img/h07`), 'card'
    (`s00/single.3/c0016-0031`; strided slices `s00/single.3/c0001s0768`, slice_width 0) or 'other'
    (any other names: rows are the unit blocks)."""
    kind: str
    step: np.ndarray        # [U] int step, -1 when the names carry none
    site: np.ndarray        # [U] str row label (site group, or block for 'other')
    col: np.ndarray         # [U] int column: head index, slice index, or position within the block
    slice_width: int        # channels per card slice (0 for heads)

    @property
    def steps(self) -> list[int]:
        return sorted(set(int(s) for s in self.step))

    @property
    def has_steps(self) -> bool:
        return bool(self.step.size) and bool((self.step >= 0).all())

    def rows(self) -> list[str]:
        """Row labels in model order: double.0.img, double.0.txt, double.1.img, ..., single.0, ..."""
        return sorted(set(self.site.tolist()), key=_site_key)


def _site_key(name: str):
    m = SITE_RE.match(name)
    if m is None:
        return (2, 0, 0, name)
    return (0 if m["kind"] == "double" else 1, int(m["block"]), {None: 0, "img": 0, "txt": 1, "ref": 2}[m["stream"]],
            "")


def parse_units(units, unit_blocks=None) -> UnitLayout:
    """Parse unit names into heatmap coordinates (see UnitLayout); never raises on odd names."""
    units = np.asarray(units).astype(str)
    matches = [UNIT_RE.match(u) for u in units]
    n = units.size
    if n and all(m is not None for m in matches):
        heads = [m["head"] is not None for m in matches]
        if all(heads) or not any(heads):
            step = np.array([int(m["step"]) if m["step"] is not None else -1 for m in matches], dtype=np.int64)
            site = np.array([m["site"] for m in matches])
            if all(heads):
                col = np.array([int(m["head"]) for m in matches], dtype=np.int64)
                return UnitLayout("heads", step, site, col, 0)
            c0 = np.array([int(m["c0"]) for m in matches], dtype=np.int64)
            if all(m["stride"] is not None for m in matches):       # strided card slices: column = slice index
                return UnitLayout("card", step, site, c0, 0)
            mixed = any(m["c1"] is None for m in matches)
            widths = np.array([0 if mixed else int(m["c1"]) - int(m["c0"]) + 1 for m in matches], dtype=np.int64)
            width = int(widths[0]) if widths.size and (widths == widths[0]).all() and widths[0] > 0 else 0
            if width:
                return UnitLayout("card", step, site, c0 // width, width)
    blocks = (np.asarray(unit_blocks).astype(str) if unit_blocks is not None
              else np.array([u.rsplit("/", 1)[0] if "/" in u else "all" for u in units]))
    col = np.zeros(n, dtype=np.int64)
    seen: dict[str, int] = {}
    for i, b in enumerate(blocks):
        col[i] = seen.get(b, 0)
        seen[b] = col[i] + 1
    return UnitLayout("other", np.full(n, -1, dtype=np.int64), blocks, col, 0)
