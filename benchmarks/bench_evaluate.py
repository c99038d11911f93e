"""evaluate's costs, side by side in one run.

    python benchmarks/bench_evaluate.py            # tiny klein on CPU + scoring 100 samples at 256^2
    python benchmarks/bench_evaluate.py --model /data/klein-base-4b --device cuda --size 512

1. Generation through `evaluate.generate.generate_predictions` (hashing and reading the reference,
   the generation key, padding to multiples of 16, running the pipeline, mapping back, writing PNG +
   EXR + sidecar, rebuilding manifest and config) against plain `pipe(image=..., prompt=...)` calls
   with the same settings on the same images, alternating rounds. evaluate encodes the instruction
   once per run (it is the same for every sample; `encode_prompt_once`), so it is also compared with
   plain calls under the same prompt cache: that ratio is evaluate's own bookkeeping (goal <= 1.02x).
2. Scoring throughput: `benchmarks/bench_score.py`'s 100 samples at 256x256, LPIPS off (goal < 10 s).

With --model tiny the weights are random: timings only, never findings.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluate.generate import GenerateConfig, generate_predictions  # noqa: E402
from render.imageio import write_png_srgb  # noqa: E402


def fake_render(root: Path, n: int, size: int) -> Path:
    """A render folder with only what generation reads: manifest + image_srgb.png per sample."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        sid = f"scene{i:02d}__key"
        write_png_srgb(root / sid / "image_srgb.png", rng.uniform(0, 1, (size, size, 3)).astype(np.float32))
        samples.append({"id": sid, "scene": f"scene{i:02d}", "lighting": "key", "image_srgb": f"{sid}/image_srgb.png"})
    (root / "manifest.json").write_text(json.dumps({"samples": samples}))
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--n", type=int, default=4, help="samples per round")
    ap.add_argument("--size", type=int, default=128, help="reference image side")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-score", action="store_true")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from probe.klein.model import ModelSpec, load_pipeline
    from probe.design.prompts import load_edit_instructions

    loaded = load_pipeline(ModelSpec(args.model, dtype=args.dtype, device=args.device))
    pipe = loaded.pipe
    prompt = load_edit_instructions()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    data = fake_render(tmp / "render", args.n, args.size)
    sync = torch.cuda.synchronize if loaded.device.startswith("cuda") else (lambda: None)
    guidance = 4.0

    from evaluate.generate import encode_prompt_once

    def clock(fn, *a) -> tuple[float, float]:
        """(wall s, process CPU s) of fn(*a): on a shared CPU machine the CPU time is the steadier number."""
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*a)
        sync()
        return time.perf_counter() - t0, time.process_time() - c0

    def plain(once: bool) -> None:
        with encode_prompt_once(pipe) if once else contextlib.nullcontext():
            calls()

    def calls() -> None:
        for i in range(args.n):
            ref = Image.open(data / f"scene{i:02d}__key" / "image_srgb.png").convert("RGB")
            with torch.inference_mode():
                pipe(image=ref, prompt=prompt, num_inference_steps=args.steps, guidance_scale=guidance,
                     generator=torch.Generator(device="cpu").manual_seed(0), output_type="np")

    def through_evaluate(r: int) -> None:
        cfg = GenerateConfig(data=str(data), out=str(tmp / f"pred{r}"), steps=args.steps, guidance=guidance,
                             max_side=args.size, resume=False)   # the same reference size as the plain calls
        generate_predictions(loaded, cfg, progress=False)

    plain(False)  # warm-ups (first-call allocations, kernel selection, first imports)
    through_evaluate(-1)
    t_plain, t_emb, t_eval = [], [], []
    for r in range(args.rounds):
        t_plain.append(clock(plain, False))
        t_emb.append(clock(plain, True))
        t_eval.append(clock(through_evaluate, r))
    med = lambda ts, k: statistics.median(t[k] for t in ts)  # noqa: E731
    mp, mb, me = (med(t, 0) for t in (t_plain, t_emb, t_eval))
    cp, cb, ce = (med(t, 1) for t in (t_plain, t_emb, t_eval))
    print(f"generation: {loaded.spec.model} on {loaded.device} ({loaded.dtype}), {args.n} samples x {args.steps} steps, "
          f"{args.size}^2 references, CFG {guidance}, median of {args.rounds} alternating rounds"
          + (" [random weights: timing only]" if loaded.random_weights else ""))
    print(f"  {'':42s}   wall s   CPU s (this process)")
    print(f"  plain pipeline calls                     : {mp:8.3f} {cp:8.3f}")
    print(f"  plain calls, prompt encoded once         : {mb:8.3f} {cb:8.3f}")
    print(f"  through evaluate generate                : {me:8.3f} {ce:8.3f}")
    print(f"  evaluate / plain calls with the prompt encoded once (its bookkeeping; goal <= 1.02x): "
          f"wall {me / mb:.4f}x, CPU {ce / cb:.4f}x")
    print(f"  evaluate / plain calls (a user's own loop):                                      "
          f"wall {me / mp:.4f}x, CPU {ce / cp:.4f}x")
    shutil.rmtree(tmp, ignore_errors=True)
    if not args.skip_score:
        print()
        import subprocess

        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_score.py"))], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
