"""The link: does the probe's selectivity go with the physical correctness of klein's albedo?

    from evaluate.link import link_image_probe, link_text_probe
    res = link_image_probe(probe, errors, k=50)          # direct: per sample, the image the edit saw
    res = link_text_probe(probe, caps, errors, k=50)     # indirect: per scene, from text prompts

Selectivity of a row (a sample or a pair) = mean over the k selected units (evaluate.selection's
rule) of sign(t_u) * diff_u / sd_u, with sd_u the SD of the unit's differences across rows: units
of different scale count alike, and a row scores high when it moves the selective units the way
the whole set does.

- Image probe (direct): diff = the probe's per-sample render_vs_albedo difference
  (per_sample.npz, C3), computed on the very rendered image klein edits; error = that sample's
  metric. Spearman rho over samples with a cluster bootstrap over base scenes (the npz's scene_ids).
- Text probe (indirect): diff = a - b of each prompt pair (one per scene), which never sees the
  rendered image; error = the mean metric over the samples of that (base) scene.
Both report the CI half-width expected at rho = 0 for the number of independent scenes.

The confound. A sample's selectivity (activation on the render minus on its albedo image) and klein's
albedo error both grow with how far the render is from its albedo (how strong its shading is), so a
positive rho is expected with no mechanism at all. Beside the plain rho, `partial_spearman` controls
for that distance: Spearman's rho of selectivity and error over scene means with the control's ranks
partialled out, the control being `image_as_albedo`'s error on the same samples (the image taken as
its albedo: exactly the render's distance from its albedo, in the same metric). A link that survives
the control is not explained by shading strength; one that vanishes was.
numpy/scipy only.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from evaluate.stats import partial_spearman, spearman_cluster

__all__ = ["selectivity", "selectivity_per_pair", "link_image_probe", "link_text_probe", "LinkError", "CONTROL_METHOD",
           "partial_link"]

CONTROL_METHOD = "image_as_albedo"   # its error on a sample = the render's distance from its albedo


class LinkError(ValueError):
    """Probe and scores cannot be linked (message is user-facing)."""


def selectivity(diff: np.ndarray, t: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Per row of diff [rows, units]: mean over idx of sign(t_u) * diff[:, u] / sd_u."""
    d = np.asarray(diff, dtype=np.float64)[:, list(idx)]
    sign = np.sign(np.nan_to_num(np.asarray(t, dtype=np.float64)[list(idx)]))
    sd = d.std(axis=0, ddof=1) if d.shape[0] > 1 else np.ones(d.shape[1])
    sd[~np.isfinite(sd) | (sd == 0)] = 1.0
    return (sign * d / sd).mean(axis=1)


def selectivity_per_pair(a: np.ndarray, b: np.ndarray, t: np.ndarray, k: int = 50) -> np.ndarray:
    """selectivity of a - b over the top-k |t| units (the earlier, rule-free selection)."""
    t = np.nan_to_num(np.asarray(t, dtype=np.float64))
    idx = np.argsort(-np.abs(t), kind="stable")[: max(1, min(k, t.size))]
    return selectivity(np.asarray(a, np.float64) - np.asarray(b, np.float64), t, idx)


def partial_link(xs: Sequence[float], ys: Sequence[float], zs: Sequence[float] | None, clusters: Sequence,
                 control: str = CONTROL_METHOD) -> dict:
    """link.json's `partial_spearman`: over scene means (one point per cluster: the mean selectivity, error
    and control of its samples with all three finite), the plain rho beside the rho with the control
    partialled out (evaluate.stats.partial_spearman). `available` False, with the reason, when the control
    was not scored."""
    base = {"control": control, "over": "scene means (one point per base scene)",
            "definition": "Spearman's rho of selectivity and error over scene means, with the ranks of the "
                          f"control ({control}'s error on the same samples, in the same metric: the render's "
                          "distance from its albedo, which drives both) partialled out: (r_xy - r_xz r_yz) / "
                          "sqrt((1 - r_xz^2)(1 - r_yz^2)); p from t with n - 3 degrees of freedom; CI: Fisher z, "
                          "variance 1.06 / (n - 4). rho_plain is the same points without the control; "
                          "rho_selectivity_control and rho_error_control say how strongly each follows it"}
    if zs is None:
        return {**base, "available": False,
                "reason": f"no scored {control!r} predictions for these samples: run `python -m evaluate baselines` "
                          "and `python -m evaluate score`, then link again"}
    x, y, z = (np.asarray(a, dtype=float) for a in (xs, ys, zs))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    cl = np.asarray([str(c) for c in clusters])[ok]
    names, codes = np.unique(cl, return_inverse=True)
    counts = np.bincount(codes, minlength=names.size).astype(float)
    means = [np.bincount(codes, a[ok], names.size) / counts for a in (x, y, z)]
    r = partial_spearman(*means)
    return {**base, "available": True, "n_samples": int(ok.sum()), "n": r["n"], "rho": r["rho"], "p": r["p"],
            "ci_low": r["ci_low"], "ci_high": r["ci_high"], "rho_plain": r["rho_plain"],
            "rho_selectivity_control": r["rho_x_control"], "rho_error_control": r["rho_y_control"]}


def _result(kind: str, ids, xs, ys, clusters, sel, n_boot: int, seed: int, definition: str, zs=None) -> dict:
    corr = spearman_cluster(xs, ys, clusters, n_boot=n_boot, seed=seed)
    return {"kind": kind, "n_matched": len(ids), "n_clusters": corr["n_clusters"],
            "spearman": corr.as_dict(), "expected_halfwidth_at_0": corr["expected_halfwidth_at_0"],
            "partial_spearman": partial_link(xs, ys, zs, clusters),
            "selection": {k: v for k, v in sel.as_dict().items() if k != "indices"}, "definition": definition,
            "pairs": [{"id": i, "selectivity": float(x), "error": float(y), "cluster": str(c),
                       "control_error": float(zs[j]) if zs is not None else None}
                      for j, (i, x, y, c) in enumerate(zip(ids, xs, ys, clusters))]}


def link_image_probe(probe, errors: Mapping[str, float], k: int = 50, select: str | None = None,
                     n_boot: int = 1000, seed: int = 0, control: Mapping[str, float] | None = None) -> dict:
    """Direct link from an image probe's per_sample.npz (see the module docstring). control: sample id ->
    image_as_albedo's error (the confound's measure; None: the partial rho is reported unavailable)."""
    from evaluate.selection import select_units

    ps = probe.per_sample
    if ps is None:
        raise LinkError(f"{probe.path} has no per_sample.npz: the direct link needs an image probe run with it")
    sel = select_units(probe, k, select)
    idx = sel.details["indices"]
    t = np.asarray(probe.units["t"], float)   # the sign of the contrast diff measures: render_vs_albedo
    sample_ids = [str(s) for s in ps["sample_ids"]]
    scenes = [str(s) for s in ps["scene_ids"]]
    keep = [i for i, s in enumerate(sample_ids) if s in errors and np.isfinite(errors[s])]
    if len(keep) < 3:
        raise LinkError(f"only {len(keep)} of the image probe's {len(sample_ids)} samples have a scored prediction "
                        f"(probe samples e.g. {sample_ids[:3]}, scored e.g. {sorted(errors)[:3]}): "
                        "were the probe and the evaluation run on the same render folder?")
    sel_all = selectivity(ps["diff"], t, idx)
    xs = [float(sel_all[i]) for i in keep]
    ys = [float(errors[sample_ids[i]]) for i in keep]
    zs = [float(control.get(sample_ids[i], np.nan)) for i in keep] if control else None
    return _result("direct: image probe, per sample", [sample_ids[i] for i in keep], xs, ys,
                   [scenes[i] for i in keep], sel, n_boot, seed, zs=zs, definition=(
                   "selectivity = mean over the selected units of sign(t) * (value on the rendered image - value on "
                   "its ground-truth albedo image) / sd across samples, from per_sample.npz (the image the edit saw); "
                   "error = that sample's metric; CI resamples base scenes"))


def link_text_probe(probe, a: np.ndarray, b: np.ndarray, pair_ids: Sequence[str], errors: Mapping[str, float],
                    scene_of: Mapping[str, str], k: int = 50, select: str | None = None, n_boot: int = 1000,
                    seed: int = 0, control: Mapping[str, float] | None = None) -> dict:
    """Indirect link from a text probe's captures: one row per pair (scene); see the module docstring.

    errors: sample id -> metric; scene_of: sample id -> base scene (C1) used to average a scene's errors;
    control: sample id -> image_as_albedo's error, averaged per scene the same way (None: unavailable).
    """
    from evaluate.selection import select_units

    sel = select_units(probe, k, select)
    idx = sel.details["indices"]
    def scene_means(values: Mapping[str, float]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for s, v in values.items():
            if np.isfinite(v):
                out.setdefault(scene_of.get(s, s), []).append(v)
        return out

    per_scene = scene_means(errors)
    ctrl_scene = scene_means(control) if control else None
    # t's sign follows the probe's `direction` (the card protocol reports B - A): the per-pair difference
    # must be taken the same way round, or sign(t) * diff flips the selectivity of every unit.
    direction = str(probe.summary.get("t_direction") or "a-b")   # summary `direction` is the words for it
    if direction not in ("a-b", "b-a"):
        raise LinkError(f"{probe.path}: unknown t_direction {direction!r} in summary.json (expected a-b or b-a)")
    first, second = (a, b) if direction == "a-b" else (b, a)
    sel_all = selectivity(np.asarray(first, np.float64) - np.asarray(second, np.float64), probe.units["t"], idx)
    ids, xs, ys, zs = [], [], [], []
    for pid, sv in zip(pair_ids, sel_all):
        pid = str(pid)
        err = errors.get(pid, np.mean(per_scene[pid]) if pid in per_scene else None)
        if err is not None:
            ids.append(pid), xs.append(float(sv)), ys.append(float(err))
            if ctrl_scene is not None:
                zs.append(float(control.get(pid, np.mean(ctrl_scene[pid]) if pid in ctrl_scene else np.nan)))
    if len(ids) < 3:
        raise LinkError(f"only {len(ids)} probe pairs match scored scenes/samples (pair ids: "
                        f"{[str(p) for p in list(pair_ids)[:3]]}..., scenes: {sorted(per_scene)[:3]}...)")
    return _result("indirect: text probe, per scene", ids, xs, ys, ids, sel, n_boot, seed, zs=zs if control else None,
                   definition=(
                   "INDIRECT: the text probe never sees the rendered image. selectivity = mean over the selected "
                   f"units of sign(t) (x - y) / sd(x - y) of the scene's prompt pair, x - y = {direction} (t's direction); error = the mean metric over "
                   "the scene's samples (lightings, colour variants); one point per scene"))
