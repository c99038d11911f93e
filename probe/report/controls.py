"""The text probe's control sets in words and tokens: report.md's table of how each control prompt relates to A and
B (`summary.json` `control_lexicon`, computed by `probe.design.prompts.control_lexicon` when the run was made).
No torch, no matplotlib.
"""
from __future__ import annotations

from probe.report.common import md_table

__all__ = ["CONTROL_MEANING", "lexicon_section"]

CONTROL_MEANING = {
    "paraphrase": "A reworded, lighting unchanged: a unit selective beyond it reacts to more than A's wording",
    "vocabulary": "B's own words turned to mean a lit photograph (negations turned, no lighting clause of A): a unit "
                  "selective beyond it reacts to the meaning, not to B's words",
    "shuffled": "B's words in a random order (same bag of words, no syntax): a unit selective beyond it reacts to "
                "more than which words B uses",
}


def _tok(d: dict | None) -> str:
    if not d:
        return "not recorded"
    return f"{d['mean']:+.2f} ± {d['sd']:.2f} [{d['min']:+d}, {d['max']:+d}]"


def _share(x) -> str:
    return "—" if x is None or x != x else f"{100 * float(x):.0f}%"


def lexicon_section(lexicon: dict | None) -> list[str]:
    """'## Control sets in words and tokens' for a text run, or [] when the run recorded no lexicon."""
    if not lexicon:
        return []
    rows = []
    for name, lx in lexicon.items():
        rows.append([f"`{name}`", lx.get("n_pairs", "?"), _tok(lx.get("tokens_minus_b_pipeline")),
                     _tok(lx.get("tokens_minus_b")), _share(lx.get("keeps_b")), _share(lx.get("from_b")),
                     _share(lx.get("from_a")), CONTROL_MEANING.get(name, "a control set of your own")])
    counter = next((lx.get("counter") for lx in lexicon.values() if lx.get("counter")), "the token stand-in")
    out = ["## Control sets in words and tokens", ""]
    out += md_table(["set", "pairs", "tokens − B (this model's tokenizer)", "tokens − B (stand-in)",
                     "B's content words kept", "its content words from B", "its content words from A", "what it tests"],
                    rows)
    out += ["", "Tokens − B: per pair, the control prompt's own tokens minus B's (chat template and padding left out), "
            "mean ± sd [min, max]; a control made of B's words is length-matched to B within 2 tokens. The first column "
            "counts with this run's own tokenizer, the second with " + counter + ". Content words: lower case, "
            "articles, prepositions, conjunctions and negations left out.", ""]
    return out
