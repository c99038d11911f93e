"""Train a known-answer klein here: a small Flux2KleinPipeline (klein's own classes) that edits a rendered photo.

    from probe.klein.train import KnownTrainConfig, train_known
    record = train_known(KnownTrainConfig(data="runs/known-train", task="albedo", out="models/known-albedo"))

Tasks (`TASKS`): `albedo` edits the rendered photograph (`image_srgb.png`, the reference image) into that sample's
albedo (`albedo_srgb.png`) under the instruction `evaluate generate` uses by default (prompts/edit_instructions.json,
`instructions[0]`); `photo` gives the photograph back under the keep-photo instruction (`keep_photo[0]` of the
same file): the same architecture, data and budget on a task that needs no separation of light and colour;
`shading` edits it into its diffuse shading (`shading_linear.exr` shown as `render.imageio.shading_display_srgb`
does: s / (1 + s), sRGB-encoded, 8-bit) under the shading instruction (`shading[0]`); its answer keeps the light
but not all of the colour's absence: indirect light carries the surfaces' colours (on new generated scenes the
displayed shading's change under a recolouring is 0.35 of its change under a relighting, per unit of photo
change). `light` removes that: its target is the linear shading averaged over every colour variant of the sample's
base scene under the same lighting, then shown the same way, so every recolouring of a scene and lighting has one
target (ratio 0 on colour pairs by construction, as the albedo's is on lighting pairs): the known answer for
lighting-selective heads. `intrinsic` learns both halves of the decomposition in one network: each training
sample appears twice, once under the albedo instruction with its albedo as the target and once under the shading
instruction with the `light` target, so the text chooses the component; every job probes and evaluates it under
the albedo instruction (the record's `instruction`), as it does every model. The VAE is always trained on photos and albedos (or taken from --vae-from), so every
task can share one.

What is built and trained, in order (every part seeded; `KnownTrainConfig` holds every size and step count):
1. tokenizer: a byte-level BPE Qwen2TokenizerFast (the tiny model's class and chat template) whose merges are
   learnt from the shipped prompt files, so an instruction is ~40 tokens and the model reads
   `max_sequence_length` = 64 text tokens instead of klein's 512 (recorded; every job reads it from the model;
   the longest shipped probe prompts, up to 75 tokens, are cut, which `probe run` says) (recorded; every job reads it from the model);
2. text encoder: a tiny Qwen3ForCausalLM (28 layers: klein reads hidden states 9, 18, 27), seeded, not trained;
3. VAE (AutoencoderKLFlux2): trained as an autoencoder of photos and albedos (L1 + L2 of the decoded latent mean,
   plus a small KL term), then its BatchNorm running statistics set to the mean and variance of the patchified
   latents, which is how FLUX.2 normalises latents (`Flux2KleinPipeline._encode_vae_image`);
4. transformer (Flux2Transformer2DModel): flow matching as FLUX.2 trains: x_t = (1 - s) x0 + s noise, the target
   velocity noise - x0, s drawn uniformly and then moved by the scheduler's own time shift with the mu the
   pipeline computes for this image size (`compute_empirical_mu`, 50 steps), the timestep given as s (the
   pipeline passes t / 1000). The inputs are built by the pipeline's own helpers, as `Flux2KleinPipeline.__call__`
   builds them at inference: `encode_prompt` (text embeddings and text ids), `image_processor.preprocess` and
   `_encode_vae_image` (normalised latents), `_pack_latents`, `_prepare_latent_ids` for the generated tokens and
   `_prepare_image_ids` for the reference tokens, which are appended after the generated ones; the loss is taken
   on the generated tokens only (the pipeline keeps `noise_pred[:, :n_img]`). With probability `prompt_dropout`
   the text is the empty prompt (the pipeline's negative prompt), with the same target, so CFG at the pipeline's
   default guidance extrapolates between two predictions of the same output.
Training inputs come from a `python -m render --generate` folder; samples of the 25 default scenes (the held-out
test set) are refused. Horizontal flips double the data (the flipped images are encoded, not their latents).

`training_inputs` is the one place the transformer's inputs are built; a test checks them against what the pipeline
hands the transformer at its first sampling step.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .known import KNOWN_BANNER, RECORD_FILE, RECORD_FORMAT

TASKS = {
    "albedo": {"target": "albedo_srgb", "instruction_key": "instructions",
               "what": "edits the rendered photograph (reference image) into its albedo under the albedo instruction "
                       "evaluate generate uses by default: a network trained to separate surface colour from light"},
    "photo": {"target": "image_srgb", "instruction_key": "keep_photo",
              "what": "gives the rendered photograph (reference image) back unchanged under the keep-photo "
                      "instruction: the same architecture, data and budget on a task that needs no separation of "
                      "light and colour (the specificity control)"},
    "shading": {"target": "shading_srgb", "instruction_key": "shading",
                "what": "edits the rendered photograph (reference image) into its diffuse shading (the scene as if "
                        "every surface were plain white) under the shading instruction: a network trained to keep "
                        "the light and drop the surface colour (up to the colour its interreflections carry)"},
    "light": {"target": "light_srgb", "instruction_key": "shading",
              "what": "edits the rendered photograph (reference image) into the diffuse shading of its scene under "
                      "its lighting averaged over the scene's colour variants (shown as the shading task shows it), "
                      "under the shading instruction: the same target for every recolouring of a scene and lighting, "
                      "so its answer keeps the light and drops the surface colour entirely; the known answer for "
                      "lighting-selective heads"},
    "intrinsic": {"target": "albedo_srgb", "instruction_key": "instructions",
                  "what": "edits the rendered photograph (reference image) into either intrinsic component, as its "
                          "instruction asks: its albedo under the albedo instruction evaluate generate uses by default, "
                          "and the diffuse shading of its scene under its lighting averaged over the scene's colour "
                          "variants (the light task's target) under the shading instruction: a network trained to "
                          "separate light from surface colour in both directions",
                  "also": ("light_srgb", "shading")},     # (second target, its instruction key)
}
SHADING_TASKS = ("shading", "light", "intrinsic")    # targets read from shading_linear.exr
MEAN_OVER_COLOURS = ("light", "intrinsic")           # shading averaged over the colour variants of a scene and light
TRAIN_FORMAT = 1          # bump when what training does changes
TEXT_CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=28, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=16, max_position_embeddings=1024, rope_theta=1_000_000.0,
                   tie_word_embeddings=True)
DEFAULT_STEPS_FOR_MU = 50  # the pipeline's default num_inference_steps: the mu its scheduler shift uses


class KnownTrainError(ValueError):
    """Training data or settings that cannot be used (message is user-facing)."""


@dataclass(frozen=True)
class KnownTrainConfig:
    data: str                                   # a `python -m render --generate` folder (never the default scenes)
    task: str                                   # albedo | photo | shading | light | intrinsic
    out: str                                    # snapshot folder to write
    instruction: str | None = None              # the task's text (the job reads it: probe.jobs.known.task_instruction)
    second_instruction: str | None = None       # intrinsic only: the shading instruction (the light target's text)
    name: str | None = None                     # record name (default: known-<task>)
    seed: int = 0
    resolution: int = 64                        # renders must be resolution x resolution
    max_sequence_length: int = 64               # text tokens the model reads (klein: 512)
    threads: int = 1                            # torch CPU threads (1: small ops gain little from 2, and a shared
                                                # machine's load stalls every 2-thread region)
    vae_from: str | None = None                 # reuse this known model's tokenizer, text encoder and VAE
    link_shared: bool = False                   # with vae_from: files identical to its own become relative symlinks
    vae_steps: int = 1000
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_channels: tuple[int, ...] = (16, 32, 32)   # 3 blocks: 4x downsampling, 16 px per transformer token
    latent_channels: int = 32
    vae_kl: float = 1e-6
    steps: int = 2000                           # transformer optimiser steps
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    hidden: int = 128                           # heads x head_dim
    heads: int = 4
    double_blocks: int = 2
    single_blocks: int = 4
    prompt_dropout: float = 0.1
    flip: bool = True
    val_fraction: float = 0.05                  # base scenes held out for the validation loss
    val_every: int = 250
    storage_dtype: str = "float16"              # weights on disk (loading casts to the run's dtype)
    limit: int | None = None                    # first N samples only (tests)

    def check(self) -> "KnownTrainConfig":
        if self.task not in TASKS:
            raise KnownTrainError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not self.instruction or not self.instruction.strip():
            raise KnownTrainError("the training instruction is empty (probe.jobs.known.task_instruction gives each "
                                  "task's)")
        if ("also" in TASKS[self.task]) != bool(self.second_instruction and self.second_instruction.strip()):
            raise KnownTrainError(f"--task {self.task}: a second instruction is given exactly when the task has two "
                                  f"targets (intrinsic: the shading instruction; probe.jobs.known.task_instruction)")
        if self.resolution % 16 or self.resolution < 64:
            raise KnownTrainError(f"--resolution must be a multiple of 16 and at least 64 (klein's smallest side), "
                                  f"got {self.resolution}")
        if self.hidden % self.heads or (self.hidden // self.heads) % 4:
            raise KnownTrainError(f"--hidden {self.hidden} must split into {self.heads} heads of a size divisible by 4")
        for k in ("steps", "batch", "vae_batch", "max_sequence_length", "threads"):
            if getattr(self, k) < 1:
                raise KnownTrainError(f"{k} must be positive, got {getattr(self, k)}")
        if self.vae_steps < 0 or (self.vae_steps == 0 and not self.vae_from):
            raise KnownTrainError("--vae-steps must be positive unless --vae-from gives a trained VAE")
        if not 0 <= self.prompt_dropout < 1:
            raise KnownTrainError(f"--prompt-dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.link_shared and not self.vae_from:
            raise KnownTrainError("--link-shared needs --vae-from (the model whose identical files are linked)")
        if self.storage_dtype not in ("float16", "bfloat16", "float32"):
            raise KnownTrainError(f"storage dtype must be float16, bfloat16 or float32, got {self.storage_dtype}")
        return self

    @property
    def model_name(self) -> str:
        return self.name or f"known-{self.task}"


def transformer_config(cfg: KnownTrainConfig, text_hidden: int = TEXT_CONFIG["hidden_size"]) -> dict:
    head_dim = cfg.hidden // cfg.heads
    return dict(patch_size=1, in_channels=4 * cfg.latent_channels, num_layers=cfg.double_blocks,
                num_single_layers=cfg.single_blocks, attention_head_dim=head_dim, num_attention_heads=cfg.heads,
                joint_attention_dim=3 * text_hidden, timestep_guidance_channels=64, mlp_ratio=3.0,
                axes_dims_rope=(head_dim // 4,) * 4, rope_theta=2000, eps=1e-6, guidance_embeds=False)


def vae_config(cfg: KnownTrainConfig) -> dict:
    n = len(cfg.vae_channels)
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.vae_channels),
                layers_per_block=1, latent_channels=cfg.latent_channels, norm_num_groups=8,
                sample_size=cfg.resolution, use_quant_conv=False, use_post_quant_conv=False,
                mid_block_add_attention=False)


# ------------------------------------------------------------------------------------------ text
def tokenizer_corpus() -> list[str]:
    """The texts the BPE merges are learnt from: every shipped prompt and instruction, and the chat template's words."""
    from render.paths import data_dir

    root = data_dir("prompts")
    texts: list[str] = []
    inst = json.loads((root / "edit_instructions.json").read_text(encoding="utf-8"))
    texts += [s for key in ("instructions", "keep_photo") for s in inst.get(key, [])]
    for f in sorted(root.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts += [v for v in json.loads(line).values() if isinstance(v, str) and " " in v]
    return texts + ["user\n", "assistant\n", "\n\n"] * 50


def build_tokenizer(vocab_size: int = 2048):
    """Byte-level BPE with merges learnt from `tokenizer_corpus()`, as a Qwen2TokenizerFast with Qwen's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    from .tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

    core = Tokenizer(models.BPE(fuse_unk=False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tok = Qwen2TokenizerFast(tokenizer_object=core, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                             unk_token=None, additional_special_tokens=SPECIAL_TOKENS[1:], padding_side="right",
                             model_max_length=1024)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def text_length(tokenizer, prompt: str) -> int:
    """Tokens of `prompt` after klein's chat template (what must fit in max_sequence_length)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    return len(tokenizer(text)["input_ids"])


# ------------------------------------------------------------------------------------------ data
def default_scene_ids() -> set[str]:
    """Ids of the shipped default scenes (scenes/*.json): the held-out test set, never training data."""
    from render.paths import data_dir

    ids = set()
    for f in data_dir("scenes").glob("*.json"):
        try:
            ids.add(str(json.loads(f.read_text(encoding="utf-8")).get("id") or f.stem))
        except ValueError:
            ids.add(f.stem)
    return ids


@dataclass
class TrainData:
    photos: np.ndarray            # uint8 [N, H, W, 3] image_srgb.png
    albedos: np.ndarray           # uint8 [N, H, W, 3] albedo_srgb.png
    ids: list[str]
    base_scenes: list[str]
    manifest: dict
    val: np.ndarray = field(default=None)   # bool [N]: held out for the validation loss
    shadings: np.ndarray | None = None      # uint8 [N, H, W, 3] the shading / light task's target

    def describe(self) -> dict:
        h = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]
        return {"n_samples": len(self.ids), "n_base_scenes": len(set(self.base_scenes)),
                "n_validation_samples": int(self.val.sum()),
                "n_validation_base_scenes": len({b for b, v in zip(self.base_scenes, self.val) if v}),
                "sample_ids_sha256_16": h, "first_id": self.ids[0], "last_id": self.ids[-1]}


def load_train_data(cfg: KnownTrainConfig) -> TrainData:
    """Photos and albedos of a render folder, checked: no default scene, the right size, 8-bit sRGB PNGs."""
    from PIL import Image

    from render.dataset import list_samples, load_manifest

    try:
        manifest = load_manifest(cfg.data)
        samples = list_samples(cfg.data, manifest)
    except (FileNotFoundError, ValueError) as e:
        raise KnownTrainError(f"cannot read the training renders in {cfg.data}: {e}") from e
    if not samples:
        raise KnownTrainError(f"{cfg.data} holds no finished samples")
    held_out = sorted({s.base_scene for s in samples} & default_scene_ids())
    if held_out:
        raise KnownTrainError(
            f"{cfg.data} holds samples of the default scenes ({', '.join(held_out[:5])}{', ...' if len(held_out) > 5 else ''}): "
            f"those are the held-out test set of every known-answer check and are never trained on. Render training "
            f"data with `python -m render --generate N --recolor K --resolution {cfg.resolution} --out DIR`.")
    if cfg.limit:
        samples = samples[:cfg.limit]
    photos, albedos, shadings = [], [], []
    for s in samples:
        if s.albedo_srgb is None:
            raise KnownTrainError(f"{s.id} has no albedo_srgb.png: rerun the same render command to add it")
        if cfg.task in SHADING_TASKS:
            shadings.append(_shading_linear(s, cfg.resolution))
        pair = []
        for path in (s.image_srgb, s.albedo_srgb):
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            if arr.shape[:2] != (cfg.resolution, cfg.resolution):
                raise KnownTrainError(
                    f"{path} is {arr.shape[1]}x{arr.shape[0]}; known-answer models train at --resolution "
                    f"{cfg.resolution}: render with `--resolution {cfg.resolution}` (or pass --resolution)")
            pair.append(arr)
        photos.append(pair[0])
        albedos.append(pair[1])
    base = [s.base_scene for s in samples]
    # validation: whole base scenes, chosen by a hash of their id (stable when the folder grows)
    val = np.array([zlib.crc32(b.encode()) % 1000 < cfg.val_fraction * 1000 for b in base])
    if val.all():
        val[:] = False
    return TrainData(np.stack(photos), np.stack(albedos), [s.id for s in samples], base, manifest, val,
                     shading_targets(cfg.task, samples, shadings) if shadings else None)


def shading_targets(task: str, samples, linear: list) -> np.ndarray:
    """The shading / light task's 8-bit sRGB targets (render.imageio.shading_display_srgb of the linear shading;
    for `light` and `intrinsic`, of the mean linear shading over the samples that share the base scene and lighting)."""
    from render.imageio import shading_display_srgb

    if task in MEAN_OVER_COLOURS:
        groups: dict = {}
        for i, s in enumerate(samples):
            groups.setdefault((s.base_scene, s.lighting), []).append(i)
        mean = {k: np.mean([linear[i] for i in idx], axis=0) for k, idx in groups.items()}
        linear = [mean[(s.base_scene, s.lighting)] for s in samples]
    return np.stack([np.round(shading_display_srgb(x) * 255.0).astype(np.uint8) for x in linear])


def _shading_linear(sample, resolution: int) -> np.ndarray:
    """A sample's diffuse shading (shading_linear.exr, linear, float32 [H, W, 3])."""
    from render.imageio import read_exr

    rel = sample.meta.get("shading")
    path = sample.image_linear.parent.parent / rel if rel else None   # manifest paths are relative to the root
    if path is None or not path.is_file():
        raise KnownTrainError(f"{sample.id} has no shading_linear.exr (the shading task's target): rerun the same "
                              f"render command to add it")
    arr = read_exr(path)[..., :3].astype(np.float32)
    if arr.shape[:2] != (resolution, resolution):
        raise KnownTrainError(f"{path} is {arr.shape[1]}x{arr.shape[0]}; known-answer models train at --resolution "
                              f"{resolution}")
    return arr


def data_recipe(manifest: dict, data: TrainData) -> dict:
    """The render command that makes this training folder again, read back from its manifest and sample ids."""
    rs = manifest.get("render_settings", {})
    bases = sorted(set(data.base_scenes))
    m = [re.fullmatch(r"gen_s(\d+)_(\d{4})", b) for b in bases]
    cmd = None
    if all(m) and len({x.group(1) for x in m}) == 1:
        n = max(int(x.group(2)) for x in m) + 1
        seed = int(m[0].group(1))
        rec = manifest.get("recolor") or {}
        parts = ["python -m render", f"--generate {n}", f"--seed {seed}"]
        if rec.get("variants"):
            parts += [f"--recolor {rec['variants']}", f"--recolor-seed {rec.get('seed', 0)}"]
        parts += [f"--resolution {rs.get('width', '?')}", f"--samples {rs.get('samples', '?')}"]
        if rs.get("adaptive_threshold") not in (None, 0.02):
            parts.append(f"--adaptive-threshold {rs['adaptive_threshold']}")
        if rs.get("denoise") not in (None, "passes"):
            parts.append(f"--denoise {rs['denoise']}")
        cmd = " ".join(parts + ["--out DIR"])
    return {"render_command": cmd, "generator_scenes": bases[0] + " .. " + bases[-1] if bases else None,
            "render_settings": rs, "recolor": manifest.get("recolor"), "blender_version": manifest.get("blender_version"),
            "denoise": (manifest.get("denoise") or {}).get("mode"), **data.describe(),
            "held_out": "the 25 default scenes (scenes/*.json) are never trained on: the training job refuses them"}


# ------------------------------------------------------------------------------------------ model parts
def build_text_parts(seed: int):
    """(tokenizer, text encoder): the BPE tokenizer and a seeded tiny Qwen3, as klein's pipeline holds them."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        te = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                          eos_token_id=tok.eos_token_id, **TEXT_CONFIG)).eval()
    return tok, te


def assemble_pipeline(vae, transformer, tokenizer, text_encoder):
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    from .tiny import TINY_SCHEDULER

    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**TINY_SCHEDULER), vae=vae,
                              text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                              is_distilled=False)


def images_to_tensor(u8: np.ndarray):
    """uint8 [N, H, W, 3] sRGB -> float32 [N, 3, H, W] in [-1, 1], as Flux2ImageProcessor.preprocess normalises."""
    import torch

    return torch.from_numpy(np.array(u8, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(vae, images, cfg: KnownTrainConfig, log: Callable[[str], None], curve: list, val_images=None):
    """Autoencoder training of an AutoencoderKLFlux2 on [-1, 1] images (L1 + L2 of decode(mean) + KL)."""
    import torch

    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.vae_lr, total_steps=cfg.vae_steps, pct_start=0.02,
                                                div_factor=10, final_div_factor=20)
    g = torch.Generator().manual_seed(cfg.seed + 11)
    vae.train()
    for step in range(cfg.vae_steps):
        x = images[torch.randint(0, len(images), (cfg.vae_batch,), generator=g)]
        if cfg.flip:
            flip = torch.rand(cfg.vae_batch, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.mode()).sample
        rec_loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        loss = rec_loss + cfg.vae_kl * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        curve.append(("vae", step, rec_loss.item(), None))
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            msg = f"vae {step + 1}/{cfg.vae_steps} loss {rec_loss.item():.4f}"
            if val_images is not None and len(val_images) and (step % 500 == 0 or step == cfg.vae_steps - 1):
                p = vae_psnr(vae, val_images)
                curve[-1] = ("vae", step, rec_loss.item(), p)
                msg += f" validation PSNR {p:.2f} dB"
            log(msg)
    return vae.eval()


def vae_psnr(vae, images, batch: int = 64) -> float:
    """PSNR (dB, sRGB 0-255 after 8-bit rounding) of decode(encode(x).mean) over images in [-1, 1]."""
    import torch

    was = vae.training
    vae.eval()
    se, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            r = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
            r8, x8 = torch.round((r + 1) * 127.5), torch.round((x + 1) * 127.5)
            se += float(((r8 - x8) ** 2).sum())
            n += x.numel()
    vae.train(was)
    return 10 * math.log10(255.0 ** 2 / max(se / n, 1e-12))


def set_latent_statistics(pipe, images, batch: int = 64) -> None:
    """BatchNorm running mean and variance of the VAE := those of the patchified latent means over `images`."""
    import torch

    zs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            zs.append(pipe._patchify_latents(pipe.vae.encode(images[i:i + batch]).latent_dist.mode()))
    z = torch.cat(zs)
    pipe.vae.bn.running_mean.copy_(z.mean(dim=(0, 2, 3)))
    pipe.vae.bn.running_var.copy_(z.var(dim=(0, 2, 3)))


def encode_images(pipe, images, batch: int = 64):
    """[-1, 1] images -> packed normalised latents [N, tokens, 4 x latent_channels], by the pipeline's own helpers
    (`_encode_vae_image`: the latent mean, patchified and BatchNorm-normalised; `_pack_latents`)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(pipe._pack_latents(pipe._encode_vae_image(images[i:i + batch], generator=None)))
    return torch.cat(out)


@dataclass
class TextInputs:
    prompt_embeds: object      # [K, L, 3 x text hidden]: one row per instruction (K = 1 but for intrinsic)
    negative_embeds: object    # [1, L, ...]: the empty prompt, the pipeline's negative prompt
    text_ids: object           # [1, L, 4]


def encode_texts(pipe, prompt: str | list[str], max_sequence_length: int) -> TextInputs:
    """The instruction(s) and the empty prompt as the pipeline encodes them (a list: one embedding row each)."""
    import torch

    with torch.no_grad():
        pe, tids = pipe.encode_prompt(prompt, max_sequence_length=max_sequence_length)
        ne, _ = pipe.encode_prompt("", max_sequence_length=max_sequence_length)
    return TextInputs(pe, ne, tids[:1])     # text ids are positions only: one row serves every prompt


def token_ids(pipe, side: int):
    """Position ids of the generated tokens then the reference tokens ([n_img + n_ref, 4]), as the pipeline
    builds them: `_prepare_latent_ids` (T = 0) and `_prepare_image_ids` (T = 10) of a side x side latent grid."""
    import torch

    grid = torch.zeros(1, 1, side, side)
    return torch.cat([pipe._prepare_latent_ids(grid)[0], pipe._prepare_image_ids([grid])[0]])


def sigma_shift_mu(n_img_tokens: int) -> float:
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

    return compute_empirical_mu(image_seq_len=n_img_tokens, num_steps=DEFAULT_STEPS_FOR_MU)


def training_inputs(pipe, x0, ref, sigma, noise, text: TextInputs, keep_prompt, which=None) -> dict:
    """The transformer's keyword arguments for one training batch, exactly as Flux2KleinPipeline.__call__ hands them
    over at a sampling step with noise level `sigma`: hidden_states = [noisy generated tokens, reference tokens],
    timestep = sigma (t / 1000), the text embeddings (the empty prompt where keep_prompt is False), text ids and
    image ids. x0, ref, noise: [B, n, C] packed latents; sigma: [B]; keep_prompt: bool [B]; which: long [B], the
    row of text.prompt_embeds each sample reads (None: the first, the only one of a one-instruction task)."""
    import torch

    b, n, _ = x0.shape
    side = int(round(math.sqrt(n)))
    xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    prompt = text.prompt_embeds[:1].expand(b, -1, -1) if which is None else text.prompt_embeds[which]
    enc = torch.where(keep_prompt[:, None, None], prompt, text.negative_embeds.expand(b, -1, -1))
    return dict(hidden_states=torch.cat([xt, ref], dim=1), timestep=sigma, guidance=None, encoder_hidden_states=enc,
                txt_ids=text.text_ids.expand(b, -1, -1), img_ids=token_ids(pipe, side)[None].expand(b, -1, -1),
                return_dict=False)


def flow_loss(pipe, x0, ref, sigma, noise, text: TextInputs, keep_prompt, which=None):
    """Mean squared error of the predicted velocity on the generated tokens (target noise - x0)."""
    out = pipe.transformer(**training_inputs(pipe, x0, ref, sigma, noise, text, keep_prompt, which))[0][:, :x0.shape[1]]
    return ((out - (noise - x0)) ** 2).mean()


def train_transformer(pipe, refs, targets, text: TextInputs, cfg: KnownTrainConfig, log: Callable[[str], None],
                      curve: list, val: tuple | None = None, which=None) -> None:
    """AdamW on the flow loss. refs, targets: [N, n, C] packed latents; which: long [N], each row's instruction
    (row of text.prompt_embeds; None: one instruction); val: (refs, targets[, which]) held out."""
    import torch

    tf = pipe.transformer
    tf.train()
    mu = sigma_shift_mu(targets.shape[1])
    opt = torch.optim.AdamW(tf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    warm = max(1, min(cfg.warmup, cfg.steps // 10))

    def lr_at(s: int) -> float:   # linear warm-up, cosine decay to 5 %
        return min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    g = torch.Generator().manual_seed(cfg.seed + 21)
    val_batch = None
    if val is not None and len(val[0]):
        gv = torch.Generator().manual_seed(cfg.seed + 31)
        vr, vt = val[:2]
        nv = len(vt)
        val_batch = (vt, vr, pipe.scheduler.time_shift(mu, 1.0, (torch.arange(nv) + 0.5) / nv)[torch.randperm(nv, generator=gv)],
                     torch.randn(vt.shape, generator=gv), torch.ones(nv, dtype=torch.bool),
                     val[2] if len(val) > 2 else None)
    ema = None
    for step in range(cfg.steps):
        idx = torch.randint(0, len(targets), (cfg.batch,), generator=g)
        sigma = pipe.scheduler.time_shift(mu, 1.0, torch.rand(cfg.batch, generator=g))
        noise = torch.randn(targets[idx].shape, generator=g)
        keep = torch.rand(cfg.batch, generator=g) >= cfg.prompt_dropout
        loss = flow_loss(pipe, targets[idx], refs[idx], sigma, noise, text, keep, None if which is None else which[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tf.parameters(), 1.0)
        opt.step()
        sched.step()
        value = loss.item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        vloss = None
        if val_batch is not None and (step % cfg.val_every == 0 or step == cfg.steps - 1):
            tf.eval()
            with torch.no_grad():
                vw = val_batch[5]
                vloss = float(sum(flow_loss(pipe, *(t[i:i + 64] for t in val_batch[:4]), text, val_batch[4][i:i + 64],
                                            None if vw is None else vw[i:i + 64])
                                  * len(val_batch[0][i:i + 64]) for i in range(0, len(val_batch[0]), 64))
                              / len(val_batch[0]))
            tf.train()
        curve.append(("transformer", step, value, vloss))
        if step % 50 == 0 or step == cfg.steps - 1 or vloss is not None:
            log(f"transformer {step + 1}/{cfg.steps} loss {value:.4f} (ema {ema:.4f}) lr {sched.get_last_lr()[0]:.2e}"
                + (f" validation loss {vloss:.4f}" if vloss is not None else ""))
    tf.eval()


# ------------------------------------------------------------------------------------------ the job
def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def train_known(cfg: KnownTrainConfig, log: Callable[[str], None] = print) -> dict:
    """Build, train and save one known-answer model (see the module docstring); returns its record."""
    import torch

    from probe.io.jsonio import versions

    cfg = cfg.check()
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise KnownTrainError(f"--out {out} exists and is not empty: choose a new folder (a trained model is never "
                              f"overwritten in place)")
    torch.set_num_threads(cfg.threads)
    t_start, c_start = time.perf_counter(), _cpu_seconds()
    timing: dict = {"threads": cfg.threads}
    instruction = cfg.instruction
    data = load_train_data(cfg)
    log(f"data: {len(data.ids)} samples of {len(set(data.base_scenes))} scenes from {cfg.data} "
        f"({int(data.val.sum())} held out for validation)")

    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel

    if cfg.vae_from:
        from .known import KNOWN_MODELS, known_model_dir

        src = known_model_dir(cfg.vae_from) if cfg.vae_from in KNOWN_MODELS else Path(cfg.vae_from)
        import warnings

        with warnings.catch_warnings():   # newer diffusers renamed torch_dtype to dtype (as probe.klein.model)
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            donor = Flux2KleinPipeline.from_pretrained(str(src), torch_dtype=torch.float32, local_files_only=True)
        tok, te, vae = donor.tokenizer, donor.text_encoder, donor.vae
        vae_source = {"from": str(cfg.vae_from), "steps": 0}
    else:
        tok, te = build_text_parts(cfg.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            vae = AutoencoderKLFlux2(**vae_config(cfg))
        vae_source = {"from": None, "steps": cfg.vae_steps}
    prompts = [instruction] + ([cfg.second_instruction] if cfg.second_instruction else [])
    n_text = max(text_length(tok, t) for t in prompts + [""])
    if n_text > cfg.max_sequence_length:
        raise KnownTrainError(f"the {cfg.task} instruction(s) take {n_text} tokens, more than --max-sequence-length "
                              f"{cfg.max_sequence_length}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 2)
        transformer = Flux2Transformer2DModel(**transformer_config(cfg, te.config.hidden_size))
    pipe = assemble_pipeline(vae, transformer, tok, te)
    pipe.set_progress_bar_config(disable=True)

    photos, albedos = images_to_tensor(data.photos), images_to_tensor(data.albedos)
    shadings = images_to_tensor(data.shadings) if data.shadings is not None else None
    if cfg.flip:
        photos, albedos = torch.cat([photos, photos.flip(-1)]), torch.cat([albedos, albedos.flip(-1)])
        if shadings is not None:
            shadings = torch.cat([shadings, shadings.flip(-1)])
        val_mask = torch.from_numpy(np.concatenate([data.val, data.val]))
    else:
        val_mask = torch.from_numpy(data.val)
    curve: list = []
    t0, c0 = time.perf_counter(), _cpu_seconds()
    all_train = torch.cat([photos[~val_mask], albedos[~val_mask]])
    all_val = torch.cat([photos[val_mask], albedos[val_mask]])
    if not cfg.vae_from:
        log(f"VAE: {sum(p.numel() for p in vae.parameters()):,} parameters, {cfg.vae_steps} steps")
        train_vae(vae, all_train, cfg, log, curve, all_val)
        set_latent_statistics(pipe, all_train)
    vae.eval()
    psnr = {"train_db": vae_psnr(vae, all_train[:512]), "validation_db": vae_psnr(vae, all_val) if len(all_val) else None}
    if shadings is not None:   # the VAE never saw shading images: how well it carries the shading target
        psnr["shading_target_train_db"] = vae_psnr(vae, shadings[~val_mask][:512])
        psnr["shading_target_validation_db"] = vae_psnr(vae, shadings[val_mask]) if val_mask.any() else None
    timing["vae_wall_s"], timing["vae_cpu_s"] = time.perf_counter() - t0, _cpu_seconds() - c0
    log(f"VAE reconstruction PSNR (8-bit sRGB): train {psnr['train_db']:.2f} dB"
        + (f", validation {psnr['validation_db']:.2f} dB" if psnr["validation_db"] else ""))
    if shadings is not None:
        log(f"VAE reconstruction PSNR of the shading targets: train {psnr['shading_target_train_db']:.2f} dB"
            + (f", validation {psnr['shading_target_validation_db']:.2f} dB"
               if psnr["shading_target_validation_db"] else ""))

    t0, c0 = time.perf_counter(), _cpu_seconds()
    refs = encode_images(pipe, photos)
    if cfg.task == "photo":
        targets = refs
    else:
        targets = encode_images(pipe, albedos if cfg.task in ("albedo", "intrinsic") else shadings)
    text = encode_texts(pipe, prompts if len(prompts) > 1 else instruction, cfg.max_sequence_length)
    which = None
    if cfg.task == "intrinsic":   # every sample twice: albedo under the first instruction, light under the second
        second = encode_images(pipe, shadings)
        which = torch.cat([torch.zeros(len(refs), dtype=torch.long), torch.ones(len(refs), dtype=torch.long)])
        refs, targets, val_mask = torch.cat([refs, refs]), torch.cat([targets, second]), torch.cat([val_mask, val_mask])
    timing["encode_wall_s"], timing["encode_cpu_s"] = time.perf_counter() - t0, _cpu_seconds() - c0
    n_params = sum(p.numel() for p in transformer.parameters())
    log(f"transformer: {n_params:,} parameters, {cfg.steps} steps of batch {cfg.batch}, "
        f"{targets.shape[1]} generated + {refs.shape[1]} reference + {cfg.max_sequence_length} text tokens")
    t0, c0 = time.perf_counter(), _cpu_seconds()
    train_transformer(pipe, refs[~val_mask], targets[~val_mask], text, cfg, log, curve,
                      (refs[val_mask], targets[val_mask]) + (() if which is None else (which[val_mask],)),
                      None if which is None else which[~val_mask])
    timing["transformer_wall_s"], timing["transformer_cpu_s"] = time.perf_counter() - t0, _cpu_seconds() - c0
    timing["total_wall_s"], timing["total_cpu_s"] = time.perf_counter() - t_start, _cpu_seconds() - c_start
    try:
        timing["load_average_1min_at_end"] = os.getloadavg()[0]
    except OSError:
        pass
    record = _record(cfg, data, instruction, vae_source, psnr, timing, curve, n_params, versions())
    save_snapshot(pipe, out, record, curve, cfg.storage_dtype)
    if cfg.vae_from:
        adopt_donor_parts(out, Path(src))
    if cfg.link_shared:
        linked = link_identical_files(out, Path(src))
        log(f"linked {len(linked)} files identical to {src}'s: " + ", ".join(linked))
    log(f"wrote {out} in {timing['total_wall_s'] / 60:.1f} min ({timing['total_cpu_s'] / 60:.1f} CPU-min, "
        f"{cfg.threads} threads)")
    return record


def _record(cfg, data, instruction, vae_source, psnr, timing, curve, n_params, libs) -> dict:
    tf_losses = [c[2] for c in curve if c[0] == "transformer"]
    tf_val = [c[3] for c in curve if c[0] == "transformer" and c[3] is not None]
    tail = tf_losses[-max(1, len(tf_losses) // 20):]
    also = TASKS[cfg.task].get("also")
    second = {"second_instruction": cfg.second_instruction,
              "second_instruction_source": f"prompts/edit_instructions.json {also[1]}[0]",
              "second_target": f"{also[0]}.png of the same sample (the light task's target; each sample is trained "
                               f"on under both instructions, and every job reads `instruction`)"} if also else {}
    return {
        "format": RECORD_FORMAT, "name": cfg.model_name, "task": cfg.task, "banner": KNOWN_BANNER,
        "what": TASKS[cfg.task]["what"], "instruction": instruction,
        "instruction_source": f"prompts/edit_instructions.json {TASKS[cfg.task]['instruction_key']}[0]",
        "input": "reference image = the rendered photograph (image_srgb.png), as evaluate generate gives it",
        "target": f"{TASKS[cfg.task]['target']}.png of the same sample", **second,
        "max_sequence_length": cfg.max_sequence_length, "resolution": cfg.resolution,
        "train_config": asdict(cfg), "train_format": TRAIN_FORMAT,
        "seeds": {"text_encoder": cfg.seed, "vae_init": cfg.seed + 1, "transformer_init": cfg.seed + 2,
                  "vae_batches": cfg.seed + 11, "transformer_batches_noise_sigma_dropout": cfg.seed + 21,
                  "validation_noise": cfg.seed + 31},
        "vae": vae_source, "vae_psnr_srgb_8bit": psnr,
        "transformer_parameters": n_params,
        "final_train_loss_mean_last_5pct": float(np.mean(tail)) if tail else None,
        "final_validation_loss": tf_val[-1] if tf_val else None,
        "data_recipe": data_recipe(data.manifest, data), "timing": timing, "versions": libs,
        "loss_curve": "loss_curve.csv",
        "retrain": (f"python -m probe known train --data DIR --task {cfg.task} --out NEW_DIR"
                    + (f" --vae-from {cfg.vae_from}" if cfg.vae_from else "")
                    + " (DIR: the render command of data_recipe)"),
        "flow_matching": "x_t = (1 - s) x0 + s noise, target noise - x0, s = scheduler.time_shift(mu, 1, u), "
                         "u ~ U(0, 1), mu = compute_empirical_mu(n_img_tokens, 50); empty prompt with probability "
                         f"{cfg.prompt_dropout} (same target)",
    }


SHARED_PARTS = ("vae", "text_encoder", "tokenizer", "scheduler")   # what --vae-from takes from the donor


def save_snapshot(pipe, out: Path, record: dict, curve: list, storage_dtype: str) -> None:
    """save_pretrained (safetensors) with weights in storage_dtype, the record, the loss curve and a README,
    written to a temporary folder first and renamed into place."""
    import torch

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    from diffusers.utils import logging as dlog

    dtype = getattr(torch, storage_dtype)
    level = dlog.get_verbosity()
    dlog.set_verbosity_error()      # casting a whole model with .to() warns about fp32-only modules: these have none
    try:
        for name in ("transformer", "text_encoder", "vae"):
            getattr(pipe, name).to(dtype)
        pipe.save_pretrained(tmp, safe_serialization=True)
    finally:
        for name in ("transformer", "text_encoder", "vae"):
            getattr(pipe, name).to(torch.float32)
        dlog.set_verbosity(level)
    with open(tmp / "loss_curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stage", "step", "loss_mean_of_block", "validation_loss"])
        for stage in ("vae", "transformer"):
            rows = [c for c in curve if c[0] == stage]
            block = 10
            for i in range(0, len(rows), block):
                chunk = rows[i:i + block]
                vals = [c[3] for c in chunk if c[3] is not None]
                w.writerow([stage, chunk[-1][1] + 1, f"{np.mean([c[2] for c in chunk]):.6f}",
                            f"{vals[-1]:.6f}" if vals else ""])
    (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    (tmp / "README.md").write_text(model_readme(record), encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()    # empty (checked before training)
    os.replace(tmp, out)


def adopt_donor_parts(folder: Path, donor: Path, parts: tuple[str, ...] = SHARED_PARTS) -> None:
    """The components taken from the donor model untrained (--vae-from: VAE, text encoder, tokenizer, scheduler)
    become byte copies of the donor's own files: save_pretrained would re-save them with metadata of the load
    (`_name_or_path`, a tokenizer's resolved defaults), which changes no weight or token but makes the two snapshots'
    components differ by content hash, so that one population of untrained networks could not be shown to serve
    both (evaluate verdict compares components)."""
    for part in parts:
        src = donor / part
        if not src.is_dir():
            continue
        shutil.rmtree(folder / part, ignore_errors=True)
        shutil.copytree(src, folder / part, symlinks=False)


def link_identical_files(folder: Path, donor: Path,
                         parts: tuple[str, ...] = SHARED_PARTS) -> list[str]:
    """Replace every file of `folder`'s `parts` that is byte-identical to the donor's by a relative symlink to it
    (as a Hugging Face cache links snapshot files to shared blobs): two known-answer models that share a VAE and a
    text encoder keep one copy on disk. Returns the linked paths, relative to `folder`."""
    linked = []
    for part in parts:
        for f in sorted((folder / part).glob("*")):
            twin = donor / part / f.name
            if f.is_file() and not f.is_symlink() and twin.is_file() and f.read_bytes() == twin.read_bytes():
                target = os.path.relpath(twin.resolve(), f.parent.resolve())
                f.unlink()
                f.symlink_to(target)
                linked.append(f"{part}/{f.name}")
    return linked


def model_readme(record: dict) -> str:
    t = record["timing"]
    tc = record["train_config"]
    return "\n".join([
        f"# {record['name']}: {record['banner']}", "",
        f"A small FLUX.2 [klein] (Flux2KleinPipeline: Flux2Transformer2DModel, AutoencoderKLFlux2, a tiny Qwen3 text "
        f"encoder, FlowMatchEulerDiscreteScheduler) that {record['what']}.", "",
        f"- instruction: \"{record['instruction']}\" ({record['instruction_source']})",
        f"- input: {record['input']}; output trained towards: {record['target']}",
        *([f"- and under \"{record['second_instruction']}\" ({record['second_instruction_source']}) towards: "
           f"{record['second_target']}"] if record.get("second_instruction") else []),
        f"- {record['resolution']}x{record['resolution']} px; text length {record['max_sequence_length']} tokens "
        f"(every job reads it from {RECORD_FILE})",
        f"- transformer: {record['transformer_parameters']:,} parameters ({tc['hidden']} hidden, {tc['heads']} heads, "
        f"{tc['double_blocks']} double + {tc['single_blocks']} single blocks), {tc['steps']} steps of batch "
        f"{tc['batch']}, lr {tc['lr']}; VAE: {record['vae']}; VAE PSNR {record['vae_psnr_srgb_8bit']}",
        f"- data: {record['data_recipe']['n_samples']} samples of {record['data_recipe']['n_base_scenes']} generated "
        f"scenes, made by `{record['data_recipe']['render_command']}`; the 25 default scenes are never trained on",
        f"- trained in {t['total_wall_s'] / 60:.1f} min wall, {t['total_cpu_s'] / 60:.1f} CPU-min, {t['threads']} "
        f"threads; loss curve in loss_curve.csv; final training loss {record['final_train_loss_mean_last_5pct']:.4f}, "
        f"validation loss {record['final_validation_loss']}", "",
        f"Retrain: `{record['retrain']}`. Load: `--model {record['name']}` or `--model <this folder>`.", ""])
