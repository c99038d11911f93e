"""Capture per-unit scalars for every prompt of the pair files during real klein sampling runs.

    from probe.run import CaptureConfig, capture_prompts
    cfg = CaptureConfig(protocol="heads", steps=50, capture_steps=(0, 16, 33, 49), guidance=4.0)
    values, units = capture_prompts(loaded, prompts, cfg, cache_path=out / "partial_captures.npz")

Each prompt is sampled from the same seed (so A and B of a pair start from identical noise and the
image tokens carry the image being formed). Unique prompts are captured once: the lexical control's
A side is the main set's A, so it is reused, not recomputed. Finished prompts are cached after each
batch, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

PROTOCOLS = ("heads", "card")


@dataclass(frozen=True)
class CaptureConfig:
    protocol: str = "heads"                 # heads: real heads, masked; card: the published 16-channel slices
    steps: int = 50                         # num_inference_steps of the sampling run
    capture_steps: tuple[int, ...] = ()     # step indices captured (empty: 4 spread over the schedule)
    guidance: float = 4.0                   # CFG scale; > 1 runs two forwards per step, the conditional is captured
    height: int = 512
    width: int = 512
    seed: int = 0
    batch_size: int = 4                     # prompts per pipeline call
    reducer: str = "rms"
    single_tokens: str = "img"
    max_sequence_length: int = 512
    slice_width: int = 16

    def resolved(self) -> "CaptureConfig":
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        steps = self.capture_steps or default_capture_steps(self.steps)
        bad = [s for s in steps if not 0 <= s < self.steps]
        if bad:
            raise ValueError(f"capture steps {bad} are outside 0..{self.steps - 1}")
        return CaptureConfig(**{**asdict(self), "capture_steps": tuple(sorted(set(steps)))})

    def key(self, model_desc: dict) -> str:
        """Hash of everything that changes captured values (not batch size): the resume key."""
        d = {k: v for k, v in asdict(self).items() if k != "batch_size"}
        d["model"] = {k: model_desc.get(k) for k in ("model", "resolved_path", "revision", "dtype")}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


class _StopSampling(Exception):
    """Raised from the step callback once the last captured step is done: later steps can't change it."""


def _prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:20]


def _load_cache(path: Path | None, key: str, n_units: int) -> dict[str, np.ndarray]:
    if path is None or not path.is_file():
        return {}
    try:
        z = np.load(path, allow_pickle=False)
        if str(z["config_key"]) != key or z["values"].shape[1] != n_units:
            return {}
        return {str(k): v for k, v in zip(z["keys"], z["values"])}
    except Exception:  # a cache we can't read is recomputed, never trusted
        return {}


def _save_cache(path: Path, key: str, done: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, config_key=np.array(key), keys=np.array(list(done)),
             values=np.stack(list(done.values())).astype(np.float32))
    os.replace(tmp, path)


def make_capture(pipe, cfg: CaptureConfig):
    from .capture import HeadCapture, SliceCapture, head_sites

    sites = head_sites(pipe.transformer)
    fps = forwards_per_step(pipe, cfg.guidance)
    if cfg.protocol == "card":
        return SliceCapture(pipe.transformer, sites, cfg.capture_steps, fps, width=cfg.slice_width)
    return HeadCapture(pipe.transformer, sites, cfg.capture_steps, fps, reducer=cfg.reducer,
                       single_tokens=cfg.single_tokens)


def capture_prompts(loaded, prompts: Sequence[str], cfg: CaptureConfig, cache_path: Path | None = None,
                    progress: bool = True, desc: str = "capture") -> tuple[np.ndarray, list[str], dict]:
    """Capture every prompt; returns values [len(prompts), units], unit names, and timing info."""
    import torch
    from tqdm.auto import tqdm

    from .capture import text_token_mask

    cfg = cfg.resolved()
    pipe = loaded.pipe
    cap = make_capture(pipe, cfg)
    key = cfg.key(loaded.describe())
    done = _load_cache(cache_path, key, len(cap.units))
    todo = [p for p in dict.fromkeys(prompts) if _prompt_key(p) not in done]
    last_step = max(cfg.capture_steps)
    n_img = n_image_tokens(pipe, cfg.height, cfg.width)
    t0 = time.perf_counter()
    n_forward_batches = 0

    def stop_after_last(pipe_, i, t, kwargs):
        if i >= last_step:
            raise _StopSampling
        return kwargs

    bar = tqdm(total=len(dict.fromkeys(prompts)), initial=len(dict.fromkeys(prompts)) - len(todo), desc=desc,
               unit="prompt", disable=not progress)
    with cap:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start:start + cfg.batch_size]
            if cfg.protocol == "card":
                cap.set_batch(len(batch))
            else:
                mask = text_token_mask(pipe, batch, cfg.max_sequence_length)
                cap.set_batch(mask, n_img)
            gens = [torch.Generator(device="cpu").manual_seed(cfg.seed) for _ in batch]
            try:
                with torch.inference_mode():
                    pipe(prompt=list(batch), height=cfg.height, width=cfg.width, num_inference_steps=cfg.steps,
                         guidance_scale=cfg.guidance, generator=gens, output_type="latent",
                         max_sequence_length=cfg.max_sequence_length, callback_on_step_end=stop_after_last)
            except _StopSampling:
                pass
            expected = (last_step + 1) * cap.forwards_per_step
            if cap.forwards_seen != expected:
                raise RuntimeError(f"the pipeline ran {cap.forwards_seen} transformer forwards, expected {expected}: "
                                   "the CFG layout assumed by the capture does not hold for this pipeline version")
            vals = cap.collect()
            for p, v in zip(batch, vals):
                done[_prompt_key(p)] = v
            n_forward_batches += 1
            if cache_path is not None:
                _save_cache(cache_path, key, done)
            bar.update(len(batch))
    bar.close()
    values = np.stack([done[_prompt_key(p)] for p in prompts]).astype(np.float32)
    info = {"seconds": round(time.perf_counter() - t0, 2), "prompts_captured_now": len(todo),
            "prompts_from_cache": len(dict.fromkeys(prompts)) - len(todo), "pipeline_calls": n_forward_batches,
            "forwards_per_step": cap.forwards_per_step, "n_image_tokens": n_img, "config_key": key}
    return values, list(cap.units), info


def unit_block(unit: str) -> str:
    """`s12/double.3.img/h07` -> `s12/double.3.img` (the block a unit belongs to, per step)."""
    return unit.rsplit("/", 1)[0]


def real_text_lengths(pipe, prompts: Sequence[str], max_sequence_length: int = 512) -> list[int]:
    from .capture import text_token_mask

    return [int(x) for x in text_token_mask(pipe, prompts, max_sequence_length).sum(1)]


@dataclass(frozen=True)
class PromptSet:
    """Main pairs and optional control, as plain lists (ids aligned with a/b)."""
    pair_ids: tuple[str, ...]
    a: tuple[str, ...]
    b: tuple[str, ...]
    control_ids: tuple[str, ...] = ()
    control_a: tuple[str, ...] = ()
    control_b: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)

    def unique_prompts(self) -> list[str]:
        return list(dict.fromkeys([*self.a, *self.b, *self.control_a, *self.control_b]))


def pipeline_default_guidance(pipe) -> float:
    """The model's own CFG scale (klein base: 4.0), read from its __call__ signature."""
    import inspect

    return float(inspect.signature(pipe.__call__).parameters["guidance_scale"].default)
