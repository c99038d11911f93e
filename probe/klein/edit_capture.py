"""One klein editing call under a capture: reference image + fixed text + noise seeds -> per-unit values.

    from probe.klein.capture import HeadCapture, head_sites
    from probe.klein.edit_capture import capture_edit
    with HeadCapture(pipe.transformer, head_sites(pipe.transformer), steps=[0, 16, 33, 49],
                     forwards_per_step=2, ref_tokens=True) as cap:
        values = capture_edit(pipe, cap, "runs/render/cornell_box__key/image_srgb.png",
                              prompt, steps=50, guidance=4.0, seeds=(0, 1))   # float32 [2, len(cap.units)]

The call is the one `evaluate generate` makes for its edits (`edit_call_kwargs`: `image`, `prompt`,
`num_inference_steps`, `guidance_scale`, `generator` = a CPU generator seeded with the seed), so the
heads are measured in the computation whose output is scored. Only three things differ, none of which
changes a captured value: `output_type="latent"` (no VAE decode), a step callback that stops sampling
after the last captured step, and a batch of noise seeds on the same reference (one seed: exactly
evaluate's call; several: one generator per seed, the same reference latents repeated by the pipeline).

How the reference is prepared (downscaled, padded) is the caller's: pass `prepare_reference`, a
function PIL.Image -> PIL.Image, the same one `evaluate generate` applies (`ReferencePrep`). The pipeline then crops
the reference to multiples of 2 x vae_scale_factor (16 px for klein), and, with no height/width
given, generates an image of the cropped reference's size. `edit_layout` predicts the token counts
of that call (`probe.klein.regions.TokenLayout`); the capture checks them against every captured forward.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .regions import TokenLayout

# Flux2KleinPipeline: references above this many pixels are first resized to it (aspect kept).
MAX_REFERENCE_AREA = 1024 * 1024


@dataclass(frozen=True)
class ReferencePrep:
    """The reference preparation of `evaluate generate`, as a PIL -> PIL function for `capture_edit`:
    `probe.klein.registration.plan_reference(w, h, max_side, multiple).apply` (scale only when a side is over
    max_side or under klein's 64-px minimum, then pad to multiples of `multiple` with reflected content), so
    the probe measures the heads on exactly the image evaluate edits and scores.

    Layering: this reaches into `evaluate` (imported when called), because the preparation lives there; it
    is model-facing and would belong in `probe` (see DESIGN.md), where evaluate could import it."""
    max_side: int
    multiple: int = 16

    @classmethod
    def like_evaluate(cls, loaded, max_side: int | None = None) -> "ReferencePrep":
        """evaluate generate's defaults: max_side `default_max_side(loaded)`, multiple 2 x vae_scale_factor."""
        side = max_side or default_max_side(loaded)
        return cls(int(side), int(getattr(loaded.pipe, "vae_scale_factor", 8)) * 2)

    def plan(self, width: int, height: int):
        from probe.klein.registration import plan_reference

        return plan_reference(width, height, max_side=self.max_side, multiple=self.multiple)

    def __call__(self, image):
        from PIL import Image

        arr = np.asarray(image.convert("RGB"))
        return Image.fromarray(self.plan(arr.shape[1], arr.shape[0]).apply(arr))

    def describe(self) -> str:
        return (f"as evaluate generate: probe.klein.registration.plan_reference(max_side={self.max_side}, "
                f"multiple={self.multiple}): scaled only when a side is over {self.max_side} or under 64 px, then "
                f"padded to multiples of {self.multiple} with reflected content")


def default_max_side(loaded) -> int:
    """The longest reference side evaluate generate and the image probe edit at by default: a known-answer model's
    training side (also with --randomize: its untrained population sees the trained model's images), 64 for
    --model tiny (dry runs stay small), else 1024 (klein; a real model with --randomize keeps 1024, so that a
    random-init control, or a population of them, sees the very images the trained model's run sees)."""
    if getattr(loaded, "known", None):
        return int(getattr(loaded, "default_size", None) or 1024)
    return 64 if loaded.source == "tiny" else 1024


def pipeline_default(pipe, name: str):
    """A default of the pipeline's __call__ (e.g. max_sequence_length: 512)."""
    return inspect.signature(pipe.__call__).parameters[name].default


def load_reference(image):
    """A path (str / PathLike) or PIL image -> RGB PIL image, opened as `evaluate generate` opens it."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def reference_size_in_pipeline(pipe, width: int, height: int) -> tuple[int, int]:
    """(width, height) of a reference after Flux2KleinPipeline's own preparation: resized to
    MAX_REFERENCE_AREA pixels when larger, then cropped to multiples of 2 x vae_scale_factor."""
    if width * height > MAX_REFERENCE_AREA:
        scale = math.sqrt(MAX_REFERENCE_AREA / (width * height))
        width, height = int(width * scale), int(height * scale)
    m = pipe.vae_scale_factor * 2
    return (width // m) * m, (height // m) * m


def edit_layout(pipe, reference, height: int | None = None, width: int | None = None,
                max_sequence_length: int | None = None) -> TokenLayout:
    """Token counts of one editing call with one reference image (a PIL image, as given to the pipeline).

    n_ref: tokens of the reference after the pipeline's resize/crop; n_img: tokens of the generated
    image (height/width as given to the pipeline; None: the cropped reference's size, as the pipeline
    does); txt_len: max_sequence_length (None: the pipeline's default, 512)."""
    m = pipe.vae_scale_factor * 2
    ref_w, ref_h = reference_size_in_pipeline(pipe, *reference.size)
    gen_h, gen_w = height or ref_h, width or ref_w
    txt_len = max_sequence_length or pipeline_default(pipe, "max_sequence_length")
    return TokenLayout(txt_len=int(txt_len), n_img=(gen_h // m) * (gen_w // m), n_ref=(ref_h // m) * (ref_w // m))


def edit_call_kwargs(reference, prompt: str, steps: int, guidance: float, seeds: Sequence[int] = (0,),
                     max_sequence_length: int | None = None) -> dict:
    """The pipeline arguments of one klein edit, as `evaluate generate` passes them (output_type aside).

    One seed: exactly evaluate's arguments. Several: a batch of the same edit with one generator per
    seed (the pipeline repeats the reference latents over the batch). max_sequence_length is passed
    only when given (None: the pipeline's default, as evaluate leaves it)."""
    import torch

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one noise seed is needed")
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    kwargs = dict(image=reference, prompt=prompt if len(seeds) == 1 else [prompt] * len(seeds),
                  num_inference_steps=int(steps), guidance_scale=float(guidance),
                  generator=gens[0] if len(seeds) == 1 else gens)
    if max_sequence_length is not None:
        kwargs["max_sequence_length"] = int(max_sequence_length)
    return kwargs


def capture_edit(pipe, cap, reference, prompt: str, *, steps: int, guidance: float, seeds: Sequence[int] = (0,),
                 prepare_reference: Callable | None = None, max_sequence_length: int | None = None,
                 text_tokens: str = "prompt") -> np.ndarray:
    """Run one klein editing call under an entered capture; return float32 [len(seeds), len(cap.units)].

    pipe: a Flux2KleinPipeline; cap: a HeadCapture or SliceCapture on pipe.transformer, entered (`with`),
    whose forwards_per_step matches `guidance` (2 when the pipeline runs CFG) and whose steps are all
    < `steps`; reference: a path or PIL image; prepare_reference: PIL -> PIL, applied first (the same
    preparation evaluate generate applies); max_sequence_length: the text length (None or the
    pipeline's default: not passed, as evaluate does); text_tokens: which text tokens `.txt` units reduce over
    (`probe.klein.capture.TEXT_TOKENS`). Row i holds the units for noise seed seeds[i]. A call ended early frees
    the pipeline's offload hooks (`probe.klein.capture.run_until_stop`)."""
    from .capture import HeadCapture, SliceCapture, run_until_stop, text_mask

    if not cap.active:
        raise RuntimeError("capture_edit needs an entered capture: run it inside `with cap:`")
    if max(cap.steps) >= steps:
        raise ValueError(f"captured step {max(cap.steps)} is not within the {steps} sampling steps")
    ref = load_reference(reference)
    if prepare_reference is not None:
        ref = prepare_reference(ref)
    if max_sequence_length is not None and max_sequence_length == pipeline_default(pipe, "max_sequence_length"):
        max_sequence_length = None
    layout = edit_layout(pipe, ref, max_sequence_length=max_sequence_length)
    n = len(seeds)
    if isinstance(cap, HeadCapture):
        cap.set_batch(text_mask(pipe, [prompt] * n, layout.txt_len, text_tokens), layout.n_img, layout.n_ref)
    elif isinstance(cap, SliceCapture):
        cap.set_batch(n, layout)
    else:
        raise TypeError(f"capture_edit needs a HeadCapture or SliceCapture, got {type(cap).__name__}")
    kwargs = edit_call_kwargs(ref, prompt, steps, guidance, seeds, max_sequence_length)
    run_until_stop(pipe, **kwargs, output_type="latent", callback_on_step_end=cap.stop_callback())
    cap.check_forwards()
    return cap.collect()
