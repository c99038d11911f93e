"""`python -m render --denoise passes`: OIDN on shading and residual, image recomposed, identity exact.

The OIDN library is the one the bpy wheel ships (render.oidn.find_library); tests that need it skip,
with the reason, only where it is genuinely absent. Renders run in subprocesses (bpy never shares the
pytest process with torch), tiny (48 px) on the CPU.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from render import oidn
from render.dataset import load_manifest, load_sample
from render.denoise import Denoiser
from render.groundtruth import GroundTruth, identity_error
from render.imageio import read_exr
from render.oidn import OidnError
from render.pipeline import NOISY_FILES, SAMPLE_JSON, RenderError, render_dataset, verify_sample

ROOT = Path(__file__).resolve().parent.parent
needs_oidn = pytest.mark.skipif(oidn.find_library() is None,
                                reason="no OIDN library (neither OIDN_LIBRARY nor the copy bpy ships)")
ROOM = ["--only", "cornell_box", "--lightings", "ceiling_light", "--resolution", "48", "--exposure", "none"]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "render", "--no-progress", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"python -m render {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def _smooth_gt(rng, h=64, w=64, noise=0.15) -> tuple[GroundTruth, np.ndarray]:
    """A synthetic sample: smooth shading + noise, a metal patch (no diffuse lobe) and a background strip."""
    yy, xx = np.mgrid[0:h, 0:w] / h
    clean = np.stack([0.4 + 0.5 * xx, 0.5 + 0.3 * yy, 0.6 + 0.2 * xx * yy], -1).astype(np.float32)
    albedo = np.full((h, w, 3), 0.5, np.float32)
    albedo[:, : w // 2] = [0.8, 0.2, 0.1]
    albedo[:, -4:] = 0.0                                  # background
    dcol = albedo.copy()
    dcol[10:20, 10:20] = 0.0                              # a metal: no diffuse lobe, shading exactly 0
    shading = np.where(albedo > 0, clean * (1 + noise * rng.standard_normal((h, w, 3))), 0).astype(np.float32)
    shading[10:20, 10:20] = 0.0
    residual = np.abs(0.05 + 0.02 * rng.standard_normal((h, w, 3))).astype(np.float32)
    normal = np.zeros((h, w, 3), np.float32)
    normal[..., 2] = 1.0
    image = (albedo.astype(np.float64) * shading + residual).astype(np.float32)
    gt = GroundTruth(image=image, albedo=albedo, shading=shading, residual=residual, normal=normal,
                     depth=np.ones((h, w), np.float32), mask=albedo[..., 0] > 0, object_index=np.ones((h, w), np.int32),
                     coverage=np.ones((h, w), np.float32),
                     identity_error=identity_error(image, albedo, shading, residual), diffuse_color=dcol)
    return gt, clean


# ------------------------------------------------------------------------------ no bpy needed
@needs_oidn
def test_denoiser_recomposes_exactly_and_keeps_known_zeros():
    gt, clean = _smooth_gt(np.random.default_rng(0))
    with Denoiser("passes") as dn:
        out = dn.apply(gt)
        rec = dn.record(noisy_identity_error=gt.identity_error)
    assert out.identity_error < 1e-6
    assert identity_error(out.image, out.albedo, out.shading, out.residual) == out.identity_error
    for k in ("albedo", "normal", "depth", "mask", "object_index", "coverage"):
        assert np.array_equal(getattr(out, k), getattr(gt, k)), k
    assert (out.shading[:, -4:] == 0).all()               # albedo 0 (background): shading 0 by definition
    assert (out.shading[10:20, 10:20] == 0).all()         # metal: stays exactly 0
    ok = (gt.albedo > 0).all(-1) & (gt.diffuse_color > 0).any(-1)
    ok[:, 28:36] = False                                   # away from the albedo edge
    err_noisy = np.sqrt(np.mean((gt.shading[ok] - clean[ok]) ** 2))
    err_dn = np.sqrt(np.mean((out.shading[ok] - clean[ok]) ** 2))
    assert err_dn < 0.4 * err_noisy, (err_dn, err_noisy)
    assert rec["mode"] == "passes" and rec["version"].startswith("2.") and rec["quality"] == "high"
    assert rec["filter"] == "RT" and rec["noisy_identity_error"] == gt.identity_error
    assert Denoiser("none").apply(gt) is gt and Denoiser("none").record() == {"mode": "none"}


def test_missing_library_gives_one_paragraph_naming_oidn_library(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(oidn, "find_library", lambda: None)
    with pytest.raises(OidnError, match="OIDN_LIBRARY"):
        Denoiser("passes")
    assert Denoiser("none").record() == {"mode": "none"}          # none never loads it
    out = tmp_path / "out"
    with pytest.raises(RenderError, match="OIDN_LIBRARY"):
        render_dataset(None, out, only=["cornell_box"], resolution=16, samples=1)
    assert not out.exists()                                        # nothing written
    from render.__main__ import main

    had_bpy = "bpy" in sys.modules
    assert main(["--only", "cornell_box", "--resolution", "16", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "OIDN_LIBRARY" in err and "--denoise none" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert had_bpy or "bpy" not in sys.modules                    # failed before Blender was started


def test_oidn_library_env_var_is_exclusive(monkeypatch, tmp_path):
    monkeypatch.setenv("OIDN_LIBRARY", str(tmp_path / "libOpenImageDenoise.so.2"))
    assert oidn.find_library() is None
    with pytest.raises(OidnError, match="OIDN_LIBRARY is set"):
        oidn.Oidn()
    (tmp_path / "libOpenImageDenoise.so.2").write_bytes(b"not a library")
    with pytest.raises(OidnError, match="cannot use the OIDN library"):
        oidn.Oidn()


def test_denoise_settings_are_part_of_the_resume_key():
    from render.settings import RenderSettings

    a = RenderSettings()
    assert a.denoise in ("none", "passes")
    assert not RenderSettings(denoise="none").matches(RenderSettings(denoise="passes"))
    assert not RenderSettings(denoise_quality="fast").matches(RenderSettings(denoise="passes"))
    # quality is irrelevant without denoising; samples made before denoising existed were not denoised
    assert RenderSettings(denoise="none", denoise_quality="fast").matches(RenderSettings(denoise="none"))
    old = {k: v for k, v in RenderSettings(denoise="none").pixel_dict().items() if k != "denoise"}
    assert RenderSettings.from_dict(old).matches(RenderSettings(denoise="none"))
    with pytest.raises(ValueError, match="denoise"):
        RenderSettings(denoise="combined").validate()


# --------------------------------------------------------------------------- tiny renders (bpy)
@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict:
    """cornell_box at 48 px: 8 spp denoised (noisy passes kept) and a 512-spp reference with another seed."""
    if oidn.find_library() is None:
        pytest.skip("no OIDN library (neither OIDN_LIBRARY nor the copy bpy ships)")
    base = tmp_path_factory.mktemp("denoise")
    run_cli(*ROOM, "--samples", "8", "--adaptive-threshold", "0", "--keep-noisy", "--out", str(base / "dn"))
    code = (f"from render.pipeline import render_dataset; from render.settings import RenderSettings;"
            f"render_dataset(None, {str(base / 'ref')!r}, only=['cornell_box'], lightings=['ceiling_light'], "
            f"settings=RenderSettings(width=48, height=48, samples=512, adaptive_threshold=0.0, exposure='none', "
            f"denoise='none', seed=1))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {"dn": base / "dn", "ref": base / "ref"}


SID = "cornell_box__ceiling_light"


def test_denoised_render_keeps_identity_and_records_it(room):
    s = load_sample(room["dn"], SID)
    assert s.meta["identity_error"] < 1e-4
    assert identity_error(s.image_linear, s.albedo_linear, s.shading, s.residual) < 1e-4
    d = s.meta["denoise"]
    assert d["mode"] == "passes" and d["library"] == "Intel Open Image Denoise" and d["version"].startswith("2.")
    assert d["quality"] == "high" and d["filter"] == "RT" and set(d["guides"]) == {"shading", "residual"}
    assert d["noisy_identity_error"] < 1e-4
    assert s.meta["render"]["denoise"] == "passes" and s.meta["render"]["denoise_quality"] == "high"
    m = load_manifest(room["dn"])
    assert m["denoise"]["mode"] == "passes" and m["denoise"]["version"] == d["version"] and "denoise" in m["definitions"]
    # the kept noisy passes: listed, checksummed, and themselves an exact decomposition of Cycles' image
    noisy = {k: read_exr(room["dn"] / s.meta["noisy"][k])[..., :3] for k in NOISY_FILES}
    assert all(s.meta["noisy"][k] in s.meta["files"] for k in NOISY_FILES)
    assert identity_error(noisy["image"], s.albedo_linear, noisy["shading"], noisy["residual"]) < 1e-4
    assert not np.array_equal(noisy["shading"], s.shading)
    assert verify_sample(room["dn"], SID)[1] == ""
    ref = load_sample(room["ref"], SID)
    assert ref.meta["denoise"] == {"mode": "none"} and "noisy" not in ref.meta


def test_denoised_shading_is_closer_to_a_high_spp_reference(room):
    s, ref = load_sample(room["dn"], SID), load_sample(room["ref"], SID)
    noisy = read_exr(room["dn"] / s.meta["noisy"]["shading"])[..., :3]
    # albedo is clean inside surfaces; at edges 8 and 512 samples anti-alias differently: compare elsewhere
    m = s.mask & ref.mask & (np.abs(s.albedo_linear - ref.albedo_linear).max(-1) < 1e-3)
    assert m.mean() > 0.5

    def rmse(x):
        return float(np.sqrt(np.mean((x[m] - ref.shading[m]) ** 2)))

    e_noisy, e_dn = rmse(noisy), rmse(s.shading)
    assert e_dn < 0.6 * e_noisy, (e_dn, e_noisy)
    # and it is not bought with a shift of the level: mean shading within 2 % of the reference's
    assert abs(s.shading[m].mean() / ref.shading[m].mean() - 1) < 0.02


def test_other_denoise_settings_or_oidn_version_are_not_reused(room, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(room["dn"], out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    common = [*ROOM, "--samples", "8", "--adaptive-threshold", "0", "--out", str(out)]
    proc = run_cli(*common, "--denoise", "none", check=False)
    assert proc.returncode == 2 and "denoise=passes (now none)" in proc.stderr
    proc = run_cli(*common, "--denoise-quality", "fast", check=False)
    assert proc.returncode == 2 and "denoise_quality=high (now fast)" in proc.stderr
    entry = json.loads((out / SID / SAMPLE_JSON).read_text())
    entry["denoise"]["version"] = "2.0.0"
    (out / SID / SAMPLE_JSON).write_text(json.dumps(entry))
    proc = run_cli(*common, check=False)
    assert proc.returncode == 2 and "OIDN 2.0.0 (now 2." in proc.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != SAMPLE_JSON} == \
        {p: b for p, b in before.items() if p.name != SAMPLE_JSON}
