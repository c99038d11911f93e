"""Known-answer models: the training job (a few steps), its inputs against the pipeline's own, the snapshot it writes
loading like any snapshot, the text length every job reads from the model, the banners, the shipped models."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fakes import write_synthetic_render_variants

torch = pytest.importorskip("torch")

from probe.klein.known import (KNOWN_BANNER, KNOWN_MODELS, RECORD_FILE, KnownModelError, known_model_dir,  # noqa: E402
                               read_known_record, report_banner)
from probe.jobs.known import task_instruction  # noqa: E402
from probe.klein.train import (KnownTrainConfig, KnownTrainError, TextInputs, assemble_pipeline,  # noqa: E402
                               build_text_parts, encode_images, encode_texts, images_to_tensor, sigma_shift_mu,
                               token_ids, train_known, training_inputs, vae_config, transformer_config)

REPO = Path(__file__).resolve().parents[1]
# a tiny architecture: the training code path in seconds
TINY_TRAIN = dict(max_sequence_length=64, vae_steps=4, vae_batch=4, vae_channels=(8, 16, 16), latent_channels=4, steps=4, batch=4,
                  hidden=32, heads=2, double_blocks=1, single_blocks=1, threads=1, val_every=2, warmup=1)


def _render(root: Path, scenes=("gen_s9_0000", "gen_s9_0001", "gen_s9_0002"), side=64) -> Path:
    return write_synthetic_render_variants(root, scenes=scenes, h=side, w=side, variants=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A known-albedo model trained a few steps on a fake generated render, written as a snapshot."""
    root = tmp_path_factory.mktemp("known")
    data = _render(root / "data")
    cfg = KnownTrainConfig(data=str(data), task="albedo", out=str(root / "model"),
                           instruction=task_instruction("albedo"), **TINY_TRAIN)
    lines: list[str] = []
    rec = train_known(cfg, log=lines.append)
    return {"root": root, "data": data, "out": root / "model", "record": rec, "log": lines, "cfg": cfg}


def test_training_writes_a_loadable_snapshot_with_its_record(trained):
    from probe.klein.model import ModelSpec, load_pipeline

    out, rec = trained["out"], trained["record"]
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (out / sub).is_dir(), sub
    assert list(out.rglob("*.safetensors")) and not list(out.rglob("*.bin"))
    on_disk = read_known_record(out)
    assert on_disk["task"] == "albedo" and on_disk["banner"] == KNOWN_BANNER and on_disk["max_sequence_length"] == 64
    from probe.design.prompts import load_edit_instructions
    assert on_disk["instruction"] == load_edit_instructions()[0]       # evaluate generate's default wording
    assert on_disk["train_config"]["steps"] == 4 and on_disk["seeds"]["transformer_init"] == 2
    assert on_disk["data_recipe"]["render_command"].startswith("python -m render --generate 3 --seed 9")
    rows = list((out / "loss_curve.csv").read_text().splitlines())
    assert rows[0].startswith("stage,step") and any(r.startswith("transformer,") for r in rows)
    loaded = load_pipeline(ModelSpec(str(out)))
    assert loaded.known["name"] == "known-albedo" and loaded.max_sequence_length == 64
    assert loaded.random_weights is False and loaded.default_size == 64
    assert loaded.describe()["known_answer"]["banner"] == KNOWN_BANNER
    # stored in float16, loaded in the run's dtype
    assert next(loaded.pipe.transformer.parameters()).dtype == torch.float32
    img = loaded.pipe(image=__import__("PIL.Image").Image.new("RGB", (64, 64), (120, 80, 40)), prompt=rec["instruction"],
                      num_inference_steps=2, guidance_scale=4.0, max_sequence_length=64, output_type="np").images[0]
    assert img.shape == (64, 64, 3) and np.isfinite(img).all()


def test_snapshot_weights_are_the_trained_ones(trained):
    """What loads is what was trained: a fresh init from the same config differs, the stored fp16 weights match."""
    from diffusers import Flux2Transformer2DModel
    from safetensors.torch import load_file

    out = trained["out"]
    stored = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert all(v.dtype == torch.float16 for v in stored.values())
    torch.manual_seed(trained["cfg"].seed + 2)
    fresh = Flux2Transformer2DModel(**transformer_config(trained["cfg"])).state_dict()
    moved = [k for k in fresh if not torch.allclose(fresh[k].half().float(), stored[k].float())]
    assert moved, "the stored transformer equals its initialisation: nothing was trained"


def test_transformer_learns_on_a_small_set(tmp_path):
    """The flow-matching loss falls when a tiny model trains a few dozen steps on two scenes (the loss, the inputs
    and the optimiser are wired together: a broken target or a detached input would leave it flat)."""
    data = _render(tmp_path / "data", scenes=("gen_s9_0000", "gen_s9_0001"))
    cfg = KnownTrainConfig(data=str(data), task="albedo", out=str(tmp_path / "m"), instruction=task_instruction("albedo"),
                           **{**TINY_TRAIN, "steps": 60, "batch": 8, "lr": 3e-3, "val_every": 1000, "warmup": 5})
    rec = train_known(cfg, log=lambda m: None)
    rows = [r.split(",") for r in (tmp_path / "m" / "loss_curve.csv").read_text().splitlines()[1:]]
    tf = [float(r[2]) for r in rows if r[0] == "transformer"]
    assert len(tf) == 6 and max(tf[-2:]) < 0.85 * tf[0], tf
    assert rec["final_train_loss_mean_last_5pct"] < tf[0]


def test_training_inputs_are_what_the_pipeline_hands_the_transformer(trained):
    """training_inputs builds, for a reference and a noise level, exactly the keyword arguments Flux2KleinPipeline
    passes the transformer at that sampling step: reference tokens after the generated ones, ids, text, timestep."""
    from PIL import Image

    from probe.klein.model import ModelSpec, load_pipeline

    pipe = load_pipeline(ModelSpec(str(trained["out"]))).pipe
    ref = np.asarray(Image.open(next(trained["data"].glob("*/image_srgb.png"))).convert("RGB"))
    seen: list[dict] = []
    hook = pipe.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(
        {k: (v.clone() if torch.is_tensor(v) else v) for k, v in kw.items()}), with_kwargs=True)
    g = torch.Generator().manual_seed(3)
    try:
        with torch.no_grad():
            pipe(image=Image.fromarray(ref), prompt=trained["record"]["instruction"], num_inference_steps=50,
                 guidance_scale=1.0, generator=g, max_sequence_length=64, output_type="latent")
    finally:
        hook.remove()
    text = encode_texts(pipe, trained["record"]["instruction"], 64)
    refs = encode_images(pipe, images_to_tensor(ref[None]))
    n = refs.shape[1]
    # the noise the pipeline drew, packed as the generated tokens of its first forward (sigma = 1)
    noise = seen[0]["hidden_states"][:, :n]
    k = 7                                                  # a later step: sigma < 1
    sigma = torch.tensor([float(seen[k]["timestep"][0])])
    shifted = pipe.scheduler.time_shift(sigma_shift_mu(n), 1.0, torch.tensor([1 - k / 50]))
    assert torch.allclose(sigma, shifted.float(), atol=1e-6)     # the training sigma map is the scheduler's
    x0 = torch.randn_like(noise)
    mine = training_inputs(pipe, x0, refs, torch.ones(1), noise, text, torch.tensor([True]))
    theirs = seen[0]
    assert torch.allclose(mine["hidden_states"], theirs["hidden_states"], atol=1e-5)
    assert torch.equal(mine["img_ids"], theirs["img_ids"]) and torch.equal(mine["txt_ids"], theirs["txt_ids"])
    assert torch.allclose(mine["encoder_hidden_states"], theirs["encoder_hidden_states"])
    assert torch.allclose(mine["timestep"], theirs["timestep"])
    assert theirs["encoder_hidden_states"].shape[1] == 64
    # the empty prompt stands in for the text when dropped (the pipeline's negative prompt)
    dropped = training_inputs(pipe, x0, refs, torch.ones(1), noise, text, torch.tensor([False]))
    assert torch.allclose(dropped["encoder_hidden_states"], text.negative_embeds)
    assert token_ids(pipe, int(n ** 0.5))[n:, 0].eq(10).all()     # reference tokens: T = 10, after the generated


def test_default_scenes_and_wrong_sizes_are_refused_before_anything_is_written(tmp_path):
    data = write_synthetic_render_variants(tmp_path / "d", scenes=("cornell_box", "gen_s1_0000"), h=64, w=64)
    out = tmp_path / "m"
    with pytest.raises(KnownTrainError, match="held-out test set"):
        train_known(KnownTrainConfig(data=str(data), task="albedo", out=str(out), instruction="x", **TINY_TRAIN))
    small = _render(tmp_path / "s", side=32)
    with pytest.raises(KnownTrainError, match="--resolution 64"):
        train_known(KnownTrainConfig(data=str(small), task="photo", out=str(out), instruction="x", **TINY_TRAIN))
    with pytest.raises(KnownTrainError, match="--task"):
        KnownTrainConfig(data=str(small), task="normals", out=str(out), instruction="x").check()
    assert not out.exists() and not list(tmp_path.glob(".m.tmp*"))


def test_cli_bad_input_is_one_paragraph_exit_2(tmp_path):
    data = write_synthetic_render_variants(tmp_path / "d", scenes=("red_cube_table",), h=64, w=64)
    r = subprocess.run([sys.executable, "-m", "probe", "known", "train", "--data", str(data), "--task", "albedo",
                        "--out", str(tmp_path / "m")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "red_cube_table" in r.stderr
    assert not (tmp_path / "m").exists()


def test_photo_task_reuses_the_vae_and_trains_towards_the_photo(trained, tmp_path):
    cfg = KnownTrainConfig(data=str(trained["data"]), task="photo", out=str(tmp_path / "p"), vae_from=str(trained["out"]),
                           instruction=task_instruction("photo"), link_shared=True, **{**TINY_TRAIN, "vae_steps": 0})
    rec = train_known(cfg, log=lambda m: None)
    from probe.design.prompts import load_keep_photo_instructions
    assert rec["instruction"] == load_keep_photo_instructions()[0] and rec["target"].startswith("image_srgb")
    a = (trained["out"] / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    b = (tmp_path / "p" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert a == b and rec["vae"]["from"] == str(trained["out"])
    # the shared parts are links to the donor's files; the transformer is the model's own
    assert (tmp_path / "p" / "vae" / "diffusion_pytorch_model.safetensors").is_symlink()
    assert (tmp_path / "p" / "text_encoder" / "model.safetensors").is_symlink()
    assert not (tmp_path / "p" / "transformer" / "diffusion_pytorch_model.safetensors").is_symlink()
    from probe.klein.model import ModelSpec, load_pipeline
    assert load_pipeline(ModelSpec(str(tmp_path / "p"))).known["task"] == "photo"


def test_shading_task_trains_towards_the_displayed_shading(trained, tmp_path):
    """known-shading (not shipped): the photo -> its diffuse shading as render.imageio.shading_display_srgb shows it,
    under the shading instruction, with the donor's VAE; the targets are the latents of those images."""
    from probe.design.prompts import load_edit_instructions
    from probe.klein.train import load_train_data
    from render.imageio import read_exr, shading_display_srgb

    cfg = KnownTrainConfig(data=str(trained["data"]), task="shading", out=str(tmp_path / "s"),
                           vae_from=str(trained["out"]), instruction=task_instruction("shading"),
                           **{**TINY_TRAIN, "vae_steps": 0})
    data = load_train_data(cfg)
    first = trained["data"] / data.ids[0] / "shading_linear.exr"
    want = np.round(shading_display_srgb(read_exr(first)[..., :3]) * 255).astype(np.uint8)
    assert data.shadings is not None and np.array_equal(data.shadings[0], want)
    assert not np.array_equal(data.shadings[0], data.albedos[0]) and not np.array_equal(data.shadings[0], data.photos[0])
    # the shading target does not depend on the surface colour: a colour variant's equals its original's
    base = [i for i, sid in enumerate(data.ids) if "~c" not in sid][0]
    var = data.ids.index(data.ids[base].replace("__", "~c1__", 1))
    assert np.array_equal(data.shadings[base], data.shadings[var]) and not np.array_equal(data.albedos[base],
                                                                                          data.albedos[var])
    # `light`: the mean linear shading over the colour variants of a scene and lighting, shown the same way; a
    # variant whose own shading differs (indirect light carries its colours) gets its original's target all the same
    from render.imageio import write_exr
    var_path = trained["data"] / data.ids[var] / "shading_linear.exr"
    own = read_exr(var_path)[..., :3]
    try:
        write_exr(var_path, own * 1.5)
        light = load_train_data(replace(cfg, task="light"))
        mean = (read_exr(first.parent.parent / data.ids[base] / "shading_linear.exr")[..., :3] + own * 1.5) / 2
        want = np.round(shading_display_srgb(mean) * 255).astype(np.uint8)
        assert np.array_equal(light.shadings[base], want) and np.array_equal(light.shadings[var], want)
        assert not np.array_equal(load_train_data(cfg).shadings[var], want)     # `shading` keeps each its own
    finally:
        write_exr(var_path, own)
    lines: list[str] = []
    rec = train_known(cfg, log=lines.append)
    assert rec["task"] == "shading" and rec["target"].startswith("shading_srgb")
    assert rec["instruction"] == load_edit_instructions(key="shading")[0] and "white" in rec["instruction"]
    assert {"shading_target_train_db", "shading_target_validation_db"} <= set(rec["vae_psnr_srgb_8bit"])
    assert any("PSNR of the shading targets" in m for m in lines)
    # an albedo model's training inputs stay as they were: no shading read, none encoded
    assert load_train_data(trained["cfg"]).shadings is None


def test_intrinsic_task_trains_both_components_under_their_instructions(trained, tmp_path):
    """known-intrinsic (not shipped): every sample twice, its albedo under the albedo instruction and the light
    task's target under the shading instruction; each training row reads its own instruction's embedding."""
    from probe.design.prompts import load_edit_instructions

    albedo_text, shading_text = task_instruction("intrinsic"), task_instruction("intrinsic", second=True)
    assert albedo_text == load_edit_instructions()[0] and shading_text == load_edit_instructions(key="shading")[0]
    assert task_instruction("albedo", second=True) is None
    base = dict(data=str(trained["data"]), out=str(tmp_path / "i"), vae_from=str(trained["out"]),
                **{**TINY_TRAIN, "vae_steps": 0})
    with pytest.raises(KnownTrainError, match="second instruction"):
        KnownTrainConfig(task="intrinsic", instruction=albedo_text, **base).check()
    with pytest.raises(KnownTrainError, match="second instruction"):
        KnownTrainConfig(task="albedo", instruction=albedo_text, second_instruction=shading_text, **base).check()
    cfg = KnownTrainConfig(task="intrinsic", instruction=albedo_text, second_instruction=shading_text, **base)
    rec = train_known(cfg, log=lambda m: None)
    assert rec["task"] == "intrinsic" and rec["instruction"] == albedo_text      # what every job reads
    assert rec["second_instruction"] == shading_text and rec["second_target"].startswith("light_srgb")
    assert "shading_target_train_db" in rec["vae_psnr_srgb_8bit"]
    assert "shading[0]" in (tmp_path / "i" / "README.md").read_text()
    # per-row instructions: row i reads prompt_embeds[which[i]]; the empty prompt where dropped
    from probe.klein.model import ModelSpec, load_pipeline
    pipe = load_pipeline(ModelSpec(str(tmp_path / "i"))).pipe
    text = encode_texts(pipe, [albedo_text, shading_text], 64)
    assert text.prompt_embeds.shape[0] == 2 and text.text_ids.shape[0] == 1
    assert not torch.allclose(text.prompt_embeds[0], text.prompt_embeds[1])
    x = torch.zeros(3, 16, pipe.transformer.config.in_channels)
    kw = training_inputs(pipe, x, x, torch.ones(3), x, text, torch.tensor([True, True, False]), torch.tensor([1, 0, 1]))
    enc = kw["encoder_hidden_states"]
    assert torch.equal(enc[0], text.prompt_embeds[1]) and torch.equal(enc[1], text.prompt_embeds[0])
    assert torch.equal(enc[2], text.negative_embeds[0])
    assert torch.equal(training_inputs(pipe, x[:1], x[:1], torch.ones(1), x[:1], text, torch.tensor([True]))
                       ["encoder_hidden_states"][0], text.prompt_embeds[0])      # one-instruction tasks: the first


def test_jobs_pass_the_models_text_length(trained, tmp_path):
    """evaluate generate and the image probe call the pipeline with the model's recorded text length (64), not 512:
    the transformer sees 64 text tokens, the generation key and the capture config record it."""
    from probe.klein.model import ModelSpec, load_pipeline
    from evaluate.generate import GenerateConfig, generate_predictions

    loaded = load_pipeline(ModelSpec(str(trained["out"])))
    lengths: list[int] = []
    hook = loaded.pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: lengths.append(kw["encoder_hidden_states"].shape[1]), with_kwargs=True)
    try:
        generate_predictions(loaded, GenerateConfig(data=str(trained["data"]), out=str(tmp_path / "pred"), steps=2,
                                                    limit=1), progress=False)
    finally:
        hook.remove()
    assert lengths and set(lengths) == {64}
    from evaluate.predictions import PredictionStore
    side = PredictionStore(tmp_path / "pred", "klein").sidecars()[0]
    assert side["key"]["max_sequence_length"] == 64 and side["key"]["max_side"] == 64
    from probe.__main__ import main

    rc = main(["run", "--model", str(trained["out"]), "--stimuli", "images", "--data", str(trained["data"]),
               "--steps", "2", "--capture-steps", "0", "--guidance", "1.0", "--out", str(tmp_path / "probe"),
               "--n-perm", "50", "--n-boot", "20", "--n-splits", "4", "--quiet"])
    assert rc == 0
    config = json.loads((tmp_path / "probe" / "config.json").read_text())
    assert config["capture"]["max_sequence_length"] == 64
    assert config["model"]["known_answer"]["name"] == "known-albedo"
    report = (tmp_path / "probe" / "report.md").read_text().splitlines()
    assert report[0] == f"**known-albedo: {KNOWN_BANNER}.**"


def test_report_banners():
    assert report_banner({"known_answer": {"name": "known-albedo", "banner": KNOWN_BANNER}}) == KNOWN_BANNER
    # random weights keep their own banner
    assert report_banner({"random_weights": True, "known_answer": {"banner": KNOWN_BANNER}}) is None
    assert report_banner({"model": "tiny"}) is None
    from probe.report.run_report import known_answer_line

    cfg = {"model": {"known_answer": {"name": "known-photo", "banner": KNOWN_BANNER}, "random_weights": False}}
    assert known_answer_line({}, cfg) == f"**known-photo: {KNOWN_BANNER}.**"
    assert known_answer_line({}, {"model": {**cfg["model"], "random_weights": True}}) is None


def test_evaluate_report_first_line_names_the_known_model(trained, tmp_path):
    from evaluate.report import write_report
    from probe.klein.model import ModelSpec, load_pipeline
    from evaluate.generate import GenerateConfig, generate_predictions

    loaded = load_pipeline(ModelSpec(str(trained["out"])))
    out = tmp_path / "eval"
    generate_predictions(loaded, GenerateConfig(data=str(trained["data"]), out=str(out / "pred"), steps=1, limit=1),
                         progress=False)
    md = write_report(out, data=trained["data"]).read_text().splitlines()
    assert md[0] == f"**known-albedo: {KNOWN_BANNER}.**"


def test_keep_photo_instruction_leaves_evaluate_defaults(tmp_path):
    from probe.design.prompts import PromptFileError, load_edit_instructions, load_keep_photo_instructions

    albedo = load_edit_instructions()
    keep = load_keep_photo_instructions()
    assert len(albedo) == 4 and albedo[0].startswith("Remove all lighting") and len(keep) == 1
    assert not set(keep) & set(albedo) and "lighting" in keep[0]
    shading = load_edit_instructions(key="shading")
    assert len(shading) == 1 and not set(shading) & (set(albedo) | set(keep))
    from probe.klein.train import tokenizer_corpus   # the BPE merges (and so the shipped models) do not read it
    assert shading[0] not in tokenizer_corpus()
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(["Make it flat."]))
    assert load_edit_instructions(bare) == ["Make it flat."]
    with pytest.raises(PromptFileError, match="keep_photo"):
        load_keep_photo_instructions(bare)


def test_unknown_record_is_a_clear_error(tmp_path):
    (tmp_path / RECORD_FILE).write_text("{\"format\": \"other\"}")
    with pytest.raises(KnownModelError, match="ray-plantain-known/1"):
        read_known_record(tmp_path)
    assert read_known_record(tmp_path / "nothing") is None


# ------------------------------------------------------------------------------------------ the shipped models
@pytest.mark.parametrize("name", KNOWN_MODELS)
def test_shipped_model_loads_by_short_name(name):
    from probe.klein.model import ModelSpec, load_pipeline
    from probe.klein.train import text_length

    path = known_model_dir(name)
    rec = read_known_record(path)
    assert rec["name"] == name and rec["banner"] == KNOWN_BANNER
    assert rec["data_recipe"]["render_command"].startswith("python -m render --generate")
    from probe.klein.train import default_scene_ids
    ids = (rec["data_recipe"]["first_id"], rec["data_recipe"]["last_id"])
    assert not any(i.split("__")[0].split("~")[0] in default_scene_ids() for i in ids)
    loaded = load_pipeline(ModelSpec(name))
    assert loaded.source == "known" and loaded.max_sequence_length == rec["max_sequence_length"]
    tok = loaded.pipe.tokenizer
    assert text_length(tok, rec["instruction"]) <= rec["max_sequence_length"]


def test_shipped_models_fit_the_size_budget():
    # bytes the repository holds: a file linked to another model's identical one (--link-shared) counts once
    files = [f for name in KNOWN_MODELS for f in known_model_dir(name).rglob("*")]
    total = sum(f.lstat().st_size for f in files if f.is_file() and not f.is_symlink())
    assert total <= 10 * 1024 * 1024, f"{total / 2**20:.2f} MiB"


def test_a_retrained_known_model_is_not_reused_by_evaluate(trained, tmp_path):
    """The generation key of a known-answer model carries a content hash of its folder: a retrained model under the
    same name and path is a different model to evaluate's resume."""
    import shutil

    from evaluate.generate import model_identity
    from probe.klein.model import ModelSpec, load_pipeline

    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    before = model_identity(load_pipeline(ModelSpec(str(copy))))
    rec = json.loads((copy / RECORD_FILE).read_text())
    rec["timing"]["total_wall_s"] += 1.0          # what a retrain changes at the least
    (copy / RECORD_FILE).write_text(json.dumps(rec))
    after = model_identity(load_pipeline(ModelSpec(str(copy))))
    assert before["known_model"]["name"] == "known-albedo"
    assert before["known_model"]["fingerprint"] != after["known_model"]["fingerprint"]
