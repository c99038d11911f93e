"""Text-encoder outputs and reference latents computed once and reused across pipeline calls (a population of
untrained networks: only the transformer changes between its members).

    from probe.klein.shared_encodings import SharedEncodings
    with SharedEncodings(pipe) as shared:          # patches this pipeline object only; restored on exit
        ... every capture of every member ...
        shared.invalidate("text_encoder")          # after re-initialising the text encoder (--randomize all)
    shared.record()                                # encoder calls made and reused

What is cached, and why reusing it changes no value:
- `pipe._get_qwen3_prompt_embeds`, the Qwen3 forward behind `encode_prompt` (the prompt, and the empty negative
  prompt under CFG), keyed by the exact list of prompts of the call, the text length, the hidden-state layers,
  dtype and device. A population repeats the very calls of its first member (same stimuli, same batches), so a
  hit returns the tensor that call computed, bit for bit; a batch is never assembled from other batches' rows
  (a batched forward may round differently from a single one).
- `pipe._encode_vae_image`, the VAE encoding of an editing call's reference image (the image probe), keyed by the
  preprocessed image tensor's content, shape, dtype and device. It is cached only when the pipeline encodes with
  the latent distribution's mode (`sample_mode="argmax"`, as diffusers 0.42's klein does): then the generator
  plays no part and the latents depend on the image alone. Otherwise it is left alone (said in `record()`).
Cached tensors are kept on the CPU and moved to the call's device when reused (a text probe's prompt embeddings
at klein scale: ~31 MB per batch of 4 in bf16). `invalidate` drops one side when its weights change; the
population job calls it for the text encoder under `--randomize all` (the VAE is never randomised).
"""
from __future__ import annotations

import hashlib
import inspect

__all__ = ["SharedEncodings"]


def _vae_is_deterministic(pipe) -> bool:
    """True when the pipeline's `_encode_vae_image` takes the latent distribution's mode (no sampling)."""
    fn = getattr(type(pipe), "_encode_vae_image", None)
    if fn is None:
        return False
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return 'sample_mode="argmax"' in src or "sample_mode='argmax'" in src


class SharedEncodings:
    """Memoise a pipeline's text-encoder and reference-image encodings across calls (see the module docstring).
    A context manager: entering patches the pipeline instance, leaving restores it (even on errors)."""

    def __init__(self, pipe, text: bool = True, images: bool = True):
        self.pipe = pipe
        self.text = text and hasattr(pipe, "_get_qwen3_prompt_embeds")
        self.images = images and hasattr(pipe, "_encode_vae_image") and _vae_is_deterministic(pipe)
        self._text_cache: dict = {}
        self._image_cache: dict = {}
        self.counts = {"text_encoder_calls": 0, "text_encoder_reused": 0, "vae_encodes": 0, "vae_reused": 0}
        self._saved: dict = {}
        self.active = False

    # ------------------------------------------------------------------------------------------- patches
    def _text(self, original):
        def get_embeds(*args, **kwargs):
            import torch

            prompt = kwargs.get("prompt", args[2] if len(args) > 2 else None)
            prompts = (prompt,) if isinstance(prompt, str) else tuple(prompt)
            key = (prompts, kwargs.get("max_sequence_length", 512), tuple(kwargs.get("hidden_states_layers", ())),
                   str(kwargs.get("dtype")), str(kwargs.get("device")), id(kwargs.get("text_encoder")))
            hit = self._text_cache.get(key)
            if hit is not None:
                self.counts["text_encoder_reused"] += 1
                device = kwargs.get("device") or hit.device
                return hit.to(device, copy=True)
            out = original(*args, **kwargs)
            self.counts["text_encoder_calls"] += 1
            with torch.no_grad():
                self._text_cache[key] = out.detach().to("cpu", copy=True)
            return out
        return get_embeds

    def _image(self, original):
        def encode(image, generator=None):
            import torch

            with torch.no_grad():
                cpu = image.detach().to("cpu").contiguous()
                digest = hashlib.sha256(cpu.view(torch.uint8).numpy().tobytes()).hexdigest()
            key = (digest, tuple(image.shape), str(image.dtype), str(image.device))
            hit = self._image_cache.get(key)
            if hit is not None:
                self.counts["vae_reused"] += 1
                return hit.to(image.device, copy=True)
            out = original(image=image, generator=generator)
            self.counts["vae_encodes"] += 1
            self._image_cache[key] = out.detach().to("cpu", copy=True)
            return out
        return encode

    def __enter__(self) -> "SharedEncodings":
        if self.active:
            raise RuntimeError("SharedEncodings is already entered")
        if self.text:
            self._saved["_get_qwen3_prompt_embeds"] = self.pipe.__dict__.get("_get_qwen3_prompt_embeds")
            self.pipe._get_qwen3_prompt_embeds = self._text(self.pipe._get_qwen3_prompt_embeds)
        if self.images:
            self._saved["_encode_vae_image"] = self.pipe.__dict__.get("_encode_vae_image")
            self.pipe._encode_vae_image = self._image(self.pipe._encode_vae_image)
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        for name, old in self._saved.items():
            if old is None:
                self.pipe.__dict__.pop(name, None)
            else:
                setattr(self.pipe, name, old)
        self._saved.clear()
        self.active = False

    # ------------------------------------------------------------------------------------------- state
    def invalidate(self, part: str) -> None:
        """Forget the cached encodings of `part` ("text_encoder" or "vae") after its weights changed."""
        if part == "text_encoder":
            self._text_cache.clear()
        elif part == "vae":
            self._image_cache.clear()
        else:
            raise ValueError(f"part must be 'text_encoder' or 'vae', got {part!r}")

    def record(self) -> dict:
        """What was shared (for config.json and population.json)."""
        return {**self.counts, "text_encoder_shared": self.text, "vae_shared": self.images,
                "cached_prompt_batches": len(self._text_cache), "cached_reference_latents": len(self._image_cache),
                "why_vae_not_shared": None if self.images or not hasattr(self.pipe, "_encode_vae_image") else
                "the pipeline samples its reference latents (not sample_mode='argmax'): reusing them could change "
                "values"}
