"""What the image probe compares: three paired contrasts over a render folder's samples (pure data, no torch).

    from probe.image_stimuli import build_image_stimuli
    st = build_image_stimuli("runs/render")                # pairs over base scenes (the default)
    st.stimuli                  # every image klein is shown, once each: Stimulus(key, kind, path, ...)
    values = ...                # [len(st.stimuli), units]: one capture per stimulus, in this order
    a, b = st.arrays("lighting", values)                   # [pairs, units] each, rows = st.contrast(...).pairs
    per = st.per_sample_render_vs_albedo(values)           # the arrays of per_sample.npz (CONTRACTS C3)

Stimuli: for each render sample (CONTRACTS C1), the rendered image `image_srgb.png` (kind `render`) and
its ground-truth albedo `albedo_srgb.png` (kind `albedo`), keyed `<sample id>/render`, `<sample id>/albedo`.
Each klein call gets one stimulus as its reference image, with the same text and noise for all.

Contrasts (A - B), each a list of sample-level pairs grouped by base scene, the independent unit:

    render_vs_albedo  A = a sample's rendered image        B = the same sample's albedo image
    lighting          A = (scene version v, lighting L1)   B = (v, Lj), every other lighting Lj of the scene;
                      L1 = the scene's first lighting by name; v = the original or one colour variant
                      (colours identical within a pair, only the light differs)
    albedo            A = (original colours, lighting L)   B = (variant k, L), every variant k >= 1
                      (lighting identical within a pair, only the surface colours differ)

pairs_over="scenes" (default): one pair per base scene; its A (B) is the mean of the A (B) sides of the
scene's sample-level pairs, so the scene's difference is the mean of its sample differences and scenes
are independent. pairs_over="samples": every sample-level pair is its own pair (clustered: samples of
one scene are not independent; the report must say so). `Contrast.definition` states this per contrast.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

CONTRASTS = ("render_vs_albedo", "lighting", "albedo")
PAIRS_OVER = ("scenes", "samples")
ALBEDO_PNG = "albedo_srgb.png"


class StimuliError(ValueError):
    """The render folder cannot give the asked-for contrasts (the message is one paragraph for the user)."""


@dataclass(frozen=True)
class RenderSample:
    id: str              # "<scene>__<lighting>", e.g. "cornell_box~c1__key"
    scene: str           # full scene id ("cornell_box~c1" for a variant)
    base_scene: str      # the scene without "~c<k>": the cluster
    variant: int         # 0 = original colours
    lighting: str
    image_srgb: Path     # the rendered image (sRGB PNG)
    albedo_srgb: Path    # its ground-truth albedo (sRGB PNG), may be missing on older renders


@dataclass(frozen=True)
class Stimulus:
    key: str             # "<sample id>/render" or "<sample id>/albedo"
    sample_id: str
    kind: str            # "render" (image_srgb.png) or "albedo" (albedo_srgb.png)
    path: Path           # the PNG given to klein as reference image (sRGB, 8 bit)
    base_scene: str
    variant: int
    lighting: str


@dataclass(frozen=True)
class Pair:
    id: str                 # scenes: the base scene; samples: "<A sample id> vs <B sample id>"
    cluster: str            # base scene
    a: tuple[str, ...]      # stimulus keys; side A = their mean (a key counts as often as it is listed)
    b: tuple[str, ...]      # as long as `a`: (a[i], b[i]) is one sample-level pair


@dataclass(frozen=True)
class Contrast:
    name: str                          # one of CONTRASTS
    a_label: str
    b_label: str
    pairs_over: str                    # "scenes" or "samples"
    pairs: tuple[Pair, ...]
    definition: str                    # what A and B are and what is averaged, for reports
    left_out: tuple[str, ...] = ()     # base scenes without a sample-level pair, with the reason

    @property
    def clusters(self) -> list[str]:
        return [p.cluster for p in self.pairs]


@dataclass(frozen=True)
class ImageStimuli:
    data: str
    pairs_over: str
    samples: tuple[RenderSample, ...]
    stimuli: tuple[Stimulus, ...]          # capture order: sorted by sample id, render before albedo
    contrasts: tuple[Contrast, ...]
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self._index.update({s.key: i for i, s in enumerate(self.stimuli)})

    def contrast(self, name: str) -> Contrast:
        for c in self.contrasts:
            if c.name == name:
                return c
        raise KeyError(f"contrast {name!r} was not built; built: {[c.name for c in self.contrasts]}")

    def _check(self, values) -> np.ndarray:
        values = np.asarray(values)
        if values.shape[0] != len(self.stimuli):
            raise ValueError(f"values have {values.shape[0]} rows, expected one per stimulus ({len(self.stimuli)})")
        return values

    def weights(self, name: str, side: str) -> np.ndarray:
        """[pairs, stimuli] float64: row i averages the stimuli of side `a` or `b` of pair i."""
        pairs = self.contrast(name).pairs
        w = np.zeros((len(pairs), len(self.stimuli)))
        for i, p in enumerate(pairs):
            keys = p.a if side == "a" else p.b
            for k in keys:
                w[i, self._index[k]] += 1.0 / len(keys)
        return w

    def arrays(self, name: str, values) -> tuple[np.ndarray, np.ndarray]:
        """values [stimuli, ...] (rows in `self.stimuli` order) -> (a, b), each [pairs, ...] in values' dtype
        (averaged in float64)."""
        values = self._check(values)
        v = values.astype(np.float64)
        a, b = (np.tensordot(self.weights(name, s), v, axes=1).astype(values.dtype) for s in ("a", "b"))
        return a, b

    def per_sample_render_vs_albedo(self, values) -> dict:
        """The per-sample render minus albedo differences (CONTRACTS C3, per_sample.npz without `units`):
        diff float32 [samples, ...], sample_ids, scene_ids (base scenes), contrast."""
        values = self._check(values)
        ids = [s.id for s in self.samples]
        missing = [f"{i}/albedo" for i in ids if f"{i}/albedo" not in self._index]
        if missing:
            raise KeyError("per-sample render_vs_albedo needs the albedo stimuli: build the render_vs_albedo contrast")
        r = np.stack([values[self._index[f"{i}/render"]] for i in ids]).astype(np.float64)
        al = np.stack([values[self._index[f"{i}/albedo"]] for i in ids]).astype(np.float64)
        return {"diff": (r - al).astype(np.float32), "sample_ids": np.array(ids),
                "scene_ids": np.array([s.base_scene for s in self.samples]), "contrast": np.array("render_vs_albedo")}

    def describe(self) -> dict:
        """JSON-able record of what was compared (for config.json / summary.json)."""
        return {"data": self.data, "pairs_over": self.pairs_over, "n_samples": len(self.samples),
                "n_stimuli": len(self.stimuli), "n_base_scenes": len({s.base_scene for s in self.samples}),
                "contrasts": {c.name: {"a": c.a_label, "b": c.b_label, "n_pairs": len(c.pairs),
                                       "n_sample_pairs": sum(len(p.a) for p in c.pairs),
                                       "definition": c.definition, "left_out": list(c.left_out)}
                              for c in self.contrasts}}


def read_render_samples(data: str | os.PathLike) -> list[RenderSample]:
    """The render manifest's samples with C1 fields; older manifests: variant 0, base_scene = scene."""
    from render.dataset import load_manifest

    root = Path(data)
    try:
        manifest = load_manifest(root)
    except (FileNotFoundError, ValueError) as e:
        raise StimuliError(f"cannot build the image probe's stimuli: {e}") from None
    out = []
    for e in manifest["samples"]:
        try:
            image = root / e["image_srgb"]
            albedo = root / e["albedo_srgb"] if e.get("albedo_srgb") else image.parent / ALBEDO_PNG
            out.append(RenderSample(id=e["id"], scene=e["scene"], base_scene=e.get("base_scene") or e["scene"],
                                    variant=int(e.get("variant", 0) or 0), lighting=e["lighting"],
                                    image_srgb=image, albedo_srgb=albedo))
        except (KeyError, TypeError, ValueError) as err:
            raise StimuliError(f"{root / 'manifest.json'}: sample entry {e.get('id', e)!r} lacks or garbles "
                               f"{err}; re-run `python -m render --out {root} --manifest-only` to rebuild it") from None
    if not out:
        raise StimuliError(f"{root / 'manifest.json'} lists no samples: render some first (python -m render --out {root})")
    return sorted(out, key=lambda s: s.id)


def _render_key(s: RenderSample) -> str:
    return f"{s.id}/render"


def _albedo_key(s: RenderSample) -> str:
    return f"{s.id}/albedo"


def _sample_pairs(name: str, samples: Sequence[RenderSample]):
    """Sample-level pairs (base scene, A sample, B sample, A key, B key) and left-out scenes for one contrast."""
    by_base: dict[str, list[RenderSample]] = {}
    for s in samples:
        by_base.setdefault(s.base_scene, []).append(s)
    pairs, left_out = [], []
    for base, group in sorted(by_base.items()):
        found = []
        if name == "render_vs_albedo":
            found = [(s, s, _render_key(s), _albedo_key(s)) for s in group]
        elif name == "lighting":
            first = min(s.lighting for s in group)
            at = {(s.variant, s.lighting): s for s in group}
            for s in sorted(group, key=lambda s: (s.variant, s.lighting)):
                if s.lighting != first and (s.variant, first) in at:
                    a = at[(s.variant, first)]
                    found.append((a, s, _render_key(a), _render_key(s)))
            if not found:
                left_out.append(f"{base} (one lighting: {sorted({s.lighting for s in group})})")
        else:  # albedo
            at = {(s.variant, s.lighting): s for s in group}
            for s in sorted(group, key=lambda s: (s.lighting, s.variant)):
                if s.variant > 0 and (0, s.lighting) in at:
                    a = at[(0, s.lighting)]
                    found.append((a, s, _render_key(a), _render_key(s)))
            if not found:
                left_out.append(f"{base} (no colour variant under a lighting of its original)")
        pairs += [(base, *f) for f in found]
    return pairs, left_out


_DEFINITIONS = {
    "render_vs_albedo": ("render", "albedo",
                         "A = the rendered image (image_srgb.png) of a sample, B = the same sample's ground-truth "
                         "albedo image (albedo_srgb.png); every sample (all lightings, original and variant colours)"),
    "lighting": ("first lighting", "other lighting",
                 "A = a scene version (original or one colour variant) under the scene's first lighting by name, "
                 "B = the same version under each other lighting of the scene (colours identical, only the light "
                 "differs); the sign is that of lighting names, not of any physical order"),
    "albedo": ("original colours", "variant colours",
               "A = the scene with its original colours under one lighting, B = each colour variant under the same "
               "lighting (lighting identical, only surface colours differ); variant colours are random, so the sign "
               "is original minus random"),
}


def _build_contrast(name: str, samples: Sequence[RenderSample], pairs_over: str) -> Contrast:
    a_label, b_label, what = _DEFINITIONS[name]
    sample_pairs, left_out = _sample_pairs(name, samples)
    if pairs_over == "samples":
        pairs = tuple(Pair(f"{a.id} vs {b.id}" if name != "render_vs_albedo" else a.id, base, (ka,), (kb,))
                      for base, a, b, ka, kb in sample_pairs)
        how = (f"{what}. One pair per sample-level pair ({len(pairs)} pairs); CLUSTERED: pairs of one base scene "
               "are not independent, so p-values and CIs that treat them as independent are too small")
    else:
        by_base: dict[str, list] = {}
        for base, a, b, ka, kb in sample_pairs:
            by_base.setdefault(base, []).append((ka, kb))
        pairs = tuple(Pair(base, base, tuple(ka for ka, _ in kp), tuple(kb for _, kb in kp))
                      for base, kp in sorted(by_base.items()))
        how = (f"{what}. One pair per base scene ({len(pairs)} pairs): the scene's A is the mean of the A sides "
               "of its sample-level pairs and B the mean of their B sides (a stimulus counts once per pair it is in), "
               "so the scene's difference is the mean of its sample differences; scenes are independent")
    if left_out:
        how += f"; left out (no pair): {', '.join(left_out)}"
    return Contrast(name, a_label, b_label, pairs_over, pairs, how + ".", tuple(left_out))


def _missing_paragraph(data: Path, missing: dict[str, str]) -> str:
    names = [n for n in CONTRASTS if n in missing]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]} contrasts"
    parts = [f"{data} cannot give the image probe's {listed}{' contrast' if len(names) == 1 else ''}:"]
    parts += [missing[n] for n in CONTRASTS if n in missing]
    parts.append("Nothing was written. Re-render as said, or ask only for the contrasts this folder supports.")
    return " ".join(parts)


def build_image_stimuli(data: str | os.PathLike, pairs_over: str = "scenes",
                        contrasts: Sequence[str] = CONTRASTS) -> ImageStimuli:
    """Read the render folder's manifest and build the asked-for contrasts (default: all three).

    Raises StimuliError (one paragraph: which contrast cannot be built and the render flag that makes
    it) when a contrast has no pair at all, or when images it needs are missing."""
    if pairs_over not in PAIRS_OVER:
        raise StimuliError(f"pairs_over must be one of {PAIRS_OVER}, got {pairs_over!r}")
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if unknown or not contrasts:
        raise StimuliError(f"unknown contrast(s) {unknown}; choose from {list(CONTRASTS)}")
    contrasts = [c for c in CONTRASTS if c in contrasts]
    root = Path(data)
    samples = read_render_samples(root)
    no_render = [s.id for s in samples if not s.image_srgb.is_file()]
    if no_render:
        raise StimuliError(f"{root}: {len(no_render)} of {len(samples)} samples have no rendered image "
                           f"(e.g. {no_render[0]}/image_srgb.png): the render is incomplete; finish it with "
                           f"`python -m render --out {root}` (finished samples are kept). Nothing was written.")
    missing: dict[str, str] = {}
    if "render_vs_albedo" in contrasts:
        no_albedo = [s.id for s in samples if not s.albedo_srgb.is_file()]
        if no_albedo:
            missing["render_vs_albedo"] = (
                f"The `render_vs_albedo` contrast needs each sample's ground-truth albedo as an sRGB image ({ALBEDO_PNG}), and "
                f"{len(no_albedo)} of {len(samples)} samples lack it (e.g. {no_albedo[0]}): the folder was rendered "
                f"before {ALBEDO_PNG} existed; re-render it with the current `python -m render --out {root} "
                f"--overwrite` (add the `--recolor K` you used).")
    if "lighting" in contrasts and not _sample_pairs("lighting", samples)[0]:
        lights = sorted({s.lighting for s in samples})
        missing["lighting"] = (
            f"The `lighting` contrast needs scenes rendered under at least two lightings, and every scene here has one "
            f"(lightings in the folder: {lights}); render again without `--lightings`, or give it two or more "
            f"names (the shipped scenes have two or three lightings each).")
    if "albedo" in contrasts and not _sample_pairs("albedo", samples)[0]:
        missing["albedo"] = (
            "The `albedo` contrast needs colour variants of each scene (same geometry and lighting, other surface colours), "
            "and this folder has none (no sample with variant > 0, no `<scene>~c<k>` ids); render with "
            f"`python -m render --out {root} --recolor K` (K colour variants per scene, e.g. --recolor 1).")
    if missing:
        raise StimuliError(_missing_paragraph(root, missing))
    built = tuple(_build_contrast(name, samples, pairs_over) for name in contrasts)
    used = {k for c in built for p in c.pairs for k in (*p.a, *p.b)}
    stimuli = []
    for s in samples:
        for kind, key, path in (("render", _render_key(s), s.image_srgb), ("albedo", _albedo_key(s), s.albedo_srgb)):
            if key in used:
                stimuli.append(Stimulus(key, s.id, kind, path, s.base_scene, s.variant, s.lighting))
    return ImageStimuli(str(root), pairs_over, tuple(samples), tuple(stimuli), built)
