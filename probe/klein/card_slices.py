"""The published card's protocol: what the card states, what a sibling card states, what we reconstruct.

    from probe.card import StridedSliceCapture, protocol_facts
    rows = protocol_facts(config)     # [(fact, kind, this run's value)] for the report's table

The card (reference/ray-plantain-card.txt) states its numbers but little of its method: "16,320
heads", 25 pairs, Cohen's d, 100 split-half splits, ratios to an "empirical null p99", and "per-head
capture protocol identical to the rest of the plantain probe family". A sibling plantain card of the
same family states the rest of the family's protocol: one inference step, guidance 1.0, an RMS
forward pre-hook on each attention output projection, t = mean(second - first) / (sd / sqrt(N)).
Everything else is our reconstruction, and the report says so in one table (`protocol_facts`):
which 16 channels make a "head" (`--slice-layout`), which tokens the RMS covers, the resolution
(the pipeline's own default unless --height/--width), the noise seeds, the number of sign flips.

Slice layouts (both give 3072 / 16 = 192 slices per joint block and 12,288 / 16 = 768 per single
block, 16,320 in all): `contiguous` slice j = channels 16 j .. 16 j + 15 (units
`s00/single.3/c0016-0031`); `strided` slice j = channels j, j + S, j + 2 S, ... (S = C / 16, the
number of slices; units `s00/single.3/c0001s0768`: start 1, stride 768), the reading in which a slice
takes one channel from each 1/16 of the projection input.
"""
from __future__ import annotations

from typing import Sequence

from probe.capture import Site, SliceCapture

__all__ = ["StridedSliceCapture", "strided_unit_names", "protocol_facts", "CARD_SIGN", "PROTOCOL_KINDS"]

# The card family defines t on (second - first) = B - A; card-mode runs report t that way.
CARD_SIGN = "b-a"
PROTOCOL_KINDS = ("stated by the card", "stated by a sibling plantain card", "our reconstruction")


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


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return default
        d = d[k]
    return d


def protocol_facts(config: dict) -> list[tuple[str, str, str]]:
    """Rows (fact, kind, value in this run) separating what the card states, what a sibling card states,
    and what we reconstructed; `config` is the run's config.json (missing keys read 'not recorded')."""
    cap = config.get("capture") or {}
    card, sib, ours = PROTOCOL_KINDS
    nr = "not recorded"
    res = (f"{cap['height']}×{cap['width']}" if cap.get("height") and cap.get("width") else
           "the reference image's size (editing calls)" if cap.get("editing") else nr)
    res_src = config.get("resolution_source") or nr
    noise = config.get("noise") or {}
    n_perm = _get(config, "stats", "n_perm", default=nr)
    return [
        ("units: 16,320 \"heads\"", card, f"{config.get('n_units', nr)} units"),
        ("25 paired prompts (A rendered photograph, B albedo)", card, f"{config.get('n_pairs', nr)} pairs"),
        ("effect size: per-head Cohen's d", card, "d_z = mean(diff) / sd(diff)"),
        ("split-half consistency over 100 random 50/50 splits of the stimuli", card,
         f"{_get(config, 'stats', 'n_splits', default=nr)} splits"),
        ("counts over |t| > 3 and > 5 as ratios to the empirical null p99", card,
         "sign-flip null, p99 of the count"),
        ("one inference step", sib, f"{cap.get('steps', nr)} step(s), captured {cap.get('capture_steps', nr)}"),
        ("guidance 1.0", sib, str(cap.get("guidance", nr))),
        ("RMS forward pre-hook on each attention output projection", sib,
         "pre-hooks on to_out (joint blocks' image stream) and the single blocks' fused to_out"),
        ("t = mean(second − first) / (sd / √N), i.e. B − A", sib, str(config.get("direction", nr))),
        ("a \"head\" is 16 channels: 5 × 192 + 20 × 768 = 16,320", ours,
         f"slice layout {cap.get('slice_layout', 'contiguous')} (`--slice-layout`)"),
        ("which tokens the RMS covers", ours,
         "the whole hooked sequence, text padding included (joint blocks: image stream only)"),
        ("resolution", ours, f"{res} ({res_src})"),
        ("noise seeds", ours, f"{noise.get('noise', nr)}, {noise.get('seeds_per_pair', nr)} per pair"),
        ("number of sign flips of the null", ours, f"{n_perm}"),
        ("prompts and their wording", ours, "prompts/pairs.jsonl (the card's prompts are not published)"),
    ]
