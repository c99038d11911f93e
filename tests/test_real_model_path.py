"""The real-model path (issue 17, point 9): offload hooks freed after an early stop, right padding asserted where
text masks are rebuilt from lengths, the batch size in the resume key, and `.txt` units over the prompt's own
tokens (klein's chat template left out)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from probe.klein.ablation import HeadAblation, ablation_layout
from probe.klein.capture import (HeadCapture, head_sites, prompt_token_spans, text_mask, text_token_counts,
                                 text_token_mask)
from probe.klein.capture_loop import CaptureConfig, _capture_text, cache_fields, load_cache, save_cache
from probe.klein.edit_capture import capture_edit

PROMPTS = ["A photograph of a matte red cube, lit by a softbox.", "An albedo image of a matte red cube."]
SIZE = 64


# ------------------------------------------------------------------------------------------ --offload

class StandInOffload:
    """What `enable_model_cpu_offload` leaves on a pipeline, without a GPU.

    As accelerate's chained `cpu_offload_with_hook` hooks (text_encoder -> transformer -> vae): a model is put on the
    device when it runs, and running one moves the model before it in the chain back. diffusers'
    `maybe_free_model_hooks()` (the pipeline's last line) calls `enable_model_cpu_offload` again, which moves every
    model back and re-arms the hooks: `install` here. `together` records every moment at which the transformer and
    the text encoder were on the device at once (klein: 7.2 + 7.5 GiB)."""

    ORDER = ("text_encoder", "transformer", "vae")

    def __init__(self, pipe):
        self.pipe, self.on_device, self.handles, self.together, self.armed = pipe, set(), [], [], 0
        pipe.enable_model_cpu_offload = lambda device=None, **kw: self.install()
        self.install()

    def install(self):
        self.remove()
        self.on_device.clear()
        self.armed += 1
        for i, name in enumerate(self.ORDER):
            def onload(module, args, kwargs, name=name, prev=self.ORDER[i - 1] if i else None):
                self.on_device.discard(prev)
                self.on_device.add(name)
                if {"text_encoder", "transformer"} <= self.on_device:
                    self.together.append(name)
            self.handles.append(getattr(self.pipe, name).register_forward_pre_hook(onload, with_kwargs=True))
        self.pipe._all_hooks = list(self.handles)

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles.clear()


@pytest.fixture()
def offloaded():
    from probe.klein.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    stand_in = StandInOffload(pipe)
    yield pipe, stand_in
    stand_in.remove()


def test_offload_hooks_are_freed_when_a_capture_stops_sampling_early(offloaded):
    """A capture ends sampling after its last captured step (StopSampling); the pipeline's own
    maybe_free_model_hooks() is then skipped, so with --offload the transformer would stay on the device and meet the
    text encoder in the next call. Text-to-image calls and editing calls both free them."""
    pipe, off = offloaded
    sites = head_sites(pipe.transformer)
    cfg = CaptureConfig(steps=4, capture_steps=(0,), guidance=1.0, height=SIZE, width=SIZE).resolved()
    n_img = (SIZE // (pipe.vae_scale_factor * 2)) ** 2
    from probe.design.stimuli import Stimulus

    batch = [Stimulus("p", "a", PROMPTS[0], 1)]
    with HeadCapture(pipe.transformer, sites, steps=[0]) as cap:
        for call in range(3):
            _capture_text(pipe, cap, batch, cfg, n_img)
            assert off.on_device == set(), f"call {call}: {off.on_device} still on the device after the call"
    assert off.together == [] and off.armed == 4            # installed once, re-armed after each of the 3 calls
    ref = Image.fromarray(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    with HeadCapture(pipe.transformer, sites, steps=[0], ref_tokens=True) as cap:
        for _ in range(2):
            capture_edit(pipe, cap, ref, PROMPTS[1], steps=3, guidance=1.0)
            assert off.on_device == set()
    assert off.together == []


# --------------------------------------------------------------------------------- padding side

def test_ablation_layout_asserts_right_padding(tiny_pipe, monkeypatch):
    lay = ablation_layout(tiny_pipe, PROMPTS[0], 16, 16, cfg_on=True, max_sequence_length=128, text_tokens="all")
    real = text_token_mask(tiny_pipe, [PROMPTS[0], ""], 128).sum(1).tolist()
    assert lay["txt_spans"] == [(0, real[0]), (0, real[1])] and lay["txt_len"] == 128
    monkeypatch.setattr(tiny_pipe.tokenizer, "padding_side", "left")
    for tokens in ("all", "prompt"):
        with pytest.raises(ValueError, match="pads on the left"):
            ablation_layout(tiny_pipe, PROMPTS[0], 16, 16, cfg_on=True, max_sequence_length=128, text_tokens=tokens)


def test_evaluate_ablation_layout_asserts_right_padding_and_reads_the_pipelines_text_length(tiny_pipe, monkeypatch):
    from evaluate.generate import _token_layout
    from probe.klein.edit_capture import pipeline_default

    lay = _token_layout(tiny_pipe, PROMPTS[1], (SIZE, SIZE), True)
    assert lay["txt_len"] == pipeline_default(tiny_pipe, "max_sequence_length")
    assert lay["txt_spans"][1] == (0, 0)                    # the unconditional prompt "" has no tokens of its own
    monkeypatch.setattr(tiny_pipe.tokenizer, "padding_side", "left")
    with pytest.raises(ValueError, match="pads on the left"):
        _token_layout(tiny_pipe, PROMPTS[1], (SIZE, SIZE), True)


# --------------------------------------------------------------------------------- resume key

def test_batch_size_is_part_of_the_resume_key(tiny_loaded, tmp_path):
    a = CaptureConfig(batch_size=4, height=SIZE, width=SIZE).resolved()
    b = CaptureConfig(batch_size=2, height=SIZE, width=SIZE).resolved()
    fa, fb = cache_fields(a, tiny_loaded), cache_fields(b, tiny_loaded)
    assert fa != fb and fa["capture"]["batch_size"] == 4
    save_cache(tmp_path / "c.npz", fa, {"k": np.zeros(3, np.float32)})
    done, why = load_cache(tmp_path / "c.npz", fb, 3)
    assert done == {} and "capture.batch_size 4 -> 2" in why
    assert load_cache(tmp_path / "c.npz", fa, 3) == ({"k": pytest.approx(np.zeros(3))}, None)


# ------------------------------------------------------------------------------- chat template

def test_prompt_spans_hold_exactly_the_prompt(tiny_pipe):
    tok = tiny_pipe.tokenizer
    spans = prompt_token_spans(tok, PROMPTS + [""], 128)
    for p, (a, b) in zip(PROMPTS, spans):
        ids = tok(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True,
                                          enable_thinking=False))["input_ids"]
        assert tok.decode(ids[a:b]) == p
        assert tok.decode(ids[:a]) == "<|im_start|>user\n"
        assert tok.decode(ids[b:]).startswith("<|im_end|>\n<|im_start|>assistant")
    assert spans[-1] == (0, 0)
    counts = text_token_counts(tiny_pipe, PROMPTS, 128)
    assert len({c["template"] for c in counts}) == 1 and all(c["prompt"] + c["template"] == c["all"] for c in counts)


def test_txt_units_leave_the_chat_template_out(tiny_pipe):
    """With text_tokens "prompt" the .txt units do not move when the activations at the chat template's positions are
    replaced by noise; with "all" (the earlier definition) they do."""
    tr = tiny_pipe.transformer
    sites = [s for s in head_sites(tr) if s.kind == "double_txt"][:1]
    real = text_token_mask(tiny_pipe, PROMPTS)
    own = text_mask(tiny_pipe, PROMPTS, text_tokens="prompt")
    template = real & ~own
    assert template.sum(1).min() > 0 and (own.sum(1) > 0).all()
    n_img = (SIZE // (tiny_pipe.vae_scale_factor * 2)) ** 2

    def scramble(module, args):
        x = args[0].clone()
        noise = 100 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        x[template] = noise[template].to(x.dtype)
        return (x,)

    def run(mask, scrambled):
        h = tr.get_submodule(sites[0].module).register_forward_pre_hook(scramble) if scrambled else None
        try:
            with HeadCapture(tr, sites, steps=[0]) as cap:
                cap.set_batch(mask, n_img)
                tiny_pipe(prompt=PROMPTS, height=SIZE, width=SIZE, num_inference_steps=1, guidance_scale=1.0,
                          generator=[torch.Generator().manual_seed(7) for _ in PROMPTS], output_type="latent")
                return cap.collect()
        finally:
            if h is not None:
                h.remove()

    np.testing.assert_allclose(run(own, True), run(own, False), rtol=1e-6)
    assert not np.allclose(run(real, True), run(real, False))


def test_txt_ablation_over_the_prompt_span_leaves_the_template_alone(tiny_pipe):
    n_img = (SIZE // (tiny_pipe.vae_scale_factor * 2)) ** 2
    lay = ablation_layout(tiny_pipe, PROMPTS[1], n_img, n_img, cfg_on=True, max_sequence_length=512)
    (a, b), empty = lay["txt_spans"]
    assert empty == (0, 0) and 0 < a < b
    mod = tiny_pipe.transformer.transformer_blocks[0].attn.to_add_out
    d = tiny_pipe.transformer.transformer_blocks[0].attn.head_dim
    ref = Image.fromarray(np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))

    def grab(units):
        seen = []
        with HeadAblation(tiny_pipe.transformer, units or ["double.1.img/h00"]) as abl:
            abl.prepare(**lay)
            h = mod.register_forward_pre_hook(lambda m, x: seen.append(x[0].detach().clone()))   # after the ablation's
            try:
                tiny_pipe(image=ref, prompt=PROMPTS[1], height=SIZE, width=SIZE, num_inference_steps=1,
                          guidance_scale=4.0, generator=torch.Generator().manual_seed(1), output_type="latent")
            finally:
                h.remove()
        return seen

    base, abl = grab([]), grab(["double.0.txt/h00"])     # base: an ablation elsewhere (after this site)
    torch.testing.assert_close(abl[0][:, a:b, :d], base[0][:, a:b, :d].mean(1, keepdim=True).expand(-1, b - a, -1))
    torch.testing.assert_close(abl[0][:, :a], base[0][:, :a])            # template before the prompt
    torch.testing.assert_close(abl[0][:, b:], base[0][:, b:])            # template after it, padding
    torch.testing.assert_close(abl[1], base[1])                          # "" has no tokens of its own: untouched


def test_evaluate_ablates_txt_heads_over_the_tokens_the_probe_measured(tmp_path):
    from evaluate.jobs import _gen_config
    from evaluate.selection import read_probe
    from probe.klein.ablation import ablation_definition
    from tests.fakes import fake_probe_units, write_fake_probe

    units = fake_probe_units()
    new = read_probe(write_fake_probe(tmp_path / "new", {"unit": units}, summary={"text_tokens": "prompt"}))
    old = read_probe(write_fake_probe(tmp_path / "old", {"unit": units}))          # a probe from before the option
    assert (new.text_tokens, old.text_tokens) == ("prompt", "all")
    args = SimpleNamespace(data="d", out=str(tmp_path), instruction=0, instructions_file=None, steps=None,
                           guidance=None, seed=0, limit=None, max_side=None)
    assert _gen_config(args, "klein__ablate_top1", ("double.0.txt/h00",), old.text_tokens).ablate_text_tokens == "all"
    assert "chat template and padding excluded" in ablation_definition("prompt")
    assert "chat template" not in ablation_definition("all")
