"""A tiny, randomly initialised FLUX.2 [klein] pipeline, built offline and seeded.

    from probe.klein.tiny import build_tiny_pipeline, tiny_pipeline_dir
    pipe = build_tiny_pipeline(seed=0)          # Flux2KleinPipeline, float32, CPU, ~1 M parameters
    path = tiny_pipeline_dir()                   # saved once with save_pretrained, then loaded like a snapshot

Every component is the same diffusers/transformers class as in the real checkpoint
(Flux2Transformer2DModel with double and single blocks, AutoencoderKLFlux2, Qwen3ForCausalLM,
Qwen2TokenizerFast with a Qwen3-style chat template, FlowMatchEulerDiscreteScheduler), only
small. Its weights are random: it exists to exercise code paths, never to produce findings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# Bump when any config below changes, so a cached folder of an older tiny model is not reused.
TINY_VERSION = 1

# Sizes chosen so that the real pipeline's defaults work unchanged: the text encoder has
# 28 layers because klein reads hidden states (9, 18, 27); joint_attention_dim = 3 x hidden.
TINY_TEXT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=28, num_attention_heads=2,
    num_key_value_heads=1, head_dim=16, max_position_embeddings=1024, rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)
TINY_TRANSFORMER = dict(
    patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
    num_attention_heads=4, joint_attention_dim=3 * 32, timestep_guidance_channels=32,
    mlp_ratio=3.0, axes_dims_rope=(4, 4, 4, 4), rope_theta=2000, eps=1e-6, guidance_embeds=False,
)
TINY_VAE = dict(
    in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
    sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
)
# Mirrors the shape of the real klein scheduler config (dynamic shifting on, mu from the pipeline).
TINY_SCHEDULER = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential",
)

# Qwen3's chat template, reduced to what klein uses: one user turn, a generation prompt, and the
# empty think block that `enable_thinking=False` adds.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def build_tiny_tokenizer():
    """A byte-level BPE Qwen2TokenizerFast with no merges (one token per byte) and Qwen's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(sorted(byte_alphabet))}
    for s in SPECIAL_TOKENS:
        vocab[s] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tok = Qwen2TokenizerFast(
        tokenizer_object=core, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, additional_special_tokens=SPECIAL_TOKENS[1:], padding_side="right",
        model_max_length=1024,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_pipeline(seed: int = 0):
    """Build the tiny Flux2KleinPipeline in memory, identical for the same seed."""
    import torch
    from diffusers import (AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline,
                           Flux2Transformer2DModel)
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tiny_tokenizer()
    # fork_rng: seeding for reproducibility must not reset the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_cfg = Qwen3Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id, **TINY_TEXT)
        text_encoder = Qwen3ForCausalLM(text_cfg).eval()
        torch.manual_seed(seed + 1)
        transformer = Flux2Transformer2DModel(**TINY_TRANSFORMER).eval()
        torch.manual_seed(seed + 2)
        vae = AutoencoderKLFlux2(**TINY_VAE).eval()
        # Random BatchNorm statistics, so latent normalisation is exercised, not an identity.
        vae.bn.running_mean.uniform_(-0.1, 0.1)
        vae.bn.running_var.uniform_(0.5, 1.5)
    scheduler = FlowMatchEulerDiscreteScheduler(**TINY_SCHEDULER)
    return Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, transformer=transformer, is_distilled=False)


def tiny_pipeline_dir(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """Save the tiny pipeline once (atomically) and return its folder, to be loaded like a snapshot.

    Going through save_pretrained/from_pretrained means `--model tiny` and a real local
    snapshot share every line of loading code.
    """
    root = Path(cache_dir or os.environ.get("RAY_PLANTAIN_CACHE")
                or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ray-plantain")
    final = root / f"tiny-klein-v{TINY_VERSION}-seed{seed}"
    if (final / "model_index.json").is_file() and (final / "ray_plantain_tiny.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{final.name}.tmp{os.getpid()}"
    pipe = build_tiny_pipeline(seed)
    pipe.save_pretrained(tmp)
    (tmp / "ray_plantain_tiny.json").write_text(json.dumps(
        {"version": TINY_VERSION, "seed": seed, "note": "random weights: not a finding"}, indent=2))
    try:
        os.replace(tmp, final)
    except OSError:  # another process won the race; its copy is identical
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return final
