"""Import the MIT intrinsic images as render samples: `python -m render import-mit SRC --out DATA`. No bpy.

    from render.mit import import_mit, scan_source, read_png16
    report = import_mit("/data/mit-berkeley-intrinsic", "runs/mit")     # then render.dataset reads it
    read_png16(path)                                                     # uint16, RGB order, never 8-bit

The MIT Intrinsic Images dataset (Grosse, Johnson, Adelson, Freeman, ICCV 2009; here also its MIT-Berkeley
redistribution in SIRFS 1.5, Barron and Malik 2015) photographs real objects in a lab with measured
reflectance and shading. SRC holds one folder per object with 16-bit linear PNGs:

    original.png      the photograph under the object's default light (= diffuse + specular)   required
    reflectance.png   ground-truth albedo (RGB), known up to one scale factor                   required
    mask.png          the object (grey, > 0 inside)                                             required
    diffuse.png, specular.png   the photograph's diffuse and specular parts (RGB)              optional
    shading.png       ground-truth diffuse shading (grey): diffuse ~ reflectance x shading      optional
    light01.png ... light10.png   the same object and camera under 10 single lights          optional

Every object becomes samples in the render contract (render.dataset, CONTRACTS C1), so probe and evaluate
read it like a render: `<object>__original` (the photograph under the default light) and
`<object>__light01` ... `__light10`, each with image_linear.exr, image_srgb.png, albedo_linear.exr,
albedo_srgb.png (the object's reflectance, shared by all of its samples) and mask.png; the default-light
sample also has shading_linear.exr, residual_linear.exr (specular.png) and diffuse_linear.exr (the
benchmark's input, `diffuse` key) when the dataset has them. base_scene = the object (its samples are
one cluster). What the dataset lacks is absent, listed per sample under `missing` with the reason,
never filled in: shading and residual under light01-10, normals, depth, object index.

Values. Linear = raw / 65535. Reflectance is written as given (never exposed). Each photograph gets one
exposure scale (image, shading, residual and diffuse alike; `exposure` per sample) from the renderer's
own incident-light metering (render.groundtruth.meter_light: centre-weighted median shading to 0.5,
highlight protection, 1/3 EV steps), with the shading estimated as Y(photograph) / Y(reflectance)
(Rec.709 luminance; measured shading exists under one light only, so all eleven photographs of an
object are metered the same way). Dividing by exposure.scale gives raw / 65535 back. The sRGB PNGs are
these linear values clipped to [0, 1] and encoded with the IEC 61966-2-1 curve, 8 bit, as renders are.

Scale ambiguity. Reflectance and shading are each known only up to a factor; the stored shading is
shading.png / 65535 times one least-squares factor per object (fitted so reflectance x shading best
matches diffuse.png over the mask; `shading_fit`), and diffuse ~ reflectance x shading holds to a few
per cent, not exactly (`identity_rms_relative`). Entries carry `albedo_scale_known: false`, so scores
use scale-free alignments only (evaluate score leaves the `none` columns empty).

PNGs are read with OpenCV's IMREAD_UNCHANGED (PIL silently reduces 16-bit PNGs to 8 bits); an 8-bit
copy of the data is refused. Every problem with SRC is found before anything is written.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from render.pipeline import (COLOUR_SPACES, FILE_DOCS, FILES, FORMAT, SAMPLE_JSON, _sha256,
                             _write_json)

__all__ = ["MitError", "MitObject", "ImportReport", "scan_source", "read_png16", "load_object", "import_mit",
           "DEFAULT_LIGHT", "LIGHTS", "REQUIRED", "OPTIONAL", "DEFINITIONS", "CREATED_BY", "RAW_MAX"]

CREATED_BY = "python -m render import-mit"
DATASET = ("MIT Intrinsic Images (Grosse, Johnson, Adelson, Freeman: Ground truth dataset and baseline evaluations "
           "for intrinsic image algorithms, ICCV 2009)")
LICENCE = ("research-only: the MIT / MIT-Berkeley intrinsic images may be used for education, research and "
           "not-for-profit purposes with their copyright notice kept (NOTICE.txt, copied into this folder); they "
           "may not be redistributed inside this Apache-licensed project")
RAW_MAX = 65535.0
DEFAULT_LIGHT = "original"
REQUIRED = ("original.png", "reflectance.png", "mask.png")
OPTIONAL = ("diffuse.png", "specular.png", "shading.png")
LIGHTS = tuple(f"light{i:02d}" for i in range(1, 11))
KNOWN = REQUIRED + OPTIONAL + tuple(f"{n}.png" for n in LIGHTS)
GREY = ("mask.png", "shading.png")
DIFFUSE_FILE = "diffuse_linear.exr"
NO_COLOUR_TWINS = ("the MIT intrinsic images photograph each object with its own surface colours only, so there are "
                   "no colour twins (the same object under the same light with other colours)")
_LUMA = np.array([0.2126, 0.7152, 0.0722])

MISSING_REASONS = {
    "shading": "the dataset measured shading only under the object's default light (original.png); never estimated",
    "residual": "the dataset separated the specular part only under the default light (specular.png)",
    "diffuse": "the dataset separated the diffuse part only under the default light (diffuse.png)",
    "normal": "not in the dataset",
    "depth": "not in the dataset",
    "object_index": "not in the dataset (one object per photograph; mask.png marks it)",
}

DEFINITIONS = {
    "image": "the photograph (original.png under the default light, lightNN.png under single light NN), 16-bit "
             "linear PNG / 65535, times the sample's exposure.scale; linear camera RGB as the dataset gives it",
    "image_srgb": "image clipped to [0, 1] and encoded with the IEC 61966-2-1 sRGB curve, 8-bit PNG (as renders)",
    "albedo": "the object's reflectance.png / 65535 (never exposed), identical for all of its samples; known only "
              "up to one scale factor per object (albedo_scale_known: false)",
    "albedo_srgb": "albedo encoded exactly as image_srgb is from image; black outside the object",
    "shading": "default light only: shading.png / 65535 times one least-squares factor per object (shading_fit: "
               "reflectance x shading best matches diffuse.png over the mask), times exposure.scale; grey, written "
               "to all three channels. Known up to that fitted factor; diffuse ~ albedo x shading to a few per cent",
    "residual": "default light only: specular.png / 65535 times exposure.scale (the non-diffuse light the dataset "
                "separated by cross-polarisation); image ~ albedo x shading + residual (identity_rms_relative)",
    "diffuse": "default light only: diffuse.png / 65535 times exposure.scale, the input of the MIT benchmark's "
               "protocol (evaluate mit)",
    "mask": "mask.png > 0: the object (0/255 8-bit PNG)",
    "exposure": "one factor per photograph from the renderer's incident-light metering (render.groundtruth."
                "meter_light: centre-weighted median shading luminance to 0.5, lowered until the brightest 3 % of "
                "albedo x shading stay below 0.9, rounded down to 1/3 EV), the shading estimated as Y(photograph) / "
                "Y(reflectance) (Rec.709 luminance, 0 where the reflectance is 0) for every photograph alike; "
                "divide image, shading, residual and diffuse by exposure.scale for raw / 65535",
    "identity_error": "max over mask pixels and channels of |image - (albedo*shading + residual)| / max(|image|, "
                      "1e-6) on the default-light sample (null where shading or residual is missing); photographs "
                      "are not exact: see identity_rms_relative",
    "identity_rms_relative": "sqrt(sum (image - albedo*shading - residual)^2 / sum image^2) over mask pixels",
    "variant": "always 0: the dataset has no colour variants (no colour twins)",
    "base_scene": "the object: the unit of independence (cluster) for statistics",
    "missing": "fields the dataset does not have for this sample, with the reason; they are absent, never filled in",
}


class MitError(ValueError):
    """SRC is not a usable copy of the MIT intrinsic images (one paragraph naming the object and file)."""


def _nothing(msg: str) -> MitError:
    return MitError(f"{msg} Nothing was written.")


# ------------------------------------------------------------------------------------------------ reading

def read_png16(path: str | Path, obj: str = "", grey: bool = False) -> np.ndarray:
    """A 16-bit PNG as uint16: [H, W, 3] in RGB order, or [H, W] for `grey` files (a grey image stored
    with three equal channels is accepted). MitError for 8-bit files, unreadable files, wrong channels."""
    import cv2

    path = Path(path)
    who = f"object {obj!r}, file {path.name} ({path})" if obj else str(path)
    if not path.is_file():
        raise _nothing(f"{who}: not found.")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)   # keeps 16 bits; BGR order
    if raw is None:
        raise _nothing(f"{who}: cannot be decoded as a PNG (corrupt or another format).")
    if raw.dtype != np.uint16:
        raise _nothing(
            f"{who} is a {raw.dtype.itemsize * 8}-bit image, but the MIT intrinsic images are 16-bit linear PNGs: an "
            "8-bit copy (saved through PIL, which silently reduces 16-bit PNGs to 8 bits, or an image editor) has "
            "lost most of the dark range and may be gamma-encoded, so its reflectance and shading no longer match. "
            "Point SRC at the dataset as downloaded.")
    if raw.ndim == 3 and raw.shape[2] == 4:
        raw = raw[..., :3]
    if grey:
        if raw.ndim == 3:
            if not (np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2])):
                raise _nothing(f"{who}: expected a grey image, found three different colour channels.")
            raw = raw[..., 0]
        return np.ascontiguousarray(raw)
    if raw.ndim != 3 or raw.shape[2] != 3:
        raise _nothing(f"{who}: expected an RGB image, found {raw.shape[2] if raw.ndim == 3 else 1} channel(s).")
    return np.ascontiguousarray(raw[..., ::-1])


@dataclass(frozen=True)
class MitObject:
    name: str
    folder: Path
    files: tuple[str, ...]        # the known file names present, sorted

    @property
    def lightings(self) -> tuple[str, ...]:
        """The photographs present: "original" first, then light01 ... light10."""
        return (DEFAULT_LIGHT,) + tuple(n for n in LIGHTS if f"{n}.png" in self.files)

    def path(self, name: str) -> Path:
        return self.folder / name

    def photo_file(self, lighting: str) -> str:
        return "original.png" if lighting == DEFAULT_LIGHT else f"{lighting}.png"


def _layout_help() -> str:
    return ("The layout is one folder per object (apple/, box/, ...) holding 16-bit PNGs: original.png, "
            "reflectance.png and mask.png (required), diffuse.png, specular.png, shading.png and light01.png ... "
            "light10.png (when present).")


def scan_source(src: str | Path, only: Sequence[str] | None = None) -> list[MitObject]:
    """The object folders of SRC (sorted; `only` picks some), checked for the required files. MitError
    (one paragraph) when SRC is not in the layout or an object lacks a required file."""
    src = Path(src)
    if not src.is_dir():
        raise _nothing(f"MIT intrinsic images folder not found: {src}. {_layout_help()}")
    own = sorted(f.name for f in src.iterdir() if f.is_file() and f.name in KNOWN)
    objects = []
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        present = tuple(sorted(f.name for f in d.iterdir() if f.is_file() and f.name in KNOWN))
        if present:
            objects.append(MitObject(d.name, d, present))
    if not objects:
        if own:
            hint = (f" {src} itself holds {', '.join(own)}: it looks like one object's folder; pass the folder that "
                    f"holds the object folders ({src.parent}).")
        elif (src / "data").is_dir():
            hint = f" The Grosse et al. download keeps the objects under data/: try {src / 'data'}."
        else:
            hint = ""
        raise _nothing(f"{src} is not in the MIT intrinsic images layout: none of its sub-folders holds any of "
                       f"the dataset's files. {_layout_help()}{hint}")
    if only:
        names = {o.name for o in objects}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise _nothing(f"--only {','.join(unknown)}: no such object in {src} (objects: {', '.join(sorted(names))}).")
        objects = [o for o in objects if o.name in set(only)]
    for o in objects:
        lacking = [f for f in REQUIRED if f not in o.files]
        if lacking:
            what = {"original.png": "the photograph under its default light", "reflectance.png": "the ground-truth "
                    "reflectance (albedo)", "mask.png": "the object mask"}
            raise _nothing(f"object {o.name!r} in {src} lacks {', '.join(f'{f} ({what[f]})' for f in lacking)} "
                           f"({o.folder / lacking[0]} does not exist): every object needs original.png, "
                           "reflectance.png and mask.png. Restore the file(s) from the download, or leave the object "
                           "out with --only.")
    return objects


def load_object(obj: MitObject) -> dict[str, np.ndarray]:
    """Every file of one object as uint16 arrays keyed by file name ([H, W] grey, [H, W, 3] RGB), checked:
    16 bit, channels, one size for all, a non-empty mask, a reflectance that is not 0 on the whole mask."""
    arrays = {name: read_png16(obj.path(name), obj.name, grey=name in GREY) for name in obj.files}
    size = arrays["original.png"].shape[:2]
    for name, a in arrays.items():
        if a.shape[:2] != size:
            raise _nothing(f"object {obj.name!r}, file {name} ({obj.path(name)}): {a.shape[1]}x{a.shape[0]} pixels, "
                           f"but original.png is {size[1]}x{size[0]}; all files of an object must be the same size.")
    mask = arrays["mask.png"] > 0
    if not mask.any():
        raise _nothing(f"object {obj.name!r}, file mask.png ({obj.path('mask.png')}) is 0 everywhere: no object "
                       "pixel to import.")
    if not arrays["reflectance.png"][mask].any():
        raise _nothing(f"object {obj.name!r}, file reflectance.png ({obj.path('reflectance.png')}) is 0 on the whole "
                       "mask: no reflectance to import.")
    return arrays


# ------------------------------------------------------------------------------------------------ values

def _lin(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) / RAW_MAX


def _shading_estimate(photo: np.ndarray, refl: np.ndarray) -> np.ndarray:
    """Y(photo) / Y(reflectance) per pixel (0 where the reflectance luminance is 0), as [H, W, 3]."""
    yp, yr = photo @ _LUMA, refl @ _LUMA
    s = np.where(yr > 0, yp / np.where(yr > 0, yr, 1.0), 0.0)
    return np.repeat(s[..., None], 3, axis=-1)


def _exposure(photo: np.ndarray, refl: np.ndarray, mask: np.ndarray) -> dict:
    from render.groundtruth import EXPOSURE_TARGET, meter_light

    metered, scale = meter_light(mask, _shading_estimate(photo, refl), refl)
    return {"mode": "metered (photograph / reflectance)", "scale": scale, "ev": round(float(np.log2(scale)), 4),
            "metered_shading_median": round(float(metered), 6), "target_shading_median": EXPOSURE_TARGET,
            "step_ev": "1/3", "rule": DEFINITIONS["exposure"]}


def _shading_fit(arrays: dict, mask: np.ndarray) -> dict | None:
    """The factor c making reflectance x c * shading match the diffuse photograph best (least squares over mask
    pixels and channels), against diffuse.png, else original - specular, else original."""
    if "shading.png" not in arrays:
        return None
    if "diffuse.png" in arrays:
        target, against = _lin(arrays["diffuse.png"]), "diffuse.png"
    elif "specular.png" in arrays:
        target, against = _lin(arrays["original.png"]) - _lin(arrays["specular.png"]), "original.png - specular.png"
    else:
        target, against = _lin(arrays["original.png"]), "original.png (no diffuse.png or specular.png)"
    model = _lin(arrays["reflectance.png"]) * _lin(arrays["shading.png"])[..., None]
    t, m = target[mask], model[mask]
    den = float((m * m).sum())
    c = float((t * m).sum() / den) if den > 0 else 1.0
    rms = float(np.sqrt(((t - c * m) ** 2).sum() / max(float((t * t).sum()), 1e-300)))
    return {"scale": c, "against": against, "rms_relative_error": round(rms, 6),
            "definition": "c = sum(D*R*S) / sum((R*S)^2) over mask pixels and channels, D the target, R the "
                          "reflectance, S shading.png (all / 65535); the stored shading is c*S times exposure.scale"}


def _identity(image, albedo, shading, residual, mask) -> tuple[float, float]:
    rec = albedo * shading + residual
    d, im = (image - rec)[mask], image[mask]
    err = np.abs(d) / np.maximum(np.abs(im), 1e-6)
    rms = float(np.sqrt((d * d).sum() / max(float((im * im).sum()), 1e-300)))
    return float(err.max()) if err.size else 0.0, rms


# ------------------------------------------------------------------------------------------------ writing

@dataclass(frozen=True)
class ImportReport:
    out: Path
    manifest: Path
    objects: tuple[str, ...]
    samples: tuple[str, ...]


def _check_out(out: Path, src: Path) -> None:
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise _nothing(f"--out {out} is inside SRC {src}: write the samples elsewhere (SRC is read only).")
    if out.exists() and not out.is_dir():
        raise _nothing(f"--out {out} exists and is not a folder.")
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            made_by = json.loads(manifest.read_text()).get("created_by")
        except (OSError, ValueError):
            made_by = None
        if made_by != CREATED_BY:
            raise _nothing(f"--out {out} already holds another dataset (its manifest.json was written by "
                           f"{made_by or 'an unknown tool'}), not an MIT import: pick another --out.")


def _write_sample(out: Path, obj: MitObject, lighting: str, arrays: dict, fit: dict | None) -> dict:
    from render.imageio import write_exr, write_png_encoded, write_png_srgb
    sid = f"{obj.name}__{lighting}"
    folder = out / sid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SAMPLE_JSON).unlink(missing_ok=True)
    mask = arrays["mask.png"] > 0
    refl = _lin(arrays["reflectance.png"])
    photo_name = obj.photo_file(lighting)
    photo = _lin(arrays[photo_name])
    exposure = _exposure(photo, refl, mask)
    k = exposure["scale"]
    image = (photo * k).astype(np.float32)
    albedo = refl.astype(np.float32)
    rels = {key: f"{sid}/{FILES[key]}" for key in ("image", "image_srgb", "albedo", "albedo_srgb", "mask")}
    write_exr(out / rels["image"], image)
    write_png_srgb(out / rels["image_srgb"], image)
    write_exr(out / rels["albedo"], albedo)
    write_png_srgb(out / rels["albedo_srgb"], albedo)
    write_png_encoded(out / rels["mask"], mask.astype(np.float32))
    sources = {"image": photo_name, "albedo": "reflectance.png", "mask": "mask.png"}
    missing = {k_: v for k_, v in MISSING_REASONS.items()}
    light = {}          # the default light's separated parts, where the dataset has them (times the exposure)
    if lighting == DEFAULT_LIGHT:
        parts = {"shading": ("shading.png", None if fit is None else
                             np.repeat(_lin(arrays["shading.png"])[..., None], 3, axis=-1) * fit["scale"]),
                 "residual": ("specular.png", _lin(arrays["specular.png"]) if "specular.png" in arrays else None),
                 "diffuse": ("diffuse.png", _lin(arrays["diffuse.png"]) if "diffuse.png" in arrays else None)}
        for key, (name, value) in parts.items():
            if value is None:
                missing[key] = f"{name} is not in {obj.folder}"
                continue
            light[key] = (value * k).astype(np.float32)
            rels[key] = f"{sid}/{FILES.get(key, DIFFUSE_FILE)}"
            write_exr(out / rels[key], light[key])
            sources[key] = name
            missing.pop(key)
    ident = (_identity(image.astype(np.float64), refl, light["shading"].astype(np.float64),
                       light["residual"].astype(np.float64), mask)
             if "shading" in light and "residual" in light else (None, None))
    light_text = ("its default light (original.png)" if lighting == DEFAULT_LIGHT else
                  f"single light {int(lighting[5:])} of 10 ({lighting}.png)")
    scene_text = f"the real object '{obj.name}' photographed in a lab on a black background (MIT intrinsic images)"
    m_img = image[mask]
    entry = {
        "id": sid, "scene": obj.name, "lighting": lighting, "base_scene": obj.name, "variant": 0,
        "description": f"{scene_text}, under {light_text}",
        "scene_description": scene_text, "lighting_description": light_text,
        **rels,
        "missing": missing,
        "width": int(mask.shape[1]), "height": int(mask.shape[0]),
        "dataset": "mit-intrinsic",
        "source": {"object": obj.name, "folder": str(obj.folder.resolve()),
                   "files": {role: {"file": name, "sha256": _sha256(obj.path(name))} for role, name in sources.items()},
                   "raw_max": RAW_MAX},
        "albedo_scale_known": False,
        "shading_fit": fit if lighting == DEFAULT_LIGHT else None,
        "identity_error": ident[0], "identity_rms_relative": ident[1],
        "exposure": exposure,
        "stats": {"mask_fraction": float(mask.mean()),
                  "clipped_fraction": float((m_img > 1.0).any(axis=-1).mean()) if m_img.size else 0.0,
                  "image_median": float(np.median(m_img.astype(np.float64) @ _LUMA)) if m_img.size else 0.0,
                  "source_saturated_fraction": float((arrays[photo_name][mask] >= 65000).any(axis=-1).mean())},
        "files": {rel: {"bytes": (out / rel).stat().st_size, "sha256": _sha256(out / rel)} for rel in rels.values()},
    }
    _write_json(folder / SAMPLE_JSON, entry)   # last: the done marker
    return entry


def build_mit_manifest(out: Path, src: Path) -> Path:
    """out/manifest.json from every imported sample.json in `out` (imports with --only add up)."""
    entries = []
    for p in sorted(out.glob(f"*/{SAMPLE_JSON}")):
        try:
            e = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if e.get("dataset") == "mit-intrinsic" and all((out / e[k]).is_file() for k in ("image", "albedo", "mask")):
            entries.append(e)
    entries.sort(key=lambda e: e["id"])
    albedo: dict[str, set] = {}
    for e in entries:
        albedo.setdefault(e["scene"], set()).add(e["files"][e["albedo"]]["sha256"])
    files = {k: {"name": FILES[k], "format": FILE_DOCS[k]} for k in ("image", "image_srgb", "albedo", "albedo_srgb",
                                                                        "shading", "residual", "mask")}
    files["diffuse"] = {"name": DIFFUSE_FILE, "format": "linear RGB float32 EXR (the photograph's diffuse part)"}
    manifest = {
        "format": FORMAT,
        "created_by": CREATED_BY,
        "dataset": {"name": DATASET, "key": "mit-intrinsic", "source": str(src.resolve()), "licence": LICENCE,
                    "notice": "NOTICE.txt" if (out / "NOTICE.txt").is_file() else None},
        "colour_spaces": {**{k: COLOUR_SPACES[k] for k in ("image", "image_srgb", "albedo", "albedo_srgb")},
                          "shading": "linear (ratio, unbounded), grey in three channels", "residual": "linear",
                          "diffuse": "linear"},
        "files": files,
        "definitions": DEFINITIONS,
        "missing_fields": {k: v for k, v in MISSING_REASONS.items()},
        "scale_ambiguity": ("reflectance and shading are each known only up to a factor per object; diffuse ~ "
                            "reflectance x shading to a few per cent. Metrics on this folder use scale-free "
                            "alignments only (scalar, per_channel; evaluate score leaves `none` empty)"),
        "identity_tolerance": None,
        "max_identity_rms_relative": max((e["identity_rms_relative"] for e in entries
                                          if e.get("identity_rms_relative") is not None), default=None),
        "num_samples": len(entries),
        "scenes": sorted({e["scene"] for e in entries}),
        "base_scenes": sorted({e["base_scene"] for e in entries}),
        "recolor": None,
        "contrasts_unavailable": {"albedo": NO_COLOUR_TWINS},
        "cluster_key": "base_scene (the object: its eleven photographs are not independent)",
        "albedo_identical_across_lightings": {k: len(v) == 1 for k, v in sorted(albedo.items())},
        "samples": entries,
    }
    path = out / "manifest.json"
    _write_json(path, manifest)
    return path


def import_mit(src: str | Path, out: str | Path, only: Sequence[str] | None = None,
               progress: bool = True) -> ImportReport:
    """Import every object of SRC (or `only` those) into `out` as render samples and (re)write its manifest.

    Every file of every object is read and checked first (MitError, nothing written); then each sample
    folder is written, sample.json last, and manifest.json lists every imported sample in `out`. Running it
    again rewrites the same values (the import is deterministic)."""
    from tqdm.auto import tqdm

    src, out = Path(src), Path(out)
    objects = scan_source(src, only)
    _check_out(out, src)
    for o in objects:                                   # all of SRC is checked before the first write
        load_object(o)
    out.mkdir(parents=True, exist_ok=True)
    if (src / "NOTICE.txt").is_file():
        shutil.copyfile(src / "NOTICE.txt", out / "NOTICE.txt")
    ids = []
    bar = tqdm(total=sum(len(o.lightings) for o in objects), desc="import-mit", unit="sample", disable=not progress)
    with bar:
        for o in objects:
            arrays = load_object(o)
            fit = _shading_fit(arrays, arrays["mask.png"] > 0)
            for lighting in o.lightings:
                ids.append(_write_sample(out, o, lighting, arrays, fit)["id"])
                bar.update(1)
    manifest = build_mit_manifest(out, src)
    return ImportReport(out, manifest, tuple(o.name for o in objects), tuple(ids))
