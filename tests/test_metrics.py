"""Metrics against hand-computed values and scikit-image; LPIPS both branches."""
from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from evaluate import metrics as M
from render.imageio import linear_to_srgb


def _rand(seed=0, h=37, w=53):
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.02, 1.0, (h, w, 3))
    p = np.clip(g * rng.uniform(0.6, 1.4, (h, w, 3)) + rng.normal(0, 0.05, (h, w, 3)), 0, None)
    mask = rng.random((h, w)) > 0.3
    return g, p, mask


# ---------------------------------------------------------------------------------------------
# alignments and MSE


def test_si_mse_zero_for_scaled_copies():
    g, _, mask = _rand(1)
    per_ch = g * np.array([0.3, 1.7, 0.9])
    assert M.mse(g, per_ch, mask, "per_channel") == pytest.approx(0.0, abs=1e-14)
    assert M.mse(g, per_ch, mask, "scalar") > 1e-3          # one scalar cannot undo three
    assert M.mse(g, 2.5 * g, mask, "scalar") == pytest.approx(0.0, abs=1e-14)
    assert M.mse(g, 2.5 * g, mask, "none") > 0.1
    assert M.lmse(g, per_ch, mask, "per_channel") == pytest.approx(0.0, abs=1e-12)
    assert M.lmse(g, 2.5 * g, mask, "scalar") == pytest.approx(0.0, abs=1e-12)


def test_mse_matches_direct_numpy_formula():
    g, p, mask = _rand(2)
    gv, pv = g[mask], p[mask]                                # [N, 3]
    s_scalar = np.sum(gv * pv) / np.sum(pv ** 2)
    s_chan = np.array([np.sum(gv[:, c] * pv[:, c]) / np.sum(pv[:, c] ** 2) for c in range(3)])
    direct = {
        "none": np.mean((gv - pv) ** 2),
        "scalar": np.mean((gv - s_scalar * pv) ** 2),
        "per_channel": np.mean((gv - pv * s_chan) ** 2),
    }
    for a, want in direct.items():
        assert M.mse(g, p, mask, a) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(M.fit_scales(g, p, mask, "per_channel"), s_chan, rtol=1e-12)
    np.testing.assert_allclose(M.fit_scales(g, p, mask, "scalar"), [s_scalar] * 3, rtol=1e-12)
    # the least-squares scale is optimal: nudging it only makes MSE worse
    for eps in (-1e-3, 1e-3):
        assert np.mean((gv - (s_scalar + eps) * pv) ** 2) > direct["scalar"]


def test_zero_prediction_gets_zero_scale():
    g, _, mask = _rand(3)
    z = np.zeros_like(g)
    assert M.mse(g, z, mask, "scalar") == pytest.approx(np.mean(g[mask] ** 2))


# ---------------------------------------------------------------------------------------------
# LMSE


def test_lmse_worked_example():
    # 20 x 30 image -> exactly two 20x20 windows at columns 0 and 10 (stride 10).
    # gt = 1 everywhere; pred = 1 on cols 0-9, 2 on cols 10-19, 4 on cols 20-29 (all channels).
    g = np.ones((20, 30, 3))
    p = np.ones((20, 30, 3))
    p[:, 10:20] = 2.0
    p[:, 20:] = 4.0
    mask = np.ones((20, 30), bool)
    # window 0 (cols 0-19): s = (200*1 + 200*2)/(200*1 + 200*4) = 0.6; SSE = 200*0.4^2 + 200*0.2^2 = 40
    # window 1 (cols 10-29): s = (200*2 + 200*4)/(200*4 + 200*16) = 0.3; SSE = 200*0.4^2 + 200*0.2^2 = 40
    # per channel: SSE 80 over gt energy 400 + 400 -> 0.1 (the same for 3 equal channels)
    assert M.lmse(g, p, mask, "per_channel") == pytest.approx(0.1, rel=1e-12)
    assert M.lmse(g, p, mask, "scalar") == pytest.approx(0.1, rel=1e-12)
    # no scaling: window 0 SSE = 200*0 + 200*1 = 200; window 1 = 200*1 + 200*9 = 2000 -> 2200/800
    assert M.lmse(g, p, mask, "none") == pytest.approx(2.75, rel=1e-12)
    # the overlapping columns 10-19 count in both windows: a global fit would give something else
    assert M.mse(g, p, mask, "per_channel") != pytest.approx(0.1)


def test_lmse_per_channel_vs_scalar_windows():
    # channel G is twice channel R in the prediction: per-channel windows absorb it, scalar ones cannot
    g = np.ones((20, 20, 3))
    p = np.ones((20, 20, 3))
    p[..., 1] = 2.0
    mask = np.ones((20, 20), bool)
    assert M.lmse(g, p, mask, "per_channel") == pytest.approx(0.0, abs=1e-14)
    # one window, scalar s = (400*(1+2+1))/(400*(1+4+1)) = 2/3: SSE/400 = (1/3)^2 + (1/3)^2 + (1/3)^2
    assert M.lmse(g, p, mask, "scalar") == pytest.approx(3 * (1 / 3) ** 2 / 3, rel=1e-12)


def _mit_local_error(correct, estimate, mask, window=20, shift=10):
    """MIT's local_error/ssq_error loop (grey images), restated."""
    M_, N_ = correct.shape[:2]
    ssq = total = 0.0
    for i in range(0, M_ - window + 1, shift):
        for j in range(0, N_ - window + 1, shift):
            c = correct[i:i + window, j:j + window]
            e = estimate[i:i + window, j:j + window]
            m = mask[i:i + window, j:j + window]
            alpha = np.sum(c * e * m) / np.sum(e ** 2 * m) if np.sum(e ** 2 * m) > 1e-5 else 0.0
            ssq += np.sum(m * (c - alpha * e) ** 2)
            total += np.sum(m * c ** 2)
    return ssq, total


def test_lmse_matches_mit_loop_per_channel():
    g, p, mask = _rand(4, 57, 66)
    mask[:25, :25] = False   # some windows entirely masked out
    ssq = total = 0.0
    for c in range(3):
        s, t = _mit_local_error(g[..., c], p[..., c], mask)
        ssq, total = ssq + s, total + t
    assert M.lmse(g, p, mask, "per_channel") == pytest.approx(ssq / total, rel=1e-10)


def test_lmse_image_smaller_than_window_is_one_global_fit():
    g, p, mask = _rand(5, 8, 12)
    gv, pv = g[mask], p[mask]
    s = (gv * pv).sum(0) / (pv * pv).sum(0)
    want = ((gv - pv * s) ** 2).sum() / (gv ** 2).sum()
    assert M.lmse(g, p, mask, "per_channel") == pytest.approx(want, rel=1e-10)
    # one axis small, the other long: windows of 8 rows x 20 cols at stride 10
    g2, p2, m2 = _rand(6, 8, 40)
    ssq = total = 0.0
    for j in (0, 10, 20):
        sl = (slice(None), slice(j, j + 20))
        gv, pv = g2[sl][m2[sl]], p2[sl][m2[sl]]
        s = (gv * pv).sum(0) / (pv * pv).sum(0)
        ssq += ((gv - pv * s) ** 2).sum()
        total += (gv ** 2).sum()
    assert M.lmse(g2, p2, m2, "per_channel") == pytest.approx(ssq / total, rel=1e-10)


def test_lmse_empty_mask_is_nan():
    g, p, _ = _rand(7)
    assert np.isnan(M.lmse(g, p, np.zeros(g.shape[:2], bool)))


# ---------------------------------------------------------------------------------------------
# masks, scikit-image agreement


def test_masked_pixels_ignored():
    g, p, mask = _rand(8, 48, 64)
    base = M.score_pair(g, p, mask)
    rng = np.random.default_rng(99)
    g2, p2 = g.copy(), p.copy()
    g2[~mask] = rng.uniform(-50, 50, (int((~mask).sum()), 3))
    p2[~mask] = rng.uniform(-50, 50, (int((~mask).sum()), 3))
    other = M.score_pair(g2, p2, mask)
    assert base.keys() == other.keys()
    assert other["degenerate"] == base["degenerate"] == ""
    for k in base:
        if k == "degenerate":
            continue
        if np.isnan(base[k]):
            assert np.isnan(other[k]), k
        else:
            assert other[k] == pytest.approx(base[k], rel=1e-9, abs=1e-12), k
    # and the mask does matter: a different mask changes the scores
    assert M.score_pair(g, p, np.ones_like(mask))["mse_linear_none"] != pytest.approx(base["mse_linear_none"])


def test_psnr_and_ssim_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g, p, _ = _rand(9, 40, 50)
    gs, ps = linear_to_srgb(g).astype(np.float64), linear_to_srgb(p).astype(np.float64)
    full = np.ones(g.shape[:2], bool)
    assert M.psnr(gs, ps, full) == pytest.approx(peak_signal_noise_ratio(gs, ps, data_range=1.0), rel=1e-10)
    ssim = structural_similarity(gs.astype(np.float32), ps.astype(np.float32), data_range=1.0, channel_axis=-1)
    assert M.dssim(gs, ps, full) == pytest.approx((1 - ssim) / 2, rel=1e-5)
    row = M.score_pair(g, p, full)
    assert row["psnr_srgb_none"] == pytest.approx(peak_signal_noise_ratio(gs, ps, data_range=1.0), rel=1e-6)
    assert row["dssim_srgb_none"] == pytest.approx((1 - ssim) / 2, rel=1e-5)
    # identical images: PSNR inf, DSSIM 0
    assert M.psnr(gs, gs, full) == np.inf
    assert M.dssim(gs, gs, full) == pytest.approx(0.0, abs=1e-7)


def _disc(h, w, r=0.4):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (r * min(h, w)) ** 2


def test_score_pair_equals_the_single_metric_functions():
    g, p, _ = _rand(10, 45, 47)
    mask = _disc(45, 47)      # a compact mask: the window metrics keep pixels after erosion
    row = M.score_pair(g, p, mask)
    gs = linear_to_srgb(g).astype(np.float64)
    for a in M.ALIGNMENTS:
        s, pa = M.align(g, p, mask, a)
        ps = linear_to_srgb(pa).astype(np.float64)
        assert row[f"mse_linear_{a}"] == pytest.approx(M.mse(g, p, mask, a), rel=1e-10)
        assert row[f"mse_srgb_{a}"] == pytest.approx(M.mse(gs, ps, mask), rel=1e-6)
        assert row[f"lmse_linear_{a}"] == pytest.approx(M.lmse(g, p, mask, a), rel=1e-10)
        assert row[f"psnr_srgb_{a}"] == pytest.approx(M.psnr(gs, ps, mask), rel=1e-6)
        assert row[f"dssim_srgb_{a}"] == pytest.approx(M.dssim(gs, ps, mask), rel=1e-6)
        assert np.isfinite(row[f"dssim_srgb_{a}"])
        assert np.isnan(row[f"lpips_srgb_{a}"])
    assert row["scale_scalar"] == pytest.approx(M.fit_scales(g, p, mask, "scalar")[0])


def test_column_names_state_space_and_alignment():
    cols = M.metric_columns()
    assert len(cols) == len(set(cols)) == 18
    for c in cols:
        metric, rest = c.split("_", 1)
        space, align = rest.split("_", 1)
        assert space in ("linear", "srgb") and align in M.ALIGNMENTS, c
        assert space in M.COLUMN_DOCS[c]
    assert "lpips_srgb_none" not in M.metric_columns(with_lpips=False)


# ---------------------------------------------------------------------------------------------
# illumination invariance


def test_invariance_zero_for_identical_and_scaled_predictions():
    g, p, mask = _rand(11)
    inv = M.invariance([g, g, g], [mask, mask, mask])
    assert inv["n_pairs"] == 3
    for c in M.INVARIANCE_COLUMNS:
        assert inv[c] == pytest.approx(0.0, abs=1e-15)
    inv = M.invariance([g, 1.8 * g], [mask, mask])
    assert inv["inv_mse_linear_scalar"] == pytest.approx(0.0, abs=1e-14)
    assert inv["inv_mse_linear_none"] > 0.05
    inv = M.invariance([g, p], [mask, mask])
    assert inv["inv_mse_linear_per_channel"] > 1e-4
    # only pixels valid in both predictions count
    g2 = g.copy()
    g2[~mask] = 7.0
    other = mask.copy()
    assert M.invariance([g, g2], [mask, other])["inv_mse_linear_none"] == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(M.invariance([g], [mask])["inv_mse_linear_none"])


# ---------------------------------------------------------------------------------------------
# LPIPS


def test_lpips_unavailable_when_import_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)   # `import lpips` now raises ImportError
    st = M.lpips_status()
    assert not st.available
    assert "lpips" in st.reason and "not installed" in st.reason
    scorer, st2 = M.LpipsScorer.create()
    assert scorer is None and st2.reason == st.reason
    g, p, mask = _rand(12)
    row = M.score_pair(g, p, mask, lpips=scorer)
    assert all(np.isnan(row[f"lpips_srgb_{a}"]) for a in M.ALIGNMENTS)


def test_lpips_unavailable_without_backbone_weights(tmp_path, monkeypatch):
    # an installed-looking lpips package, but no torchvision checkpoint in the torch hub cache
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported by the status check')\n")
    (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    importlib.invalidate_caches()
    st = M.lpips_status("alex")
    assert not st.available
    assert "backbone weights not on disk" in st.reason
    assert str(tmp_path / "empty-torch-home") in st.reason
    assert "lpips" not in sys.modules or sys.modules["lpips"] is None


def test_lpips_import_error_gives_reason(tmp_path, monkeypatch):
    # package and weights in place, but importing the package fails (e.g. a broken torchvision)
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('torchvision::nms does not exist')\n")
    (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"")
    ckpt = tmp_path / "torch-home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    importlib.invalidate_caches()
    assert M.lpips_status().available
    scorer, st = M.LpipsScorer.create()
    assert scorer is None and not st.available
    assert "lpips failed to load" in st.reason and "torchvision::nms" in st.reason


def test_lpips_available_branch():
    st = M.lpips_status()
    if not st.available:
        pytest.skip(f"LPIPS unavailable here: {st.reason}")
    scorer, st = M.LpipsScorer.create()
    assert scorer is not None, st.reason
    g, p, mask = _rand(13, 64, 64)
    gs, ps = linear_to_srgb(g), linear_to_srgb(p)
    assert scorer(gs, gs, mask) == pytest.approx(0.0, abs=1e-6)
    assert scorer(gs, ps, mask) > 1e-3
    row = M.score_pair(g, p, mask, lpips=scorer)
    assert all(np.isfinite(row[f"lpips_srgb_{a}"]) for a in M.ALIGNMENTS)


# ---------------------------------------------------------------------------------------------
# issue 10: scale-free invariance (3), eroded windows (6), shading leakage (11)


def _two_lightings(seed=12, h=40, w=48):
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.1, 0.9, (h, w, 3))
    p1 = g * rng.uniform(0.8, 1.2, (h, w, 3))
    p2 = g * rng.uniform(0.8, 1.2, (h, w, 3))
    return g, p1, p2, _disc(h, w)


def test_invariance_is_scale_free_and_flags_constant_predictions():
    g, p1, p2, mask = _two_lightings()
    base = M.invariance([p1, p2], [mask, mask])
    dark = M.invariance([0.01 * p1, 0.01 * p2], [mask, mask])
    for a in M.ALIGNMENTS:
        assert dark[f"inv_nmse_linear_{a}"] == pytest.approx(base[f"inv_nmse_linear_{a}"], rel=1e-9)
        # the earlier form shrinks with the square of the scale: dark outputs looked "more invariant"
        assert dark[f"inv_mse_linear_{a}"] == pytest.approx(1e-4 * base[f"inv_mse_linear_{a}"], rel=1e-9)
    const = np.full_like(g, 0.3)
    assert M.degenerate_prediction(g, const, mask) == "constant"
    assert M.degenerate_prediction(g, 0 * g, mask) == "zero"
    assert M.degenerate_prediction(g, p1, mask) == "" and M.degenerate_prediction(g, g, mask) == ""
    flagged = M.invariance([const, const * 1.01], [mask, mask], degenerate=[True, True])
    assert np.isnan(flagged["inv_nmse_linear_none"]) and flagged["n_degenerate"] == 2 and flagged["n_pairs"] == 0
    row = M.score_pair(g, const, mask)
    assert row["degenerate"] == "constant"


def test_window_metrics_average_over_the_eroded_mask():
    """Zero-filled windows at the mask edge must not count: DSSIM equals scikit-image's SSIM map of the
    unmasked images averaged over the mask eroded by the window radius, whatever lies outside the mask."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(13)
    h, w = 48, 56
    gt = rng.uniform(0, 1, (h, w, 3))                    # texture
    pred = np.full_like(gt, 0.5)                          # a grey prediction
    mask = _disc(h, w, 0.35)
    _, smap = structural_similarity(gt.astype(np.float32), pred.astype(np.float32), win_size=7, data_range=1.0,
                                    channel_axis=-1, full=True)
    inner = M.eroded_mask(mask, 3)
    assert 0 < inner.sum() < mask.sum()
    want = (1 - smap[inner].mean()) / 2
    assert M.dssim(gt, pred, mask) == pytest.approx(want, rel=1e-5)
    # what averaging over the whole mask gave, with both images zero-filled outside: the edge band looks alike
    z = np.where(mask[..., None], gt, 0).astype(np.float32), np.where(mask[..., None], pred, 0).astype(np.float32)
    _, zmap = structural_similarity(*z, win_size=7, data_range=1.0, channel_axis=-1, full=True)
    band = mask & ~inner
    assert (1 - zmap[band].mean()) / 2 < 0.8 * want          # flattering near the edge: why it is left out
    gt2, pred2 = gt.copy(), pred.copy()
    gt2[~mask], pred2[~mask] = 0.9, 0.1                   # anything outside the mask: no effect
    assert M.dssim(gt2, pred2, mask) == pytest.approx(M.dssim(gt, pred, mask), rel=1e-9)


def test_shading_leakage_zero_for_truth_one_for_the_image():
    rng = np.random.default_rng(14)
    h, w = 32, 40
    albedo = rng.uniform(0.1, 0.9, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w] / w
    shading = np.repeat((0.2 + 1.5 * xx * (1 - 0.4 * yy))[..., None], 3, -1)
    mask = _disc(h, w)
    assert M.shading_leakage(albedo, albedo, shading, mask) == pytest.approx(0.0, abs=1e-12)
    assert M.shading_leakage(albedo, 0.3 * albedo, shading, mask) == pytest.approx(0.0, abs=1e-12)   # scale-free
    assert M.shading_leakage(albedo, albedo * shading, shading, mask) == pytest.approx(1.0, rel=1e-9)
    assert M.shading_leakage(albedo, 2 * albedo * shading ** 0.5, shading, mask) == pytest.approx(0.5, rel=1e-9)
    assert np.isnan(M.shading_leakage(albedo, albedo * 2, np.ones_like(shading), mask))   # flat light: undefined
    row = M.score_pair(albedo, albedo * shading, mask, shading=shading)
    assert row["shading_leakage_linear"] == pytest.approx(1.0)
    assert np.isnan(M.score_pair(albedo, albedo, mask)["shading_leakage_linear"])          # no shading given


def test_invariance_from_sums_equals_the_direct_formulas():
    g, p1, p2, mask = _two_lightings(15)
    p2[:5] = 0.0                                   # a dark band: per-channel scales differ from scalar
    inv = M.invariance([p1, p2], [mask, mask])
    for a in M.ALIGNMENTS:
        direct = 0.5 * (M.mse(p1, p2, mask, a) + M.mse(p2, p1, mask, a))
        assert inv[f"inv_mse_linear_{a}"] == pytest.approx(direct, rel=1e-9)
        nm = []
        for x, y in ((p1, p2), (p2, p1)):
            s_, ya = M.align(x, y, mask, a)
            nm.append(((x[mask] - ya[mask]) ** 2).sum() / (x[mask] ** 2).sum())
        assert inv[f"inv_nmse_linear_{a}"] == pytest.approx(np.mean(nm), rel=1e-9)
