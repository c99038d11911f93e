"""The card protocol's strided reading of a 16-channel "head" (`--slice-layout strided`); the contiguous
reading is `probe.klein.capture.SliceCapture`. What the card states and what we reconstruct: probe.design.card.

    from probe.klein.card_slices import StridedSliceCapture

Slice layouts (both give 3072 / 16 = 192 slices per joint block and 12,288 / 16 = 768 per single
block, 16,320 in all): `contiguous` slice j = channels 16 j .. 16 j + 15 (units
`s00/single.3/c0016-0031`); `strided` slice j = channels j, j + S, j + 2 S, ... (S = C / 16, the
number of slices; units `s00/single.3/c0001s0768`: start 1, stride 768), the reading in which a slice
takes one channel from each 1/16 of the projection input.
"""
from __future__ import annotations

from typing import Sequence

from probe.klein.capture import Site, SliceCapture

__all__ = ["StridedSliceCapture", "strided_unit_names"]


def strided_unit_names(sites: Sequence[Site], steps: Sequence[int], width: int = 16) -> list[str]:
    """Strided card units: `s00/double.0.img/c0003s0192` = channels 3, 195, 387, ... (start 3, stride 192)."""
    names = []
    for s in steps:
        for site in sites:
            stride = site.in_features // width
            names += [f"s{s:02d}/{site.name}/c{j:04d}s{stride:04d}" for j in range(stride)]
    return names


class StridedSliceCapture(SliceCapture):
    """The card's protocol with the strided reading of a slice: slice j holds every (C/width)-th channel
    starting at j. Same hooks, sequence and RMS as `SliceCapture`; only the channel grouping differs."""

    def __init__(self, transformer, sites, steps=(0,), forwards_per_step: int = 1, width: int = 16):
        super().__init__(transformer, sites, steps, forwards_per_step, width=width)
        self.units = strided_unit_names(self.sites, self.steps, width)

    def _make_hook(self, site: Site):
        contiguous = super()._make_hook(site)
        w = self.width

        def hook(module, args):
            if self._slot < 0:
                return None
            # channel k * slices + j moves to position j * width + k: the contiguous slices of the permuted
            # input are the strided slices of the original (one copy of the input, card mode's single step)
            x = args[0].unflatten(-1, (w, -1)).transpose(-1, -2).flatten(-2)
            return contiguous(module, (x, *args[1:]))

        return hook


