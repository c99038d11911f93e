"""probe.klein.edit_capture: one klein editing call under a capture, with evaluate generate's own arguments."""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from probe.klein.capture import HeadCapture, SliceCapture, head_sites
from probe.klein.edit_capture import capture_edit, edit_call_kwargs, edit_layout, reference_size_in_pipeline
from tests.fakes import write_synthetic_render

PROMPT = "Show only the surface colours of this photo, without lighting or shadows."


def _reference(w=80, h=72, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_same_pipeline_arguments_as_evaluate_generate(tiny_loaded, tmp_path, monkeypatch):
    """capture_edit calls the pipeline exactly as `evaluate generate` does for an edit; only output_type
    (latent: no decode) and the callback that stops after the last captured step are added."""
    from diffusers import Flux2KleinPipeline

    from evaluate.generate import GenerateConfig, generate_predictions

    calls = []
    original = Flux2KleinPipeline.__call__

    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        assert not args
        calls.append(dict(kwargs))
        if kwargs.get("output_type") == "np":   # evaluate's call: record only, no need to sample 50 steps
            w, h = kwargs["image"].size           # klein returns the size of the reference it was given
            return SimpleNamespace(images=[np.zeros((h, w, 3), np.float32)])
        return original(self, **kwargs)

    monkeypatch.setattr(Flux2KleinPipeline, "__call__", recording)
    root = write_synthetic_render(tmp_path / "render", scenes=("alpha",), lightings=("key",))
    generate_predictions(tiny_loaded, GenerateConfig(data=str(root), out=str(tmp_path / "pred"), seed=3),
                         progress=False)
    (ev,) = calls
    pipe = tiny_loaded.pipe
    with HeadCapture(pipe.transformer, head_sites(pipe.transformer), steps=[0], forwards_per_step=2,
                     ref_tokens=True) as cap:
        values = capture_edit(pipe, cap, ev["image"], ev["prompt"], steps=ev["num_inference_steps"],
                              guidance=ev["guidance_scale"], seeds=(3,))
    mine = calls[1]
    assert set(ev) - {"output_type"} == set(mine) - {"output_type", "callback_on_step_end"}
    assert mine["output_type"] == "latent"
    for k in set(ev) - {"output_type", "image", "generator"}:
        assert mine[k] == ev[k], k
    assert mine["image"] is ev["image"]
    assert type(mine["generator"]) is type(ev["generator"]) and mine["generator"].initial_seed() == 3
    assert mine["generator"].device == ev["generator"].device
    assert values.shape == (1, len(cap.units)) and np.isfinite(values).all()
    assert cap.forwards_seen == 2   # stopped after the captured step 0 of 50
    assert edit_call_kwargs(ev["image"], ev["prompt"], ev["num_inference_steps"], ev["guidance_scale"], (3,)).keys() \
        == set(mine) - {"output_type", "callback_on_step_end"}


def test_seed_batch_equals_one_call_per_seed(tiny_pipe):
    tr = tiny_pipe.transformer
    ref = _reference()
    with HeadCapture(tr, head_sites(tr), steps=[0, 1], forwards_per_step=2, ref_tokens=True) as cap:
        both = capture_edit(tiny_pipe, cap, ref, PROMPT, steps=4, guidance=4.0, seeds=(0, 1))
        assert cap.forwards_seen == 4 and cap.layout == edit_layout(tiny_pipe, ref)
        one = capture_edit(tiny_pipe, cap, ref, PROMPT, steps=4, guidance=4.0, seeds=(1,))
    assert both.shape == (2, len(cap.units)) and any(".ref/" in u for u in cap.units)
    np.testing.assert_allclose(one[0], both[1], rtol=1e-4, atol=1e-6)
    assert not np.allclose(both[0], both[1])   # different noise, different values at the generated tokens


def test_prepare_reference_is_applied_and_slices_work(tiny_pipe, tmp_path):
    tr = tiny_pipe.transformer
    path = tmp_path / "ref.png"
    _reference(100, 90).save(path)
    seen = []

    def prepare(im):
        seen.append(im.size)
        return im.resize((64, 64))

    with SliceCapture(tr, head_sites(tr), steps=[0], forwards_per_step=2) as cap:
        v = capture_edit(tiny_pipe, cap, path, PROMPT, steps=2, guidance=4.0, prepare_reference=prepare)
        assert seen == [(100, 90)] and cap.layout.n_ref == cap.layout.n_img == (64 // 8) ** 2
    assert v.shape == (1, len(cap.units))


def test_large_reference_follows_the_pipelines_resize(tiny_pipe):
    """References above 1024^2 pixels are resized by the pipeline before the crop; the layout follows."""
    big = Image.new("RGB", (1300, 1000))
    resized = tiny_pipe.image_processor._resize_to_target_area(big, 1024 * 1024).size
    m = 2 * tiny_pipe.vae_scale_factor
    assert reference_size_in_pipeline(tiny_pipe, *big.size) == (resized[0] // m * m, resized[1] // m * m)
    assert reference_size_in_pipeline(tiny_pipe, 100, 75) == (96, 72)
    lay = edit_layout(tiny_pipe, big, height=64, width=64)
    assert lay.n_ref == (resized[0] // m) * (resized[1] // m) and lay.n_img == 64 and lay.txt_len == 512


def test_misuse_is_explained(tiny_pipe):
    tr = tiny_pipe.transformer
    cap = HeadCapture(tr, head_sites(tr), steps=[3], forwards_per_step=2)
    with pytest.raises(RuntimeError, match="entered capture"):
        capture_edit(tiny_pipe, cap, _reference(), PROMPT, steps=4, guidance=4.0)
    with cap:
        with pytest.raises(ValueError, match="not within the 2 sampling steps"):
            capture_edit(tiny_pipe, cap, _reference(), PROMPT, steps=2, guidance=4.0)
    with HeadCapture(tr, head_sites(tr), steps=[0], forwards_per_step=1) as cap:   # CFG runs, capture assumes none
        with pytest.raises(RuntimeError, match="forwards"):
            capture_edit(tiny_pipe, cap, _reference(), PROMPT, steps=2, guidance=4.0)
    assert torch.is_grad_enabled()
