"""klein's predicted albedo of each rendered sample, by reference-image editing at full depth.

    from evaluate.generate import GenerateConfig, generate_predictions
    cfg = GenerateConfig(data="runs/render", out="runs/pred", method="klein")
    generate_predictions(loaded, cfg)          # loaded = probe.model.load_pipeline(...)

Per sample: the rendered `image_srgb.png` (the same 8-bit input every method gets) is brought to
sides that are multiples of 16 without losing content (`evaluate.registration`), edited by klein
with the albedo instruction, and the output is mapped back onto the render's pixel grid. Storage,
resume and the shared index files are `evaluate.predictions`: a prediction is reused only when its
sidecar's generation key (model and revision, dtype, prompt, steps, guidance, seed, reference file
checksum and transform, ablated units, library versions) equals this run's.

Steps and guidance default to the loaded model's own: the pipeline's defaults for klein base
(50 steps, CFG 4.0); a step-distilled klein (`is_distilled` in its model_index.json) runs its 4
steps without CFG, and its guidance is recorded as not used.
"""
from __future__ import annotations

import inspect
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evaluate.predictions import RESUME_MODES, PredictionStore, file_sha256, library_versions
from evaluate.registration import plan_reference
from render.imageio import srgb_to_linear

DISTILLED_STEPS = 4          # FLUX.2 [klein] 4B (step-distilled) model card: 4 steps, no CFG
GENERATION_FORMAT = 2        # bump when what a prediction means changes (2: registration, region ablation)
INPUT = "image_srgb.png (8-bit sRGB, as rendered), the same input every method reads"


class DataError(ValueError):
    """The render folder or a prediction folder is missing or inconsistent (message is user-facing)."""


@dataclass(frozen=True)
class GenerateConfig:
    data: str
    out: str
    method: str = "klein"
    instruction: int = 0                      # index into prompts/edit_instructions.json
    instructions_file: str | None = None
    steps: int | None = None                  # None: the model's own default
    guidance: float | None = None             # None: the model's own default (distilled: CFG off)
    seed: int = 0
    max_side: int | None = None               # references larger are downscaled (None: 1024; tiny model: 64)
    shard: str | None = None
    limit: int | None = None
    samples: tuple[str, ...] = ()             # only these sample ids (empty: all)
    ablate: tuple[str, ...] = ()              # head units to mean-ablate, e.g. ("double.3.img/h07",)
    resume: bool | str = True                 # True/"on", "strict", False/"off"

    @property
    def resume_mode(self) -> str:
        mode = {True: "on", False: "off"}.get(self.resume, self.resume)
        if mode not in RESUME_MODES:
            raise DataError(f"--resume must be one of {', '.join(RESUME_MODES)}, got {self.resume!r}")
        return mode


def model_defaults(pipe) -> dict:
    """Steps and CFG the loaded model runs by its own configuration.

    klein base: the pipeline's __call__ defaults. A step-distilled klein (pipe.config.is_distilled)
    runs DISTILLED_STEPS and ignores guidance (guidance None: CFG off).
    """
    params = inspect.signature(pipe.__call__).parameters
    distilled = bool(getattr(getattr(pipe, "config", None), "is_distilled", False))
    if distilled:
        return {"steps": DISTILLED_STEPS, "guidance": None, "distilled": True,
                "source": "step-distilled model (is_distilled): its 4 steps, no CFG"}
    return {"steps": params["num_inference_steps"].default, "guidance": params["guidance_scale"].default,
            "distilled": False, "source": "the pipeline's own defaults"}



def resolve_sampling(pipe, steps: int | None, guidance: float | None) -> dict:
    """Steps and guidance actually used; guidance None when CFG does not run (distilled, or <= 1)."""
    d = model_defaults(pipe)
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
        raise DataError(f"--steps must be a positive number of inference steps, got {steps!r}")
    use_steps = int(steps) if steps is not None else int(d["steps"])
    notes = []
    if d["distilled"]:
        if guidance is not None and guidance > 1.0:
            notes.append(f"--guidance {guidance} ignored: a step-distilled klein runs without CFG")
        use_guidance = None
    else:
        g = d["guidance"] if guidance is None else float(guidance)
        use_guidance = g if g > 1.0 else None
        if use_guidance is None:
            notes.append(f"guidance {g} <= 1: CFG off (one forward per step)")
    return {"steps": use_steps, "guidance": use_guidance, "cfg": use_guidance is not None, "model_defaults": d,
            "notes": notes}


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
    try:
        entries = Shard.parse(cfg.shard).select(entries)
    except ValueError as e:
        raise DataError(str(e)) from e
    return entries[: cfg.limit] if cfg.limit else entries


def model_identity(loaded) -> dict:
    """What identifies the weights: id, source, revision (the hub cache's commit when none was given)."""
    rev = loaded.revision
    if rev is None and loaded.source == "hub":
        try:
            from huggingface_hub import snapshot_download

            snap = Path(snapshot_download(loaded.spec.model, local_files_only=True))
            rev = snap.name
        except Exception:
            rev = None
    ident = {"model": loaded.spec.model, "source": loaded.source, "revision": rev, "dtype": loaded.dtype,
             "device_type": str(loaded.device).split(":")[0], "random_weights": bool(loaded.random_weights)}
    if loaded.source == "local":
        ident["path"] = str(Path(loaded.resolved_path or loaded.spec.model).resolve())
    if loaded.source == "tiny":
        from probe.tiny import TINY_VERSION

        ident["tiny_version"], ident["tiny_seed"] = TINY_VERSION, loaded.spec.tiny_seed
    return ident


def _read_reference(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as err:
        raise DataError(f"cannot read the reference image {path}: {err}") from err


def _token_layout(pipe, prompt: str, model_size: tuple[int, int], cfg_on: bool) -> dict:
    """Token counts of each forward of an edit at model_size (for region ablation)."""
    from probe.run import n_image_tokens, real_text_lengths

    n_img = n_image_tokens(pipe, model_size[1], model_size[0])
    prompts = [prompt, ""] if cfg_on else [prompt]   # klein's unconditional prompt is ""
    return {"txt_len": 512, "n_img": n_img, "n_ref": n_img, "real_txt": real_text_lengths(pipe, prompts, 512),
            "forwards_per_step": 2 if cfg_on else 1}


def _prompt_inputs(pipe, prompt: str, cfg_on: bool) -> dict:
    """The prompt as klein's __call__ takes it, encoded once for the whole run (identical for every
    sample: the text encoder need not run again per sample); the prompt text for pipelines without
    `encode_prompt`."""
    if not hasattr(pipe, "encode_prompt"):
        return {"prompt": prompt}
    import torch

    with torch.inference_mode():
        emb = {"prompt_embeds": pipe.encode_prompt(prompt=prompt)[0]}
        if cfg_on:
            emb["negative_prompt_embeds"] = pipe.encode_prompt(prompt="")[0]   # klein's unconditional prompt
    return emb


def generate_predictions(loaded, cfg: GenerateConfig, progress: bool = True) -> dict:
    """Run klein editing on every selected sample; returns a run summary. Resumable (see the module docstring)."""
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    from probe.prompts import load_edit_instructions

    mode = cfg.resume_mode
    manifest = load_render_manifest(cfg.data)
    entries = select_samples(manifest, cfg)
    instructions = load_edit_instructions(cfg.instructions_file)
    if not 0 <= cfg.instruction < len(instructions):
        raise DataError(f"--instruction {cfg.instruction} is out of range: there are {len(instructions)} wordings")
    prompt = instructions[cfg.instruction]
    pipe = loaded.pipe
    sampling = resolve_sampling(pipe, cfg.steps, cfg.guidance)
    for n in sampling["notes"]:
        print(f"note: {n}", file=sys.stderr)
    # The tiny random model only checks code paths: keep its dry runs small.
    max_side = cfg.max_side or (64 if loaded.random_weights else 1024)
    ablation = None
    ablation_definition = None
    if cfg.ablate:
        from probe.ablation import ABLATION_DEFINITION, HeadAblation

        ablation = HeadAblation(pipe.transformer, cfg.ablate)   # bad unit names fail before any write
        ablation_definition = ABLATION_DEFINITION
    common_key = {"format": GENERATION_FORMAT, "kind": "klein reference edit", "model": model_identity(loaded),
                  "prompt": prompt, "negative_prompt": "" if sampling["cfg"] else None, "steps": sampling["steps"],
                  "guidance": sampling["guidance"], "seed": cfg.seed, "max_side": max_side, "input": INPUT,
                  "ablated_units": sorted(ablation.units) if ablation else [],
                  "ablation": ablation_definition, "versions": library_versions()}

    # keys of every selected sample first: --resume strict must fail before anything is written
    multiple = int(getattr(pipe, "vae_scale_factor", 8)) * 2    # klein: 16 (VAE 8 x patch 2)
    plans, keys = {}, {}
    for e in entries:
        src = Path(cfg.data) / e["image_srgb"]
        if not src.is_file():
            raise DataError(f"cannot read the reference image {src}: file not found")
        try:
            with Image.open(src) as im:
                w, h = im.size
        except Exception as err:
            raise DataError(f"cannot read the reference image {src}: {err}") from err
        try:
            plans[e["id"]] = plan_reference(w, h, max_side=max_side, multiple=multiple)
        except ValueError as err:
            raise DataError(f"{src}: {err}") from err
        keys[e["id"]] = {**common_key, "reference": {"file": e["image_srgb"], "sha256": file_sha256(src)},
                         "reference_transform": plans[e["id"]].describe()}
    store = PredictionStore(cfg.out, cfg.method)
    decisions = store.plan(keys, mode)
    n_stale = sum(1 for d in decisions.values() if d.state == "mismatch")
    if n_stale:
        fields = sorted({f for d in decisions.values() for f in d.differing})
        print(f"note: {cfg.method}: {n_stale} prediction(s) on disk were made with other settings "
              f"({', '.join(fields[:8])}); regenerating them", file=sys.stderr)

    done = skipped = 0
    seconds = []
    layouts: dict = {}
    text = _prompt_inputs(pipe, prompt, sampling["cfg"]) if any(not d.keep for d in decisions.values()) else {}
    bar = tqdm(entries, desc=f"generate {cfg.method}", unit="sample", disable=not progress)
    try:
        if ablation is not None:
            ablation.__enter__()
        for e in bar:
            sid = e["id"]
            if decisions[sid].keep:
                skipped += 1
                continue
            t = plans[sid]
            ref = t.apply(_read_reference(Path(cfg.data) / e["image_srgb"]))
            if ablation is not None:
                lay = layouts.get(t.model) or layouts.setdefault(t.model, _token_layout(pipe, prompt, t.model,
                                                                                        sampling["cfg"]))
                ablation.prepare(**lay)
            t0 = time.perf_counter()
            with torch.inference_mode():
                img = pipe(image=Image.fromarray(ref), **text, height=t.model[1], width=t.model[0],
                           num_inference_steps=sampling["steps"],
                           guidance_scale=sampling["guidance"] if sampling["cfg"] else 1.0,
                           generator=torch.Generator(device="cpu").manual_seed(cfg.seed), output_type="np").images[0]
            dt = time.perf_counter() - t0
            seconds.append(dt)
            q = np.round(np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255)
            # decoded from the pipeline's 8-bit values: without rescaling the PNG written back is those values exactly
            pred = t.invert(srgb_to_linear(q / 255.0))
            store.write(sid, pred, key=keys[sid], scene=e.get("scene"), lighting=e.get("lighting"),
                        reference=e["image_srgb"], reference_size=list(t.original),
                        reference_size_given_to_model=list(t.model), reference_transform=t.describe(),
                        prompt=prompt, instruction_index=cfg.instruction, seed=cfg.seed, steps=sampling["steps"],
                        guidance=sampling["guidance"], seconds=round(dt, 3), ablated_units=list(cfg.ablate),
                        model=loaded.spec.model, revision=keys[sid]["model"]["revision"],
                        random_weights=loaded.random_weights)
            done += 1
    finally:
        if ablation is not None:
            ablation.__exit__(None, None, None)
        store.finish({"source": "evaluate.generate", "model_record": loaded.describe(),
                      "ablation_definition": ablation_definition})
    return {"method": cfg.method, "generated": done, "skipped_finished": skipped, "regenerated_stale": n_stale,
            "selected": len(entries), "mean_seconds": float(np.mean(seconds)) if seconds else None,
            "steps": sampling["steps"], "guidance": sampling["guidance"], "config": asdict(cfg)}
