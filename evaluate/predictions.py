"""Prediction storage: the one place that knows where a prediction lives and what made it.

    from evaluate.predictions import PredictionStore
    store = PredictionStore("runs/evaluate/pred", "klein")
    state = store.check("cornell_box__key", key)          # Resume.MISSING / MATCH / MISMATCH (+ differing fields)
    store.write("cornell_box__key", albedo_linear, key=key, seconds=3.1)
    store.finish(shard=shard)         # unsharded: manifest.json + config.json from the sidecars; a shard: its own record
    entries = store.entries()         # what `evaluate score` reads (the sidecars)

Layout of one method folder, PRED/<method>/:

    <sample>_albedo_linear.exr   float32 linear RGB (the prediction, at the ground truth's size)
    <sample>_albedo_srgb.png     8-bit IEC 61966-2-1 sRGB of the same values clipped to [0, 1]
    <sample>.json                the sidecar, written last (the done marker): file names, size, and
                                 `key`, everything that made this prediction (model, revision, dtype,
                                 prompt, steps, guidance, seed, reference file and its sha256, the
                                 reference transform, ablated units, library versions...)
    manifest.json                index of the sidecars present (rebuilt from them, never edited)
    config.json                  the generation key(s) of the predictions on disk, with counts
    shards/shard-K-of-N.json     a sharded run's own record (its shard, settings and samples)

Several processes may write into one method folder at once (torchrun ranks, SLURM array tasks):
every sample has its own files, each written to a unique temporary name and renamed into place
(atomic on POSIX file systems, shared ones included), and no file is written by two ranks: a
sharded run (N > 1) ends by writing only its shard record. The shared index files, manifest.json
and config.json, are rebuilt from the sidecars (atomic replace) by an unsharded run and by
`evaluate score` (`rebuild_index`), so they are complete once the shards are. Readers (`entries`)
trust the sidecars over the manifest.

Resume: a prediction is kept only when its sidecar's key equals the key of the run now asking
(`check`); `mode="on"` regenerates a differing one, `"strict"` raises `StalePredictionError`
naming the differing fields before anything is written, `"off"` regenerates everything.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["COLOUR_SPACE", "RESUME_MODES", "Resume", "StalePredictionError", "PredictionStore", "prediction_paths",
           "key_differences", "file_sha256", "atomic_write_text", "library_versions", "SHARED_FILES",
           "write_prediction", "write_method_manifest", "prediction_finished", "prediction_state", "MODEL_LIBRARIES", "IMAGE_LIBRARIES"]

COLOUR_SPACE = {"albedo_linear": "linear-light RGB, float32 EXR",
                "albedo_srgb": "IEC 61966-2-1 sRGB, 8-bit PNG of albedo_linear clipped to [0, 1]"}
RESUME_MODES = ("on", "strict", "off")
SHARED_FILES = ("manifest.json", "config.json")
_INDEX_FIELDS = ("method", "colour_space", "colour_space_note", "n_predictions", "predictions")   # always rebuilt
PER_SAMPLE_KEY_FIELDS = ("reference", "reference_transform", "mask")   # differ per sample by nature; not a setting


class StalePredictionError(ValueError):
    """`--resume strict` found predictions made with different settings (message names the fields)."""


@dataclass(frozen=True)
class Resume:
    """What `PredictionStore.check` found for one sample."""
    state: str                          # "missing" | "match" | "mismatch"
    differing: tuple[str, ...] = ()     # key fields that differ (mismatch only)

    @property
    def keep(self) -> bool:
        return self.state == "match"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to a unique temporary file beside `path`, then rename it over `path`.

    The temporary name comes from mkstemp (O_EXCL, random), so concurrent writers on different
    hosts never share one, unlike a pid-based name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _dumps(obj: Any) -> str:
    from probe.io.jsonio import json_clean

    return json.dumps(json_clean(obj), indent=2, default=str, allow_nan=False)


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MODEL_LIBRARIES = ("diffusers", "torch", "transformers")
# what reads, resizes and writes the images around a method (PNG/EXR decoding, area and bilinear resizing)
IMAGE_LIBRARIES = ("numpy", "Pillow", "opencv-python-headless", "opencv-python", "OpenEXR")


def library_versions(names: Sequence[str] = MODEL_LIBRARIES) -> dict[str, str | None]:
    """Versions that change what a method produces (part of a generation key); None when not installed."""
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def _canonical(v: Any) -> Any:
    """JSON round trip, so that a key read back from a sidecar compares equal to a fresh one."""
    return json.loads(_dumps(v))


def key_differences(stored: dict | None, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two generation keys differ (missing counts as different)."""
    stored = stored if isinstance(stored, dict) else {}
    out = []
    for k in sorted(set(stored) | set(wanted)):
        a, b = stored.get(k, "<absent>"), wanted.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += key_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def prediction_paths(pred_dir: str | os.PathLike, method: str, sample_id: str) -> dict[str, Path]:
    d = Path(pred_dir) / method
    return {"albedo_linear": d / f"{sample_id}_albedo_linear.exr", "albedo_srgb": d / f"{sample_id}_albedo_srgb.png",
            "sidecar": d / f"{sample_id}.json"}


class PredictionStore:
    """One method folder under PRED: resume checks, writes, the shared index files, and reading back."""

    def __init__(self, pred_dir: str | os.PathLike, method: str):
        if not method or "/" in method or method.startswith("."):
            raise ValueError(f"bad method name {method!r}: a folder name without '/'")
        self.pred_dir = Path(pred_dir)
        self.method = method
        self.dir = self.pred_dir / method

    def paths(self, sample_id: str) -> dict[str, Path]:
        return prediction_paths(self.pred_dir, self.method, sample_id)

    # ------------------------------------------------------------------ reading

    def sidecar(self, sample_id: str) -> dict | None:
        """The sidecar of a finished prediction whose image files exist, else None."""
        p = self.paths(sample_id)
        if not p["sidecar"].is_file():
            return None
        try:
            side = json.loads(p["sidecar"].read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(side, dict) or side.get("sample") != sample_id:
            return None
        if not (p["albedo_linear"].is_file() and p["albedo_srgb"].is_file()):
            return None
        return side

    def check(self, sample_id: str, key: dict) -> Resume:
        """Whether the prediction on disk was made by exactly `key` (see the module docstring)."""
        side = self.sidecar(sample_id)
        if side is None or not self._readable(sample_id):
            return Resume("missing")
        diff = key_differences(side.get("key"), _canonical(key))
        return Resume("mismatch", tuple(diff)) if diff else Resume("match")

    def _readable(self, sample_id: str) -> bool:
        """Both image files decode (a file damaged after writing is redone, not trusted)."""
        from render.imageio import read_exr, read_png_srgb

        p = self.paths(sample_id)
        try:
            read_exr(p["albedo_linear"])
            read_png_srgb(p["albedo_srgb"])
        except Exception:
            return False
        return True

    def plan(self, keys: dict[str, dict], mode: str) -> dict[str, Resume]:
        """check() for every sample; with mode "strict", raise before anything is written if any differs."""
        if mode not in RESUME_MODES:
            raise ValueError(f"resume mode must be one of {RESUME_MODES}, got {mode!r}")
        if mode == "off":
            return {s: Resume("missing") for s in keys}
        found = {s: self.check(s, k) for s, k in keys.items()}
        stale = {s: r for s, r in found.items() if r.state == "mismatch"}
        if mode == "strict" and stale:
            fields = sorted({f for r in stale.values() for f in r.differing})
            first = next(iter(stale))
            raise StalePredictionError(
                f"--resume strict: {len(stale)} of {len(keys)} predictions in {self.dir} were made with different "
                f"settings (differing fields: {', '.join(fields)}; e.g. {first}: {', '.join(stale[first].differing)}). "
                "Nothing was written. Rerun with the settings that made them, with --resume on to regenerate the "
                "differing ones, or with another --out.")
        return found

    def _sidecar_files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("*.json") if p.name not in SHARED_FILES and not p.name.startswith("."))

    def sidecars(self) -> list[dict]:
        """Every readable sidecar of a finished prediction, sorted by sample id."""
        out = []
        for f in self._sidecar_files():
            sid = f.name[: -len(".json")]
            side = self.sidecar(sid)
            if side is not None:
                out.append(side)
        return out

    def entries(self) -> list[dict]:
        """The prediction entries to score: the sidecars when there are any (authoritative), else the
        `predictions` list of manifest.json (folders written by other tools). Raises FileNotFoundError
        / ValueError with a message when neither exists or the manifest is unreadable."""
        sides = [s for s in (self._read(f) for f in self._sidecar_files()) if isinstance(s, dict) and "sample" in s]
        if sides:
            return sides
        path = self.dir / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"no predictions for method {self.method!r}: {path} not found")
        try:
            m = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from e
        if not isinstance(m, dict) or not isinstance(m.get("predictions"), list):
            raise ValueError(f"{path} has no `predictions` list")
        return [e for e in m["predictions"] if isinstance(e, dict) and "sample" in e]

    def manifest(self) -> dict:
        """manifest.json as a dict ({} when absent or unreadable)."""
        got = self._read(self.dir / "manifest.json")
        return got if isinstance(got, dict) else {}

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ writing

    def discard(self, sample_id: str) -> None:
        """Remove a prediction's sidecar first (so a crash never pairs an old sidecar with new pixels)."""
        self.paths(sample_id)["sidecar"].unlink(missing_ok=True)

    def write(self, sample_id: str, albedo_linear: np.ndarray, key: dict | None = None, **extra) -> dict:
        """Write one prediction: EXR, PNG, then the sidecar (the done marker). Returns the sidecar."""
        from render.imageio import write_exr, write_png_srgb

        p = self.paths(sample_id)
        a = np.asarray(albedo_linear, dtype=np.float32)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"prediction for {sample_id} must be [H, W, 3], got {a.shape}")
        self.discard(sample_id)
        write_exr(p["albedo_linear"], a)
        write_png_srgb(p["albedo_srgb"], a)
        side = {"sample": sample_id, "albedo_linear": p["albedo_linear"].name, "albedo_srgb": p["albedo_srgb"].name,
                "size": [int(a.shape[1]), int(a.shape[0])], "colour_space": COLOUR_SPACE, **extra}
        if key is not None:
            side["key"] = _canonical(key)
        atomic_write_text(p["sidecar"], _dumps(side))
        return side

    def finish(self, extra: dict | None = None, shard=None, samples: Sequence[str] = ()) -> Path:
        """End of a writing run. Unsharded (shard None or N = 1): rebuild the index (rebuild_index).
        Sharded: write only shards/shard-K-of-N.json (the shard, `extra`, the samples it covers),
        so that no file is written by two ranks. Returns the file written."""
        count = int(getattr(shard, "count", 1) or 1)
        if count <= 1:
            return self.rebuild_index(extra)
        index = int(shard.index)
        record = {"method": self.method,
                  "shard": {"index": index, "count": count, "source": getattr(shard, "source", None) or f"{index}/{count}"},
                  "run": extra or {}, "samples": list(samples)}
        return atomic_write_text(self.dir / "shards" / f"shard-{index}-of-{count}.json", _dumps(record))

    def shard_records(self) -> list[dict]:
        recs = [self._read(p) for p in sorted((self.dir / "shards").glob("shard-*-of-*.json"))]
        return [r for r in recs if isinstance(r, dict)]

    def rebuild_index(self, extra: dict | None = None, retries: int = 3) -> Path:
        """Rebuild manifest.json and config.json from the sidecars present now (atomic replace).

        `extra` adds method-level fields that do not depend on the samples (a description, baseline
        parameters); None keeps those of the manifest on disk, or of the shard records. Rebuilt again
        while the set of sidecars changed under us (another process finished meanwhile)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if extra is None:   # keep the manifest's own fields; the key summary is recomputed over them
            extra = {k: v for k, v in self.manifest().items() if k not in _INDEX_FIELDS}
            if not extra:
                extra = next((r.get("run") for r in self.shard_records() if r.get("run")), {}) or {}
        before = None
        for _ in range(max(1, retries)):
            sides = self.sidecars()
            names = [s["sample"] for s in sides]
            if names == before:
                break
            atomic_write_text(self.dir / "manifest.json", _dumps(self._manifest(sides, extra)))
            atomic_write_text(self.dir / "config.json", _dumps(self._config(sides)))
            before = names
        return self.dir / "manifest.json"

    def index(self) -> dict:
        """The manifest as rebuild_index would write it now, without writing (for readers)."""
        extra = {k: v for k, v in self.manifest().items() if k not in _INDEX_FIELDS}
        return self._manifest(self.sidecars(), extra) if self._sidecar_files() else self.manifest()

    def has_predictions(self) -> bool:
        """A method folder: a manifest.json, or at least one sidecar."""
        return (self.dir / "manifest.json").is_file() or bool(self._sidecar_files())

    def _keys(self, sides: Iterable[dict]) -> list[dict]:
        groups: dict[str, dict] = {}
        for s in sides:
            k = s.get("key")
            if isinstance(k, dict):
                k = {f: v for f, v in k.items() if f not in PER_SAMPLE_KEY_FIELDS}
            tag = json.dumps(k, sort_keys=True, default=str)
            g = groups.setdefault(tag, {"key": k, "n_predictions": 0, "samples": []})
            g["n_predictions"] += 1
            g["samples"].append(s["sample"])
        return sorted(groups.values(), key=lambda g: -g["n_predictions"])

    def settings_groups(self) -> list[dict]:
        """The predictions on disk grouped by their generation key without the per-sample fields (one group
        per setting: model, prompt, steps, guidance, seed, versions...), largest first; each group:
        key, n_predictions, samples. More than one group means the folder mixes settings."""
        return self._keys(self.sidecars())

    def _summary_fields(self, sides: list[dict]) -> dict:
        """Key fields shared by every prediction, lifted to the top (the report's configuration table)."""
        keys = [s.get("key") or {} for s in sides]
        if not keys:
            return {}
        shared = {}
        for f in ("model", "prompt", "steps", "guidance", "seed", "ablated_units", "input"):
            vals = [json.dumps(k.get(f), sort_keys=True, default=str) for k in keys]
            if f in keys[0] and len(set(vals)) == 1:
                shared[f] = keys[0][f]
            elif any(f in k for k in keys):
                shared[f] = "mixed: see config.json"
        return shared

    def _manifest(self, sides: list[dict], extra: dict | None) -> dict:
        return {"method": self.method, "colour_space": COLOUR_SPACE,
                "colour_space_note": "albedo_linear is linear RGB; albedo_srgb is its sRGB encoding",
                **(extra or {}), **self._summary_fields(sides),
                "n_predictions": len(sides), "predictions": sides}

    def _config(self, sides: list[dict]) -> dict:
        keys = self._keys(sides)
        shards = [r.get("shard") for r in self.shard_records()]
        return {"method": self.method, **({"shards": shards} if shards else {}),
                "what": "the generation key(s) of the predictions on disk in this folder, rebuilt from their "
                        "sidecars (the per-sample fields reference and reference_transform are in each sidecar); a "
                        "rerun reuses a prediction only when its whole key equals the new run's",
                "n_predictions": len(sides), "uniform": len(keys) <= 1, **self._summary_fields(sides),
                "generation_keys": keys}


def prediction_finished(pred_dir: str | os.PathLike, method: str, sample_id: str) -> bool:
    """A prediction is on disk: its sidecar, EXR and PNG exist and read back. Says nothing about what
    made it (no key is checked); prediction_state adds its reference image; resuming uses PredictionStore.check."""
    store = PredictionStore(pred_dir, method)
    return store.sidecar(sample_id) is not None and store._readable(sample_id)


def prediction_state(pred_dir: str | os.PathLike, method: str, sample_id: str,
                     data_dir: str | os.PathLike | None = None, sha_cache: dict | None = None) -> str:
    """"" when a finished prediction is on disk (prediction_finished) and, given the render folder `data_dir`, was
    made from the reference image there now (the sha256 its key recorded); else why not, for status listings. A
    re-rendered sample's old prediction is not finished: generate would redo it. Other key fields (model, prompt,
    settings) are the run's, which a listing does not know; resuming checks them all (PredictionStore.check).
    sha_cache: {path: sha256}, shared over calls (methods read the same reference)."""
    store = PredictionStore(pred_dir, method)
    side = store.sidecar(sample_id)
    if side is None or not store._readable(sample_id):
        return "no finished prediction"
    ref = (side.get("key") or {}).get("reference") or {}
    if data_dir is None or not ref.get("file") or not ref.get("sha256"):
        return ""
    path = Path(data_dir) / ref["file"]
    if not path.is_file():
        return f"its reference {ref['file']} is no longer in the render folder"
    cache = {} if sha_cache is None else sha_cache
    if str(path) not in cache:
        cache[str(path)] = file_sha256(path)
    if cache[str(path)] != ref["sha256"]:
        return f"made from an older {ref['file']}, re-rendered since; sha256 differs"
    return ""


def write_prediction(pred_dir: str | os.PathLike, method: str, sample_id: str, albedo_linear: np.ndarray,
                     key: dict | None = None, **extra) -> dict:
    """PredictionStore(pred_dir, method).write(...), for scripts that write one prediction at a time."""
    return PredictionStore(pred_dir, method).write(sample_id, albedo_linear, key=key, **extra)


def write_method_manifest(pred_dir: str | os.PathLike, method: str, extra: dict | None = None) -> Path:
    """PredictionStore(pred_dir, method).rebuild_index(extra): manifest.json and config.json from the sidecars."""
    return PredictionStore(pred_dir, method).rebuild_index(extra or {})
