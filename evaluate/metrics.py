"""Albedo metrics on masked pixels under three scale alignments (numpy + scikit-image only).

    from evaluate.metrics import score_pair, MetricConfig
    row = score_pair(gt_linear, pred_linear, mask)     # {"mse_linear_scalar": ..., "dssim_srgb_none": ...}

Column names are `{metric}_{space}_{alignment}`:

- metric: `mse`, `lmse`, `psnr`, `dssim`, `lpips` (definitions in each function's docstring);
- space: the encoding of the two images being compared. `linear`: linear-light RGB as stored in
  the EXR files. `srgb`: both images encoded with the IEC 61966-2-1 sRGB curve after clipping to
  [0, 1] (what the Marigold protocol and LPIPS see);
- alignment: how the prediction's unknown albedo scale is removed before comparing. The scale is
  always fitted in *linear* space (albedo is ambiguous up to a multiplicative factor of linear
  reflectance), by least squares over the mask, then the scaled prediction is encoded to the column's
  space:
    `none`        the prediction as given (Marigold protocol on Hypersim / InteriorVerse),
    `scalar`      one scalar for all three channels (MPI Sintel convention, Chen & Koltun line),
    `per_channel` one scalar per channel (MIT intrinsic images convention).

Columns produced: mse_linear_*, mse_srgb_*, lmse_linear_*, psnr_srgb_*, dssim_srgb_*,
lpips_srgb_* (empty when LPIPS is unavailable, see `lpips_status`), plus the fitted scales
`scale_scalar`, `scale_per_channel_r/g/b`.

Masking: only pixels with mask True count. Pixel-wise metrics select them. Window metrics (SSIM,
LPIPS) set the pixels outside the mask to 0 in *both* images (so values there cannot leak in) and
average the metric's map over the mask *eroded by the window radius* (3 px for the 7x7 SSIM
window): a window that reaches outside the mask would compare zero-filled pixels, which look alike
in any two images and flatter a poor prediction near the object's edge. (Until this version the
maps were averaged over the whole mask.) LPIPS uses the same erosion; its receptive field is
larger, so some edge influence remains there.

Beyond the anchors: `shading_leakage_linear`, the least-squares slope of log(pred / gt) on
log(shading) over mask pixels, signed (0: the prediction carries none of the lighting; 1: all of it,
like the image taken as albedo; < 0: it inverts the lighting, as an over-corrected gt / shading
does, at -1), `shading_leakage_abs_linear`, its magnitude (the column to rank or average: +0.5 and
-0.5 are equally wrong), with the counts `shading_leakage_n_floored` / `shading_leakage_n_unused`
of the values it raised to the 8-bit floor or could not use, and `degenerate_prediction` (a zero,
constant or near-constant prediction, flagged instead of being scored "best" by the
illumination-invariance test).

No torch import here: the LPIPS adapter imports `lpips` (and so torch) only inside
`LpipsScorer.create`, and only after `lpips_status` found the package and its weights on disk.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "ALIGNMENTS", "MetricConfig", "metric_columns", "all_metric_columns", "COLUMN_DOCS", "INVARIANCE_COLUMNS",
    "EXTRA_METRIC_COLUMNS", "fit_scales", "align", "mse", "lmse", "psnr", "dssim", "score_pair", "invariance",
    "shading_leakage", "shading_leakage_details", "degenerate_prediction", "eroded_mask", "metric_direction",
    "metric_kind", "SIGNED_COLUMNS", "LEAKAGE_COUNT_COLUMNS", "LEAKAGE_FLOOR", "NEAR_CONSTANT_RATIO",
    "LpipsStatus", "lpips_status", "LpipsScorer",
]

ALIGNMENTS = ("none", "scalar", "per_channel")
_METRIC_SPACES = (("mse", "linear"), ("mse", "srgb"), ("lmse", "linear"),
                  ("psnr", "srgb"), ("dssim", "srgb"), ("lpips", "srgb"))
INVARIANCE_COLUMNS = tuple(f"inv_mse_linear_{a}" for a in ALIGNMENTS) + tuple(f"inv_nmse_linear_{a}" for a in ALIGNMENTS)
EXTRA_METRIC_COLUMNS = ("shading_leakage_linear", "shading_leakage_abs_linear")
# signed columns: 0 is best and the sign names a direction; ranked and averaged through their magnitude column
SIGNED_COLUMNS = {"shading_leakage_linear": "shading_leakage_abs_linear"}
# what the shading-leakage fit could not use as given (counts of mask pixel-channel values; scores.csv only)
LEAKAGE_COUNT_COLUMNS = ("shading_leakage_n_floored", "shading_leakage_n_unused")
# the prediction's floor in the leakage fit: linear value of the smallest non-zero 8-bit sRGB code (1/255)
LEAKAGE_FLOOR = (1.0 / 255.0) / 12.92
# a prediction whose relative spatial spread is under this fraction of the ground truth's is near-constant
NEAR_CONSTANT_RATIO = 0.1
# Direction of each metric family: +1 when larger is worse (an error), -1 when larger is better.
METRIC_DIRECTION = {"mse": 1, "lmse": 1, "dssim": 1, "lpips": 1, "psnr": -1, "ssim": -1, "shading": 1, "inv": 1}


def metric_kind(column: str) -> str:
    """"error" (larger is worse), "score" (larger is better) or "signed" (0 is best, the sign is a
    direction: rank by the magnitude column named in SIGNED_COLUMNS, never by the signed value)."""
    if column in SIGNED_COLUMNS:
        return "signed"
    return "score" if metric_direction(column) < 0 else "error"


def metric_direction(column: str) -> int:
    """+1 when a larger value of the column is worse, -1 when better. A signed column (metric_kind
    "signed": shading_leakage_linear) gets +1, meaning only "an increase": its changes are shifts
    in a direction, not harms; its magnitude column (shading_leakage_abs_linear) is the error."""
    for prefix, sign in METRIC_DIRECTION.items():
        if column.startswith(prefix):
            return sign
    return 1


@dataclass(frozen=True)
class MetricConfig:
    """Fixed parameters of the metrics (recorded in score_config.json)."""

    lmse_window: int = 20          # MIT: 20-pixel windows ...
    lmse_stride: int = 10          # ... spaced by half a window
    lmse_eps: float = 1e-5         # MIT: a window whose prediction energy is <= eps gets scale 0
    ssim_win_size: int = 7         # scikit-image default (uniform 7x7 window, K1=0.01, K2=0.03)
    data_range: float = 1.0        # albedo (reflectance) is nominally in [0, 1], linear and sRGB alike
    lpips_net: str = "alex"        # LPIPS backbone (the package's default)


def metric_columns(with_lpips: bool = True) -> list[str]:
    """The `{metric}_{space}_{alignment}` column names, in CSV order."""
    return [f"{m}_{s}_{a}" for m, s in _METRIC_SPACES if with_lpips or m != "lpips" for a in ALIGNMENTS]


def all_metric_columns(with_lpips: bool = True) -> list[str]:
    """metric_columns() and the alignment-free columns (shading leakage)."""
    return metric_columns(with_lpips) + list(EXTRA_METRIC_COLUMNS)


_METRIC_DOCS = {
    "mse": "mean over mask pixels and the 3 channels of (gt - s*pred)^2",
    "lmse": "MIT local MSE: 20x20 windows at stride 10, each window with its own least-squares scale "
            "(of the column's alignment kind), summed windowed SSE / summed windowed gt^2",
    "psnr": "10*log10(data_range^2 / MSE) with data_range=1 (scikit-image); inf when MSE is 0",
    "dssim": "(1 - SSIM)/2, SSIM from scikit-image (7x7 uniform window, data_range=1), map averaged over the mask "
             "eroded by the window radius (3 px), so no window reaches outside the mask",
    "lpips": "LPIPS distance (lpips package), spatial map averaged over the mask eroded by 3 px",
}
_ALIGN_DOCS = {
    "none": "prediction as given",
    "scalar": "one least-squares scalar for all channels, fitted in linear space",
    "per_channel": "one least-squares scalar per channel, fitted in linear space",
}
_ALIGN_DOCS_LMSE = {
    "none": "windows not rescaled",
    "scalar": "one scalar per window for all channels",
    "per_channel": "one scalar per window and channel (MIT)",
}
COLUMN_DOCS: dict[str, str] = {
    f"{m}_{s}_{a}": f"{_METRIC_DOCS[m]}; {s} values; "
                    f"{(_ALIGN_DOCS_LMSE if m == 'lmse' else _ALIGN_DOCS)[a]}"
    for m, s in _METRIC_SPACES for a in ALIGNMENTS
}
COLUMN_DOCS.update({
    f"inv_mse_linear_{a}": "illumination invariance (scale-dependent, kept for comparison with earlier runs: "
                           "scaling both predictions by c scales it by c^2, so dark or constant outputs score "
                           "well): mean over pairs of lightings of one scene of the symmetrised MSE between the "
                           "two predictions on pixels valid in both, after fitting one prediction to the other "
                           f"({_ALIGN_DOCS[a]}); 0 for ground truth" for a in ALIGNMENTS
})
COLUMN_DOCS.update({
    f"inv_nmse_linear_{a}": "illumination invariance, scale-free: mean over pairs (i, j) of lightings of one scene "
                            "of the symmetrised normalised disagreement sum(p_i - s*p_j)^2 / sum(p_i^2) on pixels "
                            f"valid in both ({_ALIGN_DOCS[a]}); the same for c*pred; 0 for ground truth; pairs with "
                            "a degenerate (zero, constant or near-constant) prediction are left out and counted. Read beside the "
                            "accuracy columns, never alone" for a in ALIGNMENTS
})
_LEAKAGE_FIT = (
    "least-squares slope of log(max(pred, f)/gt) on log(shading) over mask pixels and channels (each channel "
    "centred, so the prediction's scale does not matter), f = 3.04e-4 = the linear value of the smallest non-zero "
    "8-bit sRGB code, so a black prediction (8-bit code 0) counts as the darkest value it can be, not as missing "
    "(shading_leakage_n_floored counts the values raised to f); values where gt or shading is <= 1e-6 cannot "
    "enter a log ratio and are left out (shading_leakage_n_unused); NaN when the shading does not vary")
COLUMN_DOCS["shading_leakage_linear"] = (
    "shading leakage, SIGNED (a direction, not a ranking): " + _LEAKAGE_FIT + "; 0: the prediction carries none "
    "of the lighting, 1: all of it (the image taken as albedo, where the non-diffuse residual is small), < 0: it "
    "carries the lighting inverted (gt / shading, over-corrected, gives -1). Averages of it can cancel (+0.5 and "
    "-0.5 give 0): rank and average shading_leakage_abs_linear")
COLUMN_DOCS["shading_leakage_abs_linear"] = (
    "shading leakage magnitude |shading_leakage_linear| (lower is better; 0: none of the lighting in the "
    "prediction, 1: as much as the image itself, inverted or not): the column to rank and average")


# ---------------------------------------------------------------------------------------------
# alignment


def _prep(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if gt.ndim != 3 or gt.shape != pred.shape or gt.shape[:2] != mask.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape}, pred {pred.shape}, mask {mask.shape}; "
                         "expected [H, W, C], [H, W, C] and [H, W]")
    return gt, pred, mask


def _ls_scale(num: np.ndarray, den: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """num/den where den > eps, else 0 (MIT's rule for a prediction with no energy)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ok = den > eps
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def fit_scales(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, alignment: str) -> np.ndarray:
    """Least-squares scale(s) s minimising sum over mask of (gt - s*pred)^2; shape [C].

    none: s = 1. scalar: s = sum(gt*pred) / sum(pred^2) over mask pixels and all channels, repeated
    per channel. per_channel: s_c = sum(gt_c*pred_c) / sum(pred_c^2) over mask pixels. A prediction
    that is 0 on the whole mask gets s = 0.
    """
    gt, pred, mask = _prep(gt, pred, mask)
    c = gt.shape[-1]
    if alignment == "none":
        return np.ones(c)
    g, p = gt[mask], pred[mask]                      # [N, C]
    if alignment == "scalar":
        return np.full(c, float(_ls_scale((g * p).sum(), (p * p).sum())))
    if alignment == "per_channel":
        return _ls_scale((g * p).sum(0), (p * p).sum(0))
    raise ValueError(f"unknown alignment {alignment!r}; choose from {ALIGNMENTS}")


def align(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, alignment: str) -> tuple[np.ndarray, np.ndarray]:
    """(scales [C], pred * scales) with the scales of `fit_scales`."""
    s = fit_scales(gt, pred, mask, alignment)
    return s, np.asarray(pred, dtype=np.float64) * s


# ---------------------------------------------------------------------------------------------
# metrics


def mse(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, alignment: str = "none") -> float:
    """MSE = mean over mask pixels p and channels c of (gt[p,c] - s_c*pred[p,c])^2.

    s from `fit_scales(alignment)`: alignment="scalar" is the scale-invariant MSE (si-MSE) of
    Sintel / Chen & Koltun, "per_channel" the MIT convention. NaN if the mask is empty.
    """
    gt, pred, mask = _prep(gt, pred, mask)
    if not mask.any():
        return float("nan")
    s = fit_scales(gt, pred, mask, alignment)
    d = gt[mask] - pred[mask] * s
    return float(np.mean(d * d))


def _window_starts(size: int, window: int, stride: int) -> tuple[np.ndarray, int]:
    w = min(window, size)
    return np.arange(0, size - w + 1, stride), w


def _window_sums(a: np.ndarray, ys: np.ndarray, wy: int, xs: np.ndarray, wx: int) -> np.ndarray:
    """[H, W, K] -> [ny, nx, K] sums over the windows, by separable running sums (float64)."""
    c = np.zeros((a.shape[0] + 1,) + a.shape[1:])
    np.cumsum(a, axis=0, out=c[1:])
    rows = c[ys + wy] - c[ys]                                  # [ny, W, K]
    c = np.zeros((rows.shape[0], rows.shape[1] + 1, rows.shape[2]))
    np.cumsum(rows, axis=1, out=c[:, 1:])
    return c[:, xs + wx] - c[:, xs]                            # [ny, nx, K]


def _lmse_all(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, window: int, stride: int,
              eps: float, alignments: Sequence[str] = ALIGNMENTS) -> dict[str, float]:
    h, w, c = gt.shape
    ys, wy = _window_starts(h, window, stride)
    xs, wx = _window_starts(w, window, stride)
    m = mask[..., None]
    g, p = np.where(m, gt, 0.0), np.where(m, pred, 0.0)  # products then carry one mask factor
    sums = _window_sums(np.concatenate([g * g, g * p, p * p], axis=-1), ys, wy, xs, wx)
    s_gg, s_gp, s_pp = sums[..., :c], sums[..., c:2 * c], sums[..., 2 * c:]
    total = s_gg.sum()
    out = {}
    for al in alignments:
        if al == "none":
            a = np.ones_like(s_gp)
        elif al == "per_channel":
            a = _ls_scale(s_gp, s_pp, eps)
        elif al == "scalar":
            a = _ls_scale(s_gp.sum(-1, keepdims=True), s_pp.sum(-1, keepdims=True), eps)
        else:
            raise ValueError(f"unknown alignment {al!r}; choose from {ALIGNMENTS}")
        # expanded form of sum(m*(gt - a*pred)^2); clipped because rounding can go a hair below 0
        sse = np.clip(s_gg - 2.0 * a * s_gp + a * a * s_pp, 0.0, None)
        out[al] = float(sse.sum() / total) if total > 0 else float("nan")
    return out


def lmse(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, alignment: str = "per_channel",
         window: int = 20, stride: int = 10, eps: float = 1e-5) -> float:
    """Local MSE of the MIT intrinsic images benchmark (Grosse et al. 2009, `local_error`).

    Windows of `window` x `window` pixels start at rows/cols 0, stride, 2*stride, ... while they fit
    inside the image (as in MIT's code, a strip at the right/bottom narrower than a stride may be
    left uncovered). In each window w the prediction gets its own least-squares scale over the mask
    pixels of that window, of the kind given by `alignment`:
      per_channel: s_{w,c} = sum(gt_c*pred_c)/sum(pred_c^2) (MIT; MIT's code is per grey image),
      scalar:      one s_w shared by the channels,
      none:        s = 1 (a windowed, normalised MSE without rescaling).
    A window whose masked prediction energy sum(pred^2) <= eps gets s = 0 (MIT's rule).
    LMSE = sum_w sum_c SSE_{w,c} / sum_w sum_c sum_{p in mask, w} gt_c^2.
    Images smaller than the window along an axis use one window spanning that whole axis, so a
    tiny image is one global least-squares fit instead of MIT's division by zero.
    NaN when the ground truth has no energy in any window (e.g. empty mask).
    """
    gt, pred, mask = _prep(gt, pred, mask)
    return _lmse_all(gt, pred, mask, window, stride, eps, (alignment,))[alignment]


def psnr(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR = 10*log10(data_range^2 / MSE) over mask pixels, by scikit-image's peak_signal_noise_ratio.

    Images are compared as given (align/encode them first). inf when MSE is 0; NaN for an empty mask.
    """
    from skimage.metrics import peak_signal_noise_ratio

    gt, pred, mask = _prep(gt, pred, mask)
    if not mask.any():
        return float("nan")
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(gt[mask], pred[mask], data_range=data_range))


def dssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float = 1.0, win_size: int = 7) -> float:
    """DSSIM = (1 - SSIM)/2 with SSIM from scikit-image's structural_similarity.

    scikit-image defaults (uniform win_size x win_size window, K1=0.01, K2=0.03, sample covariance),
    data_range as given (1 for albedo), channels treated separately then averaged. Pixels outside the
    mask are set to 0 in both images before filtering; the SSIM map is averaged over the mask eroded
    by the window radius r = (win_size-1)/2 (a square of side 2r+1: no window that counts reaches
    outside the mask) and at least r from the image border (scikit-image's own crop), so with a full
    mask this is exactly (1 - skimage's mssim)/2. The window shrinks to the largest odd size
    <= min(H, W) for tiny images; NaN if that is < 3 or no pixel is left after erosion.
    """
    from skimage.metrics import structural_similarity

    gt, pred, mask = _prep(gt, pred, mask)
    win = min(win_size, min(gt.shape[:2]))
    win -= 1 - win % 2
    if win < 3:
        return float("nan")
    m = mask[..., None]
    a = np.where(m, gt, 0.0).astype(np.float32)
    b = np.where(m, pred, 0.0).astype(np.float32)
    _, smap = structural_similarity(a, b, win_size=win, data_range=data_range, channel_axis=-1, full=True)
    pad = (win - 1) // 2
    inner = np.zeros_like(mask)
    inner[pad:mask.shape[0] - pad, pad:mask.shape[1] - pad] = True
    sel = eroded_mask(mask, pad) & inner
    if not sel.any():
        return float("nan")
    return float((1.0 - smap[sel].astype(np.float64).mean()) / 2.0)


def eroded_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Mask pixels whose (2r+1) x (2r+1) neighbourhood lies inside the mask (the image border does
    not erode: window metrics crop it themselves)."""
    import cv2

    mask = np.asarray(mask, bool)
    if radius <= 0:
        return mask.copy()
    # OpenCV's erosion pads with the maximum by default: the image border does not erode
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), k).astype(bool)


def shading_leakage_details(gt: np.ndarray, pred: np.ndarray, shading: np.ndarray, mask: np.ndarray,
                            eps: float = 1e-6, floor: float = LEAKAGE_FLOOR) -> dict[str, float]:
    """Least-squares slope b of log(max(pred, floor)/gt) = a_c + b log(shading) over mask pixels (linear values).

    Per channel c, x = log(shading_c) and y = log(max(pred_c, floor) / gt_c) are centred over the
    pixels where gt and shading exceed eps (so a per-channel scale of the prediction only moves a_c);
    b = sum_c sum(x y) / sum_c sum(x^2). 0 for the ground truth; 1 for pred = gt * shading (the
    image without its non-diffuse residual); -1 for pred = gt / shading (over-corrected). The floor
    (default: the linear value of the 8-bit sRGB code 1) keeps the fit continuous where a prediction
    goes black, which is where lighting leaked most (a decoded 8-bit 0 is exactly 0). A grey shading
    passed as [H, W] or [H, W, 1] is used for every channel.

    Returns slope (NaN when the shading does not vary over the usable values), abs, n_floored (mask
    pixel-channel values of the prediction raised to the floor), n_unused (mask values left out because
    gt or shading <= eps) and n_used.
    """
    gt, pred, mask = _prep(gt, pred, mask)
    sh = np.asarray(shading, dtype=np.float64)
    if sh.ndim == 2:
        sh = sh[..., None]
    if sh.shape[:2] != mask.shape:
        raise ValueError(f"shading {sh.shape} does not match the mask {mask.shape}")
    sh = np.broadcast_to(sh, gt.shape)
    num = den = 0.0
    n_floored = n_unused = n_used = 0
    for c in range(gt.shape[-1]):
        ok = mask & (gt[..., c] > eps) & (sh[..., c] > eps)
        n_unused += int(mask.sum() - ok.sum())
        if ok.sum() < 2:
            n_unused += int(ok.sum())
            continue
        p = pred[..., c][ok]
        n_floored += int((p < floor).sum())
        n_used += int(ok.sum())
        x = np.log(sh[..., c][ok])
        y = np.log(np.maximum(p, floor) / gt[..., c][ok])
        x -= x.mean()
        y -= y.mean()
        num += float((x * y).sum())
        den += float((x * x).sum())
    slope = num / den if den > 1e-12 else float("nan")
    return {"slope": slope, "abs": abs(slope), "n_floored": n_floored, "n_unused": n_unused, "n_used": n_used}


def shading_leakage(gt: np.ndarray, pred: np.ndarray, shading: np.ndarray, mask: np.ndarray,
                    eps: float = 1e-6, floor: float = LEAKAGE_FLOOR) -> float:
    """The signed slope of `shading_leakage_details` (see there)."""
    return shading_leakage_details(gt, pred, shading, mask, eps, floor)["slope"]


def degenerate_prediction(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, rel_tol: float = 1e-3,
                          near_ratio: float = NEAR_CONSTANT_RATIO) -> str:
    """Why a prediction cannot be ranked by consistency ("" when it can): "zero" (no energy on the
    mask), "constant" (its relative spread std/rms over the mask is below rel_tol while the ground
    truth's is not) or "near-constant" (its relative spread is below near_ratio times the ground
    truth's: 0.5 plus or minus one 8-bit code on a textured object). Such outputs agree across lightings
    for no merit of theirs."""
    gt, pred, mask = _prep(gt, pred, mask)
    if not mask.any():
        return ""
    return _degenerate(gt[mask], pred[mask], rel_tol, near_ratio)


def relative_spread(a: np.ndarray) -> float:
    """Spatial spread of [N, C] values relative to their size: sqrt(mean over channels of the variance)
    / rms (0 for a zero or constant array); scale-free."""
    a = np.asarray(a, dtype=np.float64)
    rms = float(np.sqrt(np.mean(a * a)))
    return float(np.sqrt(np.mean(a.var(axis=0)))) / rms if rms > 0 else 0.0


def _degenerate(g: np.ndarray, p: np.ndarray, rel_tol: float = 1e-3, near_ratio: float = NEAR_CONSTANT_RATIO) -> str:
    """degenerate_prediction on the mask pixels g, p [N, C]."""
    if not np.any(np.abs(p) > 1e-12):
        return "zero"
    sp, sg = relative_spread(p), relative_spread(g)
    if sp < rel_tol and sg >= rel_tol:
        return "constant"
    if sg >= rel_tol and sp < near_ratio * sg:
        return "near-constant"
    return ""


# ---------------------------------------------------------------------------------------------
# LPIPS adapter (optional)

_BACKBONE_FILES = {  # torchvision checkpoints the lpips package loads through torch.hub
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


@dataclass(frozen=True)
class LpipsStatus:
    """Whether LPIPS can be computed here; `reason` says why not (empty when available)."""

    available: bool
    reason: str
    net: str = "alex"
    backbone_weights: str | None = None


def _torch_hub_dir() -> Path:
    # torch.hub.get_dir()'s rule, restated so that checking costs no torch import
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


def _find_spec(name: str):
    if name in sys.modules and sys.modules[name] is None:  # import blocked (also how tests disable it)
        return None
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def lpips_status(net: str = "alex") -> LpipsStatus:
    """Check, without importing torch, that `lpips` is installed and its weights are on disk.

    Needs the package, its linear-layer weights (shipped inside it, weights/v0.1/<net>.pth) and the
    torchvision backbone checkpoint in the torch hub cache ($TORCH_HOME/hub/checkpoints). Nothing is
    downloaded: when a piece is missing the LPIPS columns stay empty and `reason` says which.
    """
    if net not in _BACKBONE_FILES:
        return LpipsStatus(False, f"unknown LPIPS net {net!r}; choose from {sorted(_BACKBONE_FILES)}", net)
    spec = _find_spec("lpips")
    if spec is None:
        return LpipsStatus(False, "the `lpips` package is not installed (pip install lpips; it needs a "
                                  "torchvision that imports beside your torch)", net)
    if spec.origin:
        lin = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
        if not lin.is_file():
            return LpipsStatus(False, f"lpips linear-layer weights not found at {lin}", net)
    backbone = _torch_hub_dir() / "checkpoints" / _BACKBONE_FILES[net]
    if not backbone.is_file():
        return LpipsStatus(False, f"LPIPS backbone weights not on disk at {backbone} (no download is "
                                  "attempted; fetch them once with torchvision where a network is available)",
                           net, str(backbone))
    return LpipsStatus(True, "", net, str(backbone))


class LpipsScorer:
    """LPIPS on sRGB images in [0, 1] through the `lpips` package; build with `LpipsScorer.create`."""

    def __init__(self, model, status: LpipsStatus):
        self.model = model
        self.status = status

    @classmethod
    def create(cls, net: str = "alex") -> tuple["LpipsScorer | None", LpipsStatus]:
        """(scorer, status); scorer is None, with the reason in status, when LPIPS is unavailable."""
        status = lpips_status(net)
        if not status.available:
            return None, status
        try:
            import lpips  # imports torch and torchvision

            model = lpips.LPIPS(net=net, spatial=True, verbose=False).eval()
        except Exception as e:  # a broken torchvision, an unreadable checkpoint...
            return None, LpipsStatus(False, f"lpips failed to load: {type(e).__name__}: {e}", net,
                                     status.backbone_weights)
        return cls(model, status), status

    def __call__(self, gt_srgb: np.ndarray, pred_srgb: np.ndarray, mask: np.ndarray, erode: int = 3) -> float:
        """LPIPS map (inputs scaled to [-1, 1], outside-mask pixels 0 in both) averaged over the mask
        eroded by `erode` pixels (NaN when nothing is left)."""
        import torch

        gt, pred, mask = _prep(gt_srgb, pred_srgb, mask)
        if not mask.any():
            return float("nan")
        m = mask[..., None]

        def t(x: np.ndarray):
            x = np.where(m, np.clip(x, 0.0, 1.0), 0.0).astype(np.float32)
            return torch.from_numpy(x).permute(2, 0, 1)[None] * 2.0 - 1.0

        with torch.no_grad():
            d = self.model(t(gt), t(pred))  # [1, 1, H, W] with spatial=True
        dmap = d[0, 0].cpu().numpy().astype(np.float64)
        sel = eroded_mask(mask, erode)
        return float(dmap[sel].mean()) if sel.any() else float("nan")


# ---------------------------------------------------------------------------------------------
# one prediction, all columns


def score_pair(gt_linear: np.ndarray, pred_linear: np.ndarray, mask: np.ndarray,
               config: MetricConfig = MetricConfig(), lpips: LpipsScorer | None = None,
               shading: np.ndarray | None = None) -> dict[str, float]:
    """Every metric column (see module docstring) for one linear ground truth / prediction pair.

    Same values as calling mse / lmse / psnr / dssim per column (tests check this), computed with
    shared intermediates. The LPIPS columns are NaN (written empty) when `lpips` is None, the shading
    leakage when `shading` (the render's linear diffuse shading) is None. Also returns the fitted
    linear scales (scale_scalar, scale_per_channel_r/g/b), the leakage fit's counts
    (LEAKAGE_COUNT_COLUMNS) and `degenerate` ("", "zero", "constant" or "near-constant").
    """
    from skimage.metrics import peak_signal_noise_ratio

    from render.imageio import linear_to_srgb

    gt, pred, mask = _prep(gt_linear, pred_linear, mask)
    if gt.shape[-1] != 3:
        raise ValueError(f"expected 3 colour channels, got {gt.shape[-1]}")
    if not mask.any():
        raise ValueError("the mask has no valid pixel")
    g, p = gt[mask], pred[mask]                                   # [N, 3] linear
    gp, pp = (g * p).sum(0), (p * p).sum(0)
    scales = {"none": np.ones(3), "scalar": np.full(3, float(_ls_scale(gp.sum(), pp.sum()))),
              "per_channel": _ls_scale(gp, pp)}
    gt_srgb = linear_to_srgb(gt).astype(np.float64)
    g_srgb = gt_srgb[mask]
    lm = _lmse_all(gt, pred, mask, config.lmse_window, config.lmse_stride, config.lmse_eps)
    out: dict[str, float] = {}
    for a in ALIGNMENTS:
        s = scales[a]
        d = g - p * s
        out[f"mse_linear_{a}"] = float(np.mean(d * d))
        p_srgb = linear_to_srgb(pred * s).astype(np.float64)
        ds = g_srgb - p_srgb[mask]
        out[f"mse_srgb_{a}"] = float(np.mean(ds * ds))
        out[f"lmse_linear_{a}"] = lm[a]
        with np.errstate(divide="ignore"):
            out[f"psnr_srgb_{a}"] = float(peak_signal_noise_ratio(g_srgb, p_srgb[mask], data_range=config.data_range))
        out[f"dssim_srgb_{a}"] = dssim(gt_srgb, p_srgb, mask, config.data_range, config.ssim_win_size)
        out[f"lpips_srgb_{a}"] = lpips(gt_srgb, p_srgb, mask) if lpips is not None else float("nan")
    res = {k: out[k] for k in metric_columns()}
    if shading is not None:
        leak = shading_leakage_details(gt, pred, shading, mask)
        res["shading_leakage_linear"], res["shading_leakage_abs_linear"] = leak["slope"], leak["abs"]
        res["shading_leakage_n_floored"], res["shading_leakage_n_unused"] = leak["n_floored"], leak["n_unused"]
    else:
        res.update({"shading_leakage_linear": float("nan"), "shading_leakage_abs_linear": float("nan"),
                    "shading_leakage_n_floored": float("nan"), "shading_leakage_n_unused": float("nan")})
    res["degenerate"] = _degenerate(g, p)
    res["scale_scalar"] = float(scales["scalar"][0])
    for i, ch in enumerate("rgb"):
        res[f"scale_per_channel_{ch}"] = float(scales["per_channel"][i])
    return res


# ---------------------------------------------------------------------------------------------
# illumination invariance


def _pair_disagreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Both invariance columns of one pair of predictions a, b [N, C] (pixels valid in both), from
    per-channel sums: SSE(a <- b) = sum(a^2) - 2 s sum(ab) + s^2 sum(b^2) with s fitted as fit_scales
    does (b onto a), then symmetrised. Equal to the direct formulas (tests check this)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    aa, bb, ab = (a * a).sum(0), (b * b).sum(0), (a * b).sum(0)
    n = a.size
    out = {}
    for al in ALIGNMENTS:
        def sse(xx, yy, xy):   # fit y onto x
            if al == "none":
                sc = np.ones_like(xy)
            elif al == "scalar":
                sc = np.full_like(xy, float(_ls_scale(xy.sum(), yy.sum())))
            else:
                sc = _ls_scale(xy, yy)
            return float(np.clip(xx - 2 * sc * xy + sc * sc * yy, 0.0, None).sum())
        s_ab, s_ba = sse(aa, bb, ab), sse(bb, aa, ab)
        out[f"inv_mse_linear_{al}"] = 0.5 * (s_ab + s_ba) / n
        na, nb = float(aa.sum()), float(bb.sum())
        out[f"inv_nmse_linear_{al}"] = (0.5 * (s_ab / na + s_ba / nb)) if na > 0 and nb > 0 else float("nan")
    return out


def invariance(preds: Sequence[np.ndarray], masks: Sequence[np.ndarray],
               degenerate: Sequence[bool] | None = None) -> dict[str, float]:
    """Disagreement between predictions of one scene under different lightings (linear values).

    For each unordered pair (i, j) with M = mask_i & mask_j:
      inv_mse:  d(i<-j) = mean over M and channels of (pred_i - s*pred_j)^2 (scale-dependent, legacy);
      inv_nmse: d(i<-j) = sum over M of (pred_i - s*pred_j)^2 / sum over M of pred_i^2 (scale-free:
                the same value for c*pred_i, c*pred_j);
    s = fit_scales(pred_i, pred_j, M, a); pair value = (d(i<-j) + d(j<-i)) / 2; column = mean over
    pairs. Ground truth albedo is identical across lightings, so it scores 0. Pairs involving a
    prediction flagged in `degenerate` are left out (n_degenerate counts the flagged predictions):
    a constant output agrees with itself for no merit. NaN with fewer than two usable predictions.
    Also returns n_lightings, n_pairs and n_degenerate.
    """
    n = len(preds)
    if n != len(masks):
        raise ValueError(f"{n} predictions but {len(masks)} masks")
    bad = list(degenerate) if degenerate is not None else [False] * n
    vals: dict[str, list[float]] = {c: [] for c in INVARIANCE_COLUMNS}
    for i in range(n):
        for j in range(i + 1, n):
            if bad[i] or bad[j]:
                continue
            m = np.asarray(masks[i], bool) & np.asarray(masks[j], bool)
            if not m.any():
                continue
            for c, v in _pair_disagreement(np.asarray(preds[i])[m], np.asarray(preds[j])[m]).items():
                vals[c].append(v)
    out: dict[str, float] = {c: (float(np.nanmean(v)) if v and np.isfinite(v).any() else float("nan"))
                             for c, v in vals.items()}
    out["n_lightings"] = n
    out["n_pairs"] = len(vals[INVARIANCE_COLUMNS[0]])
    out["n_degenerate"] = int(sum(bool(b) for b in bad))
    return out
