"""`python -m render`: render the synthetic intrinsics test set (Blender Cycles, exact ground truth).

    python -m render                                   # 25 default scenes -> runs/render
    python -m render --only red_cube_table --resolution 32 --samples 4 --out /tmp/tiny
    python -m render --generate 100 --seed 1 --out runs/gen --shard $SLURM_ARRAY_TASK_ID/8
    python -m render --recolor 2 --out runs/render     # + 2 colour variants of each scene (<scene>~c1__<lighting>)
    python -m render --recolor 1 --recolor-mode both --out runs/render   # ~c1 hsv + ~c2 chroma (luminance kept)
    python -m render --out runs/render --manifest-only   # rebuild manifest.json after a job array
    python -m render import-mit /data/mit-intrinsic --out runs/mit   # real photographs as samples (render.mit)

Importing this module (and --help) does not import bpy.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from render.pipeline import (DEFAULT_OUT, FILES, RenderError, build_manifest, plan_samples, render_dataset,
                             verify_sample)
from render.recolor import with_variants
from render.generator import generate_scenes
from render.scene import SceneError, load_scenes, save_scene
from render.settings import (DEFAULT_RESOLUTION, DEFAULT_SAMPLES, DENOISE_MODES, DENOISE_QUALITIES, DEVICES,
                             EXPOSURES, RenderSettings, parse_resolution)
from render.shard import Shard

EPILOG = f"""\
output (under --out, default {DEFAULT_OUT}/, relative to the current folder):
  <scene>__<lighting>/  {' '.join(FILES.values())} sample.json
  <scene>~c<k>__<lighting>/   the same for colour variant k (--recolor K)
  scenes/<scene>.json   the rendered specs     manifest.json   every finished sample + definitions
Read it with render.dataset.load_sample(root, id). Reruns skip finished samples (sample.json written
last, file checksums verified); shards (--shard K/N, K = 0..N-1) may share one --out.
exit status: 0 done, 2 bad input (nothing rendered or overwritten), 1 render failure.

subcommand:
  python -m render import-mit SRC --out DIR   the MIT intrinsic images (real photographs with measured
                                              reflectance and shading) as samples of this layout; see
                                              python -m render import-mit --help
"""


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m render", description="Render scene specs with Blender Cycles into a dataset with exact "
        "intrinsic ground truth (image = albedo * shading + residual per pixel).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("scenes")
    src.add_argument("--scenes", metavar="PATH", help="a scene spec .json or a folder of them (default: the 25 "
                     "shipped scenes/)")
    src.add_argument("--only", metavar="ID[,ID]", help="render only these scene ids")
    src.add_argument("--generate", metavar="N", type=int, help="render N procedurally generated scenes instead")
    src.add_argument("--seed", metavar="S", type=int, default=0, help="generator seed (default 0): same seed, "
                     "same scenes")
    src.add_argument("--lightings", metavar="NAME[,NAME]", help="render only these lighting names")
    src.add_argument("--recolor", metavar="K", type=int, default=0,
                     help="also render K colour variants of each scene: same geometry, camera, lightings and "
                     "material parameters, every base colour and texture colour replaced by a seeded random one "
                     "(range in the manifest); ids <scene>~c<k>__<lighting> (default 0)")
    src.add_argument("--recolor-seed", metavar="S", type=int, default=0,
                     help="seed of the variant colours (default 0); a variant depends only on (S, scene id, k)")
    src.add_argument("--recolor-mode", choices=("hsv", "chroma", "both"), default="hsv",
                     help="hsv (default): hue, saturation and value drawn, so brightness changes too; chroma: hue and "
                     "saturation drawn, every colour (and so every albedo pixel) keeps its Rec.709 luminance within "
                     "1e-4, for an albedo contrast that is not a brightness contrast; both: K hsv variants ~c1..~cK, "
                     "then K chroma variants ~c(K+1)..~c(2K). Recorded per variant (manifest recolor_mode)")
    src.add_argument("--spec-help", action="store_true", help="print the scene spec format and exit")
    src.add_argument("--export-scenes", metavar="DIR", help="write the selected (or generated) specs as JSON to "
                     "DIR and exit without rendering")
    r = p.add_argument_group("rendering")
    r.add_argument("--resolution", metavar="N|WxH", default=str(DEFAULT_RESOLUTION),
                   help=f"image size in pixels (default {DEFAULT_RESOLUTION})")
    r.add_argument("--samples", metavar="N", type=int, default=DEFAULT_SAMPLES,
                   help=f"Cycles samples per pixel, the most with adaptive sampling (default {DEFAULT_SAMPLES})")
    r.add_argument("--adaptive-threshold", metavar="T", type=float, default=RenderSettings.adaptive_threshold,
                   help=f"Cycles' adaptive-sampling noise threshold (default {RenderSettings.adaptive_threshold:g}; "
                   f"0 = every pixel gets --samples); pixels stop after >= {RenderSettings.adaptive_min_samples} samples "
                   "once converged; the decomposition stays exact")
    r.add_argument("--threads", metavar="N", type=int, default=0, help="CPU threads for Cycles (default 0 = all)")
    r.add_argument("--exposure", choices=EXPOSURES, default="auto",
                   help="auto (default): scale each sample's light (image, shading, residual; never albedo) so its "
                   "centre-weighted median shading is 0.5, with highlight protection, in 1/3-EV steps (incident-light "
                   "metering, recorded per sample); none: Cycles' radiance as is")
    r.add_argument("--firefly-clamp", metavar="F", type=float, default=RenderSettings.firefly_clamp,
                   help=f"clamp indirect light per sample at F x the image's mean luminance, from a tiny pre-pass "
                   f"(default {RenderSettings.firefly_clamp:g}; 0 = off); the ground-truth identity is unaffected")
    r.add_argument("--denoise", choices=DENOISE_MODES, default=RenderSettings.denoise,
                   help=f"passes{' (default)' if RenderSettings.denoise == 'passes' else ''}: Intel Open Image Denoise "
                   "(shipped with bpy; OIDN_LIBRARY overrides) on the shading pass (guided by the normals) and the "
                   "residual pass, then image = albedo * shading + residual recomposed, so the identity stays exact; "
                   "the combined image is never denoised on its own, albedo/normal/depth/masks never. Removes most "
                   "room grain at 256 px for ~0.4 CPU-s per sample. "
                   f"none{' (default)' if RenderSettings.denoise == 'none' else ''}: Cycles' passes as rendered. "
                   "Recorded per sample (sample.json denoise: OIDN version and settings)")
    r.add_argument("--denoise-quality", choices=DENOISE_QUALITIES, default=RenderSettings.denoise_quality,
                   help=f"OIDN filter quality with --denoise passes (default {RenderSettings.denoise_quality})")
    r.add_argument("--keep-noisy", action="store_true",
                   help="with --denoise passes also write the passes before denoising (image/shading/residual_noisy"
                   "_linear.exr, same exposure; sample.json noisy)")
    r.add_argument("--device", choices=DEVICES, default="auto",
                   help="Cycles backend (default auto: the best GPU backend Cycles finds, OptiX > CUDA > HIP, else "
                   "the CPU, said once); an explicit GPU backend that is not available is an error. Recorded per "
                   "sample and in the manifest; ground truth is exact on every device")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"output root (default {DEFAULT_OUT})")
    o.add_argument("--shard", metavar="K/N", help="render only shard K of N (0-based; round-robin over sorted "
                   "sample ids); auto: K/N from a SLURM array or torchrun")
    o.add_argument("--overwrite", action="store_true", help="re-render samples that are already finished")
    o.add_argument("--manifest-only", action="store_true", help="only rebuild OUT/manifest.json from the "
                   "finished samples")
    o.add_argument("--dry-run", action="store_true", help="validate and list what would be rendered")
    o.add_argument("--status", metavar="N", type=int, help="check OUT for every sample of the whole plan, split "
                   "N ways as --shard K/N splits it: list what is missing and which shards to run again "
                   "(exit 0 complete, 3 incomplete)")
    o.add_argument("--contact-sheet", action="store_true",
                   help="only write OUT/contact_sheet.png (more pages as contact_sheet_p2.png, ...) from the finished "
                   "samples in --out: image / albedo / shading / residual per sample with its id (--only and "
                   "--lightings pick samples)")
    o.add_argument("--sheet-size", metavar="PX", type=int, default=128, help="contact sheet: panel size (128)")
    o.add_argument("--sheet-layout", metavar="COLSxROWS", default="2x12",
                   help="contact sheet: samples per row x rows per page (2x12)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _holds_an_import(out: Path) -> bool:
    """True when OUT's manifest.json was written by `render import-mit` (render.mit), not by a render."""
    import json

    try:
        return json.loads((out / "manifest.json").read_text()).get("created_by") == "python -m render import-mit"
    except (OSError, ValueError, AttributeError):
        return False


def _fail(msg: str, code: int = 2) -> int:
    print(f"python -m render: error: {msg}", file=sys.stderr)
    return code


def _contact_sheet(args, out: Path) -> int:
    from render.contact_sheet import contact_sheet
    from render.dataset import list_samples

    try:
        cols, rows = (int(x) for x in args.sheet_layout.lower().split("x"))
    except ValueError:
        return _fail(f"--sheet-layout must look like COLSxROWS (e.g. 2x12), got {args.sheet_layout!r}")
    try:
        infos = list_samples(out)
        only, lights = _csv(args.only), _csv(args.lightings)
        ids = [i.id for i in infos if (not only or i.base_scene in only or i.scene in only)
               and (not lights or i.lighting in lights)]
        if not ids:
            raise ValueError(f"--contact-sheet: no finished sample in {out} matches --only / --lightings")
        pages = contact_sheet(out, ids=ids, thumb=args.sheet_size, per_row=cols, rows=rows)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return _fail(str(e))
    print(f"wrote {', '.join(str(p) for p in pages)} ({len(ids)} samples)", file=sys.stderr)
    return 0


SUBCOMMANDS = ("import-mit",)


def build_import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m render import-mit",
        description="Import the MIT intrinsic images (Grosse et al. 2009; also the MIT-Berkeley copy of SIRFS 1.5) "
        "as samples in the render layout, so `probe run --stimuli images` and `evaluate` read them like a render: "
        "<object>__original (the default light, with measured shading, specular and diffuse parts) and "
        "<object>__light01..10 (ten single lights), each with the object's reflectance as albedo. What the dataset "
        "lacks (shading under light01-10, normals, depth) is absent and listed per sample under `missing`.",
        epilog="SRC holds one folder per object with the dataset's 16-bit linear PNGs (original.png, "
        "reflectance.png, mask.png required; diffuse.png, specular.png, shading.png, light01.png ... light10.png "
        "when present). Licence: research and not-for-profit use only, with NOTICE.txt kept (it is copied into "
        "--out); never commit the data or anything made from it. Exposure: one factor per photograph by the "
        "renderer's incident-light metering, shading estimated as photograph / reflectance (manifest "
        "definitions). Exit status: 0 done, 2 bad input (nothing written).")
    p.add_argument("src", metavar="SRC", help="the dataset folder (one sub-folder per object)")
    p.add_argument("--out", metavar="DIR", default="runs/mit", help="output folder (default runs/mit)")
    p.add_argument("--only", metavar="OBJ[,OBJ]", help="import only these objects (imports into one --out add up)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main_import_mit(argv: list[str]) -> int:
    from render.mit import MitError, import_mit

    args = build_import_parser().parse_args(argv)
    try:
        rep = import_mit(args.src, args.out, only=_csv(args.only), progress=not args.no_progress)
    except MitError as e:
        return _fail(str(e))
    print(f"imported {len(rep.samples)} samples of {len(rep.objects)} objects into {rep.out}; manifest: "
          f"{rep.manifest}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return main_import_mit(argv[1:])
    args = build_parser().parse_args(argv)
    if args.spec_help:
        from render.scene import spec_doc

        print(spec_doc())
        return 0
    out = Path(args.out)
    if args.contact_sheet:
        return _contact_sheet(args, out)
    if _holds_an_import(out) and (args.manifest_only or not (args.dry_run or args.status is not None
                                                             or args.export_scenes)):
        return _fail(f"--out {out} holds the MIT intrinsic images imported by `python -m render import-mit` (its "
                     "manifest.json says so): rendering or rebuilding the manifest there would mix or drop them. Render "
                     "into another --out; `python -m render import-mit SRC --out DIR` rebuilds an import's manifest. "
                     "Nothing was written.")
    if args.manifest_only:
        if not out.is_dir():
            return _fail(f"--out {out}: no such folder")
        path = build_manifest(out)
        print(f"wrote {path}")
        return 0
    try:
        w, h = parse_resolution(args.resolution)
        if args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0 = all cores), got {args.threads}")
        settings = RenderSettings(width=w, height=h, samples=args.samples, threads=args.threads,
                                  device=args.device, exposure=args.exposure,
                                  firefly_clamp=args.firefly_clamp, denoise=args.denoise,
                                  denoise_quality=args.denoise_quality,
                                  adaptive_threshold=args.adaptive_threshold).validate()
        shard = Shard.parse(args.shard)
        only = _csv(args.only)
        if args.generate is not None:
            if args.scenes:
                raise ValueError("--generate and --scenes are exclusive")
            scenes = generate_scenes(args.generate, args.seed)
            if only:
                scenes = [s for s in scenes if s.id in set(only)]
        else:
            if args.scenes is None:
                from render.paths import data_dir

                scenes_path = data_dir("scenes")
            else:
                scenes_path = Path(args.scenes)
            scenes = load_scenes(scenes_path, only=only)
        scenes = with_variants(scenes, args.recolor, args.recolor_seed, args.recolor_mode)
        lightings = _csv(args.lightings)
        jobs = plan_samples(scenes, lightings, shard)
    except (SceneError, ValueError) as e:
        return _fail(str(e))

    if args.export_scenes:
        dest = Path(args.export_scenes)
        try:
            for s in scenes:
                save_scene(s, dest / f"{s.id}.json")
        except OSError as e:
            return _fail(f"--export-scenes {dest}: cannot write: {e}")
        print(f"wrote {len(scenes)} scene specs to {dest}")
        return 0

    if args.status is not None:
        from render.status import RENDER_RESUBMIT, print_status, render_status

        if args.status < 1:
            return _fail(f"--status N needs N >= 1 (the number of shards), got {args.status}")
        return print_status(render_status(out, scenes, lightings, args.status), RENDER_RESUBMIT)

    if args.dry_run:
        for j in jobs:
            _, why = verify_sample(out, j.id) if out.is_dir() else (None, "not rendered")
            print(f"{j.id}\t{'done' if not why else why}")
        n_var = sum(1 for s in scenes if s.variant)
        what = f"{len(scenes) - n_var} scenes" + (f" + {n_var} colour variants" if n_var else "")
        print(f"{len(jobs)} samples ({what}, shard {shard}) -> {out}", file=sys.stderr)
        return 0

    try:
        report = render_dataset(scenes, out, settings=settings, lightings=lightings, shard=shard,
                                overwrite=args.overwrite, progress=not args.no_progress,
                                keep_noisy=args.keep_noisy)
    except (SceneError, RenderError, ValueError) as e:
        return _fail(str(e), 1 if isinstance(e, RenderError) and "identity error" in str(e) else 2)
    except KeyboardInterrupt:
        print("interrupted: finished samples are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    n = len(report.rendered)
    per = f", {report.seconds_per_sample:.2f} s/sample + {report.startup_seconds:.2f} s start-up" if n else ""
    print(f"rendered {n}, skipped {len(report.skipped)} finished, in {report.seconds:.1f} s{per}; "
          f"max identity error {report.max_identity_error:.2g}; manifest: {report.manifest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
