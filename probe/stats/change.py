"""Change classes of the image probe: how far a head's whole output moves when the light changes, against how far
it moves when the surface colour changes, each per unit of change of the network's input.

    from probe.stats.change import change_classes
    cc = change_classes(captures.change, margin=0.5, alpha=0.05)
    cc.classes        # [Uc] str: lighting-selective, albedo-selective, neither (input for the yardstick units)
    cc.summary()      # counts, per-block counts, definition, power

Why another rule beside `probe.stats.classify`. The scalar units there are a head's RMS over its tokens: how
active it is, not what it carries. A head that passes the light through and one that removes it can be equally
active, and a lighting change mostly moves *where* a head is active (shading is a spatial pattern), which the
RMS averages away. The known-answer study measured the cost: on a small klein trained here to turn a photograph
into its albedo, whose output provably ignores the light, the scalar classes found no albedo-selective unit (nor
in the network trained to give the photograph back, nor in 19 untrained ones).

Quantity. For every sample-level pair of a contrast (`probe.design.image_stimuli`: two lightings of one scene and
colour set, or two colour sets under one lighting; both images share the scene's noise seeds) and every head unit
(step, block, region img or ref, head), the Euclidean distance between the head's output over the region's tokens
on the two images (`probe.klein.capture` CHANGE_VECTORS: exact when tokens x head_dim fit in `--change-dim`, else a
count sketch), divided by the distance between the transformer's own input over the reference tokens (the packed
reference latents, the unit `input.ref`) on the same two images: the unit's *gain* for that pair. A head that
copies its input has gain about 1 for light and colour alike; one that ignores the light has a lighting gain
near 0 while its colour gain stays. The gain makes the two contrasts comparable whatever their pixel sizes.

Per base scene (the independent unit) the mean gain over the scene's pairs of each contrast: g_L (lighting
pairs), g_A (colour pairs), on the scenes that have both. Then the magnitude test of `probe.stats.classify`
(`magnitude_equivalence`: one-sided paired t over scenes of g_L - m g_A, a Fieller bound on E[g_L] / E[g_A]):

    albedo-selective    the lighting gain shown smaller than m times the colour gain (the unit keeps colour and
                        drops light, relative to how the input moves)
    lighting-selective  the converse: the colour gain shown smaller than m times the lighting gain
    neither             neither shown (nothing claimed: the unit may move with both, or the test lacked power)

With m < 1 a unit cannot be both. Unsigned by construction (a distance), so a change whose direction depends on
the scene counts in full. Each unit is tested at `alpha` without correction over units, as the scalar classes;
the population rank (`probe compare --population`) says whether a network has more such units than untrained
ones, which is the test of training.

The whole network, measured the same way. The transformer's output over the generated tokens (the predicted
velocity, unit `output.img`) gets the same gains and tests, reported beside the counts and never counted
(`output` in summary.json change_classes): how far the network's own answer ignores the light on these images.
It is what the head classes are read against: a network whose output moves with light 70 % as much as with
colour cannot be expected to hold heads that move with it less than half as much. (The known-albedo network:
0.31 on new scenes like its training renders, 0.70 on the 25 default scenes; known-photo 1.00; untrained
0.63-0.66: benchmarks/RESULTS.md.)

Power per unit: `probe.stats.classify.magnitude_power` at the run's scene count and its units' median coefficient
of variation of the yardstick gain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classify import MAGNITUDE_MARGIN, MagnitudeTest, magnitude_equivalence, magnitude_power

CHANGE_CLASSES = ("lighting-selective", "albedo-selective", "neither")
INPUT_CLASS = "input"
OUTPUT_CLASS = "output"
INPUT_GROUP = "input.ref"          # probe.klein.capture.CHANGE_INPUT_GROUP (statistics do not import the model layer)
OUTPUT_GROUP = "output.img"        # probe.klein.capture.CHANGE_OUTPUT_GROUP: the transformer's own output

CHANGE_DEFINITION = (
    "class_change (units.csv; summary.json change_classes): per sample-level pair the distance between a head's "
    "whole output over its region's tokens (img or ref) on the two images, divided by the distance between the "
    "transformer's input over the reference tokens (input.ref) on the same two images: the unit's gain. Per base "
    "scene the mean gain over its lighting pairs (g_L) and over its colour pairs (g_A). albedo-selective: g_L shown "
    "smaller than margin x g_A (one-sided paired t over scenes of g_L - margin g_A, p_change_albedo_selective <= "
    "alpha; Fieller upper bound change_ratio_lighting_to_albedo_ub below the margin); lighting-selective: the "
    "converse (p_change_lighting_selective); neither: neither shown. Unsigned (distances), relative to the input's "
    "own change, one test per unit at alpha (no correction over units: the population rank tests the count).")


def _step_of(unit: str) -> str:
    return unit.split("/", 1)[0]


def _block_of(unit: str) -> str:
    parts = unit.split("/")
    group = parts[1] if len(parts) > 1 else unit
    bits = group.split(".")
    return ".".join(bits[:2]) if len(bits) >= 2 else group


def unit_gains(dist, units) -> np.ndarray:
    """dist [pairs, Uc] (distances, the input.ref units among the columns) -> gains [pairs, Uc] float64: each unit's
    distance over its step's input distance (nan where the input did not move; the input units themselves 1)."""
    dist = np.asarray(dist, dtype=np.float64)
    units = [str(u) for u in units]
    inputs = {_step_of(u): i for i, u in enumerate(units) if u.split("/")[-1] == INPUT_GROUP}
    missing = sorted({_step_of(u) for u in units} - set(inputs))
    if missing:
        raise ValueError(f"change units of step(s) {missing} have no {INPUT_GROUP} yardstick")
    col = np.array([inputs[_step_of(u)] for u in units])
    base = dist[:, col]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, dist / np.where(base > 0, base, 1.0), np.nan)


def scene_means(values, scenes) -> tuple[np.ndarray, np.ndarray]:
    """values [pairs, U], scenes [pairs] -> (sorted scene ids [S], nan-ignoring mean per scene [S, U])."""
    values = np.asarray(values, dtype=np.float64)
    ids, inv = np.unique(np.asarray(scenes).astype(str), return_inverse=True)
    ok = np.isfinite(values)
    s = np.zeros((ids.size, values.shape[1]))
    n = np.zeros_like(s)
    np.add.at(s, inv, np.where(ok, values, 0.0))
    np.add.at(n, inv, ok)
    with np.errstate(invalid="ignore"):
        return ids, s / n


@dataclass(frozen=True, eq=False)
class ChangeClasses:
    units: np.ndarray              # [Uc] change units (input.ref included)
    classes: np.ndarray            # [Uc] str: CHANGE_CLASSES, or "input" for the yardstick units
    gain_lighting: np.ndarray      # [Uc] mean over scenes of g_L
    gain_albedo: np.ndarray        # [Uc] mean over scenes of g_A
    albedo_test: MagnitudeTest     # g_L shown < margin g_A  (albedo-selective)
    lighting_test: MagnitudeTest   # g_A shown < margin g_L  (lighting-selective)
    output: dict                   # the output.img pseudo-units' gains and tests (empty for runs without them)
    scenes: tuple                  # base scenes with both contrasts
    n_pairs: dict                  # contrast -> sample-level pairs used
    dim: int
    margin: float
    alpha: float
    input_ratio: float             # mean over scenes of the input's lighting distance / its colour distance

    def columns(self) -> dict[str, np.ndarray]:
        """units.csv columns for the change units (aligned to `units`)."""
        return {"gain_lighting": self.gain_lighting, "gain_albedo": self.gain_albedo,
                "change_ratio_lighting_to_albedo": self.albedo_test.ratio,
                "change_ratio_lighting_to_albedo_ub": self.albedo_test.upper,
                "change_ratio_albedo_to_lighting_ub": self.lighting_test.upper,
                "p_change_albedo_selective": self.albedo_test.p,
                "p_change_lighting_selective": self.lighting_test.p,
                "class_change": self.classes}

    def summary(self) -> dict:
        heads = (self.classes != INPUT_CLASS) & (self.classes != OUTPUT_CLASS)
        counts = {c: int(np.count_nonzero(self.classes == c)) for c in CHANGE_CLASSES}
        blocks = np.array([_block_of(str(u)) for u in self.units])
        per_block = []
        for b in dict.fromkeys(blocks[heads].tolist()):
            m = heads & (blocks == b)
            per_block.append({"block": b, "n_units": int(m.sum()),
                              **{c: int(np.count_nonzero(self.classes[m] == c)) for c in CHANGE_CLASSES}})
        n = len(self.scenes)
        cvs = [t.cv_y[heads] for t in (self.albedo_test, self.lighting_test)]
        cv = float(np.nanmedian(np.concatenate(cvs))) if heads.any() else float("nan")
        ratio = self.albedo_test.ratio[heads]
        return {
            "counts": counts, "n_units": int(heads.sum()), "per_block": per_block,
            "definition": CHANGE_DEFINITION, "margin": self.margin, "alpha": self.alpha,
            "n_scenes": n, "n_sample_pairs": dict(self.n_pairs), "dim": self.dim,
            "exact": f"a unit's vector is exact when its tokens x head_dim <= {self.dim}, else a count sketch "
                     f"(relative "
                     f"sd of a squared distance about {np.sqrt(2 / max(self.dim, 1)):.2f})",
            "input_ratio_lighting_to_albedo": self.input_ratio,
            "output": self.output,
            "ratio_lighting_to_albedo_quantiles": {
                q: float(np.nanquantile(ratio, float(q))) if np.isfinite(ratio).any() else float("nan")
                for q in ("0.05", "0.5", "0.95")},
            "power": {"median_cv": cv,
                      "at_ratio_0": magnitude_power(n, self.margin, self.alpha, 0.0, cv if np.isfinite(cv) else 1.0),
                      "at_half_margin": magnitude_power(n, self.margin, self.alpha, self.margin / 2,
                                                        cv if np.isfinite(cv) else 1.0),
                      "note": "probability that one unit whose true ratio is 0 (or margin/2) is shown selective, at "
                              "this run's scene count and median coefficient of variation"},
        }


def change_classes(change, margin: float = MAGNITUDE_MARGIN, alpha: float = 0.05) -> ChangeClasses | None:
    """`probe.io.captures.ChangeDistances` (needs its lighting and albedo contrasts) -> ChangeClasses; None when a
    contrast is missing."""
    if change is None or "lighting" not in change.contrasts or "albedo" not in change.contrasts:
        return None
    units = np.asarray(change.units).astype(str)
    (dl, sl), (da, sa) = change.contrasts["lighting"], change.contrasts["albedo"]
    ids_l, gl = scene_means(unit_gains(dl, units), sl)
    ids_a, ga = scene_means(unit_gains(da, units), sa)
    both = sorted(set(ids_l.tolist()) & set(ids_a.tolist()))
    il = np.searchsorted(ids_l, both)
    ia = np.searchsorted(ids_a, both)
    gl, ga = gl[il], ga[ia]
    is_input = np.array([u.split("/")[-1] == INPUT_GROUP for u in units])
    alb = magnitude_equivalence(gl, ga, margin, alpha, clusters=both)
    lit = magnitude_equivalence(ga, gl, margin, alpha, clusters=both)
    classes = np.where(alb.shown, "albedo-selective", np.where(lit.shown, "lighting-selective", "neither"))
    is_output = np.array([u.split("/")[-1] == OUTPUT_GROUP for u in units])
    output = {str(units[i]): {"gain_lighting": float(np.nanmean(gl[:, i])), "gain_albedo": float(np.nanmean(ga[:, i])),
                              "ratio_lighting_to_albedo": float(alb.ratio[i]),
                              "ratio_lighting_to_albedo_ub": float(alb.upper[i]),
                              "ratio_albedo_to_lighting_ub": float(lit.upper[i]),
                              "class_if_it_were_a_unit": str(classes[i])}
              for i in np.flatnonzero(is_output)}
    classes = np.where(is_input, INPUT_CLASS, np.where(is_output, OUTPUT_CLASS, classes)).astype(object).astype(str)
    inp = np.flatnonzero(is_input)
    _, inl = scene_means(np.asarray(dl, np.float64)[:, inp], sl)
    _, ina = scene_means(np.asarray(da, np.float64)[:, inp], sa)
    with np.errstate(invalid="ignore", divide="ignore"):
        input_ratio = float(np.nanmean(inl[il]) / np.nanmean(ina[ia])) if inp.size else float("nan")
    return ChangeClasses(units, classes, np.nanmean(gl, axis=0), np.nanmean(ga, axis=0), alb, lit, output, tuple(both),
                         {"lighting": int(len(sl)), "albedo": int(len(sa))}, int(change.dim), float(margin),
                         float(alpha), input_ratio)
