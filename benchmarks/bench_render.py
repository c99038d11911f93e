"""Benchmark `python -m render`: old vs new default scenes, residual noise, ground-truth overhead, devices.

    .venv/bin/python benchmarks/bench_render.py                      # everything (~30-60 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_render.py --only compare,noise --scenes cornell_box,red_cube_table
    .venv/bin/python benchmarks/bench_render.py --device              # samples per second on each device

Prints, in one run and on this machine:
  [compare] seconds per sample, end to end through render_dataset (render, ground truth, files), of the
      default scenes as they were before issue 12 (benchmarks/scenes_v1/, at the settings of the time:
      64 samples/pixel, no adaptive sampling, no firefly clamp, no exposure) against the revised scenes at
      today's defaults, the same scene ids interleaved one by one, in process CPU time (steady on a
      shared machine) and wall time. Goal: new / old <= 1.5. New renders at the defaults, which denoise
      (--denoise passes); the denoising step is timed inside the same runs (CPU and wall), so "new without
      denoising" is new minus that step.
  [noise] residual noise at the defaults: each closed-room lighting rendered twice with different Cycles
      seeds; the std of (a - b) / sqrt(2) of the exposed sRGB image in flat regions (valid pixels whose
      albedo and object index do not change within a pixel, not clipped), in 8-bit levels; old scenes at
      their old settings beside them. "new" are the two renders as Cycles made them (--denoise none),
      "new+dn" the same two renders after --denoise passes (render.denoise), at the same exposure.
  [gt] all ground-truth outputs vs a combined-only render of the same scenes (goal <= 1.10).
  [startup] start-up cost per process.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OLD_SCENES = ROOT / "benchmarks" / "scenes_v1"
# the closed (or three-walled, ceilinged) rooms among the default scenes
ROOMS = ("cornell_box", "dim_room_lamp", "room_corner_box", "pink_cone_teal_cube_room", "window_light_room",
         "red_cube_table", "fruit_spheres_table", "kitchen_counter")
SECTIONS = ("compare", "noise", "gt", "startup")


def old_settings(**kw):
    """The defaults before issue 12 (64 spp, every pixel; no clamp, no exposure)."""
    from render.settings import RenderSettings

    return RenderSettings(samples=64, adaptive_threshold=0.0, firefly_clamp=0.0, exposure="none", **kw)


def flat_noise(a, b) -> tuple[float, float]:
    """8-bit sRGB noise between two renders (GroundTruth, same exposure) on flat, unclipped valid pixels."""
    from scipy import ndimage

    from render.imageio import linear_to_srgb

    flat = a.mask.copy()
    for ch in range(3):
        g = np.hypot(ndimage.sobel(a.albedo[..., ch], 0), ndimage.sobel(a.albedo[..., ch], 1))
        flat &= g < 0.02
    same = ndimage.maximum_filter(a.object_index, 3) == ndimage.minimum_filter(a.object_index, 3)
    flat &= ndimage.binary_erosion(same, iterations=1)
    flat &= (a.image.max(-1) < 1) & (b.image.max(-1) < 1)
    d = (linear_to_srgb(a.image) - linear_to_srgb(b.image))[flat] / np.sqrt(2)
    return float(d.std() * 255) if d.size else float("nan"), float(flat.mean())


def bench_compare(ids, new_scenes, old_scenes, threads):
    from render.pipeline import render_dataset
    from render.settings import RenderSettings

    new_set = RenderSettings(threads=threads)
    old_set = old_settings(threads=threads)
    dn_cpu, dn_wall = [], []
    cpu = {"old": [], "new": []}
    wall = {"old": [], "new": []}
    n = {"old": 0, "new": 0}
    per_scene = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sid in enumerate(ids):
            order = [("old", old_scenes[sid], old_set), ("new", new_scenes[sid], new_set)]
            row = {}
            for key, scene, st in (order if i % 2 else order[::-1]):
                t, c = time.perf_counter(), time.process_time()
                rep = render_dataset([scene], Path(tmp) / key / sid, settings=st)
                dw, dc = time.perf_counter() - t - rep.startup_seconds, time.process_time() - c
                k = len(rep.rendered)
                if key == "new":
                    dn_cpu.append(rep.timings["denoise_cpu"])
                    dn_wall.append(rep.timings["denoise"])
                wall[key].append(dw)
                cpu[key].append(dc)
                n[key] += k
                row[key] = dc / k
            per_scene.append((sid, row["old"], row["new"]))
            print(f"    {sid:30s} old {row['old']:6.2f}  new {row['new']:6.2f} CPU-s/sample  ({row['new'] / row['old']:.2f}x)",
                  flush=True)
    co, cn = sum(cpu["old"]) / n["old"], sum(cpu["new"]) / n["new"]
    wo, wn = sum(wall["old"]) / n["old"], sum(wall["new"]) / n["new"]
    print(f"\n[compare] per sample, {n['old']} old vs {n['new']} new samples of {len(ids)} default scenes, interleaved:")
    print(f"    CPU time  old {co:.2f}  new {cn:.2f} CPU-s/sample   ratio {cn / co:.3f}  (goal <= 1.5)")
    print(f"    wall time old {wo:.2f}  new {wn:.2f} s/sample       ratio {wn / wo:.3f}")
    dc, dw = sum(dn_cpu) / n["new"], sum(dn_wall) / n["new"]
    if dc or dw:
        print(f"    of new, denoising ({new_set.denoise}, OIDN quality {new_set.denoise_quality}): {dc:.2f} CPU-s, "
              f"{dw:.2f} s wall per sample; new without it: CPU ratio {(cn - dc) / co:.3f}, wall ratio {(wn - dw) / wo:.3f}")
    print(f"    settings: old {old_set.samples} spp fixed; new {new_set.samples} spp max, adaptive threshold "
          f"{new_set.adaptive_threshold} (min {new_set.adaptive_min_samples}), firefly clamp {new_set.firefly_clamp}, "
          f"exposure {new_set.exposure}, denoise {new_set.denoise}; both {new_set.width}x{new_set.height}")


def bench_noise(ids, new_scenes, old_scenes, threads):
    from render import blender as bl
    from render.denoise import Denoiser
    from render.groundtruth import decompose, expose, meter
    from render.settings import RenderSettings

    print("\n[noise] flat-region noise between two Cycles seeds, exposed sRGB, 8-bit levels (std of (a-b)/sqrt 2):")
    rows = []
    new_set = RenderSettings(threads=threads)
    with tempfile.TemporaryDirectory() as tmp, Denoiser("passes", new_set.denoise_quality, threads) as dn:
        for sid in [i for i in ids if i in ROOMS]:
            for label, scene, st in (("old", old_scenes[sid], old_settings(threads=threads)),
                                     ("new", new_scenes[sid], RenderSettings(**{**new_set.to_dict(), "denoise": "none"}))):
                for lighting in scene.lightings:
                    outs = []
                    for seed in (0, 1):
                        s = bl.BlenderSession(RenderSettings(**{**st.to_dict(), "seed": seed}), Path(tmp))
                        s.build(scene)
                        s.set_lighting(scene, lighting)
                        outs.append(decompose(s.render(), s.camera_from_world()))
                    _, k = meter(outs[0])               # one exposure for both seeds (new: auto; old: metered too)
                    versions = [(label, outs)]
                    if label == "new":
                        versions.append(("new+dn", [dn.apply(o) for o in outs]))
                    for lab, (o0, o1) in versions:
                        noise, frac = flat_noise(expose(o0, k), expose(o1, k))
                        rows.append((lab, noise))
                        print(f"    {lab:6s} {sid:26s} {lighting.name:20s} {noise:6.2f}/255  (flat {frac:.0%} of pixels)",
                              flush=True)
    for label in ("old", "new", "new+dn"):
        v = [x for l, x in rows if l == label and x == x]
        if v:
            print(f"    {label:6s}: median {statistics.median(v):.2f}/255, max {max(v):.2f}/255 over {len(v)} room lightings")


def bench_gt(scenes, threads, repeats):
    from render import blender as bl
    from render.groundtruth import decompose
    from render.imageio import write_exr, write_png_srgb
    from render.pipeline import SampleJob, _write_sample
    from render.settings import RenderSettings

    gt_settings = RenderSettings(threads=threads)
    comb_settings = RenderSettings(**{**gt_settings.to_dict(), "ground_truth": False})
    wall = {"gt": [], "comb": []}
    cpu = {"gt": [], "comb": []}
    with tempfile.TemporaryDirectory() as tmp:
        gt_s = bl.BlenderSession(gt_settings, Path(tmp) / "scratch")
        comb_s = bl.BlenderSession(comb_settings, Path(tmp) / "scratch")
        out = Path(tmp) / "out"
        version, space = bl.blender_version(), bl.working_space()

        def run_comb(scene, lighting):
            comb_s.set_lighting(scene, lighting)
            img = comb_s.render()["Combined"][..., :3]
            write_exr(out / "comb" / "image_linear.exr", img)
            write_png_srgb(out / "comb" / "image_srgb.png", img)

        def run_gt(scene, lighting):
            gt_s.set_lighting(scene, lighting)
            gt = decompose(gt_s.render(), gt_s.camera_from_world())
            _write_sample(out, SampleJob(scene, lighting), gt, gt_settings, gt_s.camera_info(), version, space, 0.0)

        for r in range(repeats + 1):        # round 0 warms caches and is not counted
            for scene in scenes:
                for lighting in scene.lightings:
                    order = [("comb", comb_s, run_comb), ("gt", gt_s, run_gt)]
                    for key, sess, fn in (order if r % 2 else order[::-1]):
                        sess.build(scene)
                        t, c = time.perf_counter(), time.process_time()
                        fn(scene, lighting)
                        if r:
                            wall[key].append(time.perf_counter() - t)
                            cpu[key].append(time.process_time() - c)
    n = len(wall["gt"])
    cr = sum(cpu["gt"]) / sum(cpu["comb"])
    wr = sum(wall["gt"]) / sum(wall["comb"])
    per_pair = sorted(g / c for g, c in zip(cpu["gt"], cpu["comb"]))
    print(f"\n[gt] all ground-truth outputs / combined only ({', '.join(s.id for s in scenes)}; {n} interleaved pairs):")
    print(f"    CPU time  {cr:.3f}  (goal <= 1.10; {sum(cpu['gt']) / n:.2f} vs {sum(cpu['comb']) / n:.2f} CPU-s/sample; "
          f"per-pair median {statistics.median(per_pair):.3f}, range {per_pair[0]:.3f}-{per_pair[-1]:.3f})")
    print(f"    wall time {wr:.3f}  ({sum(wall['gt']) / n:.2f} vs {sum(wall['comb']) / n:.2f} s/sample)")


def bench_startup():
    starts = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import render.blender"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        starts.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "render", "--help"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"\n[startup] per process: {statistics.median(starts):.2f} s (python + import bpy, median of 3); "
          f"`python -m render --help` {time.perf_counter() - t:.2f} s (no bpy)")


def bench_devices(scenes, threads) -> None:
    """Samples per second, end to end through render_dataset, on the CPU and every GPU backend present."""
    from render.blender import gpu_devices
    from render.pipeline import render_dataset
    from render.settings import GPU_PREFERENCE, RenderSettings

    todo = ["cpu"]
    for b in GPU_PREFERENCE:
        found, _ = gpu_devices(b.upper())
        print(f"  {b:6s}: {', '.join(found) if found else 'no device'}")
        if found:
            todo.append(b)
    print(f"\n[device] samples per second at the defaults ({len(scenes)} scenes, all their lightings):")
    rates = {}
    for dev in todo:
        settings = RenderSettings(threads=threads, device=dev)
        with tempfile.TemporaryDirectory() as tmp:
            rep = render_dataset(scenes, Path(tmp) / "out", settings=settings)
        n = len(rep.rendered)
        rates[dev] = n / (rep.seconds - rep.startup_seconds)
        print(f"  {dev:6s}: {rates[dev]:7.3f} samples/s  ({n} samples, {rep.seconds_per_sample:.2f} s/sample)")
    for dev in todo[1:]:
        print(f"  {dev} / cpu: {rates[dev] / rates['cpu']:.1f}x")


def main() -> None:
    from render.paths import data_dir
    from render.scene import load_scenes
    from render.settings import RenderSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", help="default scene ids to use (default: all 25 for compare/noise, four for gt)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run ({','.join(SECTIONS)})")
    ap.add_argument("--repeats", type=int, default=2, help="[gt] rounds")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", action="store_true", help="only: samples per second on every device Cycles reports")
    args = ap.parse_args()
    new_all = {s.id: s for s in load_scenes(data_dir("scenes"))}
    old_all = {s.id: s for s in load_scenes(OLD_SCENES)}
    ids = args.scenes.split(",") if args.scenes else sorted(new_all)
    d = RenderSettings(threads=args.threads)
    print(f"defaults: {d.width}x{d.height}, {d.samples} samples/pixel max (adaptive {d.adaptive_threshold}), "
          f"threads={'all' if not args.threads else args.threads}")
    if args.device:
        bench_devices([new_all[i] for i in ids[:4]], args.threads)
        return
    sections = args.only.split(",")
    if "compare" in sections:
        print("\n[compare] old (benchmarks/scenes_v1, old settings) vs new (scenes/, defaults), per scene:")
        bench_compare(ids, new_all, old_all, args.threads)
    if "noise" in sections:
        bench_noise(ids, new_all, old_all, args.threads)
    if "gt" in sections:
        gt_ids = ids if args.scenes else ["red_cube_table", "cornell_box", "glossy_floor_cubes", "checker_floor_spheres"]
        bench_gt([new_all[i] for i in gt_ids], args.threads, args.repeats)
    if "startup" in sections:
        bench_startup()


if __name__ == "__main__":
    main()
