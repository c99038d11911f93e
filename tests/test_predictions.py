"""Prediction storage (evaluate.predictions), the reference transform (probe.klein.registration) and
generation (evaluate.generate) through a fake pipeline that treats references exactly as klein's does."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evaluate.generate import DataError, GenerateConfig, generate_predictions, model_defaults
from evaluate.predictions import PredictionStore, StalePredictionError, key_differences
from probe.klein.registration import plan_reference
from render.imageio import read_png_srgb, write_png_encoded


class FakeKlein:
    """Flux2KleinPipeline's reference handling, line for line (resize over 1024^2, round the sides down to
    multiples of 16, centre-crop with its own image processor), then "edits" by returning the processed
    reference at the requested size. So an output pixel sits where the pipeline put the reference pixel."""

    vae_scale_factor = 8

    def __init__(self, distilled: bool = False):
        self.config = SimpleNamespace(is_distilled=distilled)
        self.calls: list[dict] = []

    def __call__(self, image=None, prompt=None, height=None, width=None, num_inference_steps: int = 50,
                 guidance_scale: float = 4.0, generator=None, output_type: str = "pil", max_sequence_length: int = 512):
        import cv2
        from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

        proc = Flux2ImageProcessor(vae_scale_factor=self.vae_scale_factor * 2)
        img = image
        w, h = img.size
        if w * h > 1024 * 1024:
            img = proc._resize_to_target_area(img, 1024 * 1024)
            w, h = img.size
        m = self.vae_scale_factor * 2
        w, h = (w // m) * m, (h // m) * m
        x = proc.postprocess(proc.preprocess(img, height=h, width=w, resize_mode="crop"), output_type="np")[0]
        height, width = height or h, width or w
        if (height, width) != (h, w):
            x = cv2.resize(x, (width, height), interpolation=cv2.INTER_LINEAR)
        self.calls.append({"size": image.size, "height": height, "width": width, "steps": num_inference_steps,
                           "guidance": guidance_scale, "prompt": prompt})
        return SimpleNamespace(images=[x])


def fake_loaded(distilled=False, model="fake/klein", revision="r1"):
    pipe = FakeKlein(distilled)
    spec = SimpleNamespace(model=model, tiny_seed=0)
    return SimpleNamespace(pipe=pipe, spec=spec, source="local", revision=revision, resolved_path="/models/fake",
                           dtype="float32", device="cpu", random_weights=False, randomized={}, known=None,
                           max_sequence_length=512,
                           describe=lambda: {"model": model, "revision": revision, "random_weights": False})


def planted_render(root: Path, w=310, h=250, n=1) -> Path:
    """A render folder whose image_srgb.png carries a pattern no two pixels share by accident."""
    rng = np.random.default_rng(7)
    samples = []
    for i in range(n):
        sid = f"plant{i}__key"
        img = rng.integers(0, 256, (h, w, 3)).astype(np.float32) / 255.0
        img[h // 3, :] = [1, 0, 0]          # a red row and a green column: shifts show at once
        img[:, w // 4] = [0, 1, 0]
        write_png_encoded(root / sid / "image_srgb.png", img)
        samples.append({"id": sid, "scene": f"plant{i}", "lighting": "key", "image_srgb": f"{sid}/image_srgb.png"})
    (root / "manifest.json").write_text(json.dumps({"samples": samples}))
    return root


# ---------------------------------------------------------------------------------------------
# point 2: registration


def test_planted_pattern_lands_on_the_same_pixels(tmp_path):
    data = planted_render(tmp_path / "render")
    loaded = fake_loaded()
    info = generate_predictions(loaded, GenerateConfig(data=str(data), out=str(tmp_path / "pred")), progress=False)
    assert info["generated"] == 1
    ref = read_png_srgb(data / "plant0__key" / "image_srgb.png")
    pred = read_png_srgb(tmp_path / "pred" / "klein" / "plant0__key_albedo_srgb.png")
    assert pred.shape == ref.shape == (250, 310, 3)
    np.testing.assert_array_equal(np.round(pred * 255), np.round(ref * 255))   # every pixel, exactly
    call = loaded.pipe.calls[0]
    assert call["size"] == (320, 256) and (call["width"], call["height"]) == (320, 256)   # no rounding down
    side = json.loads((tmp_path / "pred" / "klein" / "plant0__key.json").read_text())
    t = side["reference_transform"]
    assert t["pad"] == [5, 3, 5, 3] and t["model"] == [320, 256] and t["exact"] and "crop" in t["inverse"]


def test_transform_plans_and_exact_inverses():
    t = plan_reference(310, 250, max_side=1024)
    assert (t.scale_mode, t.model, t.pad) == ("none", (320, 256), (5, 3, 5, 3))
    small = plan_reference(32, 40, max_side=64)   # under klein's 64-px minimum: x2 nearest (80 > max_side: the minimum wins)
    assert (small.scale_mode, small.upscale, small.scaled, small.model) == ("upscale_nearest", 2, (64, 80), (64, 80))
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(40, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(small.invert(small.apply(img)), img, atol=1e-6)   # block mean undoes nearest x2
    big = plan_reference(2000, 1500, max_side=1024)
    assert big.scale_mode == "downscale_area" and max(big.model) <= 1024 + 16 and not big.exact
    assert big.model[0] % 16 == 0 and big.model[1] % 16 == 0 and big.model[0] * big.model[1] <= 1024 * 1024
    assert big.invert(np.zeros((big.model[1], big.model[0], 3), np.float32)).shape == (1500, 2000, 3)
    with pytest.raises(ValueError, match="expected"):
        t.invert(np.zeros((240, 304, 3), np.float32))          # what klein would have returned unpadded


# ---------------------------------------------------------------------------------------------
# point 1: stale predictions


def _gen(tmp_path, data, loaded=None, **kw):
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "pred"), **kw)
    return generate_predictions(loaded or fake_loaded(), cfg, progress=False)


def test_rerun_with_other_settings_regenerates(tmp_path):
    data = planted_render(tmp_path / "render", w=64, h=64, n=3)
    assert _gen(tmp_path, data, steps=2)["generated"] == 3
    again = _gen(tmp_path, data, steps=2)
    assert again["generated"] == 0 and again["skipped_finished"] == 3
    for change in ({"steps": 3}, {"steps": 3, "seed": 1}, {"steps": 3, "seed": 1, "guidance": 2.5}):
        r = _gen(tmp_path, data, **change)
        assert r["generated"] == 3 and r["regenerated_stale"] == 3, change
    other_model = fake_loaded(revision="r2")
    assert _gen(tmp_path, data, other_model, steps=3, seed=1, guidance=2.5)["regenerated_stale"] == 3
    side = json.loads((tmp_path / "pred" / "klein" / "plant0__key.json").read_text())
    assert side["key"]["steps"] == 3 and side["key"]["seed"] == 1 and side["key"]["model"]["revision"] == "r2"
    # config.json describes what is on disk: one key, three predictions
    cfg = json.loads((tmp_path / "pred" / "klein" / "config.json").read_text())
    assert cfg["n_predictions"] == 3 and cfg["uniform"] and cfg["steps"] == 3 and cfg["guidance"] == 2.5
    assert cfg["generation_keys"][0]["key"]["model"]["revision"] == "r2"


def test_changed_reference_image_is_stale(tmp_path):
    data = planted_render(tmp_path / "render", w=64, h=64, n=2)
    _gen(tmp_path, data, steps=2)
    write_png_encoded(data / "plant1__key" / "image_srgb.png", np.full((64, 64, 3), 0.5, np.float32))
    r = _gen(tmp_path, data, steps=2)
    assert r["generated"] == 1 and r["skipped_finished"] == 1


def test_resume_strict_names_fields_and_writes_nothing(tmp_path):
    data = planted_render(tmp_path / "render", w=64, h=64, n=2)
    _gen(tmp_path, data, steps=2)
    folder = tmp_path / "pred" / "klein"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(StalePredictionError) as e:
        _gen(tmp_path, data, steps=5, seed=3, resume="strict")
    msg = str(e.value)
    assert "steps" in msg and "seed" in msg and "Nothing was written" in msg and "\n" not in msg
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert _gen(tmp_path, data, steps=2, resume="strict")["skipped_finished"] == 2   # same settings: fine
    assert _gen(tmp_path, data, steps=2, resume="off")["generated"] == 2


def test_ablated_heads_are_part_of_the_key(tmp_path, tiny_loaded):
    data = planted_render(tmp_path / "render", w=64, h=64, n=1)
    cfg = dict(data=str(data), out=str(tmp_path / "pred"), method="klein__ablate_top1", steps=1)
    r1 = generate_predictions(tiny_loaded, GenerateConfig(**cfg, ablate=("double.0.img/h00",)), progress=False)
    r2 = generate_predictions(tiny_loaded, GenerateConfig(**cfg, ablate=("double.0.img/h01",)), progress=False)
    assert r1["generated"] == 1 and r2["regenerated_stale"] == 1
    side = json.loads((tmp_path / "pred" / "klein__ablate_top1" / "plant0__key.json").read_text())
    assert side["key"]["ablated_units"] == ["double.0.img/h01"] and "token-region" in side["key"]["ablation"]


def test_key_differences_are_dotted_field_names():
    a = {"steps": 2, "model": {"revision": "r1", "dtype": "bf16"}, "seed": 0}
    b = {"steps": 3, "model": {"revision": "r2", "dtype": "bf16"}, "prompt": "x", "seed": 0}
    assert key_differences(a, b) == ["model.revision", "prompt", "steps"]
    assert key_differences(None, {"steps": 1}) == ["steps"]


def _writer(args):
    """One rank: writes its samples and ends as a run does."""
    from render.shard import Shard

    pred, names, shard = args
    store = PredictionStore(pred, "klein")
    for n in names:
        store.write(n, np.full((8, 8, 3), 0.25, np.float32), key={"k": 1})
    store.finish({"run": "x"}, shard=Shard.parse(shard) if shard else None, samples=names)
    return len(names)


def test_ranks_write_no_shared_file_and_the_index_is_rebuilt(tmp_path):
    """Four processes (like torchrun ranks, --shard K/4) write into one method folder at once: every
    file is written by one rank; the shared index is rebuilt from the sidecars afterwards."""
    names = [[f"s{r}_{i}__key" for i in range(6)] for r in range(4)]
    with mp.get_context("fork").Pool(4) as pool:
        assert sum(pool.map(_writer, [(str(tmp_path), n, f"{r}/4") for r, n in enumerate(names)])) == 24
    folder = tmp_path / "klein"
    # every file belongs to one sample (written by the rank that owns it) or is one rank's own record
    per_sample = {f"{s}{x}" for s in sum(names, []) for x in (".json", "_albedo_linear.exr", "_albedo_srgb.png")}
    records = {f"shards/shard-{r}-of-4.json" for r in range(4)}
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == per_sample | records
    assert len(PredictionStore(tmp_path, "klein").entries()) == 24             # readers see every prediction
    PredictionStore(tmp_path, "klein").rebuild_index()
    man = json.loads((folder / "manifest.json").read_text())
    cfg = json.loads((folder / "config.json").read_text())
    assert sorted(p["sample"] for p in man["predictions"]) == sorted(sum(names, [])) and man["run"] == "x"
    assert cfg["n_predictions"] == 24 and cfg["uniform"] and len(cfg["shards"]) == 4


def test_unsharded_processes_at_once_leave_a_complete_index(tmp_path):
    """Two unsharded runs into one folder at once (not a supported use, but safe): the index the last one
    leaves lists every prediction, because it is rebuilt while the sidecars change."""
    names = [[f"s{r}_{i}__key" for i in range(6)] for r in range(3)]
    with mp.get_context("fork").Pool(3) as pool:
        pool.map(_writer, [(str(tmp_path), n, None) for n in names])
    man = json.loads((tmp_path / "klein" / "manifest.json").read_text())
    assert sorted(p["sample"] for p in man["predictions"]) == sorted(sum(names, []))


# ---------------------------------------------------------------------------------------------
# point 10: defaults from the model


def test_distilled_model_runs_its_own_steps_without_cfg(tmp_path):
    data = planted_render(tmp_path / "render", w=64, h=64, n=1)
    loaded = fake_loaded(distilled=True)
    assert model_defaults(loaded.pipe)["steps"] == 4 and model_defaults(loaded.pipe)["guidance"] is None
    info = _gen(tmp_path, data, loaded)
    assert info["steps"] == 4 and info["guidance"] is None
    assert loaded.pipe.calls[0]["steps"] == 4
    side = json.loads((tmp_path / "pred" / "klein" / "plant0__key.json").read_text())
    assert side["key"]["steps"] == 4 and side["key"]["guidance"] is None and side["guidance"] is None
    base = fake_loaded()
    info = _gen(tmp_path, data, base, method="base")
    assert (info["steps"], info["guidance"]) == (50, 4.0)        # klein base: the pipeline's own defaults
    with pytest.raises(DataError, match="positive"):
        _gen(tmp_path, data, base, steps=0, method="zero")
    assert not (tmp_path / "pred" / "zero").exists()


def test_prompt_encoded_once_gives_the_plain_calls_pixels(tmp_path, tiny_loaded, monkeypatch):
    """generate encodes the instruction (and CFG's empty prompt) once per run, yet calls the pipeline with
    the prompt text as a plain call does; the pixels equal a plain pipe(prompt=...) call's."""
    import torch
    from diffusers import Flux2KleinPipeline
    from PIL import Image

    from probe.design.prompts import load_edit_instructions
    from render.imageio import read_exr, srgb_to_linear

    encoded = []
    original = Flux2KleinPipeline.encode_prompt

    def counting(self, *a, **k):
        encoded.append(k.get("prompt"))
        return original(self, *a, **k)

    monkeypatch.setattr(Flux2KleinPipeline, "encode_prompt", counting)
    data = planted_render(tmp_path / "render", w=64, h=48, n=3)
    generate_predictions(tiny_loaded, GenerateConfig(data=str(data), out=str(tmp_path / "pred"), steps=2),
                         progress=False)
    prompt = load_edit_instructions()[0]
    assert sorted(encoded) == sorted([prompt, ""])          # 3 edits with CFG: each prompt encoded once
    assert "encode_prompt" not in vars(tiny_loaded.pipe)     # the pipeline's own method again afterwards
    t = plan_reference(64, 48, max_side=64, multiple=tiny_loaded.pipe.vae_scale_factor * 2)
    ref = (read_png_srgb(data / "plant0__key" / "image_srgb.png") * 255).round().astype(np.uint8)
    with torch.inference_mode():
        out = tiny_loaded.pipe(image=Image.fromarray(t.apply(ref)), prompt=prompt, num_inference_steps=2,
                               guidance_scale=4.0, generator=torch.Generator().manual_seed(0),
                               output_type="np").images[0]
    want = t.invert(srgb_to_linear(np.round(np.clip(out, 0, 1) * 255) / 255))
    np.testing.assert_array_equal(read_exr(tmp_path / "pred" / "klein" / "plant0__key_albedo_linear.exr"), want)


def test_prediction_finished_for_status_listings(tmp_path):
    """evaluate.baselines keeps exporting the storage helpers other jobs import (e.g. status listings)."""
    from evaluate.baselines import prediction_finished, write_prediction

    assert not prediction_finished(tmp_path, "klein", "a__key")
    write_prediction(tmp_path, "klein", "a__key", np.full((4, 4, 3), 0.5, np.float32), key={"k": 1})
    assert prediction_finished(tmp_path, "klein", "a__key")
    (tmp_path / "klein" / "a__key_albedo_linear.exr").write_bytes(b"broken")
    assert not prediction_finished(tmp_path, "klein", "a__key")


def test_sharded_generate_equals_unsharded_and_shares_no_file(tmp_path):
    data = planted_render(tmp_path / "render", w=64, h=64, n=5)
    whole = tmp_path / "whole"
    generate_predictions(fake_loaded(), GenerateConfig(data=str(data), out=str(whole), steps=2), progress=False)
    for k in range(2):
        generate_predictions(fake_loaded(), GenerateConfig(data=str(data), out=str(tmp_path / "split"), steps=2,
                                                           shard=f"{k}/2"), progress=False)
    split = PredictionStore(tmp_path / "split", "klein")
    assert not (split.dir / "manifest.json").exists()
    assert sorted(p.name for p in (split.dir / "shards").iterdir()) == ["shard-0-of-2.json", "shard-1-of-2.json"]
    a = {e["sample"]: e for e in PredictionStore(whole, "klein").entries()}
    b = {e["sample"]: e for e in split.entries()}
    assert a.keys() == b.keys() and len(a) == 5
    for sid in a:
        steady = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
        assert steady(a[sid]) == steady(b[sid])                  # the same sidecar (and key) either way
        np.testing.assert_array_equal(read_png_srgb(whole / "klein" / a[sid]["albedo_srgb"]),
                                      read_png_srgb(split.dir / b[sid]["albedo_srgb"]))


def test_png_writes_nan_as_zero_without_a_cast_warning(tmp_path):
    """A PNG has no missing value: NaN pixels are written as 0, explicitly (casting NaN to uint8 is undefined and
    warned); the values around them are unchanged."""
    import warnings

    from render.imageio import read_png_srgb, write_png_encoded

    a = np.full((4, 4, 3), 0.5, np.float32)
    a[1, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_png_encoded(tmp_path / "x.png", a)
    back = read_png_srgb(tmp_path / "x.png")
    assert np.all(back[1, 2] == 0) and np.allclose(back[0, 0], 128 / 255)
