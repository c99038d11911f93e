"""Load FLUX.2 [klein]: a hub id, a local snapshot folder, or the tiny offline model.

    from probe.klein.model import ModelSpec, load_pipeline
    loaded = load_pipeline(ModelSpec("black-forest-labs/FLUX.2-klein-base-4B", dtype="bfloat16"))
    loaded = load_pipeline(ModelSpec("/data/snapshots/klein-base-4b"))     # local snapshot
    loaded = load_pipeline(ModelSpec("tiny"))                              # random weights, dry runs
    loaded = load_pipeline(ModelSpec("known-albedo"))                      # a known-answer model trained here
    loaded = load_pipeline(ModelSpec("/data/klein", randomize="transformer", randomize_seed=0))  # random-init control
    loaded.pipe(prompt=..., ...)
    model_fingerprint(loaded)   # the resolved revision: snapshot commit, or a (sampled) content hash of a folder

Every source goes through `Flux2KleinPipeline.from_pretrained`; `tiny` is first saved to a cache
folder, so a dry run exercises the same loading code as the real weights. The known-answer models
(`known-albedo`, `known-photo`: small kleins trained here, `probe.klein.known`) are snapshot folders shipped
in models/; any folder holding their record (ray_plantain_known.json) is read as one, and
`LoadedModel.max_sequence_length` is the text length the model reads (the record's, else the pipeline's
default, 512): every job passes it to the pipeline instead of assuming 512. Probe and evaluate both
load through here. `klein_4b_meta_transformer()` builds the real transformer shape on the `meta`
device (no memory) so tests can check unit counts at real scale.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .known import KNOWN_MODELS, KnownModelError, known_model_dir, known_summary, read_known_record

DEFAULT_MODEL = "black-forest-labs/FLUX.2-klein-base-4B"
TINY = "tiny"

# The klein base 4B transformer config (5 double + 20 single blocks, 24 heads x 128,
# joint_attention_dim = 3 x 2560 from Qwen3-4B's hidden states 9, 18, 27).
KLEIN_4B_TRANSFORMER = dict(
    patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256, mlp_ratio=3.0,
    axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, eps=1e-6, guidance_embeds=False,
)

DTYPES = ("auto", "bfloat16", "float16", "float32")
# --randomize: which trained components are replaced by a fresh, seeded initialisation from their own config
RANDOMIZE = ("none", "transformer", "all")
_RANDOMIZED = {"none": (), "transformer": ("transformer",), "all": ("transformer", "text_encoder")}


class ModelNotAvailable(RuntimeError):
    """The weights could not be found or loaded; the message is meant for the user as is."""


@dataclass(frozen=True)
class ModelSpec:
    model: str = DEFAULT_MODEL      # hub id, local folder, "tiny", or a known-answer model ("known-albedo", ...)
    dtype: str = "auto"             # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"            # auto: cuda if available, else cpu
    revision: str | None = None     # hub revision (branch, tag or commit)
    offload: bool = False           # enable_model_cpu_offload (GPUs with < ~24 GB)
    tiny_seed: int = 0
    randomize: str = "none"         # none | transformer | all (transformer and text encoder): random-init control
    randomize_seed: int = 0         # seed of that fresh initialisation


@dataclass
class LoadedModel:
    pipe: object
    spec: ModelSpec
    device: str
    dtype: str
    source: str                      # "hub", "local", "tiny" or "known" (a shipped known-answer model)
    resolved_path: str | None = None
    revision: str | None = None
    load_seconds: float = 0.0
    random_weights: bool = False
    extra: dict = field(default_factory=dict)
    randomized: dict = field(default_factory=dict)   # what --randomize replaced (mode, seed, components)
    known: dict | None = None        # the known-answer record (probe.klein.known) of the folder, if it has one
    max_sequence_length: int = 512   # text tokens the model reads: the known record's, else the pipeline default
    components: dict = field(default_factory=dict)   # component_fingerprints of a local folder ({} otherwise)

    @property
    def default_size(self) -> int | None:
        """The side the model was built for when a job needs a default (tiny: 64; a known-answer model: its
        training resolution); None: the job's own default (klein)."""
        if self.known:
            return int(self.known.get("resolution") or 64)
        return 64 if self.source == "tiny" else None

    def describe(self) -> dict:
        """JSON-able record of what was loaded, written next to every output."""
        return {
            "model": self.spec.model, "source": self.source, "resolved_path": self.resolved_path,
            "revision": self.revision, "device": self.device, "dtype": self.dtype,
            "random_weights": self.random_weights, "load_seconds": round(self.load_seconds, 2),
            "randomize": self.randomized or {"mode": "none"},
            "max_sequence_length": self.max_sequence_length,
            "known_answer": known_summary(self.known),
            "components": self.components,
            "spec": asdict(self.spec),
        }


def add_model_arguments(parser, default: str = DEFAULT_MODEL) -> None:
    """The model flags shared by `probe` and `evaluate` (argparse)."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=default,
                   help=f"hub id, local snapshot folder, 'tiny' for a random-weight dry run, or a known-answer model "
                        f"trained here ({', '.join(KNOWN_MODELS)}: a check of the tool, not klein) (default: {default})")
    g.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    g.add_argument("--dtype", default="auto", choices=DTYPES, help="weights dtype (auto: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default: cuda, under torchrun cuda:LOCAL_RANK; else cpu)")
    g.add_argument("--offload", action="store_true", help="CPU-offload idle sub-models (saves GPU memory, slower)")


def add_randomize_arguments(parser, population: bool = True) -> None:
    """--randomize / --randomize-seed: the architecture-matched random-init control (probe run; evaluate generate,
    ablate and all with population=False: one untrained network, no --randomize-seeds)."""
    g = parser.add_argument_group("random-init control")
    g.add_argument("--randomize", choices=RANDOMIZE, default="none",
                   help="transformer: keep the trained text encoder and VAE, replace the transformer's weights by a "
                        "fresh seeded initialisation from its own config; all: the text encoder too. Works for hub "
                        "ids, local snapshots and tiny, downloads nothing extra. Compare with `probe compare`")
    g.add_argument("--randomize-seed", type=int, default=0, help="seed of the fresh initialisation (recorded)")
    if not population:
        return
    g.add_argument("--randomize-seeds", default=None, metavar="LIST",
                   help="a population of untrained networks in one command: one run per seed (e.g. 0-18, or 0,3,5-9) "
                        "into OUT/seed-NNNN/, each a normal run folder, with OUT/population.json; the model is loaded "
                        "once and the text encoder's outputs (and, for --stimuli images, the reference latents) are "
                        "computed once and shared, so each further network costs only its transformer forwards. "
                        "Resumable; `probe compare RUN --population OUT` ranks a run among them")


def spec_from_args(args) -> ModelSpec:
    return ModelSpec(model=args.model, dtype=args.dtype, device=args.device, revision=args.revision,
                     offload=args.offload, randomize=getattr(args, "randomize", "none"),
                     randomize_seed=getattr(args, "randomize_seed", 0))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        # torchrun (one process per GPU) sets LOCAL_RANK; the modulo also serves ranks that see one GPU each
        local = os.environ.get("LOCAL_RANK", "").strip()
        return f"cuda:{int(local) % torch.cuda.device_count()}" if local.isdigit() else "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailable(f"--device {device} was asked for, but torch sees no CUDA device "
                                f"(torch {torch.__version__}). Use --device cpu or install a CUDA build of torch.")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return getattr(torch, dtype), dtype


def _unavailable_message(spec: ModelSpec, tried: list[str], cause: BaseException) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return (
        f"Could not load the klein weights for --model {spec.model!r}. Tried: {'; '.join(tried)}. "
        f"The underlying error was {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''} "
        f"{'(HF_HUB_OFFLINE is set, so nothing was downloaded.) ' if offline else ''}"
        f"To use weights you already have, download the snapshot on a machine with internet "
        f"(`huggingface-cli download {DEFAULT_MODEL} --local-dir /path/klein-base-4b`, after accepting the "
        f"licence on the hub) and pass --model /path/klein-base-4b; a folder needs model_index.json and the "
        f"transformer/, text_encoder/, tokenizer/, vae/ and scheduler/ sub-folders. "
        f"To check the whole run without weights, use --model tiny: a tiny random-weight model of the same "
        f"classes (a dry run; its numbers mean nothing)."
    )


def _snapshot_revision(path: Path) -> str | None:
    """The commit hash when `path` is a hub-cache snapshot (…/snapshots/<commit>/), else None."""
    parts = path.resolve().parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


@contextlib.contextmanager
def library_progress_bars(enabled: bool):
    """diffusers', transformers' and huggingface_hub's own progress bars (pipeline components, weights, downloads,
    the tiny model's shards) on or off inside the block, as they were after it: off for `--quiet`."""
    from diffusers.utils import logging as dlog
    from huggingface_hub import utils as hub
    from transformers.utils import logging as tlog

    switches = ((dlog.is_progress_bar_enabled, dlog.enable_progress_bar, dlog.disable_progress_bar),
                (tlog.is_progress_bar_enabled, tlog.enable_progress_bar, tlog.disable_progress_bar),
                (lambda: not hub.are_progress_bars_disabled(), hub.enable_progress_bars, hub.disable_progress_bars))

    def switch(states) -> None:
        for on, (_, enable, disable) in zip(states, switches):
            (enable if on else disable)()

    before = [is_on() for is_on, _, _ in switches]
    switch([enabled] * len(switches))
    try:
        yield
    finally:
        switch(before)


def load_pipeline(spec: ModelSpec, progress: bool = True):
    """Load a Flux2KleinPipeline per `spec`; raise ModelNotAvailable with a user-facing message. `progress=False`
    (--quiet) silences the libraries' own loading and download bars too."""
    with library_progress_bars(progress):
        return _load_pipeline(spec)


def _load_pipeline(spec: ModelSpec):
    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    from diffusers import Flux2KleinPipeline

    torch_dtype, dtype_name = resolve_dtype(spec.dtype, device)
    tried: list[str] = []
    kwargs: dict = {"torch_dtype": torch_dtype}
    if spec.model == TINY:
        from .tiny import tiny_pipeline_dir

        path, source = tiny_pipeline_dir(spec.tiny_seed), "tiny"
        tried.append(f"tiny model folder {path}")
        kwargs["local_files_only"] = True
        target = str(path)
    elif spec.model in KNOWN_MODELS and not Path(spec.model).exists():
        try:
            path = known_model_dir(spec.model)
        except KnownModelError as e:
            raise ModelNotAvailable(str(e)) from e
        source, target = "known", str(path)
        tried.append(f"known-answer model folder {path}")
        kwargs["local_files_only"] = True
    elif Path(spec.model).expanduser().exists() or spec.model.startswith(("/", "./", "../", "~")):
        path = Path(spec.model).expanduser()
        source, target = "local", str(path)
        tried.append(f"local folder {path}")
        if not (path / "model_index.json").is_file():
            raise ModelNotAvailable(_unavailable_message(
                spec, tried, FileNotFoundError(f"{path / 'model_index.json'} does not exist")))
        kwargs["local_files_only"] = True
    else:
        source, target, path = "hub", spec.model, None
        tried.append(f"hub id {spec.model}" + (f" at revision {spec.revision}" if spec.revision else "")
                     + " (local cache first, then download)")
        if spec.revision:
            kwargs["revision"] = spec.revision
    try:
        with warnings.catch_warnings():
            # newer diffusers renamed torch_dtype to dtype; older releases only know torch_dtype
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = Flux2KleinPipeline.from_pretrained(target, **kwargs)
    except (OSError, ValueError, EnvironmentError, ImportError) as e:
        raise ModelNotAvailable(_unavailable_message(spec, tried, e)) from e
    except Exception as e:  # huggingface_hub raises several non-OSError types when offline
        if type(e).__module__.startswith(("huggingface_hub", "requests", "httpx", "urllib3")):
            raise ModelNotAvailable(_unavailable_message(spec, tried, e)) from e
        raise
    try:
        known = read_known_record(path) if path is not None else None
    except KnownModelError as e:
        raise ModelNotAvailable(str(e)) from e
    randomized = {}
    if spec.randomize != "none":
        # before device placement and offload hooks, so the fresh modules are placed like the trained ones were
        init_device = "cpu" if spec.offload or not device.startswith("cuda") else device
        randomized = randomize_weights(pipe, spec.randomize, spec.randomize_seed, init_device, torch_dtype)
    if spec.offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    name_or_path = getattr(pipe, "name_or_path", None) or target
    resolved = Path(name_or_path) if Path(name_or_path).exists() else path
    if resolved is None and source == "hub":
        resolved = _hub_snapshot(spec.model, spec.revision)
    return LoadedModel(
        pipe=pipe, spec=spec, device=device, dtype=dtype_name, source=source,
        resolved_path=str(resolved) if resolved else None,
        revision=(_snapshot_revision(resolved) if resolved else None) or spec.revision,
        load_seconds=time.perf_counter() - t0, random_weights=(source == "tiny") or bool(randomized),
        randomized=randomized, known=known,
        max_sequence_length=int(known["max_sequence_length"]) if known else pipeline_text_length(pipe),
        components=component_fingerprints(resolved) if resolved and source in ("local", "known") else {},
    )


def pipeline_text_length(pipe) -> int:
    """The pipeline's default max_sequence_length (klein: 512)."""
    import inspect

    return int(inspect.signature(pipe.__call__).parameters["max_sequence_length"].default)


def randomize_weights(pipe, mode: str, seed: int, device: str = "cpu", dtype=None) -> dict:
    """Replace trained components of `pipe` by a fresh initialisation from their own config (in place).

    mode "transformer": the transformer only (the text encoder and VAE stay trained); "all": the text
    encoder too. Each component is built by its class's own initialisation (diffusers `from_config`,
    transformers' constructor), seeded with `seed` (component k gets seed + k) under a forked RNG,
    directly on `device` in `dtype` (default: the trained module's dtype). The trained module is released first, so a 4B model is never held
    twice. Returns the record written to config.json: mode, seed, components, parameter counts.
    """
    import gc

    import torch

    if mode not in RANDOMIZE:
        raise ValueError(f"randomize must be one of {RANDOMIZE}, got {mode!r}")
    record = {"mode": mode, "seed": int(seed), "components": [], "init_device": str(device),
              "note": "fresh initialisation from the same config: an architecture-matched untrained control"}
    for k, name in enumerate(_RANDOMIZED[mode]):
        old = getattr(pipe, name)
        cls, config = type(old), old.config
        old_dtype = dtype or next(old.parameters()).dtype
        setattr(pipe, name, None)
        del old
        gc.collect()
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()
        devices = [torch.device(device)] if str(device).startswith("cuda") else []
        default_dtype = torch.get_default_dtype()
        try:   # built directly in the run's dtype on the run's device: no float32 copy of a 4B model
            torch.set_default_dtype(old_dtype)
            with torch.random.fork_rng(devices=devices), torch.device(device):
                torch.manual_seed(int(seed) + k)
                fresh = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
        finally:
            torch.set_default_dtype(default_dtype)
        fresh = fresh.eval()
        pipe.register_modules(**{name: fresh})
        record["components"].append({"name": name, "class": cls.__name__, "seed": int(seed) + k,
                                     "n_params": int(sum(p.numel() for p in fresh.parameters()))})
    return record


def rerandomize(loaded: LoadedModel, seed: int) -> LoadedModel:
    """The same loaded pipeline with its randomised components initialised afresh with `seed` (a population of
    untrained networks: one load, one re-initialisation per member). The weights equal those of
    `load_pipeline(ModelSpec(..., randomize=mode, randomize_seed=seed))`: `randomize_weights` builds every
    component under a forked RNG seeded with seed + k, on the device and in the dtype `load_pipeline` uses, so
    nothing that ran before (an earlier member) reaches it. Returns a new LoadedModel (spec and record updated)
    around the same pipeline object; with --offload the offload hooks are installed again on the new modules."""
    import dataclasses

    import torch

    mode = loaded.spec.randomize
    if mode == "none":
        raise ValueError("rerandomize needs a model loaded with randomize='transformer' or 'all'")
    device = loaded.device
    offload = loaded.spec.offload and device.startswith("cuda")
    init_device = "cpu" if loaded.spec.offload or not device.startswith("cuda") else device
    record = randomize_weights(loaded.pipe, mode, seed, init_device, getattr(torch, loaded.dtype))
    if offload:
        loaded.pipe.enable_model_cpu_offload(device=device)
    else:
        for name in _RANDOMIZED[mode]:
            getattr(loaded.pipe, name).to(device)
    spec = dataclasses.replace(loaded.spec, randomize_seed=int(seed))
    return dataclasses.replace(loaded, spec=spec, randomized=record)


def _hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot folder a hub id resolved to (…/snapshots/<commit>), from the cache; None if unknown."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "model_index.json", revision=revision)
    except Exception:  # an unknown repo id or cache layout: no revision, never a crash
        return None
    return Path(hit).parent if isinstance(hit, str) else None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
FINGERPRINT_BLOCKS = 64            # sampled blocks per weight file
FINGERPRINT_BLOCK_BYTES = 1 << 16  # 64 KiB each: at most 4 MiB read per file


def _sampled_file_digest(f: Path, size: int) -> bytes:
    """SHA-256 of FINGERPRINT_BLOCKS evenly spaced blocks of a weight file (the whole file when small)."""
    import hashlib

    h = hashlib.sha256()
    with open(f, "rb") as fh:
        if size <= FINGERPRINT_BLOCKS * FINGERPRINT_BLOCK_BYTES:
            h.update(fh.read())
        else:
            step = (size - FINGERPRINT_BLOCK_BYTES) / (FINGERPRINT_BLOCKS - 1)
            for i in range(FINGERPRINT_BLOCKS):
                fh.seek(int(i * step))
                h.update(fh.read(FINGERPRINT_BLOCK_BYTES))
    return h.digest()


def folder_fingerprint(path: str | Path) -> str:
    """"content-sha256:<20 hex>" of a model folder: every *.json whole, and of each weight file its relative
    name, size and sampled blocks (_sampled_file_digest); the same files anywhere give the same value."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(path).as_posix()
        if f.suffix == ".json":
            h.update(f"{rel}\0".encode() + f.read_bytes() + b"\0")
        elif f.suffix in WEIGHT_SUFFIXES:
            size = f.stat().st_size
            h.update(f"{rel}\0{size}\0".encode() + _sampled_file_digest(f, size))
    return f"content-sha256:{h.hexdigest()[:20]}"


def component_fingerprints(path: str | Path) -> dict:
    """{component: folder_fingerprint} of each sub-folder of a snapshot (transformer, vae, text_encoder, ...), plus
    "architecture": a SHA-256 of model_index.json and every component's config.json. Two snapshots that differ
    only in their transformer's weights have the same architecture and the same other components: an untrained
    population made from one (--randomize transformer) is one made from the other (evaluate verdict reads this)."""
    import hashlib

    path = Path(path)
    if not path.is_dir():
        return {}
    out = {sub.name: folder_fingerprint(sub) for sub in sorted(path.iterdir())
           if sub.is_dir() and not sub.name.startswith(".")}
    h = hashlib.sha256()
    for f in [path / "model_index.json", *sorted(path.glob("*/config.json"))]:
        if f.is_file():
            h.update(f"{f.relative_to(path).as_posix()}\0".encode() + f.read_bytes() + b"\0")
    out["architecture"] = f"sha256:{h.hexdigest()[:20]}"
    return out


def model_fingerprint(loaded) -> dict:
    """What exactly was loaded, for resume keys: the snapshot commit for hub ids and hub-cache folders, else
    a SHA-256 of the folder's content ("content-sha256:"): every *.json whole (model_index.json,
    */config.json, tokenizer and scheduler configs), and of each weight file its name, size and 64 evenly
    spaced 64-KiB blocks (the whole file under 4 MiB), so weights replaced in place (a fine-tune of the same
    shapes) change it while a copy of the same files elsewhere does not; at most 4 MiB is read per file.
    Plus the randomisation (mode and seed)."""
    out = {"model": loaded.spec.model, "source": loaded.source}
    path = Path(loaded.resolved_path) if loaded.resolved_path else None
    commit = _snapshot_revision(path) if path is not None else None
    if commit:
        out["revision"] = f"commit:{commit}"
    elif path is not None and path.is_dir():
        out["revision"] = folder_fingerprint(path)
    else:
        out["revision"] = f"unresolved:{loaded.revision or loaded.spec.revision or 'default'}"
    out["randomize"] = {k: loaded.randomized.get(k) for k in ("mode", "seed")} if loaded.randomized else {
        "mode": "none"}
    return out


def klein_4b_meta_transformer():
    """The real klein base 4B transformer on the `meta` device: real shapes, no memory, no weights."""
    import torch
    from diffusers import Flux2Transformer2DModel

    with torch.device("meta"):
        return Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER)
