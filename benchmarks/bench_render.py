"""Benchmark `python -m render`: per-sample time, ground-truth overhead, start-up cost.

    .venv/bin/python benchmarks/bench_render.py [--scenes red_cube_table,cornell_box] [--repeats 3]   # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_render.py --device      # only: samples per second on each available device

Prints, in one run and on this machine:
  1. seconds per sample at the default settings (render + ground truth + all files), over a few
     default scenes, and the estimate for all default scenes;
  2. the ratio of a render with every ground-truth output (all passes + the albedo AOV,
     decomposition, 9 files + sample.json) to a combined-only render of the same scene and
     settings (Combined pass, image EXR + sRGB PNG): goal <= 1.10. Both run in the same process,
     interleaved sample by sample, in CPU time (steady on a shared machine) and wall time;
  3. start-up cost per process: a fresh `python -c "import render.blender"` (Python + bpy), and
     the first scene build, paid once per process (not per sample).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from render.groundtruth import decompose
    from render.imageio import write_exr, write_png_srgb
    from render.paths import data_dir
    from render.pipeline import SampleJob, _write_sample, render_dataset
    from render.scene import load_scenes
    from render.settings import RenderSettings

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", default="red_cube_table,cornell_box,glossy_floor_cubes,checker_floor_spheres",
                    help="default scene ids to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", action="store_true",
                    help="only measure samples per second at the defaults on every device Cycles reports (CPU "
                    "and each GPU backend), the same scenes on each")
    args = ap.parse_args()
    ids = args.scenes.split(",")
    all_scenes = load_scenes(data_dir("scenes"))
    scenes = [s for s in all_scenes if s.id in ids]
    n_all = sum(len(s.lightings) for s in all_scenes)
    defaults = RenderSettings(threads=args.threads)
    print(f"settings: {defaults.width}x{defaults.height}, {defaults.samples} samples/pixel, "
          f"threads={'all' if not args.threads else args.threads}, {len(scenes)} scenes")

    if args.device:
        bench_devices(scenes, defaults)
        return

    # 3. start-up: a fresh process importing bpy (what every `python -m render` run pays once)
    starts = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import render.blender"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        starts.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "render", "--help"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    help_s = time.perf_counter() - t

    # 1. seconds per sample, end to end through render_dataset (files, checksums, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        rep = render_dataset(scenes, Path(tmp) / "out", settings=defaults)
    per_sample = rep.seconds_per_sample
    print(f"\n[1] seconds per sample at defaults: {per_sample:.2f} s "
          f"({len(rep.rendered)} samples of {', '.join(ids)}; render {rep.timings['render'] / len(rep.rendered):.2f}, "
          f"decompose {rep.timings['decompose'] / len(rep.rendered):.3f}, write {rep.timings['write'] / len(rep.rendered):.3f}, "
          f"build {rep.timings['build'] / len(rep.rendered):.3f} s/sample)")
    print(f"    estimate for all {n_all} default samples: {per_sample * n_all / 60:.1f} min + start-up")

    # 2. all ground-truth outputs vs combined only, same scenes, same process, interleaved
    from render import blender as bl

    gt_settings = defaults
    comb_settings = RenderSettings(**{**defaults.to_dict(), "ground_truth": False})
    # wall time is what users wait for, but this machine's cores may be shared with other work;
    # process CPU time (all threads) is the steadier measure of the work itself, so both are shown
    wall = {"gt": [], "comb": []}
    cpu = {"gt": [], "comb": []}
    with tempfile.TemporaryDirectory() as tmp:
        gt_s = bl.BlenderSession(gt_settings, Path(tmp) / "scratch")
        comb_s = bl.BlenderSession(comb_settings, Path(tmp) / "scratch")
        out = Path(tmp) / "out"
        version, space = bl.blender_version(), bl.working_space()

        def run_comb(scene, lighting):
            comb_s.set_lighting(scene, lighting)
            p = comb_s.render()
            img = p["Combined"][..., :3]
            write_exr(out / "comb" / "image_linear.exr", img)
            write_png_srgb(out / "comb" / "image_srgb.png", img)

        def run_gt(scene, lighting):
            gt_s.set_lighting(scene, lighting)
            p = gt_s.render()
            gt = decompose(p, gt_s.camera_from_world())
            _write_sample(out, SampleJob(scene, lighting), gt, gt_settings, gt_s.camera_info(), version, space, 0.0)

        for r in range(args.repeats + 1):        # round 0 warms caches and is not counted
            for scene in scenes:
                for lighting in scene.lightings:
                    order = [("comb", comb_s, run_comb), ("gt", gt_s, run_gt)]
                    for key, sess, fn in (order if r % 2 else order[::-1]):
                        sess.build(scene)          # same state for both: a fresh scene, then one render
                        t, c = time.perf_counter(), time.process_time()
                        fn(scene, lighting)
                        if r:
                            wall[key].append(time.perf_counter() - t)
                            cpu[key].append(time.process_time() - c)
    n = len(wall["gt"])
    wr = sum(wall["gt"]) / sum(wall["comb"])
    cr = sum(cpu["gt"]) / sum(cpu["comb"])
    per_pair = sorted(g / c for g, c in zip(cpu["gt"], cpu["comb"]))
    print(f"\n[2] all ground-truth outputs / combined only (same scenes, {n} interleaved pairs):")
    print(f"    CPU time  {cr:.3f}  (goal <= 1.10; {sum(cpu['gt']) / n:.2f} vs {sum(cpu['comb']) / n:.2f} CPU-s/sample; "
          f"per-pair median {statistics.median(per_pair):.3f}, range {per_pair[0]:.3f}-{per_pair[-1]:.3f})")
    print(f"    wall time {wr:.3f}  ({sum(wall['gt']) / n:.2f} vs {sum(wall['comb']) / n:.2f} s/sample)")
    print(f"\n[3] start-up per process: {statistics.median(starts):.2f} s (python + import bpy, median of 3); "
          f"bpy import + session in a running process {rep.startup_seconds:.2f} s; `python -m render --help` "
          f"{help_s:.2f} s (no bpy)")


def bench_devices(scenes, defaults) -> None:
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
        settings = RenderSettings(**{**defaults.to_dict(), "device": dev})
        with tempfile.TemporaryDirectory() as tmp:
            rep = render_dataset(scenes, Path(tmp) / "out", settings=settings)
        n = len(rep.rendered)
        rates[dev] = n / (rep.seconds - rep.startup_seconds)
        print(f"  {dev:6s}: {rates[dev]:7.3f} samples/s  ({n} samples, {rep.seconds_per_sample:.2f} s/sample, "
              f"start-up {rep.startup_seconds:.2f} s)")
    for dev in todo[1:]:
        print(f"  {dev} / cpu: {rates[dev] / rates['cpu']:.1f}x")


if __name__ == "__main__":
    main()
