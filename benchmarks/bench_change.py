"""What the change vectors cost the image probe's capture: the same editing calls under a HeadCapture without
change vectors, with exact ones (change_dim 512: a known-answer model's 16 tokens x 32 channels fit) and with
count-sketched ones (change_dim 64), interleaved round by round in one process, medians and ratios printed.

    python benchmarks/bench_change.py --data runs/render64 --model known-albedo --images 12 --rounds 5

CPU only; klein 4B's shape at 1024 px on a GPU (4096 tokens x 128 channels per head, sketched): `bench_capture.py
--klein`, the "+ change vectors" row (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a render folder (its image_srgb.png are the references)")
    ap.add_argument("--model", default="known-albedo")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from probe.design.prompts import load_edit_instructions
    from probe.klein.capture import HeadCapture, head_sites
    from probe.klein.capture_loop import default_capture_steps, forwards_per_step
    from probe.klein.edit_capture import ReferencePrep, capture_edit
    from probe.klein.model import ModelSpec, load_pipeline

    torch.set_num_threads(args.threads)
    loaded = load_pipeline(ModelSpec(model=args.model), progress=False)
    pipe = loaded.pipe
    prep = ReferencePrep.like_evaluate(loaded)
    refs = sorted(Path(args.data).glob("*/image_srgb.png"))[: args.images]
    prompt = load_edit_instructions()[0]
    steps = default_capture_steps(args.steps)
    fps = forwards_per_step(pipe, 4.0)
    sites = head_sites(pipe.transformer)
    dims = {"none": 0, "exact (512)": 512, "sketch (64)": 64}
    times: dict[str, list[float]] = {k: [] for k in dims}
    for _ in range(args.rounds):
        for name, dim in dims.items():
            with HeadCapture(pipe.transformer, sites, steps, fps, ref_tokens=True, change_dim=dim) as cap:
                t0 = time.perf_counter()
                for ref in refs:
                    capture_edit(pipe, cap, ref, prompt, steps=args.steps, guidance=4.0, seeds=[0],
                                 prepare_reference=prep, max_sequence_length=loaded.max_sequence_length)
                    if dim:
                        cap.collect_change()
                times[name].append((time.perf_counter() - t0) / len(refs))
    load = os.getloadavg()[0]
    print(f"change vectors: {args.model}, {len(refs)} editing calls x {args.rounds} rounds, {args.steps} steps "
          f"({len(steps)} captured), {args.threads} thread(s), load average {load:.1f}; not a finding (timing only)")
    base = statistics.median(times["none"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:12s} median {med * 1000:8.1f} ms per call   x{med / base:.3f} of no change vectors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
