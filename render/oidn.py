"""Intel Open Image Denoise through its C API (ctypes), on numpy arrays. No bpy import.

    from render.oidn import Oidn
    with Oidn(threads=0) as dn:                         # finds the library (see `find_library`)
        out = dn.denoise(color, albedo=a, normal=n)     # float32 [H, W, 3] in, float32 [H, W, 3] out
    dn.info()                                           # {"library": ..., "version": "2.3.3", "device": "CPU"}

The library is the one Blender's own compositor Denoise node and Cycles' denoiser use: the bpy wheel
ships it next to bpy (`bpy/lib/libOpenImageDenoise.so.2`), so nothing extra is installed. Set
`OIDN_LIBRARY` to the path of another build (e.g. a system OIDN 2.x) to use that one instead.
Filters are kept per image size and guide set (creating one is the expensive step) and released on exit.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["Oidn", "OidnError", "find_library"]

# enum values of OpenImageDenoise/oidn.h (2.x)
_DEVICE_TYPES = {"default": 0, "cpu": 1, "sycl": 2, "cuda": 3, "hip": 4, "metal": 5}
_DEVICE_NAMES = {v: k.upper() for k, v in _DEVICE_TYPES.items()}
_FORMAT_FLOAT3 = 3
_QUALITY = {"default": 0, "fast": 4, "balanced": 5, "high": 6}
_NAMES = {"linux": ("libOpenImageDenoise.so.2", "libOpenImageDenoise.so"),
          "darwin": ("libOpenImageDenoise.2.dylib", "libOpenImageDenoise.dylib"),
          "win32": ("OpenImageDenoise.dll",)}


class OidnError(RuntimeError):
    """OIDN could not be loaded or failed; the message is meant for the user as is."""


def _candidates() -> list[Path]:
    names = _NAMES.get(sys.platform, _NAMES["linux"])
    found: list[Path] = []
    env = os.environ.get("OIDN_LIBRARY")
    if env:                                        # asked for explicitly: that one or none
        return [Path(env)]
    spec = importlib.util.find_spec("bpy")         # where bpy lives, without importing it
    if spec is not None and spec.origin:
        pkg = Path(spec.origin).parent
        for sub in ("lib", ".", "../bpy.libs"):
            found.extend(pkg / sub / n for n in names)
    return found


def find_library() -> Path | None:
    """The OIDN shared library to load: $OIDN_LIBRARY if set (None if it does not exist), else the one shipped
    with bpy (None if bpy or its copy is missing)."""
    for p in _candidates():
        if p.is_file():
            return p.resolve()
    return None


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    sigs = {
        "oidnNewDevice": (vp, [ctypes.c_int]),
        "oidnCommitDevice": (None, [vp]),
        "oidnReleaseDevice": (None, [vp]),
        "oidnGetDeviceError": (ctypes.c_int, [vp, ctypes.POINTER(cp)]),
        "oidnSetDeviceInt": (None, [vp, cp, ctypes.c_int]),
        "oidnGetDeviceInt": (ctypes.c_int, [vp, cp]),
        "oidnNewFilter": (vp, [vp, cp]),
        "oidnReleaseFilter": (None, [vp]),
        "oidnSetSharedFilterImage": (None, [vp, cp, vp, ctypes.c_int, sz, sz, sz, sz, sz]),
        "oidnSetFilterBool": (None, [vp, cp, ctypes.c_bool]),
        "oidnSetFilterInt": (None, [vp, cp, ctypes.c_int]),
        "oidnCommitFilter": (None, [vp]),
        "oidnExecuteFilter": (None, [vp]),
        "oidnNewBuffer": (vp, [vp, sz]),
        "oidnReleaseBuffer": (None, [vp]),
        "oidnSetFilterImage": (None, [vp, cp, vp, ctypes.c_int, sz, sz, sz, sz, sz]),
        "oidnWriteBuffer": (None, [vp, sz, sz, vp]),
        "oidnReadBuffer": (None, [vp, sz, sz, vp]),
        "oidnSyncDevice": (None, [vp]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


class Oidn:
    """One OIDN device and its `RT` filters; use as a context manager (releases everything on exit).

    `device`: "cpu" (default: the same pixels on every machine, up to OIDN's threading) or "default"
    (OIDN's fastest device, a GPU where OIDN finds one). Images go through OIDN buffers, so GPU
    devices work too.
    """

    def __init__(self, threads: int = 0, device: str = "cpu", quality: str = "high"):
        if device not in _DEVICE_TYPES:
            raise ValueError(f"OIDN device must be one of {', '.join(_DEVICE_TYPES)}, got {device!r}")
        if quality not in _QUALITY:
            raise ValueError(f"OIDN quality must be one of {', '.join(_QUALITY)}, got {quality!r}")
        path = find_library()
        if path is None:
            looked = ", ".join(str(p) for p in _candidates()) or "(bpy is not installed)"
            raise OidnError(
                f"denoising needs Intel Open Image Denoise (OIDN 2.x), which the bpy wheel ships, but no OIDN library "
                f"was found (looked at {looked}"
                f"{'; OIDN_LIBRARY is set, so nowhere else' if os.environ.get('OIDN_LIBRARY') else ''}). Point the "
                f"environment variable OIDN_LIBRARY at libOpenImageDenoise (e.g. a system OIDN 2.x), reinstall bpy, "
                f"or render with --denoise none (no denoising; nothing else changes).")
        try:
            self._lib = _load(path)
        except (OSError, AttributeError) as e:
            raise OidnError(f"cannot use the OIDN library {path}: {e}. Point OIDN_LIBRARY at an OIDN 2.x library, "
                            f"or render with --denoise none.") from None
        self.path = path
        self.quality = quality
        self._dev = self._lib.oidnNewDevice(_DEVICE_TYPES[device])
        if not self._dev:
            self._check(None, "creating a device")
        if threads:
            self._lib.oidnSetDeviceInt(self._dev, b"numThreads", int(threads))
        self._lib.oidnCommitDevice(self._dev)
        self._check(self._dev, "committing the device")
        self.device = _DEVICE_NAMES.get(self._lib.oidnGetDeviceInt(self._dev, b"type"), "?")
        v = self._lib.oidnGetDeviceInt(self._dev, b"version")
        self.version = f"{v // 10000}.{v // 100 % 100}.{v % 100}"
        self._filters: dict[tuple, tuple] = {}

    def _check(self, dev, what: str) -> None:
        msg = ctypes.c_char_p()
        code = self._lib.oidnGetDeviceError(dev, ctypes.byref(msg))
        if code:
            text = msg.value.decode("utf-8", "replace") if msg.value else f"error code {code}"
            raise OidnError(f"Open Image Denoise failed {what}: {text}")

    def info(self) -> dict:
        return {"library": "Intel Open Image Denoise", "version": self.version, "path": str(self.path),
                "device": self.device, "filter": "RT", "quality": self.quality}

    def _filter(self, h: int, w: int, guides: tuple[str, ...], hdr: bool):
        key = (h, w, guides, hdr)
        if key not in self._filters:
            lib, nbytes = self._lib, h * w * 3 * 4
            flt = lib.oidnNewFilter(self._dev, b"RT")
            bufs = {}
            for name in ("color", *guides, "output"):
                bufs[name] = lib.oidnNewBuffer(self._dev, nbytes)
                lib.oidnSetFilterImage(flt, name.encode(), bufs[name], _FORMAT_FLOAT3, w, h, 0, 0, 0)
            lib.oidnSetFilterBool(flt, b"hdr", hdr)
            lib.oidnSetFilterBool(flt, b"cleanAux", bool(guides))   # render AOVs: anti-aliased, not noisy
            lib.oidnSetFilterInt(flt, b"quality", _QUALITY[self.quality])
            lib.oidnCommitFilter(flt)
            self._check(self._dev, "setting up a filter")
            self._filters[key] = (flt, bufs)
        return self._filters[key]

    def denoise(self, color: np.ndarray, albedo: np.ndarray | None = None, normal: np.ndarray | None = None,
                hdr: bool = True) -> np.ndarray:
        """Denoise `color` [H, W, 3] (linear; HDR unless hdr=False) with optional albedo / normal guides.

        OIDN takes a normal guide only together with an albedo guide. Returns a new float32 array.
        """
        if normal is not None and albedo is None:
            raise ValueError("OIDN takes a normal guide only together with an albedo guide")
        imgs = {"color": color, "albedo": albedo, "normal": normal}
        imgs = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)[..., :3]) for k, v in imgs.items()
                if v is not None}
        h, w = imgs["color"].shape[:2]
        for k, v in imgs.items():
            if v.shape != (h, w, 3):
                raise ValueError(f"OIDN input {k!r}: shape {v.shape}, expected {(h, w, 3)}")
        guides = tuple(k for k in ("albedo", "normal") if k in imgs)
        flt, bufs = self._filter(h, w, guides, hdr)
        lib, nbytes = self._lib, h * w * 3 * 4
        for k, v in imgs.items():
            lib.oidnWriteBuffer(bufs[k], 0, nbytes, v.ctypes.data)
        lib.oidnExecuteFilter(flt)
        out = np.empty((h, w, 3), np.float32)
        lib.oidnReadBuffer(bufs["output"], 0, nbytes, out.ctypes.data)
        lib.oidnSyncDevice(self._dev)
        self._check(self._dev, "denoising")
        return out

    def close(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        for flt, bufs in self._filters.values():
            lib.oidnReleaseFilter(flt)
            for b in bufs.values():
                lib.oidnReleaseBuffer(b)
        self._filters = {}
        if getattr(self, "_dev", None):
            lib.oidnReleaseDevice(self._dev)
            self._dev = None

    def __del__(self) -> None:   # a safety net: owners call close() (or use `with`)
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "Oidn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
