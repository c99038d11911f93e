"""Capture per-unit scalars for every stimulus during real klein sampling runs, resumably.

    from probe.klein.capture_loop import CaptureConfig, capture_stimuli
    cfg = CaptureConfig(protocol="heads", steps=50, capture_steps=(0, 16, 33, 49), guidance=4.0)
    values, units, info = capture_stimuli(loaded, design.stimuli(), cfg, cache_path=out / "partial_captures.npz")

A stimulus (`probe.design.stimuli.Stimulus`) is a prompt, an optional reference image, and its noise seed;
this module does not care which design made it. Stimuli with the same prompt, image and seed are
captured once. Text-only stimuli are text-to-image calls, batched (each with its own generator, so a
batch gives what one call per stimulus gives). Stimuli with a reference image are klein editing calls
(`CaptureConfig.editing`), made by `probe.klein.edit_capture.capture_edit` exactly as `evaluate generate`
makes them (the generated image takes the reference's size); the noise seeds of one image and text
share a call, each with its own generator (klein reads a list of images as several references for
one prompt, so different images never share one). In the heads protocol an editing run's capture also
gives the reference-image units (`.ref`). Finished stimuli are cached after each call, so a killed run
resumes where it stopped, but only when everything that made the cache is identical: the capture
settings (reference preparation included), the resolved model revision (snapshot commit, or a content
hash of a local folder's configs), the randomisation, dtype, device type and the torch / diffusers /
transformers versions (`cache_fields`). Any difference starts fresh and says which field differed.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

PROTOCOLS = ("heads", "card")
SLICE_LAYOUTS = ("contiguous", "strided")
CACHE_FORMAT = 2     # partial_captures.npz layout; bump when it changes
CHANGE_FORMAT = 2    # the change vectors' columns (probe.klein.capture CHANGE_VECTORS); 2: output.img added


@dataclass(frozen=True)
class CaptureConfig:
    protocol: str = "heads"                 # heads: real heads, masked; card: the published 16-channel slices
    steps: int = 50                         # num_inference_steps of the sampling run
    capture_steps: tuple[int, ...] = ()     # step indices captured (empty: 4 spread over the schedule)
    guidance: float = 4.0                   # CFG scale; > 1 runs two forwards per step, the conditional is captured
    height: int | None = 512               # None: the reference image's size (editing runs)
    width: int | None = 512
    seed: int = 0                           # the run's seed; each stimulus carries its own noise seed
    batch_size: int = 5                     # stimuli per pipeline call (never two pairs in one call)
    reducer: str = "rms"
    single_tokens: str = "img"
    max_sequence_length: int = 512
    slice_width: int = 16
    slice_layout: str = "contiguous"        # card slices: 16 consecutive channels, or every (C/16)-th channel
    editing: bool = False                   # stimuli are reference images (klein editing calls; heads: + .ref units)
    reference_prep: str = "none"            # how references are prepared before the pipeline (editing runs)
    text_tokens: str = "prompt"             # `.txt` units: the prompt's own tokens, or "all" (chat template too)
    change_dim: int = 0                     # editing runs, heads: numbers kept per unit's change vector (0: none;
                                            # probe.klein.capture CHANGE_VECTORS, probe.stats.change)

    def resolved(self) -> "CaptureConfig":
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        if self.editing and (self.height or self.width):
            raise ValueError("an editing run generates at the reference image's size (as evaluate generate does): "
                             "leave height and width unset")
        if not self.editing and not (self.height and self.width):
            raise ValueError("a text-to-image run needs height and width")
        if self.slice_layout not in SLICE_LAYOUTS:
            raise ValueError(f"slice_layout must be one of {SLICE_LAYOUTS}")
        from .capture import TEXT_TOKENS

        if self.text_tokens not in TEXT_TOKENS:
            raise ValueError(f"text_tokens must be one of {TEXT_TOKENS}")
        if self.change_dim and not (self.editing and self.protocol == "heads"):
            raise ValueError("change vectors (--change-dim) are kept by editing runs of the heads protocol only "
                             "(the image probe): their yardstick is the reference image's tokens")
        steps = self.capture_steps or default_capture_steps(self.steps)
        bad = [s for s in steps if not 0 <= s < self.steps]
        if bad:
            raise ValueError(f"capture steps {bad} are outside 0..{self.steps - 1}")
        return CaptureConfig(**{**asdict(self), "capture_steps": tuple(sorted(set(steps)))})

    def value_fields(self) -> dict:
        """The settings that can change captured values: everything but the run seed (every stimulus key
        carries its own noise seed) and change_dim (it changes no scalar value: the change vectors have their own
        cache, keyed by these fields and change_dim). The batch size is one of them: on CUDA in bf16 another batch
        size can select other kernels and so give other low bits, so a cache made with another batch is not reused."""
        return {k: v for k, v in asdict(self).items() if k not in ("seed", "change_dim")}


def card_config(**overrides) -> CaptureConfig:
    """The published protocol: one inference step, guidance 1.0, 16-channel slices."""
    base = dict(protocol="card", steps=1, capture_steps=(0,), guidance=1.0)
    return CaptureConfig(**{**base, **overrides})


def default_capture_steps(n_steps: int, n: int = 4) -> tuple[int, ...]:
    """`n` steps spread over the schedule, first and last included."""
    return tuple(sorted(set(int(round(x)) for x in np.linspace(0, n_steps - 1, min(n, n_steps)))))


def forwards_per_step(pipe, guidance: float) -> int:
    """2 when the pipeline will run CFG (conditional then unconditional forward), else 1."""
    return 2 if guidance > 1.0 and not getattr(pipe.config, "is_distilled", False) else 1


def n_image_tokens(pipe, height: int, width: int) -> int:
    f = pipe.vae_scale_factor * 2
    return (height // f) * (width // f)


def pipeline_default_size(pipe) -> tuple[int, int]:
    """(height, width) the pipeline uses when none is given: default_sample_size x vae_scale_factor
    (klein base: 128 x 8 = 1024), what `pipe(prompt, num_inference_steps=1, guidance_scale=1.0)` renders."""
    side = int(pipe.default_sample_size * pipe.vae_scale_factor)
    return side, side


# --------------------------------------------------------------------------------------- resume cache

def cache_fields(cfg: CaptureConfig, loaded) -> dict:
    """Everything a cached value depends on besides its stimulus: the resume key's fields."""
    import importlib.metadata as md

    from .model import model_fingerprint

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    fp = model_fingerprint(loaded)
    return {
        "cache_format": CACHE_FORMAT,
        "capture": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.value_fields().items()},
        "model": fp["model"], "model_source": fp["source"], "model_revision": fp["revision"],
        "randomize": fp["randomize"], "dtype": loaded.dtype, "device_type": str(loaded.device).split(":")[0],
        "versions": {p: version(p) for p in ("torch", "diffusers", "transformers")},
    }


def fields_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} -> {b!r}")
    return out


def load_cache(path: Path | None, fields: dict, n_units: int) -> tuple[dict[str, np.ndarray], str | None]:
    """(finished stimuli {key: values}, None) when `path` was made with exactly `fields`; else ({}, why not)."""
    if path is None or not path.is_file():
        return {}, None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key_fields" not in z.files:
                return {}, f"{path.name} was written by an older version of the probe (no recorded key)"
            old = json.loads(str(z["key_fields"]))
            if old != fields:
                diff = _differences(old, fields)
                return {}, f"{path.name} was made with a different {'; '.join(diff[:6])}" + (
                    f" (and {len(diff) - 6} more)" if len(diff) > 6 else "")
            if z["values"].shape[1] != n_units:
                return {}, f"{path.name} holds {z['values'].shape[1]} units, this capture has {n_units}"
            return {str(k): v for k, v in zip(z["keys"], z["values"])}, None
    except Exception as e:  # a cache we can't read is recomputed, never trusted
        return {}, f"{path.name} could not be read ({type(e).__name__}: {e})"


def save_cache(path: Path, fields: dict, done: dict[str, np.ndarray]) -> None:
    """Write the resume cache atomically (temporary name with host and pid: shards on several nodes of one
    file system never share one)."""
    from render.imageio import atomic_path

    with atomic_path(path) as tmp:
        np.savez(tmp, config_key=np.array(fields_key(fields)), key_fields=np.array(json.dumps(fields, sort_keys=True)),
                 keys=np.array(list(done)), values=np.stack(list(done.values())).astype(np.float32))


# ------------------------------------------------------------------------------------------- capture

def make_capture(pipe, cfg: CaptureConfig):
    """The run's one capture object: heads (with reference-image units for editing runs) or card slices."""
    from .capture import HeadCapture, SliceCapture, head_sites

    sites = head_sites(pipe.transformer)
    fps = forwards_per_step(pipe, cfg.guidance)
    if cfg.protocol == "card":
        if cfg.slice_layout == "strided":
            from .card_slices import StridedSliceCapture

            return StridedSliceCapture(pipe.transformer, sites, cfg.capture_steps, fps, width=cfg.slice_width)
        return SliceCapture(pipe.transformer, sites, cfg.capture_steps, fps, width=cfg.slice_width)
    return HeadCapture(pipe.transformer, sites, cfg.capture_steps, fps, reducer=cfg.reducer,
                       single_tokens=cfg.single_tokens, ref_tokens=cfg.editing, change_dim=cfg.change_dim)


class ChangeStore:
    """The change vectors' resume cache: one float32 .npy per stimulus in a folder beside partial_captures.npz,
    written once (never rewritten: at klein scale a stimulus holds megabytes), valid only while `key.json` holds
    the same capture fields and change_dim; anything else empties the folder first."""

    def __init__(self, folder: Path | None, fields: dict, change_dim: int):
        self.folder = folder
        self.memory: dict = {}
        self.key = {"fields_key": fields_key(fields), "change_dim": int(change_dim), "format": CHANGE_FORMAT}
        if folder is None:
            return
        kfile = folder / "key.json"
        if folder.exists():
            try:
                same = json.loads(kfile.read_text()) == self.key
            except (OSError, ValueError):
                same = False
            if not same:
                for f in folder.glob("*.npy"):
                    f.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        kfile.write_text(json.dumps(self.key))

    @classmethod
    def read(cls, folder: Path) -> "ChangeStore | None":
        """An existing store, read only (`probe merge`): None when the folder or its key.json is absent."""
        try:
            key = json.loads((folder / "key.json").read_text())
        except (OSError, ValueError):
            return None
        store = cls.__new__(cls)
        store.folder, store.memory, store.key = folder, {}, key
        return store

    @property
    def units(self) -> list[str] | None:
        """The change unit names the capture wrote (units.json), None if absent."""
        try:
            return json.loads((self.folder / "units.json").read_text()) if self.folder is not None else None
        except (OSError, ValueError):
            return None

    def write_units(self, units) -> None:
        if self.folder is not None:
            (self.folder / "units.json").write_text(json.dumps(list(units)))

    def _path(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".npy")

    def has(self, key: str) -> bool:
        return key in self.memory or (self.folder is not None and self._path(key).exists())

    def put(self, key: str, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=np.float32)
        if self.folder is None:
            self.memory[key] = value
            return
        tmp = self._path(key).with_suffix(".tmp.npy")
        np.save(tmp, value)
        tmp.replace(self._path(key))

    def get(self, key: str) -> np.ndarray:
        return self.memory[key] if key in self.memory else np.load(self._path(key))


def _batches(stimuli: list, batch_size: int) -> list[list]:
    """Text-only stimuli grouped by pair, each pair's in batches of up to `batch_size`; stimuli with a reference
    image grouped by (image, prompt), up to `batch_size` noise seeds per call.

    A batch never holds two pairs: on the CPU (and on CUDA in bf16) a row's values can depend in their lowest
    bits on what else is in its batch, and the pairs a run (or shard, or resumed run) holds vary, while a pair's
    own stimuli do not. So a shard, a merge of shards and a resumed run give the values an unsharded run gives."""
    pairs: dict = {}
    for s in stimuli:
        if s.image is None:
            pairs.setdefault(s.pair_id, []).append(s)
    out = [g[i:i + batch_size] for g in pairs.values() for i in range(0, len(g), batch_size)]
    groups: dict = {}
    for s in stimuli:
        if s.image is not None:
            groups.setdefault((s.image, s.prompt), []).append(s)
    for g in groups.values():
        out += [g[i:i + batch_size] for i in range(0, len(g), batch_size)]
    return out


def _capture_text(pipe, cap, batch, cfg: CaptureConfig, n_img: int) -> np.ndarray:
    """One text-to-image call for a batch of text stimuli -> float32 [batch, units]."""
    import torch

    from .capture import HeadCapture, run_until_stop, text_mask
    from .regions import TokenLayout

    if isinstance(cap, HeadCapture):
        cap.set_batch(text_mask(pipe, [s.prompt for s in batch], cfg.max_sequence_length, cfg.text_tokens), n_img)
    else:
        cap.set_batch(len(batch), TokenLayout(cfg.max_sequence_length, n_img))
    gens = [torch.Generator(device="cpu").manual_seed(int(s.seed)) for s in batch]
    run_until_stop(pipe, prompt=[s.prompt for s in batch], height=cfg.height, width=cfg.width,
                   num_inference_steps=cfg.steps, guidance_scale=cfg.guidance, generator=gens, output_type="latent",
                   max_sequence_length=cfg.max_sequence_length, callback_on_step_end=cap.stop_callback())
    cap.check_forwards()
    return cap.collect()


def capture_stimuli(loaded, stimuli: Sequence, cfg: CaptureConfig, cache_path: Path | None = None,
                    progress: bool = True, desc: str = "capture", log=print,
                    prepare_reference=None, change_out: dict | None = None) -> tuple[dict, list[str], dict]:
    """Capture every stimulus; returns ({Stimulus.key(): float32 [units]}, unit names, info).

    With cfg.change_dim > 0 (editing runs) `change_out` (a dict) receives {Stimulus.key(): float32
    [change units, change_dim]} and {"__units__": the change unit names}; their resume cache is the folder
    `<cache stem>_change/` beside the cache (`ChangeStore`).

    `log` receives one line when a cache is present but cannot be used (and why). prepare_reference:
    PIL -> PIL applied to every reference image before the pipeline (editing runs; the same preparation
    `evaluate generate` applies), named by `cfg.reference_prep` (part of the resume key).
    """
    from tqdm.auto import tqdm

    from .edit_capture import capture_edit

    cfg = cfg.resolved()
    kinds = {s.image is not None for s in stimuli}
    if kinds and kinds != {cfg.editing}:
        raise ValueError("the stimuli are " + ("a mix of text-to-image and editing calls" if len(kinds) == 2 else
                                               "editing calls" if True in kinds else "text-to-image calls")
                         + f", but the capture is configured with editing={cfg.editing}: one run captures one kind")
    pipe = loaded.pipe
    cap = make_capture(pipe, cfg)
    fields = cache_fields(cfg, loaded)
    done, why_fresh = load_cache(cache_path, fields, len(cap.units))
    if why_fresh:
        log(f"starting fresh: {why_fresh}")
    unique = list({s.key(): s for s in stimuli}.values())
    store = None
    if cfg.change_dim:
        folder = None if cache_path is None else cache_path.parent / (cache_path.stem + "_change")
        store = ChangeStore(folder, fields, cfg.change_dim)
        store.write_units(cap.change_units)
    todo = [s for s in unique if s.key() not in done or (store is not None and not store.has(s.key()))]
    n_img = n_image_tokens(pipe, cfg.height, cfg.width) if not cfg.editing else None
    layouts: set = set()
    t0 = time.perf_counter()
    n_calls = 0

    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, unit="stimulus", disable=not progress)
    with cap:
        for batch in _batches(todo, cfg.batch_size):
            if batch[0].image is None:
                rows = _capture_text(pipe, cap, batch, cfg, n_img)
            else:
                rows = capture_edit(pipe, cap, batch[0].image, batch[0].prompt, steps=cfg.steps, guidance=cfg.guidance,
                                    seeds=[s.seed for s in batch], prepare_reference=prepare_reference,
                                    max_sequence_length=cfg.max_sequence_length, text_tokens=cfg.text_tokens)
            if cap.layout is not None:
                layouts.add((cap.layout.n_img, cap.layout.n_ref))
            if store is not None:
                for s, v in zip(batch, cap.collect_change()):
                    store.put(s.key(), v)
            for s, v in zip(batch, rows):
                done[s.key()] = v
            n_calls += 1
            if cache_path is not None:
                save_cache(cache_path, fields, done)
            bar.update(len(batch))
    bar.close()
    values = {s.key(): np.asarray(done[s.key()], dtype=np.float32) for s in unique}
    if store is not None and change_out is not None:
        change_out.update({s.key(): store.get(s.key()) for s in unique})
        change_out["__units__"] = list(cap.change_units)
    info = {"seconds": round(time.perf_counter() - t0, 2), "stimuli": len(stimuli), "unique_stimuli": len(unique),
            "captured_now": len(todo), "from_cache": len(unique) - len(todo), "pipeline_calls": n_calls,
            "forwards_per_step": cap.forwards_per_step, "n_image_tokens": n_img, "cache_key": fields_key(fields),
            "cache_fields": fields, "cache_started_fresh_because": why_fresh, "change_dim": cfg.change_dim}
    if cfg.editing:
        info["token_layouts_seen"] = [{"n_img": a, "n_ref": b} for a, b in sorted(layouts)]
        if len({a for a, _ in layouts}) == 1:
            info["n_image_tokens"] = next(iter(layouts))[0]
    # names kept from earlier runs' config.json
    info["prompts_captured_now"], info["prompts_from_cache"] = info["captured_now"], info["from_cache"]
    return values, list(cap.units), info


def real_text_lengths(pipe, prompts: Sequence[str], max_sequence_length: int = 512) -> list[int]:
    """Non-padding tokens per prompt: the prompt's own and the chat template's (what config.json's
    `text_lengths` has always recorded)."""
    from .capture import text_token_mask

    return [int(x) for x in text_token_mask(pipe, prompts, max_sequence_length).sum(1)]


def prompt_token_lengths(pipe, prompts: Sequence[str], max_sequence_length: int = 512) -> list[int]:
    """The prompt's own tokens per prompt, chat template and padding left out (config.json `prompt_token_lengths`)."""
    from .capture import prompt_token_spans

    return [b - a for a, b in prompt_token_spans(pipe.tokenizer, prompts, max_sequence_length)]


def pipeline_default_guidance(pipe) -> float:
    """The model's own CFG scale (klein base: 4.0), read from its __call__ signature."""
    import inspect

    return float(inspect.signature(pipe.__call__).parameters["guidance_scale"].default)
