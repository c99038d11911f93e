"""klein's predicted albedo of each rendered sample, by reference-image editing at full depth.

    from evaluate.generate import GenerateConfig, generate_predictions
    cfg = GenerateConfig(data="runs/render", out="runs/pred", method="klein")
    generate_predictions(loaded, cfg)          # loaded = probe.model.load_pipeline(...)

Writes, per sample, PRED/<method>/<sample>_albedo_srgb.png (the pipeline's 8-bit sRGB output,
unchanged), <sample>_albedo_linear.exr (the same pixels decoded from sRGB to linear float32), and
<sample>.json (seed, prompt, steps, guidance, seconds: the done marker). PRED/<method>/manifest.json
is rebuilt from the sidecars after every run, so shards writing into one folder never collide.
Scoring (`evaluate score`) reads these back without a GPU.
"""
from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evaluate.baselines import prediction_finished, write_method_manifest, write_prediction
from render.imageio import atomic_path, srgb_to_linear
from render.shard import Shard


class DataError(ValueError):
    """The render folder or a prediction folder is missing or inconsistent (message is user-facing)."""


@dataclass(frozen=True)
class GenerateConfig:
    data: str
    out: str
    method: str = "klein"
    instruction: int = 0                      # index into prompts/edit_instructions.json
    instructions_file: str | None = None
    steps: int | None = None                  # None: the pipeline's own default (full depth)
    guidance: float | None = None             # None: the pipeline's own default CFG
    seed: int = 0
    max_side: int | None = None               # references larger are downscaled (None: 1024; tiny model: 64)
    shard: str | None = None
    limit: int | None = None
    samples: tuple[str, ...] = ()             # only these sample ids (empty: all)
    ablate: tuple[str, ...] = ()              # head units to mean-ablate, e.g. ("double.3.img/h07",)
    resume: bool = True


def pipeline_defaults(pipe) -> dict:
    """The model's own defaults for steps and CFG, read from its __call__ signature."""
    params = inspect.signature(pipe.__call__).parameters
    return {"steps": params["num_inference_steps"].default, "guidance": params["guidance_scale"].default}


def load_render_manifest(data: str | os.PathLike) -> dict:
    """render.dataset.load_manifest, with its errors as DataError (printed as one line by the CLI)."""
    from render.dataset import load_manifest

    try:
        manifest = load_manifest(data)
    except (FileNotFoundError, ValueError) as e:
        raise DataError(str(e)) from e
    if not manifest["samples"]:
        raise DataError(f"{Path(data) / 'manifest.json'} lists no samples")
    return manifest


def select_samples(manifest: dict, cfg: GenerateConfig) -> list[dict]:
    from render.shard import Shard

    entries = sorted(manifest["samples"], key=lambda e: e["id"])
    if cfg.samples:
        known = {e["id"] for e in entries}
        unknown = [s for s in cfg.samples if s not in known]
        if unknown:
            raise DataError(f"sample ids not in the render manifest: {unknown[:5]}")
        entries = [e for e in entries if e["id"] in set(cfg.samples)]
    entries = Shard.parse(cfg.shard).select(entries)
    return entries[: cfg.limit] if cfg.limit else entries


def generate_predictions(loaded, cfg: GenerateConfig, progress: bool = True) -> dict:
    """Run klein editing on every selected sample; returns a run summary. Resumable."""
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    from probe.prompts import load_edit_instructions

    manifest = load_render_manifest(cfg.data)
    entries = select_samples(manifest, cfg)
    instructions = load_edit_instructions(cfg.instructions_file)
    if not 0 <= cfg.instruction < len(instructions):
        raise DataError(f"--instruction {cfg.instruction} is out of range: there are {len(instructions)} wordings")
    prompt = instructions[cfg.instruction]
    pipe = loaded.pipe
    defaults = pipeline_defaults(pipe)
    steps = cfg.steps or defaults["steps"]
    guidance = defaults["guidance"] if cfg.guidance is None else cfg.guidance
    out = Path(cfg.out)
    (out / cfg.method).mkdir(parents=True, exist_ok=True)
    # The tiny random model only checks code paths: keep its dry runs small.
    max_side = cfg.max_side or (64 if loaded.random_weights else 1024)
    run_info = {"config": asdict(cfg), "model": loaded.describe(), "steps": steps, "guidance": guidance,
                "prompt": prompt, "pipeline_defaults": defaults, "max_side": max_side,
                "shard": Shard.parse(cfg.shard, announce=False).as_dict()}
    with atomic_path(out / cfg.method / "config.json") as tmp:
        tmp.write_text(json.dumps(run_info, indent=2, default=str))

    ablation = None
    if cfg.ablate:
        from probe.capture import HeadAblation

        ablation = HeadAblation(pipe.transformer, cfg.ablate)
    done = skipped = 0
    seconds = []
    bar = tqdm(entries, desc=f"generate {cfg.method}", unit="sample", disable=not progress)
    try:
        if ablation is not None:
            ablation.__enter__()
        for e in bar:
            if cfg.resume and prediction_finished(out, cfg.method, e["id"]):
                skipped += 1
                continue
            src = Path(cfg.data) / e["image_srgb"]
            try:
                ref = Image.open(src).convert("RGB")
            except Exception as err:
                raise DataError(f"cannot read the reference image {src}: {err}") from err
            original_size = list(ref.size)
            # klein accepts references of at least 64 px a side; larger ones cost quadratically.
            s = max_side / max(ref.size) if max(ref.size) > max_side else max(1.0, 64 / min(ref.size))
            if s != 1.0:
                ref = ref.resize((max(64, round(ref.width * s)), max(64, round(ref.height * s))), Image.LANCZOS)
            t0 = time.perf_counter()
            with torch.inference_mode():
                img = pipe(image=ref, prompt=prompt, num_inference_steps=steps, guidance_scale=guidance,
                           generator=torch.Generator(device="cpu").manual_seed(cfg.seed), output_type="np").images[0]
            dt = time.perf_counter() - t0
            seconds.append(dt)
            q = np.round(np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255)
            # The PNG re-encoded from this linear array gives back the pipeline's 8-bit values exactly.
            write_prediction(out, cfg.method, e["id"], srgb_to_linear(q / 255.0),
                             scene=e.get("scene"), lighting=e.get("lighting"), reference=e["image_srgb"],
                             reference_size=original_size, reference_size_given_to_model=list(ref.size), prompt=prompt, instruction_index=cfg.instruction,
                             seed=cfg.seed, steps=steps, guidance=guidance, seconds=round(dt, 3),
                             ablated_units=list(cfg.ablate), model=loaded.spec.model, revision=loaded.revision,
                             random_weights=loaded.random_weights)
            done += 1
    finally:
        if ablation is not None:
            ablation.__exit__(None, None, None)
        write_method_manifest(out, cfg.method, {"model": loaded.describe(), "prompt": prompt, "steps": steps,
                                                "guidance": guidance, "seed": cfg.seed,
                                                "ablated_units": list(cfg.ablate)})
    return {"method": cfg.method, "generated": done, "skipped_finished": skipped, "selected": len(entries),
            "mean_seconds": float(np.mean(seconds)) if seconds else None, "steps": steps, "guidance": guidance}
