"""Overhead of HeadCapture / SliceCapture on transformer forwards and on klein editing calls, side by side.

    python benchmarks/bench_capture.py                 # CPU model of >= 50 ms per forward (all cases)
    python benchmarks/bench_capture.py --cases edit-call --repeats 9 --threads 1   # shared machine: CPU time
    python benchmarks/bench_capture.py --klein         # + the real klein 4B shape, random weights (needs CUDA)

Cases (each prints median times with and without capture and their ratios):
  forward       text-probe forwards: 512 image + 256 text tokens, per-head capture (img/txt units) and card slices
  edit-forward  editing-layout forwards: 256 text + 256 generated + 256 reference tokens, per-head capture with
                reference units (ref_tokens=True) and card slices
  edit-call     whole klein editing calls (text encoding, reference VAE encoding, 2 CFG steps, no decode) through
                probe.klein.edit_capture.capture_edit vs the same plain pipeline call, on a pipeline whose transformer is
                the CPU model (tiny text encoder and VAE around it), 128 x 128 reference
Goals: <= 1.03x on CPU, <= 1.01x on a GPU at klein shape. Repeats are interleaved (the order of the
variants rotates every repeat) and medians are reported, so drift and other load on a shared machine
hit all variants alike; the median of the per-repeat ratios is printed beside the ratio of medians.
Random weights: timings only, no findings.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from diffusers import Flux2Transformer2DModel

from probe.klein.capture import HeadCapture, SliceCapture, head_sites
from probe.klein.model import KLEIN_4B_TRANSFORMER

CPU_MODEL = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=64,
                 num_attention_heads=8, joint_attention_dim=256, timestep_guidance_channels=256, mlp_ratio=3.0,
                 axes_dims_rope=(16, 16, 16, 16), rope_theta=2000, eps=1e-6, guidance_embeds=False)
CASES = ("forward", "edit-forward", "edit-call")


def inputs(cfg: dict, batch: int, n_img: int, n_txt: int, device, dtype, n_ref: int = 0):
    """Transformer inputs laid out as the pipeline lays them out: [generated | reference] image tokens,
    generated ids with time coordinate 0, reference ids with 10 (Flux2KleinPipeline._prepare_image_ids)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731

    def grid(n, t):
        ids = torch.zeros(n, 4, device=device)
        ids[:, 0] = t
        ids[:, 1] = torch.arange(n, device=device) // int(n ** 0.5)
        ids[:, 2] = torch.arange(n, device=device) % int(n ** 0.5)
        return ids

    img_ids = torch.cat([grid(n_img, 0), grid(n_ref, 10)]) if n_ref else grid(n_img, 0)
    txt_ids = torch.zeros(n_txt, 4, device=device)
    txt_ids[:, 3] = torch.arange(n_txt, device=device)
    return dict(hidden_states=r(batch, n_img + n_ref, cfg["in_channels"]),
                encoder_hidden_states=r(batch, n_txt, cfg["joint_attention_dim"]),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype), img_ids=img_ids, txt_ids=txt_ids,
                return_dict=False)


def interleaved(variants: dict, repeats: int, warmup: int = 2) -> tuple[dict, dict]:
    """Time each variant `repeats` times, rotating their order every repeat: wall and process CPU
    seconds per run (CPU time is less sensitive to other processes on a shared machine)."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
    wall, cpu = {n: [] for n in names}, {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0, c0 = time.perf_counter(), time.process_time()
            variants[n]()
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    return wall, cpu


def summarise(timed: tuple[dict, dict], base: str = "plain") -> dict:
    wall, cpu = timed
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {"median_s": med, "median_cpu_s": med_cpu, "repeats": len(wall[base])}
    for k in wall:
        if k != base:
            out[f"ratio_{k}"] = med[k] / med[base]
            out[f"pair_ratio_{k}"] = statistics.median(a / b for a, b in zip(wall[k], wall[base]))
            out[f"cpu_ratio_{k}"] = med_cpu[k] / med_cpu[base]
    return out


def bench_forward(model, kw, n_txt_real: int, repeats: int, sync, change_dim: int = 0) -> dict:
    """plain vs per-head capture vs card slices; with change_dim > 0 and reference tokens also the image
    probe's capture with change vectors (HeadCapture(change_dim=...), collect_change() after each forward).
    On CUDA also each variant's peak allocated memory over one forward."""
    sites = head_sites(model)
    batch, n_txt = kw["encoder_hidden_states"].shape[:2]
    mask = torch.zeros(batch, n_txt, dtype=torch.bool)
    mask[:, :n_txt_real] = True
    n_all = kw["hidden_states"].shape[1]
    n_ref = int((kw["img_ids"][:, 0] != 0).sum())
    head_cap = HeadCapture(model, sites, steps=[0], ref_tokens=n_ref > 0)
    slice_cap = SliceCapture(model, sites, steps=[0])
    change_cap = HeadCapture(model, sites, steps=[0], ref_tokens=True, change_dim=change_dim) \
        if change_dim and n_ref else None

    def plain():
        sync()
        with torch.inference_mode():
            model(**kw)
        sync()

    def heads():
        with head_cap:
            head_cap.set_batch(mask, n_all - n_ref, n_ref)
            plain()
            head_cap.collect()

    def card_slices():
        with slice_cap:
            slice_cap.set_batch(batch, head_cap.layout)
            plain()
            slice_cap.collect()

    def heads_change():
        with change_cap:
            change_cap.set_batch(mask, n_all - n_ref, n_ref)
            plain()
            change_cap.collect()
            change_cap.collect_change()

    modules = dict(model.named_modules())
    site_modules = [modules[s.module] for s in sites]

    def empty_hooks():
        """The hook mechanism alone: a no-op pre-hook on the transformer and on every capture site."""
        noop = lambda *a, **k: None  # noqa: E731
        handles = [model.register_forward_pre_hook(noop, with_kwargs=True)]
        handles += [m.register_forward_pre_hook(noop) for m in site_modules]
        try:
            plain()
        finally:
            for h in handles:
                h.remove()

    variants = {"plain": plain, "empty_hooks": empty_hooks, "heads": heads, "card_slices": card_slices}
    if change_cap is not None:
        variants["heads_change"] = heads_change
    r = summarise(interleaved(variants, repeats, warmup=2))
    out = {**r, "n_units": len(head_cap.units), "n_card_units": len(slice_cap.units)}
    if change_cap is not None:
        out.update(n_change_units=len(change_cap.change_units), change_dim=change_dim)
    if kw["hidden_states"].is_cuda:
        peak = {}
        for name, fn in variants.items():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            fn()
            peak[name] = torch.cuda.max_memory_allocated() / 2 ** 30
        out["peak_gib"] = peak
        out["kernel_ms"] = {name: kernel_ms(fn) for name, fn in variants.items()}
    return out


def kernel_ms(fn) -> float:
    """Milliseconds of GPU kernel time in one call of fn (torch.profiler: the device-side events only, so a kernel
    is not counted a second time in the operator that launched it): what a variant adds on the GPU, as against
    what it adds in wall time (host-side hook and launch cost)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
    total = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))
                for e in prof.key_averages() if e.device_type == DeviceType.CUDA)
    return total / 1e3


def edit_bench_pipeline():
    """A Flux2KleinPipeline whose transformer is the CPU model (text width matched to the tiny text
    encoder: joint_attention_dim 3 x 32; 16 latent channels), with probe.klein.tiny's tokenizer, text encoder and
    scheduler and a tiny VAE with 16 latent channels."""
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline

    from probe.klein.tiny import TINY_VAE, build_tiny_pipeline

    tiny = build_tiny_pipeline(seed=0)
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(**{**CPU_MODEL, "joint_attention_dim": tiny.text_encoder.config.hidden_size * 3,
                                             "in_channels": 64}).eval()
    vae = AutoencoderKLFlux2(**{**TINY_VAE, "latent_channels": CPU_MODEL["in_channels"] // 4}).eval()
    pipe = Flux2KleinPipeline(scheduler=tiny.scheduler, vae=vae, text_encoder=tiny.text_encoder,
                              tokenizer=tiny.tokenizer, transformer=transformer, is_distilled=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_edit_call(repeats: int, ref_side: int = 128, steps: int = 2, guidance: float = 4.0) -> dict:
    from PIL import Image

    from probe.klein.edit_capture import capture_edit, edit_call_kwargs, edit_layout

    pipe = edit_bench_pipeline()
    tr = pipe.transformer
    ref = Image.fromarray(np.random.default_rng(0).integers(0, 256, (ref_side, ref_side, 3), dtype=np.uint8))
    prompt = "Show only the surface colours of this photo, without lighting or shadows."
    capture_steps = list(range(steps))      # the last step is captured, so every variant runs all steps
    head_cap = HeadCapture(tr, head_sites(tr), steps=capture_steps, forwards_per_step=2, ref_tokens=True)
    slice_cap = SliceCapture(tr, head_sites(tr), steps=capture_steps, forwards_per_step=2)

    def plain():
        with torch.inference_mode():
            pipe(**edit_call_kwargs(ref, prompt, steps, guidance), output_type="latent")

    def under(cap):
        def run():
            with cap:
                capture_edit(pipe, cap, ref, prompt, steps=steps, guidance=guidance)
        return run

    r = summarise(interleaved({"plain": plain, "heads": under(head_cap), "card_slices": under(slice_cap)}, repeats))
    return {**r, "n_units": len(head_cap.units), "n_card_units": len(slice_cap.units), "layout": edit_layout(pipe, ref)}


def report(title: str, r: dict, goal: float) -> None:
    m = r["median_s"]
    c = r["median_cpu_s"]
    print(f"\n{title}")
    print(f"  no capture        : {m['plain'] * 1e3:9.2f} ms wall {c['plain'] * 1e3:9.2f} ms CPU")
    rows = [("empty_hooks", "no-op hooks only  ", "the hook mechanism alone"),
            ("heads", "per-head capture  ", f"{r['n_units']} units"),
            ("card_slices", "card slice capture", f"{r['n_card_units']} units")]
    if "heads_change" in m:
        rows.append(("heads_change", "+ change vectors  ", f"{r['n_units']} units + {r['n_change_units']} change "
                     f"vectors of {r['change_dim']}"))
    for k, label, n in (row for row in rows if row[0] in m):
        print(f"  {label}: {m[k] * 1e3:9.2f} ms wall {c[k] * 1e3:9.2f} ms CPU   ratio {r[f'ratio_{k}']:.4f}x wall "
              f"(median per-repeat {r[f'pair_ratio_{k}']:.4f}x), {r[f'cpu_ratio_{k}']:.4f}x CPU; {n}"
              + (f"   goal <= {goal:.2f}x" if k == "heads" else ""))
    print(f"  medians of {r['repeats']} interleaved repeats (order rotated every repeat)")
    if "peak_gib" in r:
        print("  peak allocated GPU memory over one forward: "
              + ", ".join(f"{k} {v:.2f} GiB" for k, v in r["peak_gib"].items()))
        print("  GPU kernel time over one forward (torch.profiler): "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in r["kernel_ms"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: torch's choice); 1 makes CPU time robust on a shared machine")
    ap.add_argument("--klein", action="store_true", help="also the real klein 4B shape on CUDA (random weights)")
    ap.add_argument("--klein-res", type=int, default=1024, help="image side for the klein-shape run")
    ap.add_argument("--change-dim", type=int, default=512,
                    help="change-vector width for the editing forwards' extra variant (the image probe's default; "
                         "0: leave that variant out)")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"unknown case(s) {bad}; choose from {CASES}")
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    no_sync = lambda: None  # noqa: E731
    if "forward" in cases or "edit-forward" in cases:
        cpu = Flux2Transformer2DModel(**CPU_MODEL).eval()
    if "forward" in cases:
        kw = inputs(CPU_MODEL, batch=2, n_img=512, n_txt=256, device="cpu", dtype=torch.float32)
        report("CPU model, text-probe forward (2 double + 4 single blocks, 8 heads x 64, 512 image + 256 text "
               "tokens, batch 2)", bench_forward(cpu, kw, n_txt_real=40, repeats=args.repeats, sync=no_sync), 1.03)
    if "edit-forward" in cases:
        kw = inputs(CPU_MODEL, batch=2, n_img=256, n_txt=256, device="cpu", dtype=torch.float32, n_ref=256)
        report("CPU model, editing forward (256 text + 256 generated + 256 reference tokens, batch 2; "
               "heads with reference units)", bench_forward(cpu, kw, n_txt_real=40, repeats=args.repeats,
                                                            sync=no_sync, change_dim=args.change_dim), 1.03)
    if "edit-call" in cases:
        r = bench_edit_call(repeats=args.repeats)
        report(f"klein editing calls on the CPU model (capture_edit vs plain pipeline call; 128 x 128 reference, "
               f"{r['layout']}, 2 steps with CFG = 4 forwards, latent output)", r, 1.03)
    if args.klein:
        if not torch.cuda.is_available():
            print("\nklein 4B shape: skipped (no CUDA device here)")
            return
        dev = "cuda"
        with torch.device(dev):
            model = Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER).to(torch.bfloat16).eval()
        n_img = (args.klein_res // 16) ** 2
        kw = inputs(KLEIN_4B_TRANSFORMER, batch=1, n_img=n_img, n_txt=512, device=dev, dtype=torch.bfloat16)
        report(f"klein 4B shape on {torch.cuda.get_device_name()} (bf16, {n_img} image + 512 text tokens, random "
               "weights)", bench_forward(model, kw, n_txt_real=60, repeats=args.repeats, sync=torch.cuda.synchronize),
               1.01)
        kw = inputs(KLEIN_4B_TRANSFORMER, batch=1, n_img=n_img, n_txt=512, device=dev, dtype=torch.bfloat16,
                    n_ref=n_img)
        report(f"klein 4B shape on {torch.cuda.get_device_name()}, editing forward (bf16, {n_img} generated + "
               f"{n_img} reference + 512 text tokens, reference units, random weights)",
               bench_forward(model, kw, n_txt_real=60, repeats=args.repeats, sync=torch.cuda.synchronize,
                             change_dim=args.change_dim), 1.01)


if __name__ == "__main__":
    main()
