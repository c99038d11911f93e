"""Render settings shared by the CLI, the Blender session and the manifest. No bpy.

    from render.settings import RenderSettings, parse_resolution
    s = RenderSettings(width=64, height=64, samples=8)
    s.validate()                       # ValueError naming the field
    s.matches(other)                   # equal in everything that changes pixels (threads aside)

Defaults are what `python -m render` uses: small enough that the 25 default scenes finish in a
few minutes on 2 cores. Adaptive sampling keeps the decomposition exact: every pass of a pixel is averaged
over that pixel's samples. Denoising (render.denoise, mode "passes") works on the shading and residual
passes and recomposes the image from them, so the decomposition stays exact too; the combined image is
never denoised on its own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DEFAULT_RESOLUTION = 256
DEFAULT_SAMPLES = 96           # the most per pixel: adaptive sampling stops converged pixels earlier
DEFAULT_ADAPTIVE_THRESHOLD = 0.02
DEFAULT_ADAPTIVE_MIN = 16
# --device: Cycles backends; auto takes the first GPU backend of GPU_PREFERENCE that bpy reports a device for
DEVICES = ("auto", "cpu", "cuda", "optix", "hip")
GPU_PREFERENCE = ("optix", "cuda", "hip")
EXPOSURES = ("auto", "none")
DENOISE_MODES = ("none", "passes")          # render.denoise (kept here too: --help must not import it)
DENOISE_QUALITIES = ("high", "balanced", "fast")
# settings that renders made before they existed implicitly had (for comparing on resume)
LEGACY = {"exposure": "none", "firefly_clamp": 0.0, "adaptive_threshold": 0.0, "denoise": "none"}


@dataclass(frozen=True)
class RenderSettings:
    width: int = DEFAULT_RESOLUTION
    height: int = DEFAULT_RESOLUTION
    samples: int = DEFAULT_SAMPLES          # Cycles samples per pixel (the most, with adaptive sampling)
    adaptive_threshold: float = DEFAULT_ADAPTIVE_THRESHOLD   # Cycles' noise threshold; 0: every pixel gets `samples`
    adaptive_min_samples: int = DEFAULT_ADAPTIVE_MIN         # samples every pixel gets before it may stop
    max_bounces: int = 8
    diffuse_bounces: int = 4
    glossy_bounces: int = 4
    transmission_bounces: int = 4
    transparent_bounces: int = 8
    filter_width_px: float = 1.5            # Blackman-Harris, importance-sampled: every pass is a plain per-pixel mean
    seed: int = 0                           # Cycles seed, identical for every lighting of a scene
    threads: int = 0                        # 0: all cores; does not change pixels, so not compared on resume
    device: str = "auto"                    # DEVICES; the noise differs between devices, the ground truth does not
    ground_truth: bool = True               # False: the Combined pass only (the benchmark's baseline)
    exposure: str = "auto"                  # auto: per-sample incident-light metering (groundtruth.meter); none
    firefly_clamp: float = 10.0             # indirect light clamped at this x the image's mean luminance (0: off)
    denoise: str = "passes"                 # DENOISE_MODES: passes = OIDN on shading and residual, image recomposed
    denoise_quality: str = "high"           # OIDN filter quality (DENOISE_QUALITIES); only with denoise "passes"

    def validate(self) -> "RenderSettings":
        for f in ("width", "height"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1 or v > 16384:
                raise ValueError(f"resolution: {f} must be an integer in 1..16384, got {v!r}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples: must be an integer >= 1, got {self.samples!r}")
        for f in ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces", "transparent_bounces"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{f}: must be an integer >= 0, got {v!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads: must be an integer >= 0 (0 = all cores), got {self.threads!r}")
        if not (isinstance(self.adaptive_threshold, (int, float)) and 0 <= self.adaptive_threshold < 1):
            raise ValueError(f"adaptive_threshold: must be in [0, 1) (0 = off), got {self.adaptive_threshold!r}")
        if not isinstance(self.adaptive_min_samples, int) or self.adaptive_min_samples < 1:
            raise ValueError(f"adaptive_min_samples: must be an integer >= 1, got {self.adaptive_min_samples!r}")
        if self.exposure not in EXPOSURES:
            raise ValueError(f"exposure: must be one of {', '.join(EXPOSURES)}, got {self.exposure!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device: must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not (isinstance(self.firefly_clamp, (int, float)) and self.firefly_clamp >= 0):
            raise ValueError(f"firefly_clamp: must be a number >= 0 (0 = off), got {self.firefly_clamp!r}")
        if self.denoise not in DENOISE_MODES:
            raise ValueError(f"denoise: must be one of {', '.join(DENOISE_MODES)}, got {self.denoise!r}")
        if self.denoise_quality not in DENOISE_QUALITIES:
            raise ValueError(f"denoise_quality: must be one of {', '.join(DENOISE_QUALITIES)}, "
                             f"got {self.denoise_quality!r}")
        if not self.filter_width_px > 0:
            raise ValueError(f"filter_width_px: must be > 0, got {self.filter_width_px!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RenderSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{**LEGACY, **{k: v for k, v in d.items() if k in names}})

    def pixel_dict(self) -> dict:
        """The settings that change pixels (all but threads and device): resumed samples must match these.

        A GPU render draws other random numbers than a CPU one (the noise differs, the expectation and
        the exact ground-truth identity do not), so a dataset may mix devices; each sample records its own.
        The denoiser's quality matters only when it runs (and its OIDN version is compared separately).
        """
        d = self.to_dict()
        d.pop("threads")
        d.pop("device")
        if d["denoise"] == "none":
            d.pop("denoise_quality")
        return d

    def matches(self, other: "RenderSettings") -> bool:
        return self.pixel_dict() == other.pixel_dict()


def parse_resolution(text: str | int) -> tuple[int, int]:
    """'256' -> (256, 256); '320x240' -> (320, 240). ValueError for anything else or <= 0."""
    s = str(text).lower().strip()
    try:
        parts = [int(p) for p in s.split("x")] if "x" in s else [int(s)] * 2
    except ValueError:
        raise ValueError(f"--resolution must be N or WxH (e.g. 256 or 320x240), got {text!r}") from None
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--resolution must be positive (N or WxH), got {text!r}")
    return parts[0], parts[1]
