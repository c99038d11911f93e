"""Activation memory of klein's largest block at a 1024^2 edit with CFG: one single-transformer block, real width
(3072 = 24 heads x 128, MLP ratio 3: fused projection 3 x 3072 + 2 x 9216 = 27,648 channels), bf16, random weights,
on the CPU, over L = 512 text + 4096 generated + 4096 reference tokens = 8,704 (batch 1).

    python benchmarks/bench_memory.py            # about 2 minutes on 2 cores

Prints the peak resident memory the forward adds over its weights and inputs (max RSS after minus before, one
process), beside the size of the fused projection output [1, 8704, 27648] that the README names. The two CFG forwards
run one after the other, so they do not add; a batch of B seeds multiplies it. CPU bf16 SDPA does not materialise the
[24, L, L] attention matrix (CUDA's flash / memory-efficient kernels do not either). Memory only, never findings.
"""
from __future__ import annotations

import resource
import time

import torch


def main() -> int:
    from diffusers.models.transformers.transformer_flux2 import Flux2SingleTransformerBlock

    torch.manual_seed(0)
    n_txt, n_img, n_ref = 512, 4096, 4096
    L = n_txt + n_img + n_ref
    blk = Flux2SingleTransformerBlock(dim=3072, num_attention_heads=24, attention_head_dim=128, mlp_ratio=3.0,
                                      eps=1e-6).to(torch.bfloat16).eval()
    x = torch.randn(1, L, 3072, dtype=torch.bfloat16)
    temb_mod = torch.randn(1, 3 * 3072, dtype=torch.bfloat16)
    rope = (torch.randn(L, 128), torch.randn(L, 128))
    fused = L * blk.attn.to_qkv_mlp_proj.out_features * 2 / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with torch.inference_mode():
        blk(hidden_states=x, encoder_hidden_states=None, temb_mod=temb_mod, image_rotary_emb=rope)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RANDOM WEIGHTS: memory only, never findings.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; L = {n_txt} + {n_img} + {n_ref} = {L} tokens")
    print(f"fused projection output [1, {L}, {blk.attn.to_qkv_mlp_proj.out_features}] bf16: {fused:.0f} MiB")
    print(f"single-block forward: peak resident {after:.0f} MiB, {after - before:.0f} MiB over weights and inputs "
          f"({before:.0f} MiB), {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
