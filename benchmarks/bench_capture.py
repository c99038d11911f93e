"""Overhead of HeadCapture / SliceCapture on transformer forwards, measured side by side.

    python benchmarks/bench_capture.py                 # CPU model of >= 50 ms per forward
    python benchmarks/bench_capture.py --klein         # + the real klein 4B shape, random weights (needs CUDA)

Prints median forward time without capture, with per-head capture (all 720-unit sites at klein
scale) and with the card's 16-channel slice capture, and their ratios (goals: <= 1.03x on CPU,
<= 1.01x on a GPU at klein shape). Runs alternate plain/captured forwards so drift hits both alike.
Random weights: timings only, no findings.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import Flux2Transformer2DModel

from probe.capture import HeadCapture, SliceCapture, head_sites
from probe.model import KLEIN_4B_TRANSFORMER

CPU_MODEL = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=64,
                 num_attention_heads=8, joint_attention_dim=256, timestep_guidance_channels=256, mlp_ratio=3.0,
                 axes_dims_rope=(16, 16, 16, 16), rope_theta=2000, eps=1e-6, guidance_embeds=False)


def inputs(cfg: dict, batch: int, n_img: int, n_txt: int, device, dtype):
    g = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    img_ids = torch.zeros(n_img, 4, device=device)
    img_ids[:, 1] = torch.arange(n_img, device=device) // int(n_img ** 0.5)
    img_ids[:, 2] = torch.arange(n_img, device=device) % int(n_img ** 0.5)
    txt_ids = torch.zeros(n_txt, 4, device=device)
    txt_ids[:, 3] = torch.arange(n_txt, device=device)
    return dict(hidden_states=r(batch, n_img, cfg["in_channels"]),
                encoder_hidden_states=r(batch, n_txt, cfg["joint_attention_dim"]),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype), img_ids=img_ids, txt_ids=txt_ids,
                return_dict=False)


def bench(model, kw, n_txt_real: int, repeats: int, sync) -> dict:
    sites = head_sites(model)
    batch, n_txt = kw["encoder_hidden_states"].shape[:2]
    mask = torch.zeros(batch, n_txt, dtype=torch.bool)
    mask[:, :n_txt_real] = True
    n_img = kw["hidden_states"].shape[1]
    head_cap = HeadCapture(model, sites, steps=[0])
    slice_cap = SliceCapture(model, sites, steps=[0])
    times = {"plain": [], "heads": [], "card_slices": []}

    def run(kind):
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model(**kw)
        sync()
        return time.perf_counter() - t0

    for _ in range(3):  # warm-up
        run("plain")
    for _ in range(repeats):
        times["plain"].append(run("plain"))
        with head_cap:
            head_cap.set_batch(mask, n_img)
            times["heads"].append(run("heads"))
            head_cap.collect()
        with slice_cap:
            slice_cap.set_batch(batch)
            times["card_slices"].append(run("card"))
            slice_cap.collect()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_s": med, "ratio_heads": med["heads"] / med["plain"],
            "ratio_card": med["card_slices"] / med["plain"], "n_units": len(head_cap.units),
            "n_card_units": len(slice_cap.units)}


def report(title: str, r: dict, goal: float) -> None:
    m = r["median_s"]
    print(f"\n{title}")
    print(f"  forward, no capture        : {m['plain'] * 1e3:9.2f} ms")
    print(f"  forward, per-head capture  : {m['heads'] * 1e3:9.2f} ms   ratio {r['ratio_heads']:.4f}x "
          f"({r['n_units']} units)   goal <= {goal:.2f}x")
    print(f"  forward, card slice capture: {m['card_slices'] * 1e3:9.2f} ms   ratio {r['ratio_card']:.4f}x "
          f"({r['n_card_units']} units)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--klein", action="store_true", help="also the real klein 4B shape on CUDA (random weights)")
    ap.add_argument("--klein-res", type=int, default=1024, help="image side for the klein-shape run")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    cpu = Flux2Transformer2DModel(**CPU_MODEL).eval()
    kw = inputs(CPU_MODEL, batch=2, n_img=512, n_txt=256, device="cpu", dtype=torch.float32)
    report("CPU model (2 double + 4 single blocks, 8 heads x 64, 512 image + 256 text tokens, batch 2)",
           bench(cpu, kw, n_txt_real=40, repeats=args.repeats, sync=lambda: None), 1.03)
    if args.klein:
        if not torch.cuda.is_available():
            print("\nklein 4B shape: skipped (no CUDA device here)")
            return
        dev = "cuda"
        with torch.device(dev):
            model = Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER).to(torch.bfloat16).eval()
        n_img = (args.klein_res // 16) ** 2
        kw = inputs(KLEIN_4B_TRANSFORMER, batch=1, n_img=n_img, n_txt=512, device=dev, dtype=torch.bfloat16)
        report(f"klein 4B shape on {torch.cuda.get_device_name()} (bf16, {n_img} image + 512 text tokens, random weights)",
               bench(model, kw, n_txt_real=60, repeats=args.repeats, sync=torch.cuda.synchronize), 1.01)


if __name__ == "__main__":
    main()
