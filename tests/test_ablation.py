"""HeadAblation: token-mean ablation of chosen heads, and unit selection for the causal test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluate.link import random_matched_units, selectivity_per_pair, spearman_with_ci, top_head_units, unit_site
from probe.capture import HeadAblation, parse_head_unit


def _latents(pipe):
    return pipe(prompt="a red cube", height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
                generator=torch.Generator().manual_seed(1), output_type="latent").images


def test_parse_head_unit():
    assert parse_head_unit("s12/double.3.img/h07") == ("double.3.img", 7, "stream")
    assert parse_head_unit("single.5/h11") == ("single.5", 11, "img")
    assert parse_head_unit("single.5.txt/h01") == ("single.5", 1, "txt")
    with pytest.raises(ValueError):
        parse_head_unit("s00/double.0.img/c0000-0015")


def test_ablation_replaces_head_by_its_token_mean_and_restores(tiny_pipe):
    tr = tiny_pipe.transformer
    mod = tr.transformer_blocks[0].attn.to_out[0]
    seen = {}

    def grab(m, a):
        seen.setdefault("x", a[0].detach().clone())

    h = mod.register_forward_pre_hook(grab)
    base = _latents(tiny_pipe)
    original = seen.pop("x")
    h.remove()
    with HeadAblation(tr, ["double.0.img/h01", "single.1/h00"]) as abl:
        h = mod.register_forward_pre_hook(grab)
        ablated = _latents(tiny_pipe)
        h.remove()
        assert len(abl._handles) == 3
    d = tr.transformer_blocks[0].attn.head_dim
    x = seen["x"]
    head = slice(d, 2 * d)
    np.testing.assert_allclose(x[:, :, head], original[:, :, head].mean(1, keepdim=True).expand_as(x[:, :, head]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x[:, :, :d], original[:, :, :d])  # other heads untouched
    assert not torch.allclose(ablated, base)
    assert sum(len(m._forward_pre_hooks) for m in tr.modules()) == 0
    torch.testing.assert_close(_latents(tiny_pipe), base)  # hooks gone: the model is back


def test_ablation_rejects_unknown_units(tiny_pipe):
    with pytest.raises(KeyError):
        HeadAblation(tiny_pipe.transformer, ["double.9.img/h00"])
    with pytest.raises(KeyError):
        HeadAblation(tiny_pipe.transformer, ["double.0.img/h99"])


def test_top_and_matched_random_units():
    units = [f"s{s:02d}/{site}/h{h:02d}" for s in (0, 5) for site in ("double.0.img", "single.0") for h in range(8)]
    t = np.zeros(len(units))
    t[units.index("s05/double.0.img/h03")] = 9
    t[units.index("s00/double.0.img/h03")] = 8   # same head at another step: counted once
    t[units.index("s00/single.0/h06")] = -7
    top = top_head_units(units, t, 2)
    assert top == ["double.0.img/h03", "single.0/h06"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        rand = random_matched_units(top, units, rng)
        assert sorted(unit_site(u) for u in rand) == sorted(unit_site(u) for u in top)
        assert not set(rand) & set(top)
    with pytest.raises(ValueError, match="real-head"):
        top_head_units(["s00/double.0.img/c0000-0015"], [1.0], 1)


def test_selectivity_and_spearman():
    rng = np.random.default_rng(0)
    n, u = 30, 40
    strength = np.linspace(0, 3, n)
    a = rng.normal(size=(n, u))
    b = a - strength[:, None] * (np.arange(u) < 5)[None, :] + 0.1 * rng.normal(size=(n, u))
    t = np.zeros(u)
    t[:5] = 10
    sel = selectivity_per_pair(a, b, t, k=5)
    assert np.corrcoef(sel, strength)[0, 1] > 0.95
    c = spearman_with_ci(sel, strength + 0.01 * rng.normal(size=n), n_boot=300)
    assert c.rho > 0.9 and c.ci_low <= c.rho <= c.ci_high
    c0 = spearman_with_ci(rng.normal(size=200), rng.normal(size=200), n_boot=300)
    assert c0.ci_low < 0 < c0.ci_high
