"""HeadCapture against an independent float64 recomputation of every head's attention output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.klein.capture import HeadCapture, SliceCapture, head_sites, text_token_mask

PROMPTS = ["a matte red cube on a grey table, lit by a warm lamp", "albedo only: a red cube on a grey table"]
H = W = 64


def _rope(x, cos, sin):
    """Interleaved-pair rotary embedding, written out (x: [b, t, h, d])."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def _rms_norm(x, weight, eps):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


def _attend(q, k, v):
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)


def _lin(mod, x):
    return torch.nn.functional.linear(x, mod.weight.double(), None if mod.bias is None else mod.bias.double())


@torch.no_grad()
def _recompute(attn, kind, inputs, n_heads, d):
    """Head outputs [b, tokens, h, d] in float64 from the attention module's own weights and inputs."""
    hs = inputs["hidden_states"].double()
    cos, sin = (t.double() for t in inputs["image_rotary_emb"])
    norm = lambda m, x: _rms_norm(x, None if m.weight is None else m.weight.double(), m.eps)  # noqa: E731
    if kind == "double":
        ehs = inputs["encoder_hidden_states"].double()
        q, k, v = (_lin(m, hs).unflatten(-1, (n_heads, d)) for m in (attn.to_q, attn.to_k, attn.to_v))
        eq, ek, ev = (_lin(m, ehs).unflatten(-1, (n_heads, d)) for m in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        q = torch.cat([norm(attn.norm_added_q, eq), norm(attn.norm_q, q)], 1)
        k = torch.cat([norm(attn.norm_added_k, ek), norm(attn.norm_k, k)], 1)
        v = torch.cat([ev, v], 1)
        out = _attend(_rope(q, cos, sin), _rope(k, cos, sin), v)
        t = ehs.shape[1]
        return out[:, :t], out[:, t:]
    proj = _lin(attn.to_qkv_mlp_proj, hs)
    inner = n_heads * d
    q, k, v = (proj[..., i * inner:(i + 1) * inner].unflatten(-1, (n_heads, d)) for i in range(3))
    out = _attend(_rope(norm(attn.norm_q, q), cos, sin), _rope(norm(attn.norm_k, k), cos, sin), v)
    return out


def _record_attention_inputs(transformer):
    """Attention-module inputs of the first forward, keyed by block name."""
    seen, handles = {}, []
    for name, blocks in (("double", transformer.transformer_blocks), ("single", transformer.single_transformer_blocks)):
        for i, blk in enumerate(blocks):
            def hook(mod, args, kwargs, key=f"{name}.{i}"):
                if key not in seen:
                    seen[key] = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()
                                 if k in ("hidden_states", "encoder_hidden_states")}
                    seen[key]["image_rotary_emb"] = tuple(t.detach().clone() for t in kwargs["image_rotary_emb"])
            handles.append(blk.attn.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, handles


def _run(pipe, cap, prompts=PROMPTS, guidance=1.0, steps=1):
    g = [torch.Generator().manual_seed(7) for _ in prompts]
    pipe(prompt=list(prompts), height=H, width=W, num_inference_steps=steps, guidance_scale=guidance,
         generator=g, output_type="latent")


def _n_img(pipe):
    f = pipe.vae_scale_factor * 2
    return (H // f) * (W // f)


@pytest.mark.parametrize("reducer", ["rms", "mean_abs", "mean"])
def test_capture_equals_independent_recomputation(tiny_pipe, reducer):
    tr = tiny_pipe.transformer
    sites = head_sites(tr)
    mask = text_token_mask(tiny_pipe, PROMPTS)
    assert 0 < mask.sum(1).max() < mask.shape[1]  # padding exists, so excluding it matters
    seen, handles = _record_attention_inputs(tr)
    try:
        with HeadCapture(tr, sites, steps=[0], reducer=reducer, single_tokens="both") as cap:
            cap.set_batch(mask, _n_img(tiny_pipe))
            _run(tiny_pipe, cap)
            got = dict(zip(cap.units, cap.collect().T))
    finally:
        for h in handles:
            h.remove()

    @torch.no_grad()
    def red(x, m):  # x [b, t, h, d] float64, m [b, t] bool
        per = {"rms": x.pow(2).mean(-1), "mean_abs": x.abs().mean(-1), "mean": x.mean(-1)}[reducer]
        w = m.double() / m.double().sum(1, keepdim=True)
        r = torch.einsum("bth,bt->bh", per, w)
        return r.sqrt() if reducer == "rms" else r

    n_img = _n_img(tiny_pipe)
    checked = 0
    for site in sites:
        attn = tr.get_submodule(site.module.rsplit(".attn", 1)[0]).attn
        n_h, d = site.n_heads, site.head_dim
        if site.kind == "double_txt":
            continue  # computed together with the image stream below
        if site.kind == "double_img":
            txt, img = _recompute(attn, "double", seen[f"double.{site.block}"], n_h, d)
            exp = {f"double.{site.block}.img": red(img, torch.ones(img.shape[:2], dtype=torch.bool)),
                   f"double.{site.block}.txt": red(txt, mask)}
        else:
            out = _recompute(attn, "single", seen[f"single.{site.block}"], n_h, d)
            t = mask.shape[1]
            img = out[:, t:t + n_img]
            exp = {f"single.{site.block}.img": red(img, torch.ones(img.shape[:2], dtype=torch.bool)),
                   f"single.{site.block}.txt": red(out[:, :t], mask)}
        for group, val in exp.items():
            for h in range(n_h):
                np.testing.assert_allclose(got[f"s00/{group}/h{h:02d}"], val[:, h].numpy(), rtol=1e-5, atol=1e-6)
                checked += 1
    assert checked == sum(s.n_heads for s in sites) * 1 + sum(s.n_heads for s in sites if s.kind == "single")


def test_padding_is_excluded(tiny_pipe):
    """Text units must not move when the activations at padding positions are replaced by noise."""
    tr = tiny_pipe.transformer
    sites = [s for s in head_sites(tr) if s.kind in ("double_txt", "single")]
    mask = text_token_mask(tiny_pipe, PROMPTS)
    pad = ~mask

    def scramble(module, args):  # registered before the capture's hook, so the capture sees it
        x = args[0].clone()
        t = pad.shape[1]
        noise = 100 * torch.randn(x[:, :t].shape, generator=torch.Generator().manual_seed(0))
        x[:, :t][pad] = noise[pad].to(x.dtype)
        return (x,)

    vals = []
    for scrambled in (False, True):
        handles = [tr.get_submodule(s.module).register_forward_pre_hook(scramble) for s in sites] if scrambled else []
        try:
            with HeadCapture(tr, sites, steps=[0], single_tokens="txt") as cap:
                cap.set_batch(mask, _n_img(tiny_pipe))
                _run(tiny_pipe, cap)
                vals.append(cap.collect())
        finally:
            for h in handles:
                h.remove()
    # only the first site sees identical real-token inputs in both runs (noise then flows downstream)
    n_first = sites[0].n_heads
    np.testing.assert_allclose(vals[1][:, :n_first], vals[0][:, :n_first], rtol=1e-6)
    assert not np.allclose(vals[1][:, n_first:], vals[0][:, n_first:])  # the noise did reach the model


def test_hooks_removed_after_exit_and_error(tiny_pipe):
    tr = tiny_pipe.transformer
    count = lambda: sum(len(m._forward_pre_hooks) for m in tr.modules())  # noqa: E731
    before = count()
    with HeadCapture(tr, head_sites(tr), steps=[0]) as cap:
        assert count() == before + len(cap.sites) + 1
    assert count() == before
    with pytest.raises(RuntimeError, match="boom"):
        with HeadCapture(tr, head_sites(tr), steps=[0]):
            raise RuntimeError("boom")
    assert count() == before
    with pytest.raises(RuntimeError, match="set_batch"):
        with HeadCapture(tr, head_sites(tr), steps=[0]) as cap:
            _run(tiny_pipe, cap)  # forgot set_batch: a clear error, and hooks still removed
    assert count() == before


def test_cfg_captures_conditional_forward(tiny_pipe):
    """Under CFG the first forward of each step is the conditional one; at step 0 it equals the no-CFG forward."""
    tr = tiny_pipe.transformer
    sites = head_sites(tr)
    mask = text_token_mask(tiny_pipe, PROMPTS)
    out = {}
    for guidance, fps in ((1.0, 1), (4.0, 2)):
        with HeadCapture(tr, sites, steps=[0, 2], forwards_per_step=fps) as cap:
            cap.set_batch(mask, _n_img(tiny_pipe))
            _run(tiny_pipe, cap, guidance=guidance, steps=3)
            assert cap.forwards_seen == 3 * fps
            out[fps] = cap.collect()
    n = out[1].shape[1] // 2
    np.testing.assert_allclose(out[1][:, :n], out[2][:, :n], rtol=1e-5)
    assert not np.allclose(out[1][:, n:], out[2][:, n:])  # later steps differ: CFG changed the latents


def test_slice_capture_matches_card_definition(tiny_pipe):
    tr = tiny_pipe.transformer
    sites = head_sites(tr)
    raw, handles = {}, []
    for s in sites:
        if s.kind != "double_txt":
            handles.append(tr.get_submodule(s.module).register_forward_pre_hook(
                lambda m, a, key=s.name: [raw.setdefault(key, a[0].detach().double().clone()), None][1]))
    try:
        with SliceCapture(tr, sites, steps=[0], width=16) as cap:
            cap.set_batch(2)
            _run(tiny_pipe, cap)
            got = cap.collect()
    finally:
        for h in handles:
            h.remove()
    exp = np.concatenate([raw[s.name].unflatten(-1, (-1, 16)).pow(2).mean(dim=(1, 3)).sqrt().numpy()
                          for s in cap.sites], axis=1)
    assert got.shape == (2, len(cap.units)) and not any(".txt" in u for u in cap.units)
    np.testing.assert_allclose(got, exp, rtol=1e-5)


# ------------------------------------------------------------------ editing calls: reference-image tokens

REF_W, REF_H = 100, 75      # not the generated size (64 x 64); the pipeline crops it to multiples of 2 x vae_scale_factor


def _reference():
    from PIL import Image

    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (REF_H, REF_W, 3), dtype=np.uint8))


def _expected_ref_tokens(pipe):
    """The pipeline's rule, written out: crop each side down to a multiple of m = 2 x vae_scale_factor
    (16 px for klein, 8 px for the tiny model), one token per m x m patch."""
    m = 2 * pipe.vae_scale_factor
    return (REF_W // m) * (REF_H // m)


def _run_edit(pipe, ref, guidance=4.0, steps=1, prompts=PROMPTS):
    g = [torch.Generator().manual_seed(7) for _ in prompts]
    pipe(image=ref, prompt=list(prompts), height=H, width=W, num_inference_steps=steps, guidance_scale=guidance,
         generator=g, output_type="latent")


@pytest.mark.parametrize("reducer", ["rms", "mean_abs", "mean"])
def test_ref_units_equal_independent_recomputation(tiny_pipe, reducer):
    """Every head of every block, all three regions, during an editing call under CFG (conditional forward)."""
    from probe.klein.edit_capture import edit_layout

    tr = tiny_pipe.transformer
    sites = head_sites(tr)
    ref = _reference()
    mask = text_token_mask(tiny_pipe, PROMPTS)
    n_img, n_ref = _n_img(tiny_pipe), _expected_ref_tokens(tiny_pipe)
    assert n_ref != n_img
    assert edit_layout(tiny_pipe, ref, height=H, width=W) == cap_layout(mask, n_img, n_ref)
    seen, handles = _record_attention_inputs(tr)
    try:
        with HeadCapture(tr, sites, steps=[0], forwards_per_step=2, reducer=reducer, single_tokens="both",
                         ref_tokens=True) as cap:
            cap.set_batch(mask, n_img, n_ref)
            _run_edit(tiny_pipe, ref)
            assert cap.forwards_seen == 2
            got = dict(zip(cap.units, cap.collect().T))
    finally:
        for h in handles:
            h.remove()

    @torch.no_grad()
    def red(x, m=None):  # x [b, t, h, d] float64; m [b, t] bool (None: every token)
        per = {"rms": x.pow(2).mean(-1), "mean_abs": x.abs().mean(-1), "mean": x.mean(-1)}[reducer]
        m = torch.ones(x.shape[:2], dtype=torch.bool) if m is None else m
        r = torch.einsum("bth,bt->bh", per, m.double() / m.double().sum(1, keepdim=True))
        return r.sqrt() if reducer == "rms" else r

    t = mask.shape[1]
    exp = {}
    for site in sites:
        attn = tr.get_submodule(site.module.rsplit(".attn", 1)[0]).attn
        n_h, d, i = site.n_heads, site.head_dim, site.block
        if site.kind == "double_img":
            txt, stream = _recompute(attn, "double", seen[f"double.{i}"], n_h, d)
            assert stream.shape[1] == n_img + n_ref   # the image stream is [generated | reference]
            exp.update({f"double.{i}.img": red(stream[:, :n_img]), f"double.{i}.ref": red(stream[:, n_img:]),
                        f"double.{i}.txt": red(txt, mask)})
        elif site.kind == "single":
            out = _recompute(attn, "single", seen[f"single.{i}"], n_h, d)
            assert out.shape[1] == t + n_img + n_ref   # [text (padded) | generated | reference]
            exp.update({f"single.{i}.img": red(out[:, t:t + n_img]), f"single.{i}.ref": red(out[:, t + n_img:]),
                        f"single.{i}.txt": red(out[:, :t], mask)})
    assert {u.split("/")[1] for u in got} == set(exp)
    for group, val in exp.items():
        for h in range(val.shape[1]):
            np.testing.assert_allclose(got[f"s00/{group}/h{h:02d}"], val[:, h].numpy(), rtol=1e-5, atol=1e-6)
    assert len(got) == sum(v.shape[1] for v in exp.values()) == len(cap.units)


def cap_layout(mask, n_img, n_ref):
    from probe.klein.regions import TokenLayout

    return TokenLayout(mask.shape[1], n_img, n_ref)


def test_spans_match_pipeline_sequence_layout(tiny_pipe):
    """The layout's spans are where the pipeline puts each region: generated tokens carry time
    coordinate 0 in the pipeline's own positional ids, reference tokens 10; counts follow the crop."""
    from probe.klein.edit_capture import edit_layout

    tr = tiny_pipe.transformer
    ref = _reference()
    calls = []
    handle = tr.register_forward_pre_hook(lambda m, a, kw: calls.append(
        {k: kw[k].detach().clone() for k in ("hidden_states", "encoder_hidden_states", "img_ids")}), with_kwargs=True)
    try:
        with HeadCapture(tr, head_sites(tr), steps=[0], forwards_per_step=2, ref_tokens=True) as cap:
            lay = edit_layout(tiny_pipe, ref, height=H, width=W)
            cap.set_batch(text_token_mask(tiny_pipe, PROMPTS), lay.n_img, lay.n_ref)
            _run_edit(tiny_pipe, ref)
            cap.collect()
    finally:
        handle.remove()
    assert cap.layout == lay and lay.n_ref == _expected_ref_tokens(tiny_pipe) and lay.n_img == _n_img(tiny_pipe)
    assert len(calls) == 2  # conditional and unconditional forward of step 0
    for kw in calls:
        ids = kw["img_ids"][0]
        assert kw["hidden_states"].shape[1] == lay.seq_len("double_img") == ids.shape[0]
        assert kw["encoder_hidden_states"].shape[1] == lay.txt_len
        assert (ids[lay.span("double_img", "img"), 0] == 0).all()
        assert (ids[lay.span("double_img", "ref"), 0] == 10).all()
        # the reference's own grid: (rows, cols) of the cropped reference
        ref_ids = ids[lay.span("double_img", "ref")]
        m = 2 * tiny_pipe.vae_scale_factor
        assert (int(ref_ids[:, 1].max()) + 1, int(ref_ids[:, 2].max()) + 1) == (REF_H // m, REF_W // m)
    # single blocks see [text | image stream]: the image-stream spans shifted by txt_len
    assert lay.span("single", "ref").start == lay.txt_len + lay.span("double_img", "ref").start
    # without height/width the pipeline generates at the cropped reference's size
    assert edit_layout(tiny_pipe, ref).n_img == lay.n_ref


def test_wrong_layout_is_caught(tiny_pipe):
    tr = tiny_pipe.transformer
    ref = _reference()
    mask = text_token_mask(tiny_pipe, PROMPTS)
    n_img, n_ref = _n_img(tiny_pipe), _expected_ref_tokens(tiny_pipe)
    with HeadCapture(tr, head_sites(tr), steps=[0], forwards_per_step=2) as cap:
        cap.set_batch(mask, n_img)   # forgot the reference tokens
        with pytest.raises(RuntimeError, match=r"predicts n_img \+ n_ref = 64"):
            _run_edit(tiny_pipe, ref)
        cap.set_batch(mask, n_img_tokens=n_ref, n_ref_tokens=n_img)   # same total, regions swapped: only the ids tell
        _run_edit(tiny_pipe, ref)
        with pytest.raises(RuntimeError, match="positional ids"):
            cap.collect()
        cap.set_batch(mask[:, :300], n_img, n_ref)   # text mask shorter than max_sequence_length
        with pytest.raises(RuntimeError, match="txt_len = 300"):
            _run_edit(tiny_pipe, ref)
        cap.set_batch(mask, n_img, n_ref)   # the right layout still works after the errors
        _run_edit(tiny_pipe, ref)
        assert np.isfinite(cap.collect()).all()
    with pytest.raises(ValueError, match="no reference image"):
        HeadCapture(tr, head_sites(tr), ref_tokens=True).set_batch(mask, n_img)


def test_site_hook_checks_its_own_token_count(tiny_pipe):
    """A hooked input whose token axis differs from the layout fails at that site, naming it."""
    tr = tiny_pipe.transformer
    site = head_sites(tr)[-1]
    cut = tr.get_submodule(site.module).register_forward_pre_hook(lambda m, a: (a[0][:, :-1],))
    try:
        with HeadCapture(tr, head_sites(tr), steps=[0]) as cap:
            cap.set_batch(text_token_mask(tiny_pipe, PROMPTS), _n_img(tiny_pipe))
            with pytest.raises((RuntimeError, ValueError), match=site.name):
                _run(tiny_pipe, cap)
    finally:
        cut.remove()


def test_slice_capture_during_editing_counts_every_token(tiny_pipe):
    from probe.klein.edit_capture import edit_layout

    tr = tiny_pipe.transformer
    ref = _reference()
    raw, handles = {}, []
    for s in head_sites(tr):
        if s.kind != "double_txt":
            handles.append(tr.get_submodule(s.module).register_forward_pre_hook(
                lambda m, a, key=s.name: [raw.setdefault(key, a[0].detach().double().clone()), None][1]))
    try:
        with SliceCapture(tr, head_sites(tr), steps=[0], forwards_per_step=2) as cap:
            lay = edit_layout(tiny_pipe, ref, height=H, width=W)
            cap.set_batch(2, lay)
            _run_edit(tiny_pipe, ref)
            got = cap.collect()
    finally:
        for h in handles:
            h.remove()
    assert raw["double.0.img"].shape[1] == lay.n_img + lay.n_ref
    assert raw["single.0"].shape[1] == lay.txt_len + lay.n_img + lay.n_ref
    exp = np.concatenate([raw[s.name].unflatten(-1, (-1, 16)).pow(2).mean(dim=(1, 3)).sqrt().numpy()
                          for s in cap.sites], axis=1)
    np.testing.assert_allclose(got, exp, rtol=1e-5)


def test_text_probe_units_unchanged_by_ref_option():
    """Reference units are added beside the others; the text probe's units and their order stay as they were."""
    from probe.klein.capture import head_unit_names
    from probe.klein.model import klein_4b_meta_transformer

    sites = head_sites(klein_4b_meta_transformer())
    base = head_unit_names(sites, steps=[0, 12])
    with_ref = head_unit_names(sites, steps=[0, 12], ref_tokens=True)
    assert len(base) == 2 * 720 and len(with_ref) == 2 * (720 + 5 * 24 + 20 * 24)
    assert [u for u in with_ref if ".ref/" not in u] == base
    assert "s12/double.3.ref/h07" in with_ref and "s12/single.9.ref/h07" in with_ref
    assert base[:2] == ["s00/double.0.img/h00", "s00/double.0.img/h01"] and base[24] == "s00/double.0.txt/h00"
    assert base[240] == "s00/single.0/h00" and base[720] == "s12/double.0.img/h00"
    i = with_ref.index("s00/double.0.ref/h00")
    assert with_ref[i - 1] == "s00/double.0.img/h23" and with_ref[i + 24] == "s00/double.0.txt/h00"
