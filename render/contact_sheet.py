"""A contact sheet of a render folder: image / albedo / shading / residual per sample, with ids. No bpy.

    from render.contact_sheet import contact_sheet
    pages = contact_sheet("runs/render")          # runs/render/contact_sheet.png (+ _p2, _p3 ... for big sets)
    python -m render --contact-sheet --out runs/render

Panels, all 8-bit sRGB: the image as `image_srgb.png` shows it; the albedo as `albedo_srgb.png`;
shading tone-mapped as s / (1 + s) per channel (1 -> 0.5, so it never clips; the page footer says so); the
residual (non-diffuse light: highlights, reflections, visible sky) encoded like the image. Reading
order: samples sorted by id, `per_row` samples side by side, `rows` rows per page.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["contact_sheet", "SHEET", "PANELS"]

SHEET = "contact_sheet.png"
PANELS = ("image", "albedo", "shading", "residual")
_BG = 0.12           # page background (sRGB grey)
_PAD = 4


def _panel_arrays(root: Path, entry: dict) -> list[np.ndarray | None]:
    """The four panels; None for a field the dataset does not have (listed under the entry's `missing`)."""
    from render.dataset import _exr, read_albedo_srgb
    from render.imageio import linear_to_srgb, read_png_srgb, shading_display_srgb

    image = read_png_srgb(root / entry["image_srgb"])
    albedo = read_albedo_srgb(root, entry["id"], {"samples": [entry]})
    missing = entry.get("missing") or {}
    shading = None if "shading" in missing else _exr(root / entry["shading"], 3)
    residual = None if "residual" in missing else _exr(root / entry["residual"], 3)
    return [image, albedo, None if shading is None else shading_display_srgb(shading),
            None if residual is None else linear_to_srgb(residual)]


def _thumb(a: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = a.shape[:2]
    s = size / max(h, w)
    out = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    canvas = np.full((size, size, 3), _BG, np.float32)
    y0, x0 = (size - out.shape[0]) // 2, (size - out.shape[1]) // 2
    canvas[y0:y0 + out.shape[0], x0:x0 + out.shape[1]] = out
    return canvas


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int, scale: float) -> None:
    """White text with its baseline at y, shortened with '...' to fit `width` pixels (canvas: float32, C order)."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    while text and cv2.getTextSize(text, font, scale, 1)[0][0] > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    cv2.putText(canvas, text, (x, y), font, scale, (0.95, 0.95, 0.95), 1, cv2.LINE_AA)


def contact_sheet(root: str | os.PathLike, out: str | os.PathLike | None = None, ids: Sequence[str] | None = None,
                  thumb: int = 128, per_row: int = 2, rows: int = 12) -> list[Path]:
    """Write the contact sheet(s) of render folder `root` (default into `root`); return the page paths.

    Page 1 is `contact_sheet.png`, further pages `contact_sheet_p2.png`, ...; `ids` picks samples (default
    all, sorted). Raises FileNotFoundError / ValueError naming the folder or file that is wrong.
    """
    from render.dataset import load_manifest
    from render.imageio import write_png_encoded

    if thumb < 16 or per_row < 1 or rows < 1:
        raise ValueError(f"contact sheet: thumb >= 16, per_row >= 1 and rows >= 1 (got {thumb}, {per_row}, {rows})")
    root = Path(root)
    manifest = load_manifest(root)
    entries = sorted(manifest["samples"], key=lambda e: e["id"])
    if ids is not None:
        wanted = set(ids)
        missing = sorted(wanted - {e["id"] for e in entries})
        if missing:
            raise ValueError(f"{root}: no sample(s) {missing[:5]} in manifest.json")
        entries = [e for e in entries if e["id"] in wanted]
    if not entries:
        raise ValueError(f"{root}: manifest.json lists no samples: nothing to put on a contact sheet")
    out_dir = Path(out) if out is not None else root
    label_h = max(12, thumb // 8)
    head_h = label_h + 6
    block_w = len(PANELS) * (thumb + _PAD) + 3 * _PAD
    cell_h = label_h + thumb + 2 * _PAD
    per_page = per_row * rows
    n_pages = math.ceil(len(entries) / per_page)
    paths = []
    scale = label_h / 30.0
    for page in range(n_pages):
        chunk = entries[page * per_page:(page + 1) * per_page]
        n_rows = math.ceil(len(chunk) / per_row)
        canvas = np.full((head_h + n_rows * cell_h + head_h, per_row * block_w, 3), _BG, np.float32)
        _text(canvas, f"{root.name}  page {page + 1}/{n_pages}: 8-bit sRGB; shading shown as s/(1+s); residual = "
              f"non-diffuse light", 2 * _PAD, canvas.shape[0] - 6, canvas.shape[1] - 4 * _PAD, scale * 0.8)
        for c in range(min(per_row, len(chunk))):
            for j, name in enumerate(PANELS):
                _text(canvas, name, c * block_w + 2 * _PAD + j * (thumb + _PAD), label_h, thumb, scale)
        for i, e in enumerate(chunk):
            r, c = divmod(i, per_row)
            x0, y0 = c * block_w + 2 * _PAD, head_h + r * cell_h
            _text(canvas, e["id"], x0, y0 + label_h - 2, block_w - 3 * _PAD, scale)
            for j, a in enumerate(_panel_arrays(root, e)):
                x = x0 + j * (thumb + _PAD)
                if a is None:        # not in the dataset (an import such as render.mit): said, never drawn
                    _text(canvas, "absent", x + _PAD, y0 + label_h + _PAD + thumb // 2, thumb - 2 * _PAD, scale)
                    continue
                canvas[y0 + label_h + _PAD: y0 + label_h + _PAD + thumb, x:x + thumb] = _thumb(np.clip(a, 0, 1), thumb)
        name = SHEET if page == 0 else f"contact_sheet_p{page + 1}.png"
        paths.append(write_png_encoded(out_dir / name, canvas))
    return paths
