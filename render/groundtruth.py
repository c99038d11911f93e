"""From Cycles render passes to the intrinsic ground truth. Pure numpy, no bpy: testable alone.

    from render.groundtruth import decompose, identity_error
    gt = decompose(passes, camera_from_world)   # passes: {"Combined": [H,W,4], "Diffuse Color": ..., "albedo": ...}
    gt.image, gt.albedo, gt.shading, gt.residual  # float32 [H, W, 3], linear Rec.709
    identity_error(gt.image, gt.albedo, gt.shading, gt.residual)   # < 1e-4 on every sample

Definitions (also written into manifest.json under "definitions"):
- albedo: a shader AOV fed from each material's Base Color input, i.e. the base colour of the surface
  each camera sample hits first, averaged over the pixel's samples. View- and light-independent.
  Not Cycles' Diffuse Color pass, which the Principled BSDF scales by a view-dependent Fresnel term.
- diffuse light: DiffCol * (DiffDir + DiffInd), the diffuse part of the image as Cycles splits it.
- shading: diffuse light / albedo per pixel and channel (0 where albedo is 0), so albedo * shading is
  the diffuse light exactly, at anti-aliased edges too. It contains the Principled BSDF's Fresnel
  weighting of the diffuse lobe (which is why it is not 'irradiance / pi').
- residual: the rest, summed from independent passes: GlossCol * (GlossDir + GlossInd) + Emission +
  Environment (+ transmission and volume passes when present; spec materials have neither, so the
  renderer does not ask Cycles for them, and the identity check would show any light left out).
- identity error: max over pixels and channels of |image - (albedo * shading + residual)| / max(|image|, 1e-6),
  evaluated on the float32 arrays written to disk. Because residual is not image minus diffuse, this
  checks that Cycles' passes add up to its Combined pass, and that albedo * shading gives back the diffuse
  light (it would not where albedo is 0 but diffuse light is not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["GroundTruth", "decompose", "identity_error", "meter", "meter_light", "expose", "DEFINITIONS", "REQUIRED_PASSES",
           "BACKGROUND_DEPTH", "COVERAGE_FULL", "IDENTITY_FLOOR"]

# Cycles writes 1e10 into the depth pass where the first camera sample saw the background.
BACKGROUND_DEPTH = 1e9
# coverage (albedo AOV alpha) is a mean of 1s: exactly 1.0 when every sample hit a surface; any miss lowers it by >= 1/samples.
COVERAGE_FULL = 1.0 - 1e-6
IDENTITY_FLOOR = 1e-6

REQUIRED_PASSES = (
    "Combined", "Depth", "Object Index",
    "Diffuse Color", "Diffuse Direct", "Diffuse Indirect",
    "Glossy Color", "Glossy Direct", "Glossy Indirect",
    "Emission", "Environment", "albedo",
)
_OPTIONAL_RESIDUAL = ("Volume Direct", "Volume Indirect")

DEFINITIONS = {
    "image": "linear Rec.709 (Blender's scene-linear working space), no view transform. With render denoise "
             "'none': Cycles' Combined pass. With 'passes': albedo * shading + residual recomposed from the denoised "
             "shading and residual (see denoise); the combined image is never denoised on its own.",
    "denoise": "render setting denoise: 'none', or 'passes': Intel Open Image Denoise (sample.json denoise: version, "
               "filter, quality, guides) runs on shading (guided by the camera-space normal and a flat albedo of 1; "
               "then 0 where albedo is 0) and on residual (unguided); image is recomposed from them, so the identity "
               "holds to float precision. Albedo, normal, depth, mask and object_index are never denoised. "
               "denoise.noisy_identity_error is the identity error of Cycles' passes before denoising (the check that "
               "they add up to its Combined pass). Denoising trades noise for some blur of fine lighting detail.",
    "image_srgb": "image clipped to [0, 1] and encoded with the IEC 61966-2-1 sRGB curve, 8-bit PNG.",
    "albedo": "base colour of the first surface each camera sample hits (a shader AOV fed from each material's "
              "Base Color input), averaged over the pixel's samples; 0 on the background. Independent of view "
              "and lighting; identical for every lighting of a scene. Not Cycles' Diffuse Color pass (that one "
              "is scaled by a view-dependent Fresnel factor). For metallic materials it is still the base colour; "
              "their diffuse light, and so their shading, is 0 (the default scenes are all dielectric).",
    "albedo_srgb": "albedo encoded exactly as image_srgb is from image (clipped to [0, 1], IEC 61966-2-1 sRGB "
                   "curve, 8-bit PNG, no alpha); the background, where albedo is 0, is black.",
    "variant": "0 for a scene's own colours; k >= 1 for colour variant k (python -m render --recolor K): same "
               "geometry, camera, lightings and material parameters, every surface colour replaced (see the "
               "manifest's recolor block), so mask, object_index, normal and depth equal the original's.",
    "base_scene": "the scene id without its ~c<k> suffix: the unit of independence (cluster) for statistics.",
    "shading": "diffuse light / albedo per pixel and channel (0 where albedo is 0), with diffuse light = "
               "DiffCol * (DiffDir + DiffInd); so albedo * shading is the diffuse light exactly, at anti-aliased "
               "edges too. Includes the Principled BSDF's Fresnel weighting of the diffuse lobe.",
    "residual": "non-diffuse light: GlossCol*(GlossDir+GlossInd) + Emission + Environment, summed from the passes "
                "(not image minus diffuse). Spec materials have no transmission or volume, so those passes are not "
                "rendered (they would be 0); the identity error shows that nothing is left out.",
    "exposure": "with render exposure 'auto' (the default), image, shading and residual are scaled by one factor per "
                "sample (sample.json: exposure.scale) chosen by incident-light metering: the centre-weighted median "
                "shading luminance over valid pixels becomes 0.5 (a surface of albedo 0.36 at typical illumination "
                "shows as photographic middle grey, 0.18), lowered until the brightest 3 % of diffusely lit surfaces "
                "stay below 0.9, rounded down to 1/3 EV. Albedo is never scaled; divide image, shading and "
                "residual by exposure.scale for Cycles' radiance.",
    "indirect_clamp": "render setting firefly_clamp F > 0: a 4-sample quarter-resolution pre-pass measures the mean "
                      "image luminance m, and Cycles clamps each sample's indirect light at F * m (sample.json: "
                      "indirect_clamp, in Cycles' units before exposure). It removes fireflies at the cost of a "
                      "little indirect energy; Cycles clamps before splitting light into passes, so image = albedo * "
                      "shading + residual holds exactly as without it.",
    "identity_error": "max over pixels and channels of |image - (albedo*shading + residual)| / max(|image|, 1e-6), "
                      "on the float32 arrays as written.",
    "normal": "shading normal in camera space (x right, y up, z towards the camera; OpenGL/Blender convention), "
              "read through a shader AOV from the Geometry node's Normal (so it does not depend on material "
              "colours: colour variants share it bit for bit), averaged over the pixel's samples and renormalised "
              "to unit length; 0 on the background. "
              "world_from_camera in each sample's camera block rotates it to world space.",
    "depth": "planar camera depth (distance along the optical axis, not along the ray) in metres, from the "
             "pixel's first camera sample (not anti-aliased); +inf where that sample saw the background.",
    "mask": "valid surface pixels: every camera sample of the pixel hit a surface (alpha of the albedo AOV == 1). Edge pixels "
            "partly covering the background are invalid, since their albedo mixes in the background's 0.",
    "object_index": "8-bit PNG: 0 = background, k = objects[k-1] (see each sample's objects list), from the "
                    "pixel's first camera sample (not anti-aliased).",
}


@dataclass(frozen=True)
class GroundTruth:
    image: np.ndarray          # [H, W, 3] float32, linear
    albedo: np.ndarray         # [H, W, 3] float32, linear
    shading: np.ndarray        # [H, W, 3] float32
    residual: np.ndarray       # [H, W, 3] float32, linear
    normal: np.ndarray         # [H, W, 3] float32, camera space, unit or 0
    depth: np.ndarray          # [H, W] float32, +inf on background
    mask: np.ndarray           # [H, W] bool
    object_index: np.ndarray   # [H, W] int32
    coverage: np.ndarray       # [H, W] float32 in [0, 1]
    identity_error: float
    # Cycles' Diffuse Color pass [H, W, 3] (not written): 0 where no sample met a diffuse lobe (metals, background),
    # so diffuse light and shading are 0 there by construction; render.denoise keeps them 0. None: unknown
    diffuse_color: np.ndarray | None = None

    def stats(self) -> dict:
        img = self.image
        return {
            "identity_error": self.identity_error,
            "mask_fraction": float(self.mask.mean()),
            "clipped_fraction": float((img > 1.0).any(axis=-1).mean()),
            "image_mean": float(img.mean()),
            "image_median": float(np.median(img.astype(np.float64) @ LUMA)),
            "image_srgb_median": float(np.median(_srgb(np.clip(img, 0, 1)).astype(np.float64) @ LUMA)),
            "image_p99": float(np.percentile(img.max(axis=-1), 99)),
            "residual_fraction": float(self.residual.sum() / max(float(img.sum()), 1e-12)),
        }


# Rec.709 luminance weights (linear RGB)
LUMA = np.array([0.2126, 0.7152, 0.0722])
EXPOSURE_STEP_EV = 1.0 / 3.0
# metering target: the median shading luminance of valid pixels after exposure. 0.5 puts a typical surface
# (albedo ~0.36) at median illumination at photographic middle grey (0.18 linear) and leaves a stop of headroom
# for surfaces lit twice as brightly before white (albedo 0.8) clips
EXPOSURE_TARGET = 0.5


def meter(gt: GroundTruth) -> tuple[float, float]:
    """Incident-light metering: (the metered shading luminance, the exposure scale).

    Like a camera's centre-weighted meter, but on the light rather than the picture: the metered value is the
    median shading luminance over valid surface pixels, weighted towards the frame's centre (a Gaussian of
    0.35 x the frame size), and the scale makes it EXPOSURE_TARGET. Highlight protection then lowers the
    scale until the brightest 3 % of diffusely lit surfaces (albedo x shading) stay below 0.9, so a sunlit
    patch or a brightly lit subject is not blown out; the result is rounded down to 1/3 EV, like a camera's
    exposure steps. Shading hardly depends on surface colours, so a scene's colour variants almost always
    get the same exposure. Returns (0, 1) when nothing valid is lit.
    """
    return meter_light(gt.mask, gt.shading, gt.albedo)


def meter_light(mask: np.ndarray, shading: np.ndarray, albedo: np.ndarray) -> tuple[float, float]:
    """`meter` on plain arrays: mask [H, W] bool, shading and albedo [H, W, 3] linear (the same rule; the
    MIT importer, render.mit, meters photographs with it, their shading estimated as photo / reflectance)."""
    m = np.asarray(mask, bool)
    lum = np.asarray(shading)[m].astype(np.float64) @ LUMA
    if not lum.size:
        return 0.0, 1.0
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w]
    wgt = np.exp(-(((yy - (h - 1) / 2) / (0.35 * h)) ** 2 + ((xx - (w - 1) / 2) / (0.35 * w)) ** 2) / 2)[m]
    order = np.argsort(lum)
    cum = np.cumsum(wgt[order])
    med = float(lum[order][np.searchsorted(cum, 0.5 * cum[-1])])
    if not med > 0:
        return med, 1.0
    scale = EXPOSURE_TARGET / med
    diffuse = (np.asarray(albedo)[m].astype(np.float64) * np.asarray(shading)[m]) @ LUMA
    hi = float(np.percentile(diffuse, 97))
    if hi > 0:
        scale = min(scale, 0.9 / hi)
    ev = math.floor(np.log2(scale) / EXPOSURE_STEP_EV + 1e-9) * EXPOSURE_STEP_EV
    return med, float(2.0 ** float(np.clip(ev, -24.0, 24.0)))


def expose(gt: GroundTruth, scale: float) -> GroundTruth:
    """Scale the light (image, shading, residual) by `scale`; albedo and geometry are untouched. The
    identity holds as before (it is linear in the light) and is recomputed on the scaled arrays."""
    if scale == 1.0:
        return gt
    k = np.float32(scale)
    image, shading, residual = gt.image * k, gt.shading * k, gt.residual * k
    return replace(gt, image=image, shading=shading, residual=residual,
                   identity_error=identity_error(image, gt.albedo, shading, residual))


def _srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _rgb(p: np.ndarray) -> np.ndarray:
    return np.asarray(p[..., :3], dtype=np.float64)


def identity_error(image: np.ndarray, albedo: np.ndarray, shading: np.ndarray, residual: np.ndarray) -> float:
    """max |image - (albedo * shading + residual)| / max(|image|, 1e-6), computed in float64."""
    img = np.asarray(image, dtype=np.float64)
    rec = np.asarray(albedo, np.float64) * np.asarray(shading, np.float64) + np.asarray(residual, np.float64)
    err = np.abs(img - rec) / np.maximum(np.abs(img), IDENTITY_FLOOR)
    return float(err.max()) if err.size else 0.0


def decompose(passes: dict[str, np.ndarray], camera_from_world: np.ndarray | None = None) -> GroundTruth:
    """Turn Cycles passes ([H, W, C] float arrays keyed by Blender's pass names) into ground truth.

    `camera_from_world` (3x3 or 4x4) rotates the world-space normals (the "normal" AOV, else Cycles' Normal
    pass) into camera space; identity if None.
    """
    missing = [p for p in REQUIRED_PASSES if p not in passes]
    if "normal" not in passes and "Normal" not in passes:
        missing.append("normal (AOV) or Normal")
    if missing:
        raise KeyError(f"render is missing passes {missing}; got {sorted(passes)}")

    image = _rgb(passes["Combined"]).astype(np.float32)
    albedo = _rgb(passes["albedo"]).astype(np.float32)

    def light(kind: str) -> np.ndarray:
        return _rgb(passes[f"{kind} Color"]) * (_rgb(passes[f"{kind} Direct"]) + _rgb(passes[f"{kind} Indirect"]))

    diffuse = light("Diffuse")
    rest = light("Glossy") + _rgb(passes["Emission"]) + _rgb(passes["Environment"])
    if "Transmission Color" in passes:
        rest = rest + light("Transmission")
    for name in _OPTIONAL_RESIDUAL:
        if name in passes:
            rest = rest + _rgb(passes[name])
    residual = rest.astype(np.float32)
    a64 = albedo.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        shading = np.where(a64 > 0, diffuse / np.where(a64 > 0, a64, 1.0), 0.0).astype(np.float32)

    # Cycles writes colour AOVs as (r, g, b, 1) at each surface hit and nothing on the background, so the
    # averaged alpha is the fraction of the pixel's camera samples that hit a surface
    coverage = np.asarray(passes["albedo"], dtype=np.float32)[..., 3]
    mask = coverage >= COVERAGE_FULL
    depth = np.asarray(passes["Depth"], dtype=np.float32)[..., 0].copy()
    depth[depth >= BACKGROUND_DEPTH] = np.inf
    object_index = np.rint(np.asarray(passes["Object Index"], dtype=np.float64)[..., 0]).astype(np.int32)

    n = np.asarray(passes["normal"] if "normal" in passes else passes["Normal"], dtype=np.float64)[..., :3]
    if camera_from_world is not None:
        r = np.asarray(camera_from_world, dtype=np.float64)[:3, :3]
        n = n @ r.T
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    normal = np.where(length > 1e-8, n / np.where(length > 1e-8, length, 1.0), 0.0).astype(np.float32)

    err = identity_error(image, albedo, shading, residual)
    return GroundTruth(image=image, albedo=albedo, shading=shading, residual=residual, normal=normal, depth=depth,
                       mask=mask, object_index=object_index, coverage=coverage, identity_error=err,
                       diffuse_color=_rgb(passes["Diffuse Color"]).astype(np.float32))
