"""captures.npz: the probe's interchange format between capture and statistics (numpy only, no torch).

    from probe.io.captures import Captures, load_captures, save_captures
    caps = load_captures("runs/probe/captures.npz")
    caps.control_sets()      # {"paraphrase": ControlSet(a, b, pair_ids), "vocabulary": ...}

Arrays (names are a contract: later versions add arrays, never rename or remove one):

    a, b                  float32 [pairs, units]   A = lit-photograph prompt, B = albedo prompt, row i = pair i
    units                 str [units]              unit names (columns of every value array)
    pair_ids              str [pairs]
    unit_blocks           str [units]              optional: block of each unit
    control_a, control_b  float32 [m, units]       optional: the paraphrase control set (A, and a paraphrase of A)
    control_pair_ids      str [m]
    control_names         str [k]                  optional: every control set in this file, in order
    control_<NAME>_a, control_<NAME>_b, control_<NAME>_pair_ids
                                                   each named control set other than `paraphrase` (e.g.
                                                   `control_vocabulary_b`: the vocabulary-control prompt)
    meta_json             str scalar               optional JSON: protocol, direction ("a-b" or "b-a": the sign
                                                   of t), stimuli, seeds, and what each control set is

Image probe (meta `stimuli` = "images"; `a`, `b`, `pair_ids` hold the primary contrast, render_vs_albedo):

    contrast_names        str [k]                  every contrast of the run in order; the first is the one in a/b
    contrast_<NAME>_a, contrast_<NAME>_b, contrast_<NAME>_pair_ids
                                                   each further contrast (`lighting`, `albedo`), rows = its pairs
                                                   (base scenes, or sample-level pairs with --pairs-over samples)
    image_values          float32 [images, units]  every image's unit values (averaged over its noise seeds)
    image_keys            str [images]             `<sample id>/render` or `<sample id>/albedo`
    image_scene_ids       str [images]             the image's base scene (the cluster)
    contrast_<NAME>_sample_a, contrast_<NAME>_sample_b
                          str [sample pairs]       every contrast (the primary one included): its sample-level
                                                   pairs as image keys, A side and B side (A as oriented by the
                                                   design; the unit's difference is image_values[A] - [B]); the
                                                   magnitude test of the classes and per_sample.npz read them

A file written before control sets had names (control_a/control_b and no control_names) holds one
set, `paraphrase`. The `a` side of every control set is the same prompt with the same noise as the
main `a` of that pair, so control_<NAME>_b minus b is "control prompt minus albedo prompt".
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Captures", "ChangeDistances", "CapturesError", "ControlSet", "ImageValues", "SampleLevel", "save_captures", "load_captures",
           "PARAPHRASE", "check_control_name"]

PARAPHRASE = "paraphrase"     # the control set stored in the legacy arrays control_a / control_b
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class CapturesError(ValueError):
    """captures.npz (or arrays handed to `analyse`) are malformed: the message says which array and why."""


def check_control_name(name: str, what: str = "control set") -> str:
    """A control-set (or contrast) name: lower-case letters, digits and '_', starting with a letter (it
    becomes part of array and column names: control_NAME_b, t_vs_NAME, contrast_NAME_a, t_NAME)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CapturesError(f"{what} name {name!r} must be 1-40 lower-case letters, digits or '_', starting "
                            f"with a letter (it becomes part of array and column names, e.g. t_vs_NAME)")
    return name


@dataclass(frozen=True, eq=False)
class ControlSet:
    """One control set: `a` [m, units] the pair's A prompt, `b` [m, units] the control prompt, and the
    pair ids of its rows (None: the first m pairs of the main set, in order)."""
    a: np.ndarray
    b: np.ndarray
    pair_ids: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class ImageValues:
    """The image probe's per-image unit values: values float32 [images, units] (averaged over noise seeds),
    keys str [images] (`<sample id>/render`, `<sample id>/albedo`), scene_ids str [images] (base scenes)."""
    values: np.ndarray
    keys: np.ndarray
    scene_ids: np.ndarray


@dataclass(frozen=True, eq=False)
class SampleLevel:
    """One contrast's sample-level pairs read from the per-image values: diff float64 [pairs, units] = the unit on the
    A image minus on the B image (the design's orientation, before any protocol sign), the image keys of both sides
    and the base scene (cluster) of each pair."""
    diff: np.ndarray
    a_keys: np.ndarray
    b_keys: np.ndarray
    clusters: np.ndarray

    @property
    def pair_ids(self) -> np.ndarray:
        """'<A sample id> vs <B sample id>', or the sample id when both images are of one sample (render vs albedo)."""
        a = [k.rsplit("/", 1)[0] for k in self.a_keys]
        b = [k.rsplit("/", 1)[0] for k in self.b_keys]
        return np.array([x if x == y else f"{x} vs {y}" for x, y in zip(a, b)])


@dataclass(frozen=True, eq=False)
class ChangeDistances:
    """The image probe's change distances (`probe.stats.change`): units str [Uc] (`s{step}/input.ref`, the input
    yardstick, and the img/ref head units), dim (numbers kept per vector: exact when a unit's tokens x head_dim fit,
    else a count sketch), and per contrast (dist float32 [sample pairs, Uc], base scene per pair): the distance
    between the two images' vectors, in the order of that contrast's sample-level pairs."""
    units: np.ndarray
    dim: int
    contrasts: dict


@dataclass(frozen=True, eq=False)
class Captures:
    """Contents of captures.npz: a, b float32 [pairs, units]; units, pair_ids str; optional paraphrase control
    arrays [control_pairs, units] with control_pair_ids; optional further named control sets in `controls`
    ({name: ControlSet}); unit_blocks [units] and a JSON-able meta dict. Validated on construction."""
    a: np.ndarray
    b: np.ndarray
    units: np.ndarray
    pair_ids: np.ndarray
    control_a: np.ndarray | None = None
    control_b: np.ndarray | None = None
    control_pair_ids: np.ndarray | None = None
    unit_blocks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    controls: dict = field(default_factory=dict)    # name -> ControlSet, names other than "paraphrase"
    contrasts: dict = field(default_factory=dict)   # image probe: name -> ControlSet (a, b, pair_ids) of each
                                                    # contrast besides the primary one in a/b
    images: ImageValues | None = None               # image probe: per-image values (per_sample.npz comes from them)
    sample_pairs: dict = field(default_factory=dict)  # image probe: contrast -> (A image keys, B image keys) of its
                                                      # sample-level pairs (every contrast, the primary one included)
    change: ChangeDistances | None = None             # image probe with --change-dim: the pairs' change distances

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("a", _float_2d(self.a, "a"))
        set_("b", _float_2d(self.b, "b"))
        if self.a.shape != self.b.shape:
            raise CapturesError(f"a {self.a.shape} and b {self.b.shape} must have the same shape [pairs, units]")
        n, u = self.a.shape
        set_("units", _strings(self.units, "units", u, unique=True))
        set_("pair_ids", _strings(self.pair_ids, "pair_ids", n, unique=True))
        if self.unit_blocks is not None:
            set_("unit_blocks", _strings(self.unit_blocks, "unit_blocks", u))
        if (self.control_a is None) != (self.control_b is None):
            raise CapturesError("control_a and control_b must both be present or both absent")
        if self.control_a is not None:
            ca, cb, ids = _control_arrays(self.control_a, self.control_b, self.control_pair_ids, "control", u)
            set_("control_a", ca)
            set_("control_b", cb)
            set_("control_pair_ids", ids)
        elif self.control_pair_ids is not None and len(self.control_pair_ids):
            raise CapturesError("control_pair_ids given without control_a/control_b")
        else:
            set_("control_pair_ids", None)
        checked = {}
        for name, cs in (self.controls or {}).items():
            check_control_name(name)
            if name == PARAPHRASE:
                raise CapturesError("the paraphrase control set lives in control_a/control_b/control_pair_ids, "
                                    "not in `controls`")
            if not isinstance(cs, ControlSet):
                cs = ControlSet(*cs)
            ca, cb, ids = _control_arrays(cs.a, cs.b, cs.pair_ids, f"control_{name}", u)
            checked[name] = ControlSet(ca, cb, ids)
        set_("controls", checked)
        named = {}
        for name, cs in (self.contrasts or {}).items():
            check_control_name(name, "contrast")
            if not isinstance(cs, ControlSet):
                cs = ControlSet(*cs)
            ca, cb, ids = _control_arrays(cs.a, cs.b, cs.pair_ids, f"contrast_{name}", u)
            named[name] = ControlSet(ca, cb, ids)
        set_("contrasts", named)
        if self.images is not None:
            iv = self.images if isinstance(self.images, ImageValues) else ImageValues(*self.images)
            vals = _float_2d(iv.values, "image_values")
            if vals.shape[1] != u:
                raise CapturesError(f"image_values {vals.shape} must be [images, {u}] (the same units as a and b)")
            set_("images", ImageValues(vals, _strings(iv.keys, "image_keys", vals.shape[0], unique=True),
                                       _strings(iv.scene_ids, "image_scene_ids", vals.shape[0])))
        pairs = {}
        for name, ab in (self.sample_pairs or {}).items():
            check_control_name(name, "contrast")
            if self.images is None:
                raise CapturesError(f"contrast_{name}_sample_a/_b need image_values and image_keys")
            ka = _strings(ab[0], f"contrast_{name}_sample_a", len(ab[0]))
            kb = _strings(ab[1], f"contrast_{name}_sample_b", len(ab[0]))
            unknown = sorted(set(ka.tolist() + kb.tolist()) - set(self.images.keys.tolist()))
            if unknown:
                raise CapturesError(f"contrast_{name}_sample_a/_b name images that image_keys lacks, e.g. "
                                    f"{unknown[0]!r}")
            pairs[name] = (ka, kb)
        set_("sample_pairs", pairs)
        if self.change is not None:
            ch = self.change
            cu = _strings(ch.units, "change_units", len(ch.units), unique=True)
            named = {}
            for name, (dist, scenes) in ch.contrasts.items():
                check_control_name(name, "contrast")
                dist = _float_2d(dist, f"change_{name}_dist")
                if dist.shape[1] != cu.size:
                    raise CapturesError(f"change_{name}_dist {dist.shape} must be [pairs, {cu.size}] (change_units)")
                if name in pairs and len(pairs[name][0]) != dist.shape[0]:
                    raise CapturesError(f"change_{name}_dist has {dist.shape[0]} rows, contrast_{name}_sample_a "
                                        f"{len(pairs[name][0])}: one per sample-level pair")
                named[name] = (dist, _strings(scenes, f"change_{name}_scene_ids", dist.shape[0]))
            set_("change", ChangeDistances(cu, int(ch.dim), named))
        set_("meta", dict(self.meta or {}))

    def sample_level(self, name: str) -> SampleLevel | None:
        """Contrast `name`'s sample-level differences from the per-image values (None when the file holds no
        sample-level pairs for it, e.g. a text run or an image run written before they were stored)."""
        if name not in self.sample_pairs or self.images is None:
            return None
        ka, kb = self.sample_pairs[name]
        pos = {k: i for i, k in enumerate(self.images.keys)}
        ia = np.array([pos[k] for k in ka], dtype=np.int64)
        ib = np.array([pos[k] for k in kb], dtype=np.int64)
        v = self.images.values
        return SampleLevel(v[ia].astype(np.float64) - v[ib].astype(np.float64), ka, kb, self.images.scene_ids[ia])

    @property
    def n_pairs(self) -> int:
        return self.a.shape[0]

    @property
    def n_units(self) -> int:
        return self.a.shape[1]

    @property
    def has_control(self) -> bool:
        """True when the file holds the paraphrase control (the legacy control_a/control_b arrays)."""
        return self.control_a is not None

    def control_sets(self) -> dict[str, ControlSet]:
        """Every control set by name, paraphrase first (when present), then the others in file order."""
        out = {}
        if self.control_a is not None:
            out[PARAPHRASE] = ControlSet(self.control_a, self.control_b, self.control_pair_ids)
        out.update(self.controls)
        return out

    @property
    def stimuli(self) -> str:
        """"text" or "images" (files without the key are text runs)."""
        return str(self.meta.get("stimuli", "text"))

    def contrast_sets(self) -> dict[str, ControlSet]:
        """Image probe: every contrast by name, the primary one (a/b/pair_ids) first."""
        primary = self.meta.get("primary_contrast") or "main"
        return {primary: ControlSet(self.a, self.b, self.pair_ids), **self.contrasts}


def _control_arrays(ca, cb, ids, what: str, n_units: int):
    """Validate one control set stored as {what}_a, {what}_b, {what}_pair_ids."""
    ca = _float_2d(ca, f"{what}_a")
    cb = _float_2d(cb, f"{what}_b")
    if ca.shape != cb.shape or ca.shape[1] != n_units:
        raise CapturesError(f"{what}_a {ca.shape} and {what}_b {cb.shape} must both be [control_pairs, {n_units}] "
                            f"(the same units as a and b)")
    if ids is not None:
        ids = _strings(ids, f"{what}_pair_ids", ca.shape[0], unique=True)
    return ca, cb, ids


def _float_2d(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise CapturesError(f"{name}: not a numeric array ({e})") from e
    if arr.ndim != 2:
        raise CapturesError(f"{name}: need a 2-D array [pairs, units], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise CapturesError(f"{name}: non-finite value at pair {bad[0]}, unit {bad[1]}")
    return arr


def _strings(x, name: str, length: int, unique: bool = False) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "UO" and arr.size:
        raise CapturesError(f"{name}: need strings, got dtype {arr.dtype}")
    arr = arr.astype(str)
    if arr.shape != (length,):
        raise CapturesError(f"{name}: need {length} entries, got shape {arr.shape}")
    if unique:
        vals, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise CapturesError(f"{name}: duplicate entries, e.g. {vals[counts > 1][0]!r}")
    return arr


_REQUIRED = ("a", "b", "units", "pair_ids")


def save_captures(path, captures: Captures) -> Path:
    """Write captures.npz (compressed; float32 values, names as unicode arrays, meta as JSON), atomically."""
    if not isinstance(captures, Captures):
        raise TypeError("save_captures(path, captures): captures must be a Captures")
    path = Path(path)
    arrays = {"a": captures.a, "b": captures.b, "units": captures.units, "pair_ids": captures.pair_ids}
    if captures.control_a is not None:
        arrays.update(control_a=captures.control_a, control_b=captures.control_b)
        if captures.control_pair_ids is not None:
            arrays["control_pair_ids"] = captures.control_pair_ids
    for name, cs in captures.controls.items():
        arrays[f"control_{name}_a"] = cs.a
        arrays[f"control_{name}_b"] = cs.b
        if cs.pair_ids is not None:
            arrays[f"control_{name}_pair_ids"] = cs.pair_ids
    names = list(captures.control_sets())
    if names:
        arrays["control_names"] = np.array(names)
    if captures.unit_blocks is not None:
        arrays["unit_blocks"] = captures.unit_blocks
    if captures.contrasts or captures.images is not None:
        arrays["contrast_names"] = np.array(list(captures.contrast_sets()))
    for name, cs in captures.contrasts.items():
        arrays[f"contrast_{name}_a"] = cs.a
        arrays[f"contrast_{name}_b"] = cs.b
        if cs.pair_ids is not None:
            arrays[f"contrast_{name}_pair_ids"] = cs.pair_ids
    if captures.images is not None:
        arrays.update(image_values=captures.images.values, image_keys=captures.images.keys,
                      image_scene_ids=captures.images.scene_ids)
    for name, (ka, kb) in captures.sample_pairs.items():
        arrays[f"contrast_{name}_sample_a"] = ka
        arrays[f"contrast_{name}_sample_b"] = kb
    if captures.change is not None:
        arrays["change_units"] = captures.change.units
        arrays["change_dim"] = np.array(captures.change.dim)
        arrays["change_names"] = np.array(list(captures.change.contrasts))
        for name, (dist, scenes) in captures.change.contrasts.items():
            arrays[f"change_{name}_dist"] = dist
            arrays[f"change_{name}_scene_ids"] = scenes
    if captures.meta:
        arrays["meta_json"] = np.array(json.dumps(captures.meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:   # a file object: np.savez would append .npz to a name
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_captures(path) -> Captures:
    """Read and validate captures.npz; CapturesError names the missing or inconsistent array."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zip/pickle/format errors: not a captures file
        raise CapturesError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CapturesError(f"{path}: missing array(s) {', '.join(missing)}; captures.npz needs a, b "
                            f"[pairs, units], units and pair_ids")
    meta = {}
    if "meta_json" in data:
        try:
            meta = json.loads(str(data["meta_json"]))
        except json.JSONDecodeError as e:
            raise CapturesError(f"{path}: meta_json is not valid JSON ({e})") from e
    try:
        controls = {}
        names = [str(x) for x in data["control_names"]] if "control_names" in data else []
        for name in names:
            if name == PARAPHRASE:
                if "control_a" not in data:
                    raise CapturesError("control_names lists 'paraphrase' but control_a/control_b are missing")
                continue
            check_control_name(name)
            keys = [f"control_{name}_a", f"control_{name}_b"]
            absent = [k for k in keys if k not in data]
            if absent:
                raise CapturesError(f"control_names lists {name!r} but {', '.join(absent)} is missing")
            controls[name] = ControlSet(data[keys[0]], data[keys[1]], data.get(f"control_{name}_pair_ids"))
        contrasts = {}
        contrast_names = [str(x) for x in data["contrast_names"]] if "contrast_names" in data else []
        if contrast_names:
            meta.setdefault("primary_contrast", contrast_names[0])
        for name in contrast_names[1:]:
            check_control_name(name, "contrast")
            keys = [f"contrast_{name}_a", f"contrast_{name}_b"]
            absent = [k for k in keys if k not in data]
            if absent:
                raise CapturesError(f"contrast_names lists {name!r} but {', '.join(absent)} is missing")
            contrasts[name] = ControlSet(data[keys[0]], data[keys[1]], data.get(f"contrast_{name}_pair_ids"))
        images = None
        if "image_values" in data:
            absent = [k for k in ("image_keys", "image_scene_ids") if k not in data]
            if absent:
                raise CapturesError(f"image_values without {', '.join(absent)}")
            images = ImageValues(data["image_values"], data["image_keys"], data["image_scene_ids"])
        sample_pairs = {}
        for name in contrast_names:
            keys = [f"contrast_{name}_sample_a", f"contrast_{name}_sample_b"]
            if keys[0] in data or keys[1] in data:
                absent = [k for k in keys if k not in data]
                if absent:
                    raise CapturesError(f"{', '.join(absent)} missing beside its other side")
                sample_pairs[name] = (data[keys[0]], data[keys[1]])
        change = None
        if "change_units" in data:
            names = [str(x) for x in data.get("change_names", np.array([], dtype=str))]
            absent = [k for n in names for k in (f"change_{n}_dist", f"change_{n}_scene_ids") if k not in data]
            if absent or "change_dim" not in data:
                raise CapturesError(f"change_units without {', '.join(absent or ['change_dim'])}")
            change = ChangeDistances(data["change_units"], int(data["change_dim"]),
                                     {n: (data[f"change_{n}_dist"], data[f"change_{n}_scene_ids"]) for n in names})
        return Captures(a=data["a"], b=data["b"], units=data["units"], pair_ids=data["pair_ids"],
                        control_a=data.get("control_a"), control_b=data.get("control_b"),
                        control_pair_ids=data.get("control_pair_ids"), unit_blocks=data.get("unit_blocks"),
                        meta=meta, controls=controls, contrasts=contrasts, images=images, sample_pairs=sample_pairs,
                        change=change)
    except CapturesError as e:
        raise CapturesError(f"{path}: {e}") from e
