"""The tiny offline klein, the shared loader, and the real klein 4B shape on the meta device."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from probe.klein.capture import head_sites, head_unit_names, slice_unit_names
from probe.klein.model import (KLEIN_4B_TRANSFORMER, ModelNotAvailable, ModelSpec, klein_4b_meta_transformer,
                               load_pipeline)
from probe.klein.tiny import build_tiny_pipeline


def _gen(pipe, **kw):
    return pipe(prompt="a red cube on a table", height=64, width=64, num_inference_steps=2,
                generator=torch.Generator().manual_seed(3), output_type="np", **kw).images


def test_tiny_is_the_real_classes_and_seeded():
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen2TokenizerFast, Qwen3ForCausalLM

    p1, p2 = build_tiny_pipeline(0), build_tiny_pipeline(0)
    assert isinstance(p1, Flux2KleinPipeline)
    assert isinstance(p1.transformer, Flux2Transformer2DModel) and isinstance(p1.vae, AutoencoderKLFlux2)
    assert isinstance(p1.text_encoder, Qwen3ForCausalLM) and isinstance(p1.tokenizer, Qwen2TokenizerFast)
    assert isinstance(p1.scheduler, FlowMatchEulerDiscreteScheduler)
    assert len(p1.transformer.transformer_blocks) >= 1 and len(p1.transformer.single_transformer_blocks) >= 1
    for (n, a), (_, b) in zip(p1.transformer.state_dict().items(), p2.transformer.state_dict().items()):
        assert torch.equal(a, b), n
    p3 = build_tiny_pipeline(1)
    assert not torch.equal(p1.transformer.x_embedder.weight, p3.transformer.x_embedder.weight)


def test_tiny_text_to_image_and_save_load_roundtrip(tiny_pipe, tmp_path):
    img = _gen(tiny_pipe)
    assert img.shape == (1, 64, 64, 3) and np.isfinite(img).all() and img.std() > 0
    tiny_pipe.save_pretrained(tmp_path / "snap")
    loaded = load_pipeline(ModelSpec(str(tmp_path / "snap"), device="cpu"))
    assert loaded.source == "local"
    np.testing.assert_array_equal(_gen(loaded.pipe), img)


def test_tiny_reference_image_editing(tiny_pipe):
    ref = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    out = _gen(tiny_pipe, image=ref)
    plain = _gen(tiny_pipe)
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()
    assert not np.allclose(out, plain)  # the reference image reached the transformer


def test_tiny_cfg_runs_two_forwards_per_step(tiny_pipe):
    calls = []
    h = tiny_pipe.transformer.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        _gen(tiny_pipe, guidance_scale=4.0)
    finally:
        h.remove()
    assert len(calls) == 4


def test_klein_4b_meta_shape_and_unit_counts():
    m = klein_4b_meta_transformer()
    assert all(p.device.type == "meta" for p in m.parameters())
    n = sum(p.numel() for p in m.parameters())
    assert round(n / 1e9, 2) == 3.88
    assert len(m.transformer_blocks) == 5 and len(m.single_transformer_blocks) == 20
    assert m.transformer_blocks[0].attn.heads == 24 and m.transformer_blocks[0].attn.head_dim == 128
    assert m.single_transformer_blocks[0].attn.heads == 24
    assert m.config.joint_attention_dim == 7680 == KLEIN_4B_TRANSFORMER["joint_attention_dim"]
    sites = head_sites(m)
    assert len(head_unit_names(sites, steps=[0])) == 5 * 24 * 2 + 20 * 24 == 720
    assert len(head_unit_names(sites, steps=[0, 10])) == 1440
    card_sites = [s for s in sites if s.kind != "double_txt"]
    assert len(slice_unit_names(card_sites, steps=[0], width=16)) == 5 * 192 + 20 * 768 == 16320


def test_missing_local_model_gives_clear_error(tmp_path):
    with pytest.raises(ModelNotAvailable, match="--model tiny"):
        load_pipeline(ModelSpec(str(tmp_path / "no-such-snapshot"), device="cpu"))


def test_missing_hub_model_offline_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="local snapshot|--model /path"):
        load_pipeline(ModelSpec("black-forest-labs/FLUX.2-klein-base-4B", device="cpu"))


def test_probe_cli_missing_model_is_a_message_not_a_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "probe", "run", "--model", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr, r.stderr
    assert "--model tiny" in r.stderr and "nope" in r.stderr
    # (evaluate's CLI: tests/test_pipeline_e2e.py::test_evaluate_bad_inputs, with a real render folder)


def test_randomize_replaces_weights_from_config_seeded(tiny_cache):
    plain = load_pipeline(ModelSpec("tiny", device="cpu"))
    r1 = load_pipeline(ModelSpec("tiny", device="cpu", randomize="transformer", randomize_seed=3))
    r2 = load_pipeline(ModelSpec("tiny", device="cpu", randomize="transformer", randomize_seed=3))
    r4 = load_pipeline(ModelSpec("tiny", device="cpu", randomize="transformer", randomize_seed=4))
    both = load_pipeline(ModelSpec("tiny", device="cpu", randomize="all", randomize_seed=3))
    w = lambda l: dict(l.pipe.transformer.state_dict())  # noqa: E731
    te = lambda l: l.pipe.text_encoder.model.embed_tokens.weight  # noqa: E731
    for name, t in w(r1).items():
        assert torch.equal(t, w(r2)[name]), name                      # seeded: the same fresh weights
    assert not torch.equal(w(r1)["x_embedder.weight"], w(plain)["x_embedder.weight"])
    assert not torch.equal(w(r1)["x_embedder.weight"], w(r4)["x_embedder.weight"])
    assert torch.equal(te(r1), te(plain)) and not torch.equal(te(both), te(plain))   # transformer: encoder kept
    assert type(r1.pipe.transformer) is type(plain.pipe.transformer)
    assert r1.pipe.transformer.config == plain.pipe.transformer.config            # same architecture
    rec = r1.describe()["randomize"]
    assert rec["mode"] == "transformer" and rec["seed"] == 3 and [c["name"] for c in rec["components"]] == ["transformer"]
    assert [c["name"] for c in both.randomized["components"]] == ["transformer", "text_encoder"]
    assert r1.random_weights and plain.describe()["randomize"] == {"mode": "none"}
    img = r1.pipe(prompt="a cube", height=64, width=64, num_inference_steps=2, output_type="np").images
    assert np.isfinite(img).all()


def test_hub_id_from_the_cache_records_its_commit_and_randomizes(tiny_pipe, tmp_path, monkeypatch):
    """A hub id resolved offline from a Hugging Face cache: the snapshot's commit is the revision."""
    from probe.klein.model import model_fingerprint

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-klein"
    tiny_pipe.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    loaded = load_pipeline(ModelSpec("acme/tiny-klein", device="cpu", randomize="transformer", randomize_seed=1))
    assert loaded.source == "hub" and loaded.revision == commit
    fp = model_fingerprint(loaded)
    assert fp["revision"] == f"commit:{commit}" and fp["randomize"] == {"mode": "transformer", "seed": 1}
