"""The published card's protocol: what the card states, what a sibling card states, what we reconstruct.

    from probe.design.card import CARD_SIGN, protocol_facts
    rows = protocol_facts(config)     # [(fact, kind, this run's value)] for the report's table

The card (reference/ray-plantain-card.txt) states its numbers but little of its method: "16,320
heads", 25 pairs, Cohen's d, 100 split-half splits, ratios to an "empirical null p99", and "per-head
capture protocol identical to the rest of the plantain probe family". A sibling plantain card of the
same family states the rest of the family's protocol: one inference step, guidance 1.0, an RMS
forward pre-hook on each attention output projection, t = mean(second - first) / (sd / sqrt(N)).
Everything else is our reconstruction, and the report says so in one table (`protocol_facts`):
which 16 channels make a "head" (`--slice-layout`), which tokens the RMS covers, the resolution
(the pipeline's own default unless --height/--width), the noise seeds, the number of sign flips.

The capture of the strided reading of a slice is `probe.klein.card_slices.StridedSliceCapture`.
"""
from __future__ import annotations

__all__ = ["protocol_facts", "CARD_SIGN", "PROTOCOL_KINDS"]

# The card family defines t on (second - first) = B - A; card-mode runs report t that way.
CARD_SIGN = "b-a"

PROTOCOL_KINDS = ("stated by the card", "stated by a sibling plantain card", "our reconstruction")


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
