"""Benchmark `--denoise passes` for accuracy: noisy and denoised renders against a high-spp reference.

    .venv/bin/python benchmarks/bench_denoise.py                       # two room lightings, 256², ~10 CPU-min
    .venv/bin/python benchmarks/bench_denoise.py --cases cornell_box/ceiling_light --ref-samples 256

bench_render.py [noise] measures what denoising removes (seed-to-seed noise); this measures what it may
add: blur of real lighting detail (shadow edges, contact shadows), which two denoised seeds share and
which that measurement cannot see. For each case, in one run: one render at the defaults (noisy = as
Cycles made it, denoised = the same render after render.denoise), and two references with other seeds
at --ref-samples each (every pixel, no adaptive stop), averaged. Errors are RMS over valid pixels
(mask, unclipped in all), at the reference's exposure:
  image: exposed sRGB, 8-bit levels; shading: linear, in % of the reference's mean shading.
The reference's own noise is removed from the squared errors (its variance is estimated from the
difference of the two reference seeds), so a perfect render would score 0 on average.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CASES = ("cornell_box/ceiling_light", "window_light_room/sun_through_window")


def main() -> None:
    from render import blender as bl
    from render.denoise import Denoiser
    from render.groundtruth import decompose, expose, meter
    from render.imageio import linear_to_srgb
    from render.paths import data_dir
    from render.scene import load_scenes
    from render.settings import RenderSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="scene/lighting pairs")
    ap.add_argument("--ref-samples", type=int, default=512, help="samples per pixel of each of the two references")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    scenes = {s.id: s for s in load_scenes(data_dir("scenes"))}
    d = RenderSettings(threads=args.threads)
    print(f"defaults: {d.width}x{d.height}, {d.samples} spp max (adaptive {d.adaptive_threshold}), denoise quality "
          f"{d.denoise_quality}; references: 2 x {args.ref_samples} spp, every pixel, seeds 2 and 3")
    print("\n[accuracy] RMS error against the reference (its own noise removed), valid unclipped pixels:")
    with tempfile.TemporaryDirectory() as tmp, Denoiser("passes", d.denoise_quality, args.threads) as dn:
        for case in args.cases.split(","):
            sid, lname = case.split("/")
            scene = scenes[sid]
            lighting = next(l for l in scene.lightings if l.name == lname)

            def render(st):
                s = bl.BlenderSession(st, Path(tmp))
                s.build(scene)
                s.set_lighting(scene, lighting)
                t = time.process_time()
                gt = decompose(s.render(), s.camera_from_world())
                return gt, time.process_time() - t

            refs = [render(RenderSettings(**{**d.to_dict(), "samples": args.ref_samples, "adaptive_threshold": 0.0,
                                             "seed": seed, "denoise": "none"}))[0] for seed in (2, 3)]
            noisy, t_render = render(RenderSettings(**{**d.to_dict(), "denoise": "none"}))
            t = time.process_time()
            den = dn.apply(noisy)
            t_dn = time.process_time() - t
            _, k = meter(refs[0])
            refs = [expose(r, k) for r in refs]
            noisy, den = expose(noisy, k), expose(den, k)
            valid = refs[0].mask & refs[1].mask & noisy.mask
            for g in (*refs, noisy, den):
                valid &= g.image.max(-1) < 1
            ref_img = (linear_to_srgb(refs[0].image) + linear_to_srgb(refs[1].image)) / 2
            var_img = np.mean(((linear_to_srgb(refs[0].image) - linear_to_srgb(refs[1].image))[valid] / 2) ** 2)
            ref_sh = (refs[0].shading + refs[1].shading) / 2
            var_sh = np.mean(((refs[0].shading - refs[1].shading)[valid] / 2) ** 2)
            level = float(ref_sh[valid].mean())

            def err(x, ref, var):
                return float(np.sqrt(max(np.mean((x[valid] - ref[valid]) ** 2) - var, 0.0)))

            print(f"    {case} ({valid.mean():.0%} of pixels; reference noise {np.sqrt(var_img) * 255:.2f}/255):")
            for label, g in (("noisy", noisy), ("denoised", den)):
                e_img = err(linear_to_srgb(g.image), ref_img, var_img) * 255
                e_sh = err(g.shading, ref_sh, var_sh) / level * 100
                print(f"      {label:9s} image {e_img:6.2f}/255   shading {e_sh:5.2f} %   mean shading / reference "
                      f"{float(g.shading[valid].mean()) / level:.4f}", flush=True)
            print(f"      render {t_render:.2f} CPU-s, denoise {t_dn:.2f} CPU-s")


if __name__ == "__main__":
    main()
