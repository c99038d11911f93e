"""The verdict's pre-declared criteria: the card's claims as hypotheses H1-H6, each with the test that decides it.

    from evaluate.verdict_criteria import CRITERIA, ALPHA, criteria_markdown
    [c.id for c in CRITERIA]          # ['H1', ..., 'H6']

They live here and only here, are printed in every verdict before any outcome, and are the same for every model
(klein, a known-answer model trained here, a random-weight dry run): `python -m evaluate verdict` reads the
outputs the tool already wrote and applies them; nothing in evaluate/verdict.py may set a threshold of its own.
Pure data (no numpy).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Criterion", "CRITERIA", "ALPHA", "MIN_POPULATION", "MIN_DRAWS", "REQUIRED_CONTROLS", "H5_METRICS",
           "H5_BASELINES", "H6_METRIC", "H4_CLASSES", "H4_RULE", "H6_SELECT", "OUTCOMES", "criteria_markdown", "criterion"]

ALPHA = 0.05                                   # every p-value criterion; and 95 % CIs
MIN_POPULATION = 19                            # K untrained networks: the rank p's floor 1/(1 + K) reaches ALPHA
MIN_DRAWS = 19                                 # random k-head draws: the ablation rank p's floor 1/(1 + draws)
REQUIRED_CONTROLS = ("paraphrase", "vocabulary")   # H3: the wording controls whose direct tests must be in the run
H4_CLASSES = ("lighting-selective", "albedo-selective")   # summary.json change_classes.counts (units.csv class_change)
H4_RULE = "change_classes"          # probe.stats.change (the scalar `class` counts are context: they lacked power)
H6_SELECT = "change_albedo"         # the heads H6 ablates: evaluate ablate --select change_albedo
H5_METRICS = ("lmse_linear_scalar", "mse_srgb_scalar")
H5_BASELINES = ("image_as_albedo", "retinex_color")
H6_METRIC = "lmse_linear_scalar"
OUTCOMES = ("supported", "not supported", "not tested")


@dataclass(frozen=True)
class Criterion:
    id: str
    claim: str          # the card's claim, as a hypothesis
    inputs: str         # which of the verdict's inputs it reads
    test: str           # the test that decides it
    criterion: str      # when it is supported
    power: str          # what the verdict reports as its power

    def as_dict(self) -> dict:
        return asdict(self)


CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "H1", "units separate the photograph prompt from the albedo prompt (the card's statistic)",
        "--probe-text (summary.json, units.csv)",
        "paired t per unit on the primary contrast A - B of the text probe, Westfall-Young tmax sign-flip null "
        "(family-wise error over every unit)",
        f"at least one unit with p_fwer <= {ALPHA} (the run's n_fwer_significant, made at alpha {ALPHA})",
        "n pairs; the smallest attainable p_fwer of the sign-flip null (1 / 2^(n-1) vectors when enumerated, "
        "1 / (1 + n_perm) when drawn)"),
    Criterion(
        "H2", "beyond untrained networks of the same architecture",
        "--probe-text and --population-text",
        "the text run's headline statistic (FWER-significant units on the primary contrast) ranked among K untrained "
        "networks measured with the same design: rank p = (1 + #{networks >= the run}) / (1 + K) "
        "(probe.stats.population)",
        f"rank p <= {ALPHA}; it cannot be met with K < {MIN_POPULATION} (floor 1 / (1 + K) > {ALPHA}): not tested then",
        "K networks; the floor 1 / (1 + K)"),
    Criterion(
        "H3", "beyond wording: the units are not explained by the words of the prompts",
        "--probe-text (summary.json: directs, n_selective_vs_NAME, n_selective_beyond_control_joint, "
        "selective_beyond_control_error)",
        "direct paired tests of each control prompt against the albedo prompt (same pair, same noise), tmax FWER; a "
        "unit is selective beyond every control set when the main contrast and each direct test are significant "
        "with the same sign, every one of the K families at alpha / K (selective_beyond_control_joint: family-wise "
        "error over units and families <= alpha)",
        f"the run has the {' and '.join(REQUIRED_CONTROLS)} controls and at least one unit is selective beyond every "
        f"control set of the run at family-wise {ALPHA} (n_selective_beyond_control_joint >= 1)",
        "n pairs; the smallest attainable p_fwer of each family, and whether alpha / K is attainable"),
    Criterion(
        "H4", "in pixels: lighting-selective and albedo-selective units beyond untrained networks",
        "--probe-images and --population-images",
        "the image probe's change-class counts (units.csv `class_change`, summary.json change_classes.counts; "
        "probe/stats/change.py: per base scene a head's gain for light and its gain for colour, each the distance "
        "between its whole outputs on the two images over the distance between the transformer's inputs, and the "
        "magnitude test that the other factor's gain is below the margin times this one's) of "
        f"{' and '.join(H4_CLASSES)}, each ranked among K untrained networks measured with the same design (the "
        "scalar `class` counts, a head's RMS over its tokens, are shown as context: they found no unit in a network "
        "known to decompose)",
        f"both rank p's <= {ALPHA} (one-sided: more units than the untrained networks); not tested with "
        f"K < {MIN_POPULATION}",
        "n scenes (pairs); K networks; the floor 1 / (1 + K)"),
    Criterion(
        "H5", "the predicted albedo is physically right",
        "--evaluate (score_summary.json paired_differences)",
        "per sample the model's error minus the baseline's (the same samples and ground truth), mean over samples, "
        f"95 % cluster-bootstrap CI over base scenes, for {' and '.join(H5_METRICS)} against "
        f"{' and '.join(H5_BASELINES)}",
        "all four CIs entirely below 0 (the studentised bootstrap-t CI where score_summary.json has it, else the "
        "percentile CI; the verdict says which)",
        "n samples, n clusters (base scenes), bootstrap resamples"),
    Criterion(
        "H6", "the selective heads are needed for it",
        "--evaluate (ablation.json)",
        f"mean-ablating the top-k albedo-selective heads of the change classes (evaluate ablate --select "
        f"{H6_SELECT}: the heads shown to keep colour and drop light) raises {H6_METRIC} more than k random heads of "
        "the same blocks, all draws different: rank p = (1 + #{draws whose mean harm >= top-k's}) / (1 + draws), "
        "for every k of ablation.json",
        f"rank p <= {ALPHA} at every k ablated; not tested with fewer than {MIN_DRAWS} different random draws (floor "
        f"1 / (1 + draws) > {ALPHA}) or with heads chosen by another rule (its rank p is shown as context)",
        "random draws per k; the floor 1 / (1 + draws); samples and clusters"),
)


def criterion(hid: str) -> Criterion:
    return next(c for c in CRITERIA if c.id == hid)


def criteria_markdown() -> list[str]:
    """The criteria table every verdict prints before its outcomes."""
    lines = [f"## Criteria (pre-declared in evaluate/verdict_criteria.py; the same for every model; alpha {ALPHA})",
             "", "| | hypothesis | test | supported when | power reported |", "|---|---|---|---|---|"]
    for c in CRITERIA:
        lines.append(f"| {c.id} | {c.claim} | {c.test} | {c.criterion} | {c.power} |")
    lines += ["", "Outcomes: `supported` (the criterion is met), `not supported` (the test ran with enough power to "
              "meet it and did not), `not tested` (an input is missing, or the test cannot reach its criterion "
              "with the data given: the line names the command that would test it)."]
    return lines
