"""klein's predicted albedo of each rendered sample, by reference-image editing at full depth.

    from evaluate.generate import GenerateConfig, generate_predictions
    cfg = GenerateConfig(data="runs/render", out="runs/pred", method="klein")
    generate_predictions(loaded, cfg)          # loaded = probe.klein.model.load_pipeline(...)

Per sample: the rendered `image_srgb.png` (the same 8-bit input every method gets) is brought to
sides that are multiples of 16 without losing content (`probe.klein.registration`), edited by klein
with the albedo instruction, and the output is mapped back onto the render's pixel grid. Storage,
resume and the shared index files are `evaluate.predictions`: a prediction is reused only when its
sidecar's generation key (model and revision, dtype, prompt, steps, guidance, seed, reference file
checksum and transform, ablated units, library versions) equals this run's.

Steps and guidance default to the loaded model's own: the pipeline's defaults for klein base
(50 steps, CFG 4.0); a step-distilled klein (`is_distilled` in its model_index.json) runs its 4
steps without CFG, and its guidance is recorded as not used.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from probe.klein.edit_capture import default_max_side
from evaluate.predictions import (IMAGE_LIBRARIES, MODEL_LIBRARIES, RESUME_MODES, PredictionStore, file_sha256,
                                  library_versions)
from probe.klein.registration import plan_reference
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
    max_side: int | None = None               # references larger are downscaled (None: 1024; random weights: 64;
                                              # a known-answer model: its training side)
    shard: str | None = None
    limit: int | None = None
    samples: tuple[str, ...] = ()             # only these sample ids (empty: all)
    ablate: tuple[str, ...] = ()              # head units to mean-ablate, e.g. ("double.3.img/h07",)
    ablate_text_tokens: str = "prompt"        # the text tokens `.txt` units were measured on (the probe's)
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
    """What identifies the weights: id, source, revision (the hub cache's commit when none was given), and
    `fingerprint` / `randomize` from probe.klein.model.model_fingerprint, as the probe keys its captures: a local
    folder by its content (the SHA-256 of its configs with the names and sizes of its weight files) beside
    its path, so weights replaced in place are not reused; the randomisation mode and seed."""
    from probe.klein.model import model_fingerprint

    rev = loaded.revision
    if rev is None and loaded.source == "hub":
        try:
            from huggingface_hub import snapshot_download

            snap = Path(snapshot_download(loaded.spec.model, local_files_only=True))
            rev = snap.name
        except Exception:
            rev = None
    fp = model_fingerprint(loaded)
    ident = {"model": loaded.spec.model, "source": loaded.source, "revision": rev, "dtype": loaded.dtype,
             "device_type": str(loaded.device).split(":")[0], "random_weights": bool(loaded.random_weights),
             "fingerprint": fp["revision"], "randomize": fp["randomize"]}
    if loaded.source == "local":
        ident["path"] = str(Path(loaded.resolved_path or loaded.spec.model).resolve())
    if loaded.source == "tiny":
        from probe.klein.tiny import TINY_VERSION

        ident["tiny_version"], ident["tiny_seed"] = TINY_VERSION, loaded.spec.tiny_seed
    if getattr(loaded, "known", None):    # a retrained known-answer model keeps its name and folder: its content hash tells them apart
        from probe.klein.model import model_fingerprint

        ident["known_model"] = {"name": loaded.known.get("name"), "fingerprint": model_fingerprint(loaded)["revision"]}
    return ident


def _read_reference(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as err:
        raise DataError(f"cannot read the reference image {path}: {err}") from err


def _token_layout(pipe, prompt: str, model_size: tuple[int, int], cfg_on: bool, txt_len: int | None = None,
                  text_tokens: str = "prompt") -> dict:
    """Token counts of each forward of an edit at model_size and the text tokens the probe measured (for region
    ablation; klein's unconditional prompt is ""). txt_len: the model's max_sequence_length
    (LoadedModel.max_sequence_length: 512 for klein, the record's for a known-answer model; None: the pipeline's
    default); the tokenizer must pad on the right (asserted)."""
    from probe.klein.ablation import ablation_layout
    from probe.klein.capture_loop import n_image_tokens

    from probe.klein.edit_capture import pipeline_default

    n_img = n_image_tokens(pipe, model_size[1], model_size[0])
    txt_len = int(txt_len) if txt_len else int(pipeline_default(pipe, "max_sequence_length"))
    return ablation_layout(pipe, prompt, n_img, n_img, cfg_on, txt_len, text_tokens)


@contextlib.contextmanager
def encode_prompt_once(pipe):
    """Within the block, `pipe.encode_prompt` computes each distinct prompt once and returns the same
    embeddings afterwards: a run edits every sample with one instruction (and CFG's empty prompt), so
    the text encoder need not run again per sample. The pipeline is still called with the prompt
    text, exactly as a plain call (and the probe's edit capture) calls it; the pixels are identical
    (tests check this). Calls given embeddings pass straight through. Restored on exit."""
    import torch

    original = getattr(pipe, "encode_prompt", None)
    if original is None:
        yield
        return
    cache: dict = {}

    def encode_prompt(*args, **kwargs):
        if any(isinstance(v, torch.Tensor) for v in (*args, *kwargs.values())):
            return original(*args, **kwargs)
        key = repr((args, sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(*args, **kwargs)
        return cache[key]

    pipe.encode_prompt = encode_prompt
    try:
        yield
    finally:
        del pipe.encode_prompt          # the class's method again


def _plan(loaded, cfg: GenerateConfig) -> dict:
    """Everything a run needs, checked before anything is written: samples, prompt, sampling settings,
    the ablation, each sample's reference transform and generation key, and the resume decisions
    (`--resume strict` raises here)."""
    from PIL import Image

    from probe.design.prompts import load_edit_instructions

    mode = cfg.resume_mode
    entries = select_samples(load_render_manifest(cfg.data), cfg)
    instructions = load_edit_instructions(cfg.instructions_file)
    if not 0 <= cfg.instruction < len(instructions):
        raise DataError(f"--instruction {cfg.instruction} is out of range: there are {len(instructions)} wordings")
    prompt = instructions[cfg.instruction]
    pipe = loaded.pipe
    sampling = resolve_sampling(pipe, cfg.steps, cfg.guidance)
    # The tiny random model only checks code paths: keep its dry runs small; a known-answer model edits at the
    # side it was trained at.
    max_side = cfg.max_side or default_max_side(loaded)
    ablation = definition = None
    if cfg.ablate:
        from probe.klein.ablation import HeadAblation, ablation_definition

        ablation = HeadAblation(pipe.transformer, cfg.ablate)   # bad unit names fail before any write
        definition = ablation_definition(cfg.ablate_text_tokens)
    common = {"format": GENERATION_FORMAT, "kind": "klein reference edit", "model": model_identity(loaded),
              "prompt": prompt, "negative_prompt": "" if sampling["cfg"] else None, "steps": sampling["steps"],
              "guidance": sampling["guidance"], "seed": cfg.seed, "max_side": max_side, "input": INPUT,
              "max_sequence_length": text_length(loaded),
              "ablated_units": sorted(ablation.units) if ablation else [], "ablation": definition,
              "versions": library_versions(MODEL_LIBRARIES + IMAGE_LIBRARIES)}
    multiple = int(getattr(pipe, "vae_scale_factor", 8)) * 2    # klein: 16 (VAE 8 x patch 2)
    transforms, keys = {}, {}
    for e in entries:
        src = Path(cfg.data) / e["image_srgb"]
        try:
            with Image.open(src) as im:
                w, h = im.size
        except Exception as err:
            raise DataError(f"cannot read the reference image {src}: {err}") from err
        try:
            transforms[e["id"]] = plan_reference(w, h, max_side=max_side, multiple=multiple)
        except ValueError as err:
            raise DataError(f"{src}: {err}") from err
        keys[e["id"]] = {**common, "reference": {"file": e["image_srgb"], "sha256": file_sha256(src)},
                         "reference_transform": transforms[e["id"]].describe()}
    store = PredictionStore(cfg.out, cfg.method)
    return {"entries": entries, "prompt": prompt, "sampling": sampling, "ablation": ablation, "definition": definition,
            "transforms": transforms, "keys": keys, "store": store, "decisions": store.plan(keys, mode)}


def text_length(loaded) -> int:
    """The text length the model reads: LoadedModel.max_sequence_length (a known-answer model's record, else the
    pipeline's default, 512 for klein); the pipeline's default for a stand-in without it."""
    from probe.klein.edit_capture import pipeline_default

    n = getattr(loaded, "max_sequence_length", None)
    return int(n) if n else int(pipeline_default(loaded.pipe, "max_sequence_length"))


def _text_kwargs(pipe, max_sequence_length: int) -> dict:
    """The text length as a pipeline argument: passed when it is not the pipeline's default (a known-answer
    model's 64), left to the pipeline otherwise (klein's 512), as probe.klein.edit_capture does, so that both make
    the same call."""
    from probe.klein.edit_capture import pipeline_default

    n = int(max_sequence_length)
    return {} if n == pipeline_default(pipe, "max_sequence_length") else {"max_sequence_length": n}


def _edit(pipe, ref: np.ndarray, prompt: str, sampling: dict, seed: int, text_kwargs: dict) -> np.ndarray:
    """One klein edit of a prepared reference: the output decoded from the pipeline's 8-bit values to linear.

    No height/width: the pipeline generates at the reference's size (its sides are already multiples
    of 16 and its area within klein's limit), the same call as probe.klein.edit_capture makes.
    text_kwargs: _text_kwargs of the model's text length (LoadedModel.max_sequence_length)."""
    import torch
    from PIL import Image

    with torch.inference_mode():
        img = pipe(image=Image.fromarray(ref), prompt=prompt, num_inference_steps=sampling["steps"],
                   guidance_scale=sampling["guidance"] if sampling["cfg"] else 1.0,
                   generator=torch.Generator(device="cpu").manual_seed(seed), output_type="np", **text_kwargs).images[0]
    # without rescaling, the PNG written back from this linear array is the pipeline's 8-bit values exactly
    return srgb_to_linear(np.round(np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255) / 255.0)


def generate_predictions(loaded, cfg: GenerateConfig, progress: bool = True) -> dict:
    """Run klein editing on every selected sample; returns a run summary. Resumable (see the module docstring)."""
    from tqdm.auto import tqdm

    run = _plan(loaded, cfg)
    pipe, prompt, sampling, ablation, store = (loaded.pipe, run["prompt"], run["sampling"], run["ablation"],
                                               run["store"])
    for n in sampling["notes"]:
        print(f"note: {n}", file=sys.stderr)
    stale = {s: d for s, d in run["decisions"].items() if d.state == "mismatch"}
    if stale:
        fields = sorted({f for d in stale.values() for f in d.differing})
        print(f"note: {cfg.method}: {len(stale)} prediction(s) on disk were made with other settings "
              f"({', '.join(fields[:8])}); regenerating them", file=sys.stderr)
    done = skipped = 0
    seconds: list[float] = []
    layouts: dict = {}
    txt_len = text_length(loaded)
    text_kwargs = _text_kwargs(pipe, txt_len)
    try:
        with contextlib.ExitStack() as stack:
            if ablation is not None:
                stack.enter_context(ablation)
            stack.enter_context(encode_prompt_once(pipe))
            for e in tqdm(run["entries"], desc=f"generate {cfg.method}", unit="sample", disable=not progress):
                sid = e["id"]
                if run["decisions"][sid].keep:
                    skipped += 1
                    continue
                t = run["transforms"][sid]
                if ablation is not None:
                    if t.model not in layouts:
                        layouts[t.model] = _token_layout(pipe, prompt, t.model, sampling["cfg"],
                                                         txt_len, cfg.ablate_text_tokens)
                    ablation.prepare(**layouts[t.model])
                t0 = time.perf_counter()
                out = _edit(pipe, t.apply(_read_reference(Path(cfg.data) / e["image_srgb"])), prompt, sampling,
                            cfg.seed, text_kwargs)
                seconds.append(time.perf_counter() - t0)
                store.write(sid, t.invert(out), key=run["keys"][sid], scene=e.get("scene"), lighting=e.get("lighting"),
                            reference=e["image_srgb"], reference_size=list(t.original),
                            reference_size_given_to_model=list(t.model), reference_transform=t.describe(),
                            prompt=prompt, instruction_index=cfg.instruction, seed=cfg.seed,
                            steps=sampling["steps"], guidance=sampling["guidance"], seconds=round(seconds[-1], 3),
                            ablated_units=list(cfg.ablate), model=loaded.spec.model,
                            revision=run["keys"][sid]["model"]["revision"], random_weights=loaded.random_weights)
                done += 1
    finally:
        from render.shard import Shard

        store.finish({"source": "evaluate.generate", "model_record": loaded.describe(),
                      "ablation_definition": run["definition"]},
                     shard=Shard.parse(cfg.shard), samples=[e["id"] for e in run["entries"]])
    return {"method": cfg.method, "generated": done, "skipped_finished": skipped, "regenerated_stale": len(stale),
            "selected": len(run["entries"]), "mean_seconds": float(np.mean(seconds)) if seconds else None,
            "steps": sampling["steps"], "guidance": sampling["guidance"], "config": asdict(cfg)}
