"""Denoise the light passes of a render, keeping image = albedo * shading + residual exact. No bpy.

    from render.denoise import Denoiser
    with Denoiser("passes", quality="high") as dn:     # loads OIDN (render.oidn); OidnError if it cannot
        gt = dn.apply(gt)                              # GroundTruth with denoised shading/residual, recomposed image
        dn.record(noisy_identity_error=...)            # what sample.json says under "denoise"

Mode `passes`: Intel Open Image Denoise (the RT filter Blender itself uses) runs on the two noisy light
passes, never on the combined image:
- shading (diffuse light / albedo: lighting without surface colour), guided by the camera-space normal
  (a per-pixel mean, clean: OIDN is told `cleanAux`) and a flat albedo of 1 where the surface has a
  diffuse lobe, 0 where it has none (OIDN takes a normal only beside an albedo; shading has no surface
  colour in it); then set to 0 where albedo is 0, as in groundtruth.decompose, and where Cycles' Diffuse
  Color pass is 0 (metals: no sample met a diffuse lobe, so their shading is 0 by construction, not by noise);
- residual (glossy + emission + environment), unguided;
- image is recomposed as albedo * shading + residual in float64 and stored as float32, so the identity
  holds to float precision by construction. The identity of the *noisy* passes (that Cycles' passes add
  up to its Combined pass) is checked before denoising and recorded as `noisy_identity_error`.
Albedo, normal, depth, mask and object index are not touched. Mode `none` does nothing and needs no OIDN.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from render.groundtruth import GroundTruth, identity_error
from render.settings import DENOISE_MODES, DENOISE_QUALITIES

__all__ = ["DENOISE_MODES", "DENOISE_QUALITIES", "Denoiser", "GUIDES", "METHOD"]
# Measured (issue 12, kitchen_counter and cornell_box at 128 px against 1024-spp references): guiding shading by
# the real albedo made it worse (OIDN expects colour = albedo x light, shading has no albedo in it; error 0.019
# vs 0.012), denoising diffuse light and dividing by albedo too (0.017); the normal beside a flat albedo was
# best (0.012). The residual (mostly glossy reflections) came out best without guides.
GUIDES = {"shading": ("albedo=1 where diffuse, else 0", "normal"), "residual": ()}
METHOD = ("OIDN RT filter (hdr, cleanAux) on shading, guided by the camera-space normal and a flat albedo (1 where "
          "the surface has a diffuse lobe, 0 where Cycles' Diffuse Color is 0; shading is then set to 0 there and where "
          "albedo is 0), and on residual, unguided; image recomposed as albedo * shading + residual "
          "(float64, stored float32). The combined image is never denoised on its own.")


class Denoiser:
    """Denoises GroundTruth light passes with one OIDN device (a context manager; mode 'none' is a no-op)."""

    def __init__(self, mode: str = "passes", quality: str = "high", threads: int = 0):
        if mode not in DENOISE_MODES:
            raise ValueError(f"denoise: must be one of {', '.join(DENOISE_MODES)}, got {mode!r}")
        if quality not in DENOISE_QUALITIES:
            raise ValueError(f"denoise quality: must be one of {', '.join(DENOISE_QUALITIES)}, got {quality!r}")
        self.mode, self.quality = mode, quality
        self._oidn = None
        if mode == "passes":
            from render.oidn import Oidn

            self._oidn = Oidn(threads=threads, device="cpu", quality=quality)

    @property
    def version(self) -> str | None:
        return self._oidn.version if self._oidn is not None else None

    def apply(self, gt: GroundTruth) -> GroundTruth:
        if self._oidn is None:
            return gt
        dn, a = self._oidn, gt.albedo
        if gt.diffuse_color is not None:
            diffuse = (gt.diffuse_color > 0).any(axis=-1, keepdims=True)
        else:
            diffuse = np.ones(a.shape[:2] + (1,), bool)
        flat = np.broadcast_to(diffuse, a.shape).astype(np.float32)
        shading = dn.denoise(gt.shading, albedo=flat, normal=gt.normal)
        shading = np.where((a > 0) & diffuse, shading, np.float32(0.0)).astype(np.float32)
        residual = dn.denoise(gt.residual)
        a64 = a.astype(np.float64)
        image = (a64 * shading + residual.astype(np.float64)).astype(np.float32)
        return replace(gt, image=image, shading=shading, residual=residual,
                       identity_error=identity_error(image, a, shading, residual))

    def record(self, **extra) -> dict:
        """The `denoise` block of sample.json: mode, and for 'passes' the library, version and settings."""
        if self._oidn is None:
            return {"mode": "none"}
        return {"mode": self.mode, **self._oidn.info(), "hdr": True, "clean_aux": True,
                "denoised": ["shading", "residual"],
                "guides": {k: list(v) for k, v in GUIDES.items()}, "method": METHOD, **extra}

    def close(self) -> None:
        if self._oidn is not None:
            self._oidn.close()
            self._oidn = None

    def __enter__(self) -> "Denoiser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
