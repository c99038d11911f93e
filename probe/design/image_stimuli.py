"""The image probe's design: three paired contrasts over a render folder, as `probe.design.stimuli.Stimulus` objects.

    from probe.design.image_stimuli import ImageDesign, build_image_plan
    plan = build_image_plan("runs/render")                 # pairs over base scenes (the default); no torch
    design = ImageDesign(plan, prompt, seed=0)             # the same text and noise for every image of a scene
    stimuli = design.stimuli()      # one editing call each: Stimulus(pair_id=base scene, image=the PNG, seed)
    arrays = design.assemble(values)                       # {Stimulus.key(): [units]} -> per contrast a, b [scenes, units]
    caps = design.captures(values, units, meta)            # captures.npz contents (probe.io.captures.Captures)

Images: for each render sample (CONTRACTS C1) its rendered image `image_srgb.png` (kind `render`) and
its ground-truth albedo `albedo_srgb.png` (kind `albedo`), keyed `<sample id>/render` and
`<sample id>/albedo`. Each is one klein editing call: the image as reference, one fixed text, and the
noise of its base scene (`noise_seed(seed, base scene, draw)`), so within a scene nothing but the
pixels changes. The Stimulus's `pair_id` is the base scene (the cluster and the unit of sharding,
CONTRACTS C5), its role `<kind>:<sample id>`. Identical images with the same seed (a scene version's
albedo is the same under every lighting) are one computation and are captured once.

Contrasts (A - B), each a list of sample-level pairs grouped by base scene, the independent unit:

    render_vs_albedo  A = a sample's rendered image        B = the same sample's albedo image
    lighting          A = (scene version v, lighting L*)   B = (v, Lj), every other lighting Lj of the scene;
                      L* = the scene's lighting with the highest shading contrast (below); v = the
                      original or one colour variant (colours identical within a pair, only the light differs)
    albedo            A = (colour set x, lighting L)       B = (colour set y, L): the original and one
                      colour variant under the same lighting, x the one with the higher albedo value (below).
                      When the folder has chroma variants (`python -m render --recolor-mode chroma|both`: hue
                      and saturation changed, every albedo pixel's luminance kept), only those are used, so
                      the contrast is not a brightness contrast; otherwise the hsv variants (brightness changes too)
    luminance         as albedo, from the luminance-changing (hsv) variants only, A = the colour set with the
                      higher mean albedo luminance: the units that follow albedo brightness (the report's
                      luminance row beside the classes). Built when the folder has hsv variants.

Orientation. Lighting names and variant colours carry no order, so "first by name" or "original
minus random" would give each scene an arbitrary sign and a signed paired t over scenes would see
only effects whose sign happens to agree. A and B are therefore ordered by a ground-truth quantity,
computed from the render's exact intrinsics and never from unit values (so the sign-flip null stays
valid: under H0 the label of the side is independent of the unit):

    shading contrast (lighting)  std over the object mask of ln max(Y, 1e-3 median Y), Y = Rec.709
                                 luminance of shading_linear.exr; per (base scene, lighting), the mean
                                 over the scene's colour versions. t > 0: larger under the harder light.
                                 A scene whose samples do not all have shading (a real dataset, e.g. the
                                 MIT intrinsic images from `render import-mit`: measured shading under one
                                 light of eleven) uses, for all of its lightings alike, the shading the
                                 ground truth implies: Y = Y(image_linear) / Y(albedo_linear) on mask
                                 pixels with albedo (the photograph divided by the reflectance).
    albedo luminance (albedo)    mean over the mask of the Rec.709 luminance of albedo_linear.exr
                                 (`albedo_order="chroma"`: mean over the mask of max - min of the
                                 sRGB-encoded albedo). t > 0: larger for the brighter (more colourful) surfaces.
                                 Chroma variants are always ordered by albedo chroma: their luminance equals the
                                 original's (within 1e-4), so ordering by it would order by rounding noise.
    albedo luminance (luminance) as the albedo luminance above, on the hsv variants.

Values equal within a relative 1e-6 count as ties, broken by lighting name (original first). The signed
test sees only units that move with the criterion consistently across scenes; see `ORIENTATION_LIMITS`.

Unavailable contrasts. A dataset can declare in its manifest a contrast it cannot give by nature
(`contrasts_unavailable`: {name: reason}; the MIT import has no colour twins, so no `albedo`): without an
explicit `contrasts` it is left out and said (ImagePlan.unavailable); asked for, it is a StimuliError with
the reason.

pairs_over="scenes" (default): one pair per base scene; its A (B) is the mean of the A (B) sides of the
scene's sample-level pairs, so the scene's difference is the mean of its sample differences and scenes
are independent. pairs_over="samples": every sample-level pair is its own pair (CLUSTERED: samples of
one scene are not independent, and every output says so). `Pairing.definition` states this per contrast.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import numpy as np

from probe.design.stimuli import NOISE_MODES, Stimulus, noise_seed

CONTRASTS = ("render_vs_albedo", "lighting", "albedo", "luminance")
OPTIONAL_CONTRASTS = ("luminance",)   # built by default only when the folder can give it
PAIRS_OVER = ("scenes", "samples")
ALBEDO_ORDERS = ("luminance", "chroma")
ALBEDO_PNG = "albedo_srgb.png"
KINDS = ("render", "albedo")
REC709_Y = np.array([0.2126, 0.7152, 0.0722])
SHADING_FLOOR = 1e-3      # ln of the shading luminance is floored at this fraction of its median (shadows, black)
TIE_RTOL = 1e-6           # criterion values this close count as equal (order by name)

SHADING_CONTRAST = ("shading contrast: std over the object mask of ln max(Y, 1e-3 median Y), Y the Rec.709 "
                    "luminance of the ground-truth shading (shading_linear.exr; for a scene whose samples do not all "
                    "have shading, such as an MIT import, the shading the ground truth implies, Y(image) / Y(albedo), "
                    "for all of its lightings alike), averaged over the scene's colour versions")
SHADING_SOURCES = {"shading": "shading_linear.exr (ground-truth shading)",
                   "image / albedo": "Y(image_linear) / Y(albedo_linear) on mask pixels with albedo > 0: the shading "
                                     "the ground truth implies (this scene's samples do not all have shading_linear.exr"
                                     "; the photograph divided by the reflectance, specular highlights included)"}
ALBEDO_CRITERIA = {
    "luminance": "albedo luminance: mean over the object mask of the Rec.709 luminance of the ground-truth albedo "
                 "(albedo_linear.exr, linear)",
    "chroma": "albedo chroma: mean over the object mask of max(R, G, B) - min(R, G, B) of the sRGB-encoded "
              "ground-truth albedo",
}
ORIENTATION_LIMITS = (
    "The paired t is signed: it finds units whose value moves the same way with the orienting quantity in most "
    "scenes (harder light, brighter or more colourful surfaces). It cannot see a unit that reacts to a lighting or "
    "colour change in a scene-specific direction (e.g. to the light's direction or colour temperature, or to one "
    "hue), or to the size of a change whatever its direction; such units average out over scenes. An unsigned test "
    "(|A - B| against the spread between noise seeds of one image, --seeds-per-pair >= 2) would be needed for them.")


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
    recolor_mode: str | None = None   # a variant's "hsv" (brightness changes too) or "chroma" (luminance kept)


@dataclass(frozen=True)
class Image:
    """One image klein is shown (as its reference image)."""
    key: str             # "<sample id>/render" or "<sample id>/albedo"
    sample_id: str
    kind: str            # "render" (image_srgb.png) or "albedo" (albedo_srgb.png)
    path: Path           # the PNG given to klein (sRGB, 8 bit)
    base_scene: str
    variant: int
    lighting: str


@dataclass(frozen=True)
class Pair:
    id: str                 # scenes: the base scene; samples: "<A sample id> vs <B sample id>" (render_vs_albedo: the sample id)
    cluster: str            # base scene
    a: tuple[str, ...]      # image keys; side A = their mean (a key counts as often as it is listed)
    b: tuple[str, ...]      # as long as `a`: (a[i], b[i]) is one sample-level pair


@dataclass(frozen=True)
class Pairing:
    """How one contrast's A and B sides are made from image values (the statistics get a
    `probe.stats.Contrast` built from it by `ImageDesign.assemble`)."""
    name: str                          # one of CONTRASTS
    a_label: str
    b_label: str
    pairs_over: str                    # "scenes" or "samples"
    pairs: tuple[Pair, ...]
    definition: str                    # what A and B are, how they are oriented and what is averaged
    orientation: str                   # which side is A, in short (the definition says it in full)
    left_out: tuple[str, ...] = ()     # base scenes without a sample-level pair, with the reason

    @property
    def clusters(self) -> list[str]:
        return [p.cluster for p in self.pairs]

    @property
    def clustered(self) -> bool:
        """True when several pairs come from one base scene (pairs over samples)."""
        return len(set(self.clusters)) < len(self.pairs)


@dataclass(frozen=True)
class GroundTruth:
    """The orienting quantities, from the render's intrinsics only (never from unit values)."""
    shading_contrast: Mapping[str, Mapping[str, float]]   # base scene -> lighting -> value
    albedo_value: Mapping[str, float]                     # scene version (full scene id) -> value
    albedo_order: str                                     # the criterion the albedo contrast is ordered by
    shading_source: Mapping[str, str] = field(default_factory=dict)   # base scene -> a key of SHADING_SOURCES
    albedo_variants: str = "hsv"                          # which variants make the albedo contrast: hsv or chroma
    luminance_value: Mapping[str, float] = field(default_factory=dict)   # scene version -> mean albedo luminance

    def record(self) -> dict:
        lighting = {"criterion": SHADING_CONTRAST, "a": "the lighting with the higher value",
                    "values": {s: dict(v) for s, v in self.shading_contrast.items()}}
        if any(v != "shading" for v in self.shading_source.values()):
            lighting["source"] = dict(self.shading_source)
            lighting["sources"] = SHADING_SOURCES
        rule = ("chroma variants (hue and saturation changed, every albedo pixel's luminance kept): ordered by albedo "
                "chroma, whatever --albedo-order says, since their luminance equals the original's"
                if self.albedo_variants == "chroma" else
                "hsv variants (hue, saturation and value changed: the surfaces' brightness changes too)")
        out = {"lighting": lighting,
               "albedo": {"criterion": ALBEDO_CRITERIA[self.albedo_order], "order": self.albedo_order,
                          "variants": self.albedo_variants, "variant_rule": rule,
                          "a": "the colour set with the higher value", "values": dict(self.albedo_value)}}
        if self.luminance_value:
            out["luminance"] = {"criterion": ALBEDO_CRITERIA["luminance"], "order": "luminance", "variants": "hsv",
                                "a": "the colour set with the higher value", "values": dict(self.luminance_value)}
        return {**out,
                "ties": f"values within a relative {TIE_RTOL:g} are ties, broken by lighting name / original first",
                "computed_from": "ground truth only (never from unit values), so the sign-flip null stays valid",
                "limits": ORIENTATION_LIMITS}


@dataclass(frozen=True)
class ImagePlan:
    """The images of a render folder and the pairings of the asked-for contrasts (pure data)."""
    data: str
    pairs_over: str
    samples: tuple[RenderSample, ...]
    images: tuple[Image, ...]              # sorted by sample id, render before albedo
    pairings: tuple[Pairing, ...]
    truth: GroundTruth | None = None
    unavailable: tuple[tuple[str, str], ...] = ()   # (contrast, why) the dataset cannot give, left out unasked
    dataset: str | None = None                      # the imported dataset's name (render.mit); None: a render
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self._index.update({s.key: i for i, s in enumerate(self.images)})

    @property
    def scenes(self) -> tuple[str, ...]:
        """Base scenes (clusters), sorted."""
        return tuple(sorted({s.base_scene for s in self.samples}))

    def pairing(self, name: str) -> Pairing:
        for c in self.pairings:
            if c.name == name:
                return c
        raise KeyError(f"contrast {name!r} was not built; built: {[c.name for c in self.pairings]}")

    def _check(self, values) -> np.ndarray:
        values = np.asarray(values)
        if values.shape[0] != len(self.images):
            raise ValueError(f"values have {values.shape[0]} rows, expected one per image ({len(self.images)})")
        return values

    def weights(self, name: str, side: str) -> np.ndarray:
        """[pairs, images] float64: row i averages the images of side `a` or `b` of pair i."""
        pairs = self.pairing(name).pairs
        w = np.zeros((len(pairs), len(self.images)))
        for i, p in enumerate(pairs):
            keys = p.a if side == "a" else p.b
            for k in keys:
                w[i, self._index[k]] += 1.0 / len(keys)
        return w

    def arrays(self, name: str, values) -> tuple[np.ndarray, np.ndarray]:
        """values [images, ...] (rows in `self.images` order) -> (a, b), each [pairs, ...] in values' dtype
        (averaged in float64)."""
        values = self._check(values)
        v = values.astype(np.float64)
        a, b = (np.tensordot(self.weights(name, s), v, axes=1).astype(values.dtype) for s in ("a", "b"))
        return a, b

    def sample_pairs(self) -> dict:
        """{contrast: (A image keys, B image keys)} of every built contrast's sample-level pairs, in pair order
        (captures.npz `contrast_NAME_sample_a/_b`)."""
        return {c.name: (np.array([k for p in c.pairs for k in p.a]), np.array([k for p in c.pairs for k in p.b]))
                for c in self.pairings}

    def per_sample_render_vs_albedo(self, values) -> dict:
        """The per-sample render minus albedo differences (CONTRACTS C3, per_sample.npz without `units`)."""
        values = self._check(values)
        if not any(i.kind == "albedo" for i in self.images):
            raise KeyError("per-sample render_vs_albedo needs the albedo images: build the render_vs_albedo contrast")
        return per_sample_render_vs_albedo([i.key for i in self.images], values,
                                           [i.base_scene for i in self.images])

    def describe(self) -> dict:
        """JSON-able record of what was compared (config.json, summary.json, captures.npz meta)."""
        d = {"data": self.data, "pairs_over": self.pairs_over, "clustered": self.pairs_over == "samples",
             "n_samples": len(self.samples), "n_images": len(self.images), "n_base_scenes": len(self.scenes),
             "base_scenes": list(self.scenes),
             "contrasts": {c.name: {"a": c.a_label, "b": c.b_label, "n_pairs": len(c.pairs),
                                    "n_sample_pairs": sum(len(p.a) for p in c.pairs), "pairs_over": c.pairs_over,
                                    "clustered": c.clustered, "orientation": c.orientation,
                                    "definition": c.definition, "left_out": list(c.left_out)}
                           for c in self.pairings}}
        if self.truth is not None:
            d["orientation"] = self.truth.record()
        if self.unavailable:
            d["unavailable_contrasts"] = dict(self.unavailable)
        if self.dataset:
            d["dataset"] = self.dataset
        modes = {s.scene: s.recolor_mode for s in self.samples if s.variant}
        if modes:       # each colour variant's mode: hsv (brightness changes) or chroma (luminance kept)
            d["recolor_modes"] = dict(sorted(modes.items()))
        return d


def per_sample_render_vs_albedo(keys: Sequence[str], values, scene_ids: Sequence[str]) -> dict:
    """per_sample.npz (CONTRACTS C3) without `units`, from image values [images, units] keyed
    `<sample id>/render` and `<sample id>/albedo`: for every sample with both images, diff float32
    [samples, units] = render - albedo, sample_ids, scene_ids (base scenes), contrast."""
    keys = [str(k) for k in keys]
    values = np.asarray(values)
    pos = {k: i for i, k in enumerate(keys)}
    ids = sorted({k.rsplit("/", 1)[0] for k in keys if k.endswith("/render") and
                  k.rsplit("/", 1)[0] + "/albedo" in pos})
    if not ids:
        raise KeyError("no sample has both its rendered and its albedo image: per-sample render_vs_albedo needs both")
    r = np.stack([values[pos[f"{i}/render"]] for i in ids]).astype(np.float64)
    al = np.stack([values[pos[f"{i}/albedo"]] for i in ids]).astype(np.float64)
    scene = [str(scene_ids[pos[f"{i}/render"]]) for i in ids]
    return {"diff": (r - al).astype(np.float32), "sample_ids": np.array(ids), "scene_ids": np.array(scene),
            "contrast": np.array("render_vs_albedo")}


def sample_pairs_from_record(keys: Sequence[str], scene_ids: Sequence[str], record: Mapping) -> dict:
    """The sample-level pairs of a captures.npz written before it stored them (`contrast_NAME_sample_a/_b`), rebuilt
    from its image keys, base scenes and design record (meta `image_design`: the contrasts and the ground-truth
    orientation values) with the same pairing rules: {contrast: (A keys, B keys)}. Sample ids are read as
    `<scene>__<lighting>` with variants `<base>~c<k>`; contrasts whose pairs cannot be rebuilt are left out."""
    import re

    keys = [str(k) for k in keys]
    have = set(keys)
    base_of = {k.rsplit("/", 1)[0]: str(b) for k, b in zip(keys, scene_ids)}
    samples = []
    for sid, base in sorted(base_of.items()):
        if "__" not in sid:
            return {}
        scene, lighting = sid.rsplit("__", 1)
        m = re.fullmatch(re.escape(base) + r"~c(\d+)", scene)
        modes = record.get("recolor_modes") or {}       # absent before chroma variants existed: every variant hsv
        samples.append(RenderSample(sid, scene, base, int(m[1]) if m else 0, lighting, Path(), Path(),
                                    recolor_mode=(modes.get(scene) or "hsv") if m else None))
    orient = record.get("orientation") or {}
    truth = GroundTruth({b: dict(v) for b, v in ((orient.get("lighting") or {}).get("values") or {}).items()},
                        dict((orient.get("albedo") or {}).get("values") or {}),
                        (orient.get("albedo") or {}).get("order", "luminance"),
                        albedo_variants=(orient.get("albedo") or {}).get("variants", "hsv"),
                        luminance_value=dict((orient.get("luminance") or {}).get("values") or {}))
    out = {}
    for name in (record.get("contrasts") or {}):
        if name not in CONTRASTS:
            continue
        found = [(ka, kb) for _, _, _, ka, kb in _sample_pairs(name, samples, truth)[0] if ka in have and kb in have]
        if found:
            out[name] = (np.array([a for a, _ in found]), np.array([b for _, b in found]))
    return out


# ------------------------------------------------------------------------------------------- reading

def read_render_samples(data: str | os.PathLike) -> list[RenderSample]:
    """The render manifest's samples with C1 fields; older manifests: variant 0, base_scene = scene."""
    from render.dataset import list_samples, load_manifest

    root = Path(data)
    try:
        manifest = load_manifest(root)
    except (FileNotFoundError, ValueError) as e:
        raise StimuliError(f"cannot build the image probe's stimuli: {e}") from None
    try:
        infos = list_samples(root, manifest)
    except (KeyError, TypeError, ValueError) as err:
        raise StimuliError(f"{root / 'manifest.json'}: a sample entry lacks or garbles {err}; re-run "
                           f"`python -m render --out {root} --manifest-only` to rebuild it") from None
    out = [RenderSample(id=s.id, scene=s.scene, base_scene=s.base_scene, variant=s.variant, lighting=s.lighting,
                        image_srgb=s.image_srgb, albedo_srgb=s.albedo_srgb or s.image_srgb.parent / ALBEDO_PNG,
                        recolor_mode=getattr(s, "recolor_mode", None) or ("hsv" if s.variant else None))
           for s in infos]
    if not out:
        raise StimuliError(f"{root / 'manifest.json'} lists no samples: render some first (python -m render --out {root})")
    return out


def _implied_shading_y(sample) -> np.ndarray:
    """Y(image) / Y(albedo) on the mask pixels whose albedo luminance is > 0 (the ground truth's shading)."""
    ya = (sample.albedo_linear.astype(np.float64) @ REC709_Y)[sample.mask]
    yi = (sample.image_linear.astype(np.float64) @ REC709_Y)[sample.mask]
    return yi[ya > 0] / ya[ya > 0]


def _shading_contrast(sample, source: str = "shading") -> float:
    """The orienting quantity of the lighting contrast; `source` a key of SHADING_SOURCES."""
    if source == "shading":
        y = (sample.shading.astype(np.float64) @ REC709_Y)[sample.mask]
    else:
        y = _implied_shading_y(sample)
    y = y[np.isfinite(y)]
    if y.size < 2 or not np.median(y) > 0:
        return float("nan")
    return float(np.std(np.log(np.maximum(y, SHADING_FLOOR * np.median(y)))))


def _albedo_value(sample, order: str) -> float:
    a = sample.albedo_linear.astype(np.float64)[sample.mask]
    if not a.size:
        return float("nan")
    if order == "luminance":
        return float((a @ REC709_Y).mean())
    from render.imageio import linear_to_srgb

    s = linear_to_srgb(a).astype(np.float64)
    return float((s.max(axis=1) - s.min(axis=1)).mean())


def _read_truth(root: Path, samples: Sequence[RenderSample], contrasts: Sequence[str], order: str) -> GroundTruth:
    """The orienting quantities of the asked-for contrasts (reads the ground truth of the samples it needs)."""
    from render.dataset import load_manifest, load_sample

    manifest = load_manifest(root)
    cache: dict = {}

    def load(s: RenderSample, contrast: str, what: str):
        if s.id not in cache:
            try:
                cache[s.id] = load_sample(root, s.id, manifest)
            except (FileNotFoundError, ValueError, KeyError) as e:
                raise StimuliError(
                    f"{root} cannot give the image probe's `{contrast}` contrast: its A/B order is set by the {what} "
                    f"of the ground truth, and sample {s.id} cannot be read ({e}); finish or repair the render with "
                    f"`python -m render --out {root}` (add the `--recolor K` you used). Nothing was written.") from None
        return cache[s.id]

    shading: dict[str, dict[str, float]] = {}
    sources: dict[str, str] = {}
    if "lighting" in contrasts:
        for s in samples:          # one source per scene, so all of its lightings are ordered by one quantity
            if load(s, "lighting", "shading").shading is None:
                sources[s.base_scene] = "image / albedo"
            else:
                sources.setdefault(s.base_scene, "shading")
        per: dict[tuple[str, str], list[float]] = {}
        for s in samples:
            per.setdefault((s.base_scene, s.lighting), []).append(
                _shading_contrast(load(s, "lighting", "shading"), sources[s.base_scene]))
        for (base, light), v in sorted(per.items()):
            shading.setdefault(base, {})[light] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    albedo: dict[str, float] = {}
    luminance: dict[str, float] = {}
    variants = albedo_variants_of(samples)
    first: dict[str, RenderSample] = {}
    for s in sorted(samples, key=lambda s: (s.scene, s.lighting)):
        first.setdefault(s.scene, s)      # a version's albedo is the same under every lighting
    if "albedo" in contrasts:
        for scene, s in sorted(first.items()):
            if s.variant == 0 or s.recolor_mode == variants:
                albedo[scene] = _albedo_value(load(s, "albedo", "albedo"), order)
    if "luminance" in contrasts:
        for scene, s in sorted(first.items()):
            if s.variant == 0 or s.recolor_mode == "hsv":
                luminance[scene] = _albedo_value(load(s, "luminance", "albedo"), "luminance")
    return GroundTruth(shading, albedo, order, shading_source=sources, albedo_variants=variants,
                       luminance_value=luminance)


def albedo_variants_of(samples: Sequence[RenderSample]) -> str:
    """Which colour variants make the albedo contrast: "chroma" when the folder has any (luminance kept, so the
    contrast is not a brightness contrast), else "hsv"."""
    return "chroma" if any(s.recolor_mode == "chroma" for s in samples) else "hsv"


def _greater(x: float, y: float) -> bool:
    """x > y beyond a tie (nan counts as lowest)."""
    if not np.isfinite(x):
        return False
    if not np.isfinite(y):
        return True
    return x > y and (x - y) > TIE_RTOL * max(abs(x), abs(y))


def _render_key(s: RenderSample) -> str:
    return f"{s.id}/render"


def _albedo_key(s: RenderSample) -> str:
    return f"{s.id}/albedo"


def _sample_pairs(name: str, samples: Sequence[RenderSample], truth: GroundTruth | None = None):
    """Sample-level pairs (base scene, A sample, B sample, A key, B key) and left-out scenes for one contrast.
    Without `truth` (only to test whether a pair exists) lighting and albedo pairs are in name order. The albedo
    contrast uses the folder's chroma variants when it has any, else its hsv variants; luminance the hsv ones."""
    mode = ("hsv" if name == "luminance" else
            truth.albedo_variants if truth is not None else albedo_variants_of(samples))
    by_base: dict[str, list[RenderSample]] = {}
    for s in samples:
        by_base.setdefault(s.base_scene, []).append(s)
    pairs, left_out = [], []
    for base, group in sorted(by_base.items()):
        found = []
        at = {(s.variant, s.lighting): s for s in group}
        if name == "render_vs_albedo":
            found = [(s, s, _render_key(s), _albedo_key(s)) for s in sorted(group, key=lambda s: s.id)]
        elif name == "lighting":
            lights = sorted({s.lighting for s in group})
            top = lights[0]
            if truth is not None:
                c = truth.shading_contrast.get(base, {})
                for light in lights[1:]:
                    if _greater(c.get(light, np.nan), c.get(top, np.nan)):
                        top = light
            for s in sorted(group, key=lambda s: (s.variant, s.lighting)):
                if s.lighting != top and (s.variant, top) in at:
                    a = at[(s.variant, top)]
                    found.append((a, s, _render_key(a), _render_key(s)))
            if not found:
                left_out.append(f"{base} (one lighting: {lights})")
        else:  # albedo, luminance
            value = {} if truth is None else (truth.luminance_value if name == "luminance" else truth.albedo_value)
            for s in sorted(group, key=lambda s: (s.lighting, s.variant)):
                if s.variant > 0 and s.recolor_mode == mode and (0, s.lighting) in at:
                    orig = at[(0, s.lighting)]
                    a, b = orig, s
                    if truth is not None and _greater(value.get(s.scene, np.nan), value.get(orig.scene, np.nan)):
                        a, b = s, orig
                    found.append((a, b, _render_key(a), _render_key(b)))
            if not found:
                left_out.append(f"{base} (no {mode} colour variant under a lighting of its original)")
        pairs += [(base, *f) for f in found]
    return pairs, left_out


def _definitions(albedo_order: str, albedo_variants: str = "hsv") -> dict[str, tuple[str, str, str, str, str]]:
    """contrast -> (A label, B label, definition, orientation in short, orientation in full)."""
    brighter = "brighter" if albedo_order == "luminance" else "more colourful"
    which = ("chroma variants only (hue and saturation changed, every albedo pixel's luminance kept: not a brightness "
             "contrast)" if albedo_variants == "chroma" else
             "hsv variants (hue, saturation and value changed: the surfaces' brightness changes too, so a unit that "
             "follows brightness alone passes; render with --recolor-mode chroma or both for a contrast without it)")
    return {
        "render_vs_albedo": (
            "render", "albedo",
            "A = the rendered image (image_srgb.png) of a sample, B = the same sample's ground-truth albedo image "
            "(albedo_srgb.png); every sample (all lightings, original and variant colours)",
            "A = the rendered image (fixed)",
            "fixed: A = the rendered image, B = its albedo image (t > 0: larger on the render)"),
        "lighting": (
            "harder lighting", "softer lighting",
            "A = a scene version (original or one colour variant) under the scene's lighting with the highest "
            "shading contrast, B = the same version under each other lighting of the scene (colours identical, only "
            "the light differs)",
            "A = the lighting with the higher ground-truth shading contrast",
            f"ground truth: A = the lighting with the higher {SHADING_CONTRAST} (t > 0: larger under the harder, "
            "more contrasty light); ties by lighting name"),
        "albedo": (
            f"higher albedo {albedo_order}", f"lower albedo {albedo_order}",
            "A and B = the scene's original colours and one colour variant under the same lighting (lighting "
            f"identical, only surface colours differ), every variant under every lighting; variants: {which}",
            f"A = the colour set with the higher ground-truth albedo {albedo_order}",
            f"ground truth: A = the colour set with the higher {ALBEDO_CRITERIA[albedo_order]} (t > 0: larger for "
            f"the {brighter} surfaces); ties: original first"),
        "luminance": (
            "higher albedo luminance", "lower albedo luminance",
            "A and B = the scene's original colours and one hsv colour variant (brightness changes too) under the "
            "same lighting: the units that follow the surfaces' mean albedo luminance",
            "A = the colour set with the higher ground-truth albedo luminance",
            f"ground truth: A = the colour set with the higher {ALBEDO_CRITERIA['luminance']} (t > 0: larger for the "
            "brighter surfaces); ties: original first"),
    }


def _build_pairing(name: str, samples: Sequence[RenderSample], pairs_over: str, truth: GroundTruth) -> Pairing:
    a_label, b_label, what, orientation, how_oriented = _definitions(truth.albedo_order, truth.albedo_variants)[name]
    sample_pairs, left_out = _sample_pairs(name, samples, truth)
    if pairs_over == "samples":
        pairs = tuple(Pair(f"{a.id} vs {b.id}" if name != "render_vs_albedo" else a.id, base, (ka,), (kb,))
                      for base, a, b, ka, kb in sample_pairs)
        how = (f"{what}; orientation: {how_oriented}. One pair per sample-level pair ({len(pairs)} pairs); CLUSTERED: "
               "pairs of one base scene are not independent, so p-values and CIs that treat them as independent "
               "are too small")
    else:
        by_base: dict[str, list] = {}
        for base, a, b, ka, kb in sample_pairs:
            by_base.setdefault(base, []).append((ka, kb))
        pairs = tuple(Pair(base, base, tuple(ka for ka, _ in kp), tuple(kb for _, kb in kp))
                      for base, kp in sorted(by_base.items()))
        how = (f"{what}; orientation: {how_oriented}. One pair per base scene ({len(pairs)} pairs): the scene's A is "
               "the mean of the A sides of its sample-level pairs and B the mean of their B sides (an image counts "
               "once per pair it is in), so the scene's difference is the mean of its sample differences; scenes "
               "are independent")
    if left_out:
        how += f"; left out (no pair): {', '.join(left_out)}"
    return Pairing(name, a_label, b_label, pairs_over, pairs, how + ".", orientation, tuple(left_out))


def _missing_paragraph(data: Path, missing: dict[str, str]) -> str:
    names = [n for n in CONTRASTS if n in missing]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]} contrasts"
    parts = [f"{data} cannot give the image probe's {listed}{' contrast' if len(names) == 1 else ''}:"]
    parts += [missing[n] for n in CONTRASTS if n in missing]
    parts.append("Nothing was written. Re-render as said, or ask only for the contrasts this folder supports "
                 "(--contrasts).")
    return " ".join(parts)


def _dataset_facts(root: Path) -> tuple[dict[str, str], str | None]:
    """({contrast: why} the folder's manifest says it cannot give (`contrasts_unavailable`, e.g. an MIT import),
    the name of the dataset it was imported from, None for a render)."""
    from render.dataset import load_manifest

    manifest = load_manifest(root)
    declared = manifest.get("contrasts_unavailable") or {}
    declared = {str(k): str(v) for k, v in declared.items() if k in CONTRASTS} if isinstance(declared, dict) else {}
    dataset = manifest.get("dataset")
    return declared, (str(dataset.get("name")) if isinstance(dataset, dict) and dataset.get("name") else None)


def build_image_plan(data: str | os.PathLike, pairs_over: str = "scenes", contrasts: Sequence[str] | None = None,
                     albedo_order: str = "luminance", limit: int | None = None) -> ImagePlan:
    """Read the render folder's manifest (and, to orient lighting and albedo, its ground truth) and build
    the asked-for contrasts (default None: render_vs_albedo, lighting, albedo, and luminance when the folder has
    hsv variants, less those the folder's manifest declares it cannot give, which are left out and listed in
    `ImagePlan.unavailable`); `limit`: only the first N base scenes. With chroma variants in the folder the albedo
    contrast uses only them, ordered by albedo chroma (`GroundTruth.albedo_variants`).

    Raises StimuliError (one paragraph: which contrast cannot be built and the render flag that makes
    it, or the dataset's reason) when a contrast has no pair at all, or when images it needs are missing."""
    if pairs_over not in PAIRS_OVER:
        raise StimuliError(f"pairs_over must be one of {PAIRS_OVER}, got {pairs_over!r}")
    if albedo_order not in ALBEDO_ORDERS:
        raise StimuliError(f"albedo_order must be one of {ALBEDO_ORDERS}, got {albedo_order!r}")
    asked = contrasts is not None
    contrasts = CONTRASTS if contrasts is None else contrasts
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if unknown or not contrasts:
        raise StimuliError(f"unknown contrast(s) {unknown}; choose from {list(CONTRASTS)}")
    contrasts = [c for c in CONTRASTS if c in contrasts]
    root = Path(data)
    samples = read_render_samples(root)
    declared, dataset = _dataset_facts(root)
    unavailable: tuple[tuple[str, str], ...] = ()
    if asked and any(c in declared for c in contrasts):
        rest = [c for c in CONTRASTS if c not in declared]
        raise StimuliError(" ".join(f"{root} cannot give the image probe's `{c}` contrast: {declared[c]}." for c in
                                    contrasts if c in declared)
                           + f" Ask for the contrasts it has (--contrasts {','.join(rest)}); without --contrasts "
                           "the probe leaves the others out and says so. Nothing was written.")
    if not asked:
        unavailable = tuple((c, declared[c]) for c in contrasts if c in declared)
        contrasts = [c for c in contrasts if c not in declared]
    if limit:
        keep = sorted({s.base_scene for s in samples})[:limit]
        samples = [s for s in samples if s.base_scene in keep]
    if not asked:    # an optional contrast the folder cannot give is left out, not an error
        contrasts = [c for c in contrasts if c not in OPTIONAL_CONTRASTS or _sample_pairs(c, samples)[0]]
    variants = albedo_variants_of(samples)
    if variants == "chroma":
        albedo_order = "chroma"
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
    if "luminance" in contrasts and not _sample_pairs("luminance", samples)[0]:
        missing["luminance"] = (
            "The `luminance` contrast needs luminance-changing (hsv) colour variants, and this folder has none; render "
            f"with `python -m render --out {root} --recolor K --recolor-mode both` (K hsv and K chroma variants).")
    if missing:
        raise StimuliError(_missing_paragraph(root, missing))
    truth = _read_truth(root, samples, contrasts, albedo_order)
    built = tuple(_build_pairing(name, samples, pairs_over, truth) for name in contrasts)
    used = {k for c in built for p in c.pairs for k in (*p.a, *p.b)}
    images = []
    for s in samples:
        for kind, key, path in (("render", _render_key(s), s.image_srgb), ("albedo", _albedo_key(s), s.albedo_srgb)):
            if key in used:
                images.append(Image(key, s.id, kind, path, s.base_scene, s.variant, s.lighting))
    return ImagePlan(str(root), pairs_over, tuple(samples), tuple(images), built, truth, unavailable, dataset)


# -------------------------------------------------------------------------------------------- design

@dataclass(frozen=True)
class ImageDesign:
    """The image probe's stimuli: every image of `plan` as one editing call with `prompt` and its base
    scene's noise seeds; the same interface as `probe.design.stimuli.TextDesign` (stimuli, assemble, captures,
    record), so `probe.klein.capture_loop.capture_stimuli`, the resume cache, shards and `probe merge` treat both alike."""
    plan: ImagePlan
    prompt: str
    seed: int = 0
    seeds_per_pair: int = 1
    noise: str = "per-pair"
    kind: ClassVar[str] = "images"

    def __post_init__(self):
        if self.seeds_per_pair < 1:
            raise ValueError(f"seeds_per_pair must be >= 1, got {self.seeds_per_pair}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if not self.prompt or not self.prompt.strip():
            raise ValueError("the image probe needs a non-empty editing text")

    @property
    def pair_ids(self) -> tuple[str, ...]:
        """The units of sharding and of noise: the base scenes (CONTRACTS C5)."""
        return self.plan.scenes

    def seeds(self, scene: str) -> list[int]:
        return [noise_seed(self.seed, scene, k, self.noise) for k in range(self.seeds_per_pair)]

    def _stimulus(self, image: Image, seed: int, draw: int) -> Stimulus:
        return Stimulus(image.base_scene, f"{image.kind}:{image.sample_id}", self.prompt, seed, image=str(image.path),
                        draw=draw)

    def stimuli(self) -> list[Stimulus]:
        """Every (image, noise draw), images in plan order."""
        return [self._stimulus(img, s, k) for img in self.plan.images for k, s in enumerate(self.seeds(img.base_scene))]

    def image_values(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 [images, units]: each image's unit values averaged over its noise draws."""
        rows = [np.mean([np.asarray(values[self._stimulus(img, s, k).key()], dtype=np.float64)
                         for k, s in enumerate(self.seeds(img.base_scene))], axis=0) for img in self.plan.images]
        return np.stack(rows).astype(np.float32)

    def assemble(self, values: Mapping[str, np.ndarray]) -> dict:
        """Captured values {Stimulus.key(): [units]} -> {"images": [images, units] (averaged over draws),
        "contrasts": {name: (a [pairs, units], b, pair ids)}} in the order of the plan's pairings."""
        iv = self.image_values(values)
        out = {}
        for c in self.plan.pairings:
            a, b = self.plan.arrays(c.name, iv)
            out[c.name] = (a, b, np.array([p.id for p in c.pairs]))
        return {"images": iv, "contrasts": out}

    def change_distances(self, change: Mapping[str, np.ndarray]) -> dict:
        """Change vectors {Stimulus.key(): [change units, D]} -> {contrast: (dist float32 [sample pairs, change
        units], base scene per pair)}: the Euclidean distance between the two images' vectors of each sample-level
        pair (`ImagePlan.sample_pairs`), root mean square over the noise draws the two images share (draw k of both
        has the scene's seed k). `probe.stats.change` divides a unit's distance by the input's (`input.ref`)."""
        out = {}
        for c in self.plan.pairings:
            rows, scenes = [], []
            for p in c.pairs:
                for ka, kb in zip(p.a, p.b):
                    ia, ib = self.plan.images[self.plan._index[ka]], self.plan.images[self.plan._index[kb]]
                    sq = [np.square(np.asarray(change[self._stimulus(ia, s, k).key()], dtype=np.float64)
                                    - np.asarray(change[self._stimulus(ib, s, k).key()], dtype=np.float64)).sum(-1)
                          for k, s in enumerate(self.seeds(ia.base_scene))]
                    rows.append(np.sqrt(np.mean(sq, axis=0)))
                    scenes.append(p.cluster)
            out[c.name] = (np.asarray(rows, dtype=np.float32), np.asarray(scenes))
        return out

    def captures(self, values: Mapping[str, np.ndarray], units, meta: Mapping | None = None, unit_blocks=None,
                 change: Mapping[str, np.ndarray] | None = None):
        """captures.npz contents: the first contrast in a/b/pair_ids, the others as contrast_NAME_*, and
        the per-image values (image_values, image_keys, image_scene_ids) that per_sample.npz comes from, and every
        contrast's sample-level pairs (contrast_NAME_sample_a/_b: the magnitude test and per_sample.npz read them);
        with `change` (the capture's change vectors and "__units__"), the pairs' change distances (`ChangeDistances`)."""
        from probe.io.captures import Captures, ChangeDistances, ControlSet, ImageValues

        arrays = self.assemble(values)
        names = list(arrays["contrasts"])
        a, b, ids = arrays["contrasts"][names[0]]
        meta = {**(meta or {}), "stimuli": "images", "contrasts": names, "primary_contrast": names[0],
                "image_prompt": self.prompt, "seeds_per_pair": self.seeds_per_pair, "noise": self.noise,
                "image_design": self.plan.describe()}
        return Captures(a=a, b=b, units=np.asarray(units), pair_ids=ids, unit_blocks=unit_blocks, meta=meta,
                        contrasts={n: ControlSet(*arrays["contrasts"][n]) for n in names[1:]},
                        images=ImageValues(arrays["images"], np.array([i.key for i in self.plan.images]),
                                           np.array([i.base_scene for i in self.plan.images])),
                        sample_pairs=self.plan.sample_pairs(),
                        change=None if not change else ChangeDistances(
                            np.asarray(change["__units__"]), int(next(v for k, v in change.items()
                                                                     if k != "__units__").shape[-1]),
                            self.change_distances(change)))

    def record(self) -> dict:
        """JSON-able description for config.json: the text, the noise design and every scene's seeds."""
        return {"stimuli": "images", "prompt": self.prompt, "noise": self.noise, "seed": self.seed,
                "seeds_per_pair": self.seeds_per_pair,
                "derivation": ("sha256('ray-plantain/noise/{seed}/{base scene}/{draw}') first 15 hex digits"
                               if self.noise == "per-pair" else "draw 0: --seed for every scene"),
                "same_noise_within_scene": "every image of a base scene (lightings, variants, albedo images) shares "
                                           "its seeds",
                "scene_seeds": {s: self.seeds(s) for s in self.pair_ids},
                "design": self.plan.describe()}
