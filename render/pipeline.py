"""Render a set of scenes into a dataset folder: planning, sharding, resume, files, manifest.

    from render.pipeline import render_dataset
    report = render_dataset("scenes/", "runs/render", resolution=32, samples=4, only=["red_cube_table"])
    report.rendered, report.skipped, report.manifest        # ids, ids, Path to manifest.json

Layout under `out`:
    <scene>__<lighting>/image_linear.exr image_srgb.png albedo_linear.exr albedo_srgb.png shading_linear.exr
                        residual_linear.exr normal.exr depth.exr mask.png object_index.png sample.json
    <scene>~c<k>__<lighting>/ ...  colour variant k of the scene (--recolor K), same files
    (with keep_noisy and denoise "passes" also image_noisy_linear.exr shading_noisy_linear.exr
     residual_noisy_linear.exr: the passes before denoising, same exposure; sample.json "noisy")
    scenes/<scene>.json      the specs that were rendered (generated ones included)
    manifest.json            every finished sample (assembled from the sample.json files)

A sample is finished when its `sample.json` exists (written last, atomically) and the sizes and
SHA-256 of its files match what it records; a rerun skips finished samples and redoes the rest.
Shards may write into one folder at once: each sample belongs to one shard, and manifest.json is
rebuilt from all sample.json files under a file lock at the end of every run.
bpy is imported only when something has to be rendered (by render.blender).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from render.denoise import Denoiser
from render.groundtruth import DEFINITIONS, EXPOSURE_TARGET, GroundTruth, decompose, expose, meter
from render.oidn import OidnError
from render.imageio import atomic_path, write_exr, write_png_encoded, write_png_srgb
from render.recolor import recolor_mode as mode_of_record, with_variants
from render.scene import Lighting, Scene, SceneError, load_scenes, save_scene, scene_to_dict, split_variant
from render.settings import RenderSettings, parse_resolution
from render.shard import Shard

__all__ = ["render_dataset", "plan_samples", "sample_id", "build_manifest", "verify_sample", "RenderReport",
           "SampleJob", "RenderError", "FILES", "MANIFEST", "SAMPLE_JSON", "DEFAULT_OUT", "FORMAT"]

DEFAULT_OUT = "runs/render"
MANIFEST = "manifest.json"
SAMPLE_JSON = "sample.json"
FORMAT = "ray-plantain-render/1"
IDENTITY_TOLERANCE = 1e-4
# manifest key -> file name inside the sample folder
FILES = {
    "image": "image_linear.exr", "image_srgb": "image_srgb.png", "albedo": "albedo_linear.exr",
    "albedo_srgb": "albedo_srgb.png",
    "shading": "shading_linear.exr", "residual": "residual_linear.exr", "normal": "normal.exr",
    "depth": "depth.exr", "mask": "mask.png", "object_index": "object_index.png",
}
# --keep-noisy (denoise "passes"): the passes before denoising; sample.json "noisy" maps these keys to paths
NOISY_FILES = {"image": "image_noisy_linear.exr", "shading": "shading_noisy_linear.exr",
               "residual": "residual_noisy_linear.exr"}
# files that renders made before they existed lack: readers accept their absence, resume adds them
ADDED_LATER = ("albedo_srgb",)
FILE_DOCS = {
    "image": "linear RGB float32 EXR (channels R, G, B)", "image_srgb": "sRGB 8-bit PNG",
    "albedo": "linear RGB float32 EXR", "albedo_srgb": "sRGB 8-bit PNG (albedo encoded exactly as image_srgb)", "shading": "linear RGB float32 EXR (diffuse light / albedo)",
    "residual": "linear RGB float32 EXR (non-diffuse light)",
    "normal": "float32 EXR, channels X, Y, Z, camera space", "depth": "float32 EXR, one channel Z, metres, +inf = background",
    "mask": "8-bit PNG, 255 = valid surface pixel, 0 = not", "object_index": "8-bit PNG, 0 = background, k = objects[k-1]",
}
COLOUR_SPACES = {
    "image": "linear Rec.709 (scene linear)", "image_srgb": "sRGB (IEC 61966-2-1), 8-bit, clipped to [0, 1]",
    "albedo": "linear Rec.709", "albedo_srgb": "sRGB (IEC 61966-2-1), 8-bit, clipped to [0, 1]",
    "shading": "linear (ratio, unbounded)", "residual": "linear Rec.709",
}


class RenderError(RuntimeError):
    """A run cannot proceed; the message is meant for the user as is (names file/field)."""


@dataclass(frozen=True)
class SampleJob:
    scene: Scene
    lighting: Lighting

    @property
    def id(self) -> str:
        return sample_id(self.scene.id, self.lighting.name)


@dataclass(frozen=True)
class RenderReport:
    out: Path
    manifest: Path
    planned: tuple[str, ...]
    rendered: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float
    seconds_per_sample: float
    startup_seconds: float = 0.0
    max_identity_error: float = 0.0
    timings: dict = field(default_factory=dict)


def sample_id(scene_id: str, lighting_name: str) -> str:
    return f"{scene_id}__{lighting_name}"


def plan_samples(scenes: Sequence[Scene], lightings: Sequence[str] | None = None,
                 shard: Shard | str | None = None) -> list[SampleJob]:
    """Every (scene, lighting) pair, sorted by sample id, filtered by lighting names, then sharded."""
    jobs = [SampleJob(s, l) for s in scenes for l in s.lightings if not lightings or l.name in lightings]
    if lightings:
        known = {l.name for s in scenes for l in s.lightings}
        unknown = sorted(set(lightings) - known)
        if unknown:
            raise SceneError(f"--lightings: no selected scene has lighting(s) {unknown}; known: {sorted(known)}")
    jobs.sort(key=lambda j: j.id)
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        raise SceneError("two samples share an id: scene ids must be unique")
    shard = shard if isinstance(shard, Shard) else Shard.parse(shard)
    return shard.select(jobs)


# ------------------------------------------------------------------------------- file helpers
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _spec_hash(scene: Scene, lighting: Lighting) -> str:
    d = scene_to_dict(scene)
    d["lightings"] = [x for x in d["lightings"] if x["name"] == lighting.name]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def verify_sample(out: Path, sid: str, check_hashes: bool = True) -> tuple[dict | None, str]:
    """(entry, "") when out/sid is finished and its files verify, else (None or entry, reason)."""
    path = out / sid / SAMPLE_JSON
    if not path.is_file():
        return None, "not rendered"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        files = entry["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{path}: unreadable ({e})"
    for key, rel in ((k, entry.get(k)) for k in FILES):
        if key in ADDED_LATER and key not in entry:
            continue                      # an older render: still a finished sample (resume adds the file)
        if not rel or rel not in files:
            return entry, f"{path}: no record of {key}"
    for rel, meta in files.items():
        fp = out / rel
        if not fp.is_file():
            return entry, f"{fp}: missing"
        if fp.stat().st_size != meta["bytes"]:
            return entry, f"{fp}: size {fp.stat().st_size} != recorded {meta['bytes']}"
        if check_hashes and _sha256(fp) != meta["sha256"]:
            return entry, f"{fp}: checksum differs from sample.json"
    return entry, ""


def _clean_stale(folder: Path) -> None:
    """Remove temp files a killed run left behind (atomic writes name them .<stem>.tmp<pid>.<ext>)."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp*"):
            with contextlib.suppress(OSError):
                p.unlink()


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RenderError(f"output folder {out} is not writable: {e}") from None


# ------------------------------------------------------------------------------------ writing
def _write_sample(out: Path, job: SampleJob, gt: GroundTruth, settings: RenderSettings, camera: dict,
                  blender: str, working_space: str, render_seconds: float, device: dict | None = None,
                  exposure: dict | None = None, clamp: float = 0.0, denoise: dict | None = None,
                  noisy: GroundTruth | None = None) -> dict:
    sid = job.id
    folder = out / sid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SAMPLE_JSON).unlink(missing_ok=True)  # from here on the sample is not 'done' until rewritten
    _clean_stale(folder)
    write_exr(folder / FILES["image"], gt.image)
    write_png_srgb(folder / FILES["image_srgb"], gt.image)
    write_exr(folder / FILES["albedo"], gt.albedo)
    write_png_srgb(folder / FILES["albedo_srgb"], gt.albedo)   # the same encoding as image_srgb, background 0
    write_exr(folder / FILES["shading"], gt.shading)
    write_exr(folder / FILES["residual"], gt.residual)
    write_exr(folder / FILES["normal"], gt.normal, channels="XYZ")
    write_exr(folder / FILES["depth"], gt.depth, channels="Z")
    write_png_encoded(folder / FILES["mask"], gt.mask.astype(np.float32))
    write_png_encoded(folder / FILES["object_index"], gt.object_index.astype(np.float32) / 255.0)
    rels = {k: f"{sid}/{v}" for k, v in FILES.items()}
    noisy_rels = {}
    if noisy is not None:
        for k, name in NOISY_FILES.items():
            write_exr(folder / name, getattr(noisy, k))
            noisy_rels[k] = f"{sid}/{name}"
    files = {rel: {"bytes": (out / rel).stat().st_size, "sha256": _sha256(out / rel)}
             for rel in [*rels.values(), *noisy_rels.values()]}
    scene, lighting = job.scene, job.lighting
    objects = []
    for i, o in enumerate(scene.objects):
        c = o.material.constant_color
        objects.append({
            "index": i + 1, "name": o.name, "primitive": o.primitive, "group": o.group,
            "base_color": list(c) if c is not None else None,
            "texture": None if c is not None else o.material.base_color.type,
            "texture_colors": None if c is not None else [list(x) for x in o.material.base_color.colors],
            "roughness": list(o.material.roughness) if isinstance(o.material.roughness, tuple) else o.material.roughness,
            "metallic": o.material.metallic,
        })
    entry = {
        "id": sid, "scene": scene.id, "lighting": lighting.name,
        "base_scene": scene.base_id, "variant": scene.variant,
        "description": f"{scene.description}, {lighting.description}",
        "scene_description": scene.description, "lighting_description": lighting.description,
        **rels,
        "scene_spec": f"scenes/{scene.id}.json", "spec_hash": _spec_hash(scene, lighting),
        **({"recolor": scene.recolor, "recolor_mode": mode_of_record(scene.recolor)} if scene.recolor is not None
           else {}),
        "objects": objects,
        "width": settings.width, "height": settings.height,
        "render": settings.pixel_dict(),
        "blender_version": blender, "working_space": working_space,
        "device": device or {"requested": settings.device, "backend": "unknown", "devices": []},
        "normal_space": "camera", "depth_background": "inf", "object_index_format": "png8",
        "camera": camera,
        "identity_error": gt.identity_error,
        "exposure": exposure or {"mode": "none", "scale": 1.0, "ev": 0.0},
        "indirect_clamp": clamp,
        "denoise": denoise or {"mode": "none"},
        **({"noisy": noisy_rels} if noisy_rels else {}),
        "stats": gt.stats(),
        "render_seconds": round(render_seconds, 4),
        "files": files,
    }
    _write_json(folder / SAMPLE_JSON, entry)   # last: the done marker
    return entry


# ----------------------------------------------------------------------------------- manifest
@contextlib.contextmanager
def _locked(out: Path):
    """An exclusive lock on out/.manifest.lock, so concurrent shards rebuild the manifest one at a time."""
    lock = out / ".manifest.lock"
    with open(lock, "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock (Windows, some network file systems): best effort
            pass
        yield


def build_manifest(out: str | Path) -> Path:
    """Rebuild out/manifest.json from every finished sample.json (cheap checks: files exist)."""
    out = Path(out)
    with _locked(out):
        entries = []
        for p in sorted(out.glob(f"*/{SAMPLE_JSON}")):
            entry, why = verify_sample(out, p.parent.name, check_hashes=False)
            if entry is not None and not why:
                entries.append(entry)
        entries.sort(key=lambda e: e["id"])
        for e in entries:                     # samples written before colour variants existed
            e.setdefault("variant", split_variant(e["scene"])[1])
            e.setdefault("base_scene", split_variant(e["scene"])[0])
            if e["variant"]:                  # hsv (brightness changes) or chroma (luminance kept)
                e.setdefault("recolor_mode", mode_of_record(e.get("recolor")) or "hsv")
            e.setdefault("denoise", {"mode": "none"})     # samples written before denoising existed
        renders = {json.dumps(e["render"], sort_keys=True) for e in entries}
        # lightings of a scene must share albedo pixel for pixel: equal arrays give equal files, so compare hashes
        albedo_hashes: dict[str, set] = {}
        for e in entries:
            albedo_hashes.setdefault(e["scene"], set()).add(e["files"][e["albedo"]]["sha256"])
        versions = sorted({e["blender_version"] for e in entries})
        devices = {json.dumps(e.get("device"), sort_keys=True) for e in entries if e.get("device")}
        denoise = {json.dumps(_denoise_summary(e["denoise"]), sort_keys=True) for e in entries}
        manifest = {
            "format": FORMAT,
            "created_by": "python -m render",
            "blender_version": versions[0] if len(versions) == 1 else versions,
            "render_settings": json.loads(renders.pop()) if len(renders) == 1 else "mixed (see each sample)",
            "working_space": entries[0]["working_space"] if entries else None,
            "device": (json.loads(devices.pop()) if len(devices) == 1 else
                       "mixed (see each sample)" if devices else None),
            "denoise": (json.loads(denoise.pop()) if len(denoise) == 1 else
                        "mixed (see each sample)" if denoise else None),
            "colour_spaces": COLOUR_SPACES,
            "normal_space": "camera",
            "depth_background": "inf",
            "files": {k: {"name": FILES[k], "format": FILE_DOCS[k]} for k in FILES},
            "definitions": DEFINITIONS,
            "identity_tolerance": IDENTITY_TOLERANCE,
            "max_identity_error": max((e["identity_error"] for e in entries), default=0.0),
            "num_samples": len(entries),
            "scenes": sorted({e["scene"] for e in entries}),
            "base_scenes": sorted({e["base_scene"] for e in entries}),
            "recolor": _recolor_summary(entries),
            "cluster_key": "base_scene (samples of one base scene, its lightings and colour variants, are not "
                           "independent)",
            "albedo_identical_across_lightings": {k: len(v) == 1 for k, v in sorted(albedo_hashes.items())},
            "samples": entries,
        }
        path = out / MANIFEST
        _write_json(path, manifest)
    return path


def _exposure(gt: GroundTruth, settings: RenderSettings) -> dict:
    """The exposure record of one sample (groundtruth.meter), scale 1 with exposure 'none'."""
    metered, scale = meter(gt)
    if settings.exposure == "none":
        scale = 1.0
    return {"mode": settings.exposure, "scale": scale, "ev": round(float(np.log2(scale)), 4),
            "metered_shading_median": round(metered, 6), "target_shading_median": EXPOSURE_TARGET,
            "step_ev": "1/3"}


def _denoise_summary(record: dict) -> dict:
    """A sample's denoise record without its per-sample numbers (what the manifest says for the whole run)."""
    return {k: v for k, v in record.items() if k not in ("noisy_identity_error", "path")}


def _recolor_summary(entries: list[dict]) -> dict | None:
    """The colour-variant settings of the samples in a manifest (None when there are no variants)."""
    recs = [e["recolor"] for e in entries if e.get("variant") and e.get("recolor")]
    if not recs:
        return None
    seeds = sorted({r["seed"] for r in recs})
    ranges = {json.dumps(r.get("range"), sort_keys=True) for r in recs}
    modes: dict[str, list[int]] = {}
    for e in entries:
        if e.get("variant") and e.get("recolor"):
            modes.setdefault(mode_of_record(e["recolor"]), []).append(int(e["variant"]))
    return {"variants": max(e["variant"] for e in entries),
            "seed": seeds[0] if len(seeds) == 1 else seeds,
            "modes": {m: sorted(set(v)) for m, v in sorted(modes.items())},
            "range": json.loads(ranges.pop()) if len(ranges) == 1 else "mixed (see each sample)",
            "sample_ids": "<scene>~c<k>__<lighting> for variant k >= 1; <scene>__<lighting> for the original"}


def _add_albedo_srgb(out: Path, entry: dict) -> None:
    """Bring a sample rendered before albedo_srgb.png existed up to date without re-rendering it."""
    from render.imageio import read_exr

    sid = entry["id"]
    rel = f"{sid}/{FILES['albedo_srgb']}"
    write_png_srgb(out / rel, read_exr(out / entry["albedo"])[..., :3])
    entry = {**entry, "albedo_srgb": rel,
             "files": {**entry["files"], rel: {"bytes": (out / rel).stat().st_size, "sha256": _sha256(out / rel)}}}
    _write_json(out / sid / SAMPLE_JSON, entry)


# ------------------------------------------------------------------------------------- driver
def _resolve_scenes(scenes, only: Sequence[str] | None) -> list[Scene]:
    if scenes is None:
        from render.paths import data_dir

        scenes = data_dir("scenes")
    if isinstance(scenes, (str, os.PathLike)):
        return load_scenes(scenes, only=only)
    scenes = list(scenes)
    if only:
        ids = {s.id for s in scenes}
        missing = [i for i in only if i not in ids]
        if missing:
            raise SceneError(f"unknown scene id(s) {missing}; available: {sorted(ids)}")
        scenes = [s for s in scenes if s.id in set(only)]
    return scenes


SCRATCH_PREFIX = "ray-plantain-"
_SAID: set[str] = set()


def _scratch_dir() -> str:
    """A private folder for Blender's pass files, in RAM (/dev/shm) where there is one.

    Named with the pid, so a later run can remove what a killed one left (it could not clean up).
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    for old in base.glob(f"{SCRATCH_PREFIX}*-*"):
        try:
            pid = int(old.name[len(SCRATCH_PREFIX):].split("-")[0])
            os.kill(pid, 0)                     # raises if no such process: the folder is orphaned
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            pass                                # not ours, or a live process of another user
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=str(base))


def render_dataset(
    scenes: str | os.PathLike | Iterable[Scene] | None = None,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    resolution: int | str | tuple[int, int] | None = None,
    samples: int | None = None,
    lightings: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    recolor: int = 0,
    recolor_seed: int = 0,
    recolor_mode: str = "hsv",
    shard: Shard | str | None = None,
    threads: int = 0,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    settings: RenderSettings | None = None,
    quiet_blender: bool = True,
    keep_noisy: bool = False,
) -> RenderReport:
    """Render every (scene, lighting) sample into `out` and rebuild `out/manifest.json`.

    `scenes`: a spec file or folder (default: the shipped scenes/), or Scene objects (e.g. from
    generate_scenes). `recolor` K adds K colour variants of each (original) scene, drawn with
    `recolor_seed` in `recolor_mode` (see render.recolor). `resolution`/`samples`/`device` override `settings`. Finished samples are skipped unless
    `overwrite`; a finished sample rendered with other settings or another spec is an error (nothing
    is overwritten) unless `overwrite`; so is one denoised by another OIDN version. With denoise "passes",
    `keep_noisy` also writes the passes before denoising (NOISY_FILES), and re-renders finished samples
    that lack them. Everything is validated before the first render.
    """
    t_start = time.perf_counter()
    base = settings or RenderSettings()
    kw: dict = {"threads": threads} if threads else {}
    if device is not None:
        kw["device"] = device
    if resolution is not None:
        w, h = resolution if isinstance(resolution, tuple) else parse_resolution(resolution)
        kw.update(width=w, height=h)
    if samples is not None:
        kw["samples"] = samples
    settings = RenderSettings(**{**base.to_dict(), **kw}).validate()

    scene_list = with_variants(_resolve_scenes(scenes, only), recolor, recolor_seed, recolor_mode)
    jobs = plan_samples(scene_list, lightings, shard)
    out = Path(out)
    keep_noisy = keep_noisy and settings.denoise != "none"
    try:   # before anything is written: a missing OIDN changes nothing; its version is part of the resume key
        denoiser = Denoiser(settings.denoise, settings.denoise_quality, settings.threads)
    except OidnError as e:     # the message names OIDN_LIBRARY
        raise RenderError(f"--denoise {settings.denoise}: {e}") from None

    todo: list[SampleJob] = []
    skipped: list[str] = []
    conflicts: list[str] = []
    upgrade: list[dict] = []
    for job in jobs:
        entry, why = verify_sample(out, job.id)
        if entry is not None and not overwrite:
            theirs = RenderSettings.from_dict({**entry.get("render", {}), "threads": 0})
            if not theirs.matches(settings):
                diff = {k: (v, settings.pixel_dict().get(k)) for k, v in theirs.pixel_dict().items()
                        if settings.pixel_dict().get(k) != v}
                conflicts.append(f"{job.id}: rendered with {', '.join(f'{k}={a} (now {b})' for k, (a, b) in diff.items())}")
                continue
            if entry.get("spec_hash") != _spec_hash(job.scene, job.lighting):
                conflicts.append(f"{job.id}: its scene spec changed since it was rendered")
                continue
            theirs_v = (entry.get("denoise") or {}).get("version")
            if denoiser.version is not None and theirs_v != denoiser.version:
                conflicts.append(f"{job.id}: denoised with OIDN {theirs_v} (now {denoiser.version})")
                continue
        if entry is not None and not why and not overwrite and not (keep_noisy and "noisy" not in entry):
            skipped.append(job.id)
            if "albedo_srgb" not in entry:
                upgrade.append(entry)
        else:
            todo.append(job)
    if conflicts:
        raise RenderError(
            f"{out} already holds samples that differ from this run (use --overwrite to re-render them, "
            f"or another --out):\n  " + "\n  ".join(conflicts[:10]) + ("\n  ..." if len(conflicts) > 10 else ""))

    timings: dict[str, float] = {"startup": 0.0, "build": 0.0, "render": 0.0, "decompose": 0.0, "denoise": 0.0,
                                 "denoise_cpu": 0.0, "write": 0.0}
    if todo:
        t0 = time.perf_counter()
        from render import blender as bl  # the bpy import: paid once per process

        try:
            device = bl.resolve_device(settings.device)   # before anything is written: a bad --device changes nothing
        except bl.DeviceError as e:
            raise RenderError(str(e)) from None
        if device.note and device.note not in _SAID:
            _SAID.add(device.note)        # once per process, however many runs it makes
            print(f"python -m render: {device.note}", file=sys.stderr)
        timings["startup"] = time.perf_counter() - t0

    _check_writable(out)
    for s in {j.scene.id: j.scene for j in jobs}.values():
        save_scene(s, out / "scenes" / f"{s.id}.json")
    for entry in upgrade:
        _add_albedo_srgb(out, entry)

    rendered: list[str] = []
    max_err = 0.0
    if todo:
        t0 = time.perf_counter()
        scratch = _scratch_dir()
        session = bl.BlenderSession(settings, scratch, quiet=quiet_blender, device=device)
        version, space = bl.blender_version(), bl.working_space()
        timings["startup"] += time.perf_counter() - t0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="sample", desc="render", dynamic_ncols=True)
        try:
            current = None
            for job in todo:
                if bar is not None:
                    bar.set_postfix_str(job.id, refresh=False)
                t = time.perf_counter()
                if current != job.scene.id:
                    session.build(job.scene)
                    current = job.scene.id
                timings["build"] += time.perf_counter() - t
                t = time.perf_counter()
                session.set_lighting(job.scene, job.lighting)
                passes = session.render()
                dt_render = time.perf_counter() - t
                timings["render"] += dt_render
                t = time.perf_counter()
                gt = decompose(passes, session.camera_from_world())
                timings["decompose"] += time.perf_counter() - t
                # the noisy passes must add up to Cycles' Combined pass (denoising recomposes the image, so after
                # it the identity holds by construction and checks nothing about the render)
                if gt.identity_error >= IDENTITY_TOLERANCE:
                    raise RenderError(f"{job.id}: identity error {gt.identity_error:.3g} >= {IDENTITY_TOLERANCE} "
                                      "(image != albedo*shading + residual); not writing it")
                t, c = time.perf_counter(), time.process_time()
                noisy, noisy_err, gt = gt, gt.identity_error, denoiser.apply(gt)
                timings["denoise"] += time.perf_counter() - t
                timings["denoise_cpu"] += time.process_time() - c
                t = time.perf_counter()
                exposure = _exposure(gt, settings)
                gt = expose(gt, exposure["scale"])
                noisy = expose(noisy, exposure["scale"]) if keep_noisy else None
                timings["decompose"] += time.perf_counter() - t
                if gt.identity_error >= IDENTITY_TOLERANCE:
                    raise RenderError(f"{job.id}: identity error {gt.identity_error:.3g} >= {IDENTITY_TOLERANCE} "
                                      "after denoising (image != albedo*shading + residual); not writing it")
                t = time.perf_counter()
                dn_record = denoiser.record(noisy_identity_error=noisy_err) if settings.denoise != "none" else None
                _write_sample(out, job, gt, settings, session.camera_info(), version, space, dt_render,
                              device=device.record(), exposure=exposure, clamp=session.last_clamp,
                              denoise=dn_record, noisy=noisy)
                timings["write"] += time.perf_counter() - t
                max_err = max(max_err, gt.identity_error)
                rendered.append(job.id)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            shutil.rmtree(scratch, ignore_errors=True)
    denoiser.close()

    manifest = build_manifest(out)
    total = time.perf_counter() - t_start
    return RenderReport(
        out=out, manifest=manifest, planned=tuple(j.id for j in jobs), rendered=tuple(rendered),
        skipped=tuple(skipped), seconds=total,
        seconds_per_sample=(total - timings["startup"]) / len(rendered) if rendered else 0.0,
        startup_seconds=timings["startup"], max_identity_error=max_err, timings=timings,
    )
