"""The reference image klein is given, and the exact way back to the ground truth's pixels.

    from probe.klein.registration import plan_reference
    t = plan_reference(310, 250, max_side=1024)     # pad 310x250 -> 320x256: sides multiples of 16
    ref_for_klein = t.apply(ref_srgb_uint8)          # [256, 320, 3] uint8
    pred = t.invert(output_linear)                   # [250, 310, 3]: pixel (y, x) of the output is pixel (y, x) of the render

klein's pipeline rounds a reference's sides *down* to multiples of 16 and centre-crops it (and
resizes anything over 1024^2 pixels), so a 310x250 render would lose rows and columns and, once the
output is stretched back, every pixel would shift. Here the reference is made acceptable *before*
the pipeline sees it, without losing content, and the output is mapped back exactly:

1. scale (only when needed): larger than `max_side` -> area downscale by s = max_side / longest side;
   shorter side under `min_side` (klein's 64-px minimum) -> integer nearest-neighbour upscale by f,
   so every render pixel becomes an f x f block; `max_side` bounds downscaling only: an upscale that
   klein's minimum demands can take the long side past it (a render more than max_side / 64 times as
   long as it is wide; the area limit still holds, and `model` records the size used);
2. pad each side to the next multiple of 16 (and at least `min_side`: a 300x200 render downscaled
   to a 64-px longest side is 64x43, padded to 64x64), split evenly between the two ends, with
   reflected content (no black frame for the model to "explain");
3. the output, generated at exactly the padded size, is cropped back to the scaled frame; an f x f
   upscale is inverted by averaging each block (linear values), an s downscale by bilinear resizing
   back (pixel-centre aligned, OpenCV): geometry exact, resolution lost and recorded.

Without scaling, step 3 is a crop and the prediction's pixels are the pipeline's own 8-bit values.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ReferenceTransform", "plan_reference", "MULTIPLE", "MIN_SIDE", "MAX_AREA"]

MULTIPLE = 16            # klein: vae_scale_factor (8) x patch size (2)
MIN_SIDE = 64            # klein rejects smaller references
MAX_AREA = 1024 * 1024   # klein resizes larger references itself


@dataclass(frozen=True)
class ReferenceTransform:
    original: tuple[int, int]           # (width, height) of the render
    scaled: tuple[int, int]             # (width, height) after step 1
    scale_mode: str                     # "none" | "upscale_nearest" | "downscale_area"
    upscale: int                        # f for upscale_nearest, else 1
    scale: float                        # scaled width / original width
    pad: tuple[int, int, int, int]      # (left, top, right, bottom) pixels added in step 2
    model: tuple[int, int]              # (width, height) given to klein and generated
    pad_mode: str = "reflect"

    @property
    def exact(self) -> bool:
        """True when mapping back loses nothing (crop, or block average of a nearest upscale)."""
        return self.scale_mode != "downscale_area"

    def describe(self) -> dict:
        d = asdict(self)
        d["inverse"] = (f"crop x {self.pad[0]}..{self.pad[0] + self.scaled[0] - 1}, y {self.pad[1]}.."
                        f"{self.pad[1] + self.scaled[1] - 1} of the {self.model[0]}x{self.model[1]} output"
                        + {"none": "",
                           "upscale_nearest": f", then the mean of each {self.upscale}x{self.upscale} block (linear)",
                           "downscale_area": f", then bilinear resize to {self.original[0]}x{self.original[1]} "
                                             "(linear, pixel-centre aligned)"}[self.scale_mode])
        d["exact"] = self.exact
        return d

    def apply(self, ref: np.ndarray) -> np.ndarray:
        """The reference for klein: [H, W, C] (any dtype; uint8 sRGB in practice) -> model size."""
        ref = np.asarray(ref)
        w, h = self.original
        if ref.shape[:2] != (h, w):
            raise ValueError(f"reference is {ref.shape[1]}x{ref.shape[0]}, the transform was planned for {w}x{h}")
        if self.scale_mode == "upscale_nearest":
            ref = ref.repeat(self.upscale, axis=0).repeat(self.upscale, axis=1)
        elif self.scale_mode == "downscale_area":
            import cv2

            ref = cv2.resize(ref, self.scaled, interpolation=cv2.INTER_AREA)
            if ref.ndim == 2:
                ref = ref[..., None]
        left, top, right, bottom = self.pad
        widths = ((top, bottom), (left, right)) + ((0, 0),) * (ref.ndim - 2)
        mode = self.pad_mode if max(self.pad) < min(ref.shape[:2]) else "edge"
        return np.pad(ref, widths, mode=mode)

    def invert(self, out: np.ndarray) -> np.ndarray:
        """Map a model-size output (linear float) back onto the render's pixel grid: [h, w, C] float32."""
        out = np.asarray(out, dtype=np.float32)
        mw, mh = self.model
        if out.shape[:2] != (mh, mw):
            raise ValueError(f"klein returned {out.shape[1]}x{out.shape[0]}, expected the {mw}x{mh} it was asked for")
        left, top = self.pad[0], self.pad[1]
        sw, sh = self.scaled
        out = out[top: top + sh, left: left + sw]
        w, h = self.original
        if self.scale_mode == "upscale_nearest":
            f = self.upscale
            out = out.reshape(h, f, w, f, -1).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
        elif self.scale_mode == "downscale_area":
            import cv2

            out = cv2.resize(np.ascontiguousarray(out), (w, h), interpolation=cv2.INTER_LINEAR)
            if out.ndim == 2:
                out = out[..., None]
        return np.ascontiguousarray(out, dtype=np.float32)


def _pad(n: int, multiple: int, at_least: int = 0) -> tuple[int, int]:
    """(before, after) padding that brings n to the next multiple of `multiple` that is >= at_least."""
    target = max(n + (-n % multiple), at_least + (-at_least % multiple))
    extra = target - n
    return extra // 2, extra - extra // 2


def plan_reference(width: int, height: int, max_side: int = 1024, min_side: int = MIN_SIDE,
                   multiple: int = MULTIPLE, max_area: int = MAX_AREA) -> ReferenceTransform:
    """The transform for a width x height render (see the module docstring)."""
    if width < 1 or height < 1:
        raise ValueError(f"reference size must be positive, got {width}x{height}")
    if max_side < min_side:
        raise ValueError(f"max_side {max_side} is below klein's minimum side {min_side}")
    limit = max_side
    while True:
        if max(width, height) > limit:
            s = limit / max(width, height)
            sw, sh = max(1, round(width * s)), max(1, round(height * s))
            mode, f = "downscale_area", 1
        elif min(width, height) < min_side:
            f = math.ceil(min_side / min(width, height))
            sw, sh, mode = width * f, height * f, "upscale_nearest"
        else:
            sw, sh, mode, f = width, height, "none", 1
        # a downscaled side may fall under klein's minimum: padded up to it (reflected content, cropped back)
        (pl, pr), (pt, pb) = _pad(sw, multiple, min_side), _pad(sh, multiple, min_side)
        mw, mh = sw + pl + pr, sh + pt + pb
        if mw * mh <= max_area or limit <= min_side:
            break
        limit = int(limit * 0.9)   # the padded size would make klein resize on its own: shrink more
    if min(mw, mh) < min_side:
        raise ValueError(f"a {width}x{height} reference cannot be brought to klein's size limits "
                         f"(>= {min_side} a side, <= {max_area} pixels)")
    return ReferenceTransform(original=(width, height), scaled=(sw, sh), scale_mode=mode, upscale=f,
                              scale=sw / width, pad=(pl, pt, pr, pb), model=(mw, mh))
