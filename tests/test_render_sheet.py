"""`python -m render --contact-sheet`: pages of image / albedo / shading / residual per sample. No Blender."""
from __future__ import annotations

import numpy as np
import pytest

from fakes import write_synthetic_render_variants
from render.contact_sheet import PANELS, contact_sheet
from render.imageio import read_png_srgb
from test_render import hashes, run_cli


@pytest.fixture
def fake(tmp_path):
    return write_synthetic_render_variants(tmp_path / "data", scenes=("alpha", "beta"), variants=1)


def test_sheet_pages_layout_and_panels(fake, tmp_path):
    pages = contact_sheet(fake, thumb=40, per_row=2, rows=2)           # 8 samples, 4 per page
    assert [p.name for p in pages] == ["contact_sheet.png", "contact_sheet_p2.png"]
    img = read_png_srgb(pages[0])
    block_w = len(PANELS) * (40 + 4) + 12
    assert img.shape[1] == 2 * block_w and img.shape[0] > 2 * 40
    # the albedo panel of the first sample shows the sample's albedo (a flat, bright region), not page grey
    assert (np.abs(img - 0.12).max(-1) > 0.1).mean() > 0.2
    only = contact_sheet(fake, out=tmp_path / "sheet", ids=["beta__key"], thumb=32)
    assert len(only) == 1 and only[0].parent == tmp_path / "sheet"
    with pytest.raises(ValueError, match="no sample"):
        contact_sheet(fake, ids=["nope__key"])


def test_sheet_reads_renders_without_albedo_srgb(tmp_path):
    root = write_synthetic_render_variants(tmp_path / "old", variants=0, albedo_srgb=False)
    assert contact_sheet(root, thumb=24)[0].is_file()


def test_sheet_cli(fake):
    before = hashes(fake)
    proc = run_cli("--contact-sheet", "--out", str(fake), "--only", "alpha", "--sheet-size", "32")
    assert "contact_sheet.png (4 samples)" in proc.stderr and (fake / "contact_sheet.png").is_file()
    bad = run_cli("--contact-sheet", "--out", str(fake), "--sheet-layout", "two", check=False)
    assert bad.returncode == 2 and "--sheet-layout" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("--contact-sheet", "--out", str(fake / "nope"), check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert {k: v for k, v in hashes(fake).items() if "contact_sheet" not in k} == before
