"""klein base 4B at its real size on the CPU: random bf16 weights, the card protocol and one heads-protocol step.

    python benchmarks/real_scale.py                  # full size: 5 double + 20 single blocks, 36 text layers
    python benchmarks/real_scale.py --scale-down     # 1 double + 1 single block, 2 text layers, real widths

Builds the klein base 4B transformer (probe.klein.model.KLEIN_4B_TRANSFORMER) and the Qwen3-4B text encoder
(benchmarks/configs/qwen3-4b/config.json) from their real configurations, with random weights in bf16 and
no download, then runs on 2 prompt pairs (the first two of prompts/pairs.jsonl) at a small resolution:

  1. the text encoder on the 4 prompts and the empty negative prompt (padded to 512 tokens, as klein does);
  2. the card protocol: 16-channel slices (SliceCapture), one step, guidance 1.0, one prompt per forward;
  3. one heads-protocol capture step (HeadCapture): conditional + unconditional forward (CFG 4.0), batch 4;
  4. the capture ratio: the same conditional forward plain, with per-head capture and with card slices,
     interleaved --repeats times (medians).

It prints the unit counts (from the full-size model on the meta device: 16,320 card slices, 720 heads
per step), time per transformer and per text-encoder forward (measured per block too, so a scaled-down
run extrapolates to full depth), the parameter counts, and peak resident memory per phase.

Memory: each model is built on the meta device (no memory) and its parameters are then materialised one
at a time as random bf16 tensors, so no float32 copy ever exists. By default the text encoder is freed
before the transformer is built: the protocols need only the prompt embeddings, computed once up front,
and the two models together (~16 GB of bf16 weights) would leave little of a shared 24 GiB machine,
while one at a time peaks at the larger model (~8 GB) plus activations. `--keep-text-encoder` keeps both
resident, as `probe run` does today (it encodes each batch inside the pipeline call), to measure that peak.

The VAE has klein's real downsampling (8) and latent channels (32) but tiny widths: the protocols stop
after the captured step and never decode. The tokenizer is the tiny model's byte-level one (ids differ from
Qwen's BPE; the sequence is padded to 512 tokens either way). Random weights: timings and memory only,
never findings.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.klein.capture import HeadCapture, SliceCapture, head_sites, text_token_mask  # noqa: E402
from probe.klein.model import KLEIN_4B_TRANSFORMER, klein_4b_meta_transformer  # noqa: E402
from probe.design.prompts import load_pairs  # noqa: E402

QWEN3_4B = ROOT / "benchmarks" / "configs" / "qwen3-4b" / "config.json"
KLEIN_TEXT_LAYERS = (9, 18, 27)          # hidden states klein reads from the text encoder
GIB = 1024 ** 3
# A VAE with klein's factor-8 downsampling and 32 latent channels, tiny widths (never run).
VAE_SHAPE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                 latent_channels=32, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False)
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                 base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential")


# ------------------------------------------------------------------------------------- memory
def _status(key: str) -> int:
    """A /proc/self/status field in bytes (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM), so each phase reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)     # hand freed heap pages back to the OS
    except (OSError, AttributeError):
        pass


class Phases:
    def __init__(self):
        self.rows: list[dict] = []
        self.can_reset = reset_peak()

    @contextmanager
    def __call__(self, name: str):
        if self.can_reset:
            reset_peak()
        t0 = time.perf_counter()
        yield
        self.rows.append({"phase": name, "seconds": time.perf_counter() - t0, "rss": _status("VmRSS"),
                          "peak": _status("VmHWM") if self.can_reset else None})
        print(f"  [{name}] {self.rows[-1]['seconds']:.1f} s, resident {_status('VmRSS') / GIB:.2f} GiB", flush=True)


# ------------------------------------------------------------------------------ building models
def materialise(module: torch.nn.Module, dtype=torch.bfloat16, seed: int = 0, std: float = 0.02) -> None:
    """Replace every meta parameter by a random `dtype` tensor, one at a time (tied weights stay tied).

    Matrices ~ N(0, std); 1-D weights (norm scales) = 1; biases = 0."""
    g = torch.Generator().manual_seed(seed)
    done: dict[int, torch.nn.Parameter] = {}
    for mod in module.modules():
        for name, p in list(mod.named_parameters(recurse=False)):
            if p.device.type != "meta":
                continue
            if id(p) not in done:
                t = torch.empty(p.shape, dtype=dtype)
                if p.ndim >= 2:
                    t.normal_(0.0, std, generator=g)
                elif name == "weight":
                    t.fill_(1.0)
                else:
                    t.zero_()
                done[id(p)] = torch.nn.Parameter(t, requires_grad=False)
            mod._parameters[name] = done[id(p)]
    left = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    assert not left, f"meta parameters left: {left[:3]}"


def text_config(layers: int | None):
    from transformers import Qwen3Config

    cfg = json.loads(QWEN3_4B.read_text())
    if layers is not None:
        cfg["num_hidden_layers"] = cfg["max_window_layers"] = layers
    return Qwen3Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype")})


def build_text_encoder(layers: int | None, meta_only: bool = False):
    from accelerate import init_empty_weights
    from transformers import Qwen3ForCausalLM

    cfg = text_config(layers)
    with init_empty_weights(include_buffers=False):          # buffers (RoPE frequencies) stay real
        model = Qwen3ForCausalLM(cfg)
    if cfg.tie_word_embeddings:                               # as from_pretrained ties them: one matrix, not two
        model.lm_head.weight = model.model.embed_tokens.weight
    if not meta_only:
        materialise(model, seed=1)
        model.eval()
    return model


def build_transformer(double: int | None, single: int | None, meta_only: bool = False):
    from accelerate import init_empty_weights
    from diffusers import Flux2Transformer2DModel

    cfg = dict(KLEIN_4B_TRANSFORMER)
    if double is not None:
        cfg["num_layers"] = double
    if single is not None:
        cfg["num_single_layers"] = single
    with init_empty_weights(include_buffers=False):
        model = Flux2Transformer2DModel(**cfg)
    if not meta_only:
        materialise(model, seed=2)
        model.eval()
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------- timing
class BlockTimer:
    """Forward pre/post hooks that time each block of a list (for per-block costs and extrapolation)."""

    def __init__(self, blocks: dict[str, list]):
        self.blocks, self.times, self._t0, self._handles = blocks, {k: [] for k in blocks}, {}, []

    def __enter__(self):
        for kind, mods in self.blocks.items():
            for m in mods:
                self._handles.append(m.register_forward_pre_hook(lambda *_, k=kind, mm=m: self._start(mm)))
                self._handles.append(m.register_forward_hook(lambda *_, k=kind, mm=m: self._stop(k, mm)))
        return self

    def _start(self, m):
        self._t0[id(m)] = time.perf_counter()

    def _stop(self, kind, m):
        self.times[kind].append(time.perf_counter() - self._t0.pop(id(m)))

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()

    def per_block(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items() if v}


def timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0


class _Stop(Exception):
    pass


def _stop_after(step: int):
    def cb(pipe, i, t, kwargs):
        if i >= step:
            raise _Stop
        return kwargs
    return cb


# -------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--scale-down", action="store_true", help="1 double + 1 single block and 2 text-encoder layers")
    ap.add_argument("--double", type=int, default=None, help="double blocks (default: klein's 5)")
    ap.add_argument("--single", type=int, default=None, help="single blocks (default: klein's 20)")
    ap.add_argument("--text-layers", type=int, default=None, help="text-encoder layers (default: Qwen3-4B's 36)")
    ap.add_argument("--resolution", type=int, default=256, help="image side in pixels (default 256: 256 image tokens)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved plain/captured forwards for the ratio (default 3)")
    ap.add_argument("--keep-text-encoder", action="store_true", help="keep the text encoder resident (as probe run does)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.scale_down:
        args.double = 1 if args.double is None else args.double
        args.single = 1 if args.single is None else args.single
        args.text_layers = 2 if args.text_layers is None else args.text_layers
    if args.threads:
        torch.set_num_threads(args.threads)
    full = args.double is None and args.single is None and args.text_layers is None
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    from probe.klein.tiny import build_tiny_tokenizer

    t_start = time.perf_counter()
    print("RANDOM WEIGHTS: timings and memory only, never findings.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"WARNING: load average {load:.1f} on {cores} cores before the start: other processes share the CPU, "
              f"so times are inflated and the capture ratios are noise; run it on a quiet machine to record it.")
    phases = Phases()

    # -- full-size shapes on the meta device: unit counts and parameter counts, no memory
    meta_tr = klein_4b_meta_transformer()
    meta_sites = head_sites(meta_tr)
    full_heads = len(HeadCapture(meta_tr, meta_sites, steps=[0]).units)
    full_slices = len(SliceCapture(meta_tr, meta_sites, steps=[0]).units)
    full_tr_params = n_params(meta_tr)
    full_blocks = (len(meta_tr.transformer_blocks), len(meta_tr.single_transformer_blocks))
    meta_te = build_text_encoder(None, meta_only=True)
    full_te_params = n_params(meta_te)
    full_te_embed = meta_te.model.embed_tokens.weight.numel()
    full_te_layers = len(meta_te.model.layers)
    del meta_tr, meta_te
    print(f"\nfull size: klein transformer {full_tr_params / 1e9:.3f} B parameters ({full_blocks[0]} double + "
          f"{full_blocks[1]} single blocks), Qwen3-4B text encoder {full_te_params / 1e9:.3f} B "
          f"({(full_te_params - full_te_embed) / 1e9:.3f} B outside the tied embedding, {full_te_layers} layers; "
          f"published: 4.0 B, 3.6 B non-embedding); bf16 weights {full_tr_params * 2 / GIB:.2f} + "
          f"{full_te_params * 2 / GIB:.2f} GiB")
    print(f"units per captured step: {full_heads} heads (heads protocol), {full_slices:,} card slices")

    pairs = load_pairs()[:2]
    prompts = [p.a for p in pairs] + [p.b for p in pairs]
    tokenizer = build_tiny_tokenizer()
    mask = text_token_mask(type("P", (), {"tokenizer": tokenizer})(), prompts)      # [4, 512] real tokens

    # -- 1. text encoder
    layers_used = tuple(min(k, args.text_layers or full_te_layers) for k in KLEIN_TEXT_LAYERS)
    with phases("build text encoder"):
        te = build_text_encoder(args.text_layers)
    te_params = n_params(te)
    te_times, embeds = [], []
    with phases("text encoder: 5 prompts"), torch.inference_mode():
        with BlockTimer({"layer": list(te.model.layers)}) as te_blocks:
            for p in [*prompts, ""]:
                e, dt = timed(Flux2KleinPipeline._get_qwen3_prompt_embeds, te, tokenizer, [p], dtype=torch.bfloat16,
                              device=torch.device("cpu"), max_sequence_length=512, hidden_states_layers=layers_used)
                te_times.append(dt)
                embeds.append(e)
    te_layer = te_blocks.per_block().get("layer", 0.0)
    del te_blocks                                   # it holds references to the layers
    prompt_embeds, negative = torch.cat(embeds[:4]), embeds[4]
    if not args.keep_text_encoder:
        with phases("free text encoder"):
            del te
            release_memory()
        te = None

    # -- 2. transformer and pipeline
    with phases("build transformer"):
        transformer = build_transformer(args.double, args.single)
        vae = AutoencoderKLFlux2(**VAE_SHAPE).eval()
        pipe = Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae, text_encoder=te,
                                  tokenizer=tokenizer, transformer=transformer, is_distilled=False)
        pipe.set_progress_bar_config(disable=True)
    tr_params = n_params(transformer)
    sites = head_sites(transformer)
    res = args.resolution
    n_img = (res // 16) ** 2
    common = dict(height=res, width=res, output_type="latent", max_sequence_length=512)

    # -- 3. card protocol: one prompt per forward, 1 step, guidance 1.0, 16-channel slices
    card_times = []
    with phases("card protocol: 4 prompts"), torch.inference_mode():
        card = SliceCapture(transformer, sites, steps=[0], forwards_per_step=1)
        with card:
            for i in range(4):
                card.set_batch(1)
                t0 = time.perf_counter()
                try:
                    pipe(prompt_embeds=prompt_embeds[i:i + 1], guidance_scale=1.0, num_inference_steps=1,
                         generator=torch.Generator().manual_seed(0), callback_on_step_end=_stop_after(0), **common)
                except _Stop:
                    pass
                card_times.append(time.perf_counter() - t0)
                assert card.forwards_seen == 1
                card_values = card.collect()
    card_units = len(card.units)

    # -- 4. one heads-protocol step: CFG (conditional + unconditional forward), batch of 4, step 0 captured
    recorded = {}

    def record(module, a, kw):          # the conditional forward's inputs, first prompt only (batch 1)
        if not recorded:
            recorded.update({k: (v[:1].clone() if torch.is_tensor(v) and v.ndim and v.shape[0] == 4 else v)
                             for k, v in kw.items()})

    with phases("heads protocol: 1 captured step (CFG)"), torch.inference_mode():
        heads = HeadCapture(transformer, sites, steps=[0], forwards_per_step=2)
        rec = transformer.register_forward_pre_hook(record, with_kwargs=True)
        try:
            with heads:
                heads.set_batch(mask, n_img)
                t0 = time.perf_counter()
                try:
                    pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative.expand(4, -1, -1).contiguous(),
                         guidance_scale=4.0, num_inference_steps=50,
                         generator=[torch.Generator().manual_seed(0) for _ in range(4)],
                         callback_on_step_end=_stop_after(0), **common)
                except _Stop:
                    pass
                heads_call = time.perf_counter() - t0
                assert heads.forwards_seen == 2, heads.forwards_seen
                head_values = heads.collect()
        finally:
            rec.remove()
    head_units = len(heads.units)

    # -- 5. the capture ratio on that conditional forward (first prompt, batch 1, as the card ran), interleaved;
    #       per-block times for the extrapolation to full depth
    def forward():
        t0 = time.perf_counter()
        transformer(**recorded)
        return time.perf_counter() - t0

    times = {"plain": [], "heads": [], "card": []}
    with phases("capture ratio"), torch.inference_mode():
        with BlockTimer({"double": list(transformer.transformer_blocks),
                         "single": list(transformer.single_transformer_blocks)}) as tr_blocks:
            whole_timed = forward()
        for _ in range(args.repeats):
            times["plain"].append(forward())
            with heads:
                heads.set_batch(mask[:1], n_img)
                times["heads"].append(forward())
                heads.collect()
            with card:
                card.set_batch(1)
                times["card"].append(forward())
                card.collect()
    med = {k: statistics.median(v) for k, v in times.items()}

    # -- report
    d, s = len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)
    blk = tr_blocks.per_block()
    rest = whole_timed - blk.get("double", 0) * d - blk.get("single", 0) * s
    tr_full = rest + blk.get("double", 0) * full_blocks[0] + blk.get("single", 0) * full_blocks[1]
    te_med = statistics.median(te_times)
    te_rest = te_med - te_layer * (args.text_layers or full_te_layers)
    te_full = te_rest + te_layer * full_te_layers
    print(f"\nthis run: transformer {d} double + {s} single blocks ({tr_params / 1e9:.3f} B parameters), text encoder "
          f"{args.text_layers or full_te_layers} layers ({te_params / 1e9:.3f} B; hidden states {layers_used}); "
          f"bf16, {res}x{res} -> {n_img} image + 512 text tokens")
    print(f"units per captured step here: {head_units} heads, {card_units:,} card slices "
          f"(full size: {full_heads}, {full_slices:,})")
    print(f"text encoder forward (1 prompt x 512 tokens): {te_med:.2f} s median of 5; per layer {te_layer * 1e3:.0f} ms")
    print(f"card protocol: pipeline call with its one transformer forward (batch 1): "
          f"{statistics.median(card_times):.2f} s median of 4")
    print(f"heads protocol step (cond + uncond forward, batch 4): {heads_call:.2f} s pipeline call")
    print(f"transformer forward, batch 1 (conditional, no hooks): {med['plain']:.2f} s median of {args.repeats}; "
          f"per double block {blk.get('double', 0) * 1e3:.0f} ms, per single block {blk.get('single', 0) * 1e3:.0f} ms, "
          f"outside the blocks {rest * 1e3:.0f} ms")
    print(f"capture ratio vs the same forward without hooks (median of {args.repeats}): per-head capture "
          f"{med['heads'] / med['plain']:.4f}x, card slices {med['card'] / med['plain']:.4f}x")
    finite = bool(torch.isfinite(torch.as_tensor(head_values)).all() and torch.isfinite(torch.as_tensor(card_values)).all())
    print(f"captured values finite: {finite} (random weights)")
    print("\nphase                                   seconds   resident GiB   peak GiB")
    for r in phases.rows:
        peak = f"{r['peak'] / GIB:8.2f}" if r["peak"] is not None else "     n/a"
        print(f"  {r['phase']:<36} {r['seconds']:8.1f}   {r['rss'] / GIB:10.2f}   {peak}")
    # (resetting VmHWM per phase also resets ru_maxrss, so the run's peak is the largest phase peak)
    peak_all = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]
                   + [r["peak"] for r in phases.rows if r["peak"] is not None])
    print(f"peak resident memory of the whole run: {peak_all / GIB:.2f} GiB (goal < 20 GiB)")
    if not full:
        # The weights of the missing depth add to the phase that holds them; activations do not grow with depth.
        add_te = (full_te_params - te_params) * 2
        add_tr = (full_tr_params - tr_params) * 2
        peaks = {r["phase"]: (r["peak"] or r["rss"]) for r in phases.rows}
        est_te = peaks["text encoder: 5 prompts"] + add_te
        est_tr = max(peaks[k] for k in ("card protocol: 4 prompts", "heads protocol: 1 captured step (CFG)",
                                        "capture ratio")) + add_tr + (add_te if args.keep_text_encoder else 0)
        print(f"\nEXTRAPOLATED to full depth from this run (per-block times x {full_blocks[0]} double + "
              f"{full_blocks[1]} single blocks, x {full_te_layers} text layers; bf16 weights of the missing depth "
              f"added to the phases that hold them):")
        print(f"  text encoder forward ~ {te_full:.1f} s per prompt; transformer forward ~ {tr_full:.1f} s per sample "
              f"(batch 1)")
        print(f"  peak resident ~ {max(est_te, est_tr) / GIB:.1f} GiB (text-encoder phase {est_te / GIB:.1f}, "
              f"transformer phases {est_tr / GIB:.1f}; goal < 20 GiB)")
        n_fwd_samples = 4 + 8 + 1 + 3 * args.repeats   # card 4 x 1, heads step 2 x 4, ratio 1 + 3 per repeat
        build = sum(r["seconds"] for r in phases.rows if r["phase"].startswith("build"))
        build_full = build * (full_te_params + full_tr_params) / (te_params + tr_params)
        print(f"  whole benchmark ~ {(5 * te_full + n_fwd_samples * tr_full + build_full) / 60:.0f} min "
              f"({n_fwd_samples} sample-forwards, 5 text-encoder forwards, building ~{build_full / 60:.0f} min; "
              f"this run: {(time.perf_counter() - t_start) / 60:.1f} min)")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
