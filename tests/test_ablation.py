"""probe.klein.ablation.HeadAblation: each unit's head is mean-ablated over exactly the token region the probe
measured (generated image, real text of the forward's own prompt, reference), nothing wider."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from probe.klein.ablation import HeadAblation
from probe.klein.regions import parse_unit
from probe.klein.capture_loop import real_text_lengths

PROMPT = "turn this photo into its albedo"
SIZE = 64


def _ref():
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def _edit(pipe, steps=1, guidance=4.0):
    return pipe(image=_ref(), prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=steps,
                guidance_scale=guidance, generator=torch.Generator().manual_seed(1), output_type="latent").images


def _layout(pipe):
    n_img = (SIZE // (pipe.vae_scale_factor * 2)) ** 2
    lc, lu = real_text_lengths(pipe, [PROMPT, ""])
    return n_img, lc, lu


def _grab(pipe, module, units=None, prepare=None):
    """Inputs of `module` at every forward of one edit (1 step, CFG: conditional then unconditional)."""
    seen = []
    abl = HeadAblation(pipe.transformer, units) if units else None
    if abl is not None:
        abl.__enter__()
        abl.prepare(**prepare)
    h = module.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    try:
        _edit(pipe)
    finally:
        h.remove()
        if abl is not None:
            abl.__exit__(None, None, None)
    return seen


def test_parse_unit_names_once():
    u = parse_unit("s12/double.3.img/h07")
    assert (u.step, u.group, u.head, u.site, u.region, u.head_name) == (12, "double.3.img", 7, "double.3.img", "img",
                                                                         "double.3.img/h07")
    assert parse_unit("single.5/h11").region == "img" and parse_unit("single.5.img/h11").head_name == "single.5/h11"
    assert parse_unit("single.5.txt/h01").region == "txt"
    assert parse_unit("double.2.ref/h03").site == "double.2.img" and parse_unit("double.2.ref/h03").region == "ref"
    with pytest.raises(ValueError, match="not heads"):
        parse_unit("s00/double.0.img/c0000-0015")


def test_img_unit_averages_generated_tokens_only(tiny_pipe):
    """double.0.img: generated-image tokens get their mean; reference tokens (same stream) are untouched."""
    n_img, lc, lu = _layout(tiny_pipe)
    mod = tiny_pipe.transformer.transformer_blocks[0].attn.to_out[0]
    d = tiny_pipe.transformer.transformer_blocks[0].attn.head_dim
    base = _grab(tiny_pipe, mod)
    abl = _grab(tiny_pipe, mod, ["s03/double.0.img/h01"],
                dict(txt_len=512, n_img=n_img, n_ref=n_img, real_txt=[lc, lu], forwards_per_step=2))
    x0, x = base[0], abl[0]                                    # first (conditional) forward: same input so far
    head = slice(d, 2 * d)
    img, ref = slice(0, n_img), slice(n_img, 2 * n_img)
    torch.testing.assert_close(x[:, img, head], x0[:, img, head].mean(1, keepdim=True).expand(-1, n_img, -1))
    torch.testing.assert_close(x[:, ref, head], x0[:, ref, head])          # reference tokens: not in the region
    torch.testing.assert_close(x[:, :, :d], x0[:, :, :d])                  # other heads untouched
    assert sum(len(m._forward_pre_hooks) for m in tiny_pipe.transformer.modules()) == 0


def test_txt_unit_uses_each_forwards_own_real_tokens(tiny_pipe):
    """double.0.txt under CFG: the conditional forward's mean is over its prompt's real tokens, the
    unconditional forward's over the (shorter) empty prompt's; padding positions keep their values."""
    n_img, lc, lu = _layout(tiny_pipe)
    assert lc != lu
    mod = tiny_pipe.transformer.transformer_blocks[0].attn.to_add_out
    d = tiny_pipe.transformer.transformer_blocks[0].attn.head_dim
    base = _grab(tiny_pipe, mod)
    abl = _grab(tiny_pipe, mod, ["double.0.txt/h00"],
                dict(txt_len=512, n_img=n_img, n_ref=n_img, real_txt=[lc, lu], forwards_per_step=2))
    assert len(base) == len(abl) == 2                          # one step: conditional, then unconditional
    for x0, x, n in ((base[0], abl[0], lc), (base[1], abl[1], lu)):
        torch.testing.assert_close(x[:, :n, :d], x0[:, :n, :d].mean(1, keepdim=True).expand(-1, n, -1))
        torch.testing.assert_close(x[:, n:, :d], x0[:, n:, :d])            # padding: never part of the region
        torch.testing.assert_close(x[:, :, d:], x0[:, :, d:])


def test_ref_unit_in_single_block(tiny_pipe):
    """single.1.ref: only the reference tokens after text and generated image are averaged."""
    n_img, lc, lu = _layout(tiny_pipe)
    tr = tiny_pipe.transformer
    mod = tr.single_transformer_blocks[1].attn.to_out
    d = tr.single_transformer_blocks[1].attn.head_dim
    base = _grab(tiny_pipe, tr.transformer_blocks[0].attn.to_out[0])   # unaffected upstream: sanity
    x0 = _grab(tiny_pipe, mod)[0]
    x = _grab(tiny_pipe, mod, ["single.1.ref/h02"],
              dict(txt_len=512, n_img=n_img, n_ref=n_img, real_txt=[lc, lu], forwards_per_step=2))[0]
    ref = slice(512 + n_img, 512 + 2 * n_img)
    head = slice(2 * d, 3 * d)
    torch.testing.assert_close(x[:, ref, head], x0[:, ref, head].mean(1, keepdim=True).expand(-1, n_img, -1))
    torch.testing.assert_close(x[:, : 512 + n_img], x0[:, : 512 + n_img])
    assert len(base) == 2


def test_layout_mismatch_and_missing_prepare_raise(tiny_pipe):
    n_img, lc, lu = _layout(tiny_pipe)
    with HeadAblation(tiny_pipe.transformer, ["double.0.img/h00"]) as abl:
        with pytest.raises(RuntimeError, match="prepare"):
            _edit(tiny_pipe)
        abl.prepare(txt_len=512, n_img=n_img + 8, n_ref=n_img, real_txt=[lc, lu], forwards_per_step=2)
        with pytest.raises(RuntimeError, match="predicts"):
            _edit(tiny_pipe)
    assert sum(len(m._forward_pre_hooks) for m in tiny_pipe.transformer.modules()) == 0
    with pytest.raises(KeyError):
        HeadAblation(tiny_pipe.transformer, ["double.9.img/h00"])
    with pytest.raises(KeyError):
        HeadAblation(tiny_pipe.transformer, ["double.0.img/h99"])
    with pytest.raises(ValueError, match="one entry per forward"):
        HeadAblation(tiny_pipe.transformer, ["double.0.img/h00"]).prepare(512, n_img, n_img, [lc], 2)


def test_ablation_changes_the_output_and_restores_the_model(tiny_pipe):
    n_img, lc, lu = _layout(tiny_pipe)
    base = _edit(tiny_pipe, steps=2)
    with HeadAblation(tiny_pipe.transformer, ["double.0.img/h01", "single.1/h00", "single.0.txt/h03"]) as abl:
        abl.prepare(txt_len=512, n_img=n_img, n_ref=n_img, real_txt=[lc, lu], forwards_per_step=2)
        ablated = _edit(tiny_pipe, steps=2)
        n_hooks = sum(len(m._forward_pre_hooks) for m in tiny_pipe.transformer.modules())
        assert n_hooks == 1 + 3 and set(abl.sites) == {"double.0.img", "single.1", "single.0"}
    assert not torch.allclose(ablated, base)
    torch.testing.assert_close(_edit(tiny_pipe, steps=2), base)
