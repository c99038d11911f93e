"""`python -m probe known`: train a known-answer model here, or list the shipped ones.

    python -m probe known train --data runs/known-train --task albedo --out runs/known-albedo
    python -m probe known list
"""
from __future__ import annotations

import sys
from dataclasses import fields

from probe.io.errors import UsageError

KNOWN_DESCRIPTION = """Known-answer models: small kleins (the real pipeline classes) trained here on synthetic renders,
whose answer is known, to check the tool itself. `known-albedo` edits a rendered photograph into its albedo under the
albedo instruction evaluate generate uses; `known-photo` (same architecture, data and budget) gives the photograph
back under a keep-the-photograph instruction. Both ship in models/ and load with `--model known-albedo` /
`--model known-photo` (or their folder) in every job. Reports on them say in their first line: a model trained here
on synthetic renders: a check of the tool, not a finding about klein."""

TRAIN_EPILOG = """training data (never the 25 default scenes, the held-out test set; the job refuses them):
  python -m render --generate 150 --seed 1 --recolor 3 --resolution 64 --samples 32 --out runs/known-train

the shipped models were trained with:
  python -m probe known train --data runs/known-train --task albedo --out models/known-albedo
  python -m probe known train --data runs/known-train --task photo --vae-from models/known-albedo --link-shared \
      --out models/known-photo

written to --out (a new folder): the Flux2KleinPipeline snapshot (model_index.json, transformer/, vae/, text_encoder/,
tokenizer/, scheduler/; safetensors, weights stored as --storage-dtype), ray_plantain_known.json (task, instruction,
text length, sizes, seeds, data recipe, timing, versions), loss_curve.csv and README.md.

exit status: 0 trained, 2 bad input (one paragraph says why; nothing is written)."""


def add_known_arguments(parser) -> None:
    from probe.klein.known import KNOWN_MODELS

    sub = parser.add_subparsers(dest="known_command", metavar="{train,list}")
    tr = sub.add_parser("train", help="train a known-answer model from a render folder",
                        description=KNOWN_DESCRIPTION, epilog=TRAIN_EPILOG,
                        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    tr.add_argument("--data", required=True, metavar="RENDER_DIR",
                    help="a `python -m render --generate N` folder rendered at --resolution (never the default scenes)")
    tr.add_argument("--task", required=True, choices=("albedo", "photo", "shading", "light", "intrinsic"),
                    help="albedo: photo -> its albedo under the albedo instruction; photo: photo -> the photo itself "
                         "under the keep-photo instruction (the control); shading: photo -> its diffuse shading "
                         "under the shading instruction; light: photo -> that shading averaged over the scene's "
                         "colour variants under the same lighting (one target per scene and lighting: the known "
                         "answer for lighting-selective heads); intrinsic: albedo under the albedo instruction and "
                         "that averaged shading under the shading instruction, one network for both components "
                         "(shading, light and intrinsic are not shipped)")
    tr.add_argument("--out", required=True, metavar="DIR", help="the snapshot folder to write (must be new or empty)")
    tr.add_argument("--name", default=None, help="the model's name in its record (default known-TASK)")
    tr.add_argument("--vae-from", default=None, metavar="MODEL",
                    help=f"reuse the tokenizer, text encoder and trained VAE of a known-answer model ({', '.join(KNOWN_MODELS)} "
                         "or a folder) instead of training a VAE: the two shipped models share one")
    tr.add_argument("--link-shared", action="store_true",
                    help="with --vae-from: files identical to that model's (VAE, text encoder, tokenizer, scheduler) "
                         "become relative symlinks to them, as in a Hugging Face cache (the shipped known-photo: one "
                         "copy of the shared parts in the repository)")
    g = tr.add_argument_group("sizes and budget (defaults: the shipped models')")
    defaults = _config_defaults()
    for flag, key, typ, help_ in (
            ("--steps", "steps", int, "transformer optimiser steps"),
            ("--batch", "batch", int, "transformer batch size"),
            ("--lr", "lr", float, "transformer peak learning rate (AdamW, warm-up then cosine)"),
            ("--vae-steps", "vae_steps", int, "VAE optimiser steps"),
            ("--hidden", "hidden", int, "transformer width (heads x head size)"),
            ("--heads", "heads", int, "attention heads"),
            ("--double-blocks", "double_blocks", int, "double-stream blocks"),
            ("--single-blocks", "single_blocks", int, "single-stream blocks"),
            ("--max-sequence-length", "max_sequence_length", int, "text tokens the model reads (klein: 512)"),
            ("--resolution", "resolution", int, "image side the renders must have"),
            ("--seed", "seed", int, "seed of every initialisation, batch, noise and dropout draw"),
            ("--threads", "threads", int, "torch CPU threads")):
        g.add_argument(flag, type=typ, default=defaults[key], help=f"{help_} (default {defaults[key]})")
    g.add_argument("--storage-dtype", choices=("float16", "bfloat16", "float32"), default=defaults["storage_dtype"],
                   help=f"dtype of the weights on disk (default {defaults['storage_dtype']}; loading casts them)")
    g.add_argument("--limit", type=int, default=None, help="use only the first N samples (quick checks)")
    tr.add_argument("--quiet", action="store_true", help="no progress lines")
    sub.add_parser("list", help="the shipped known-answer models and what each is")


def _config_defaults() -> dict:
    from probe.klein.train import KnownTrainConfig   # no torch at import

    return {f.name: f.default for f in fields(KnownTrainConfig) if f.default is not f.default_factory}


def task_instruction(task: str, path=None, second: bool = False) -> str | None:
    """The instruction a task trains with (prompts/edit_instructions.json): `instructions[0]` for albedo and
    intrinsic, the wording evaluate generate uses by default; `keep_photo[0]` for photo; `shading[0]` for shading
    and light. second=True: a two-target task's second instruction (intrinsic: `shading[0]`), else None."""
    from probe.design.prompts import load_edit_instructions, load_keep_photo_instructions
    from probe.klein.train import TASKS

    if second:
        also = TASKS[task].get("also")
        return load_edit_instructions(path, key=also[1])[0] if also else None
    if TASKS[task]["instruction_key"] == "instructions":
        return load_edit_instructions(path)[0]
    if TASKS[task]["instruction_key"] == "keep_photo":
        return load_keep_photo_instructions(path)[0]
    return load_edit_instructions(path, key=TASKS[task]["instruction_key"])[0]


def main_known(args) -> int:
    if args.known_command == "train":
        return _train(args)
    if args.known_command == "list":
        return _list()
    raise UsageError("python -m probe known needs a subcommand: train or list (see --help)")


def _train(args) -> int:
    from probe.klein.train import KnownTrainConfig, train_known

    keys = ("name", "vae_from", "link_shared", "steps", "batch", "lr", "vae_steps", "hidden", "heads", "double_blocks",
            "single_blocks", "max_sequence_length", "resolution", "seed", "threads", "storage_dtype", "limit")
    cfg = KnownTrainConfig(data=args.data, task=args.task, out=args.out, instruction=task_instruction(args.task),
                           second_instruction=task_instruction(args.task, second=True),
                           **{k: getattr(args, k) for k in keys})
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    rec = train_known(cfg, log=log)
    print(f"{rec['name']}: {rec['banner']}. Wrote {args.out} (final training loss "
          f"{rec['final_train_loss_mean_last_5pct']:.4f}, {rec['timing']['total_wall_s'] / 60:.1f} min).")
    return 0


def _list() -> int:
    from probe.klein.known import KNOWN_MODELS, KnownModelError, known_model_dir, read_known_record

    for name in KNOWN_MODELS:
        try:
            path = known_model_dir(name)
            rec = read_known_record(path) or {}
        except KnownModelError as e:
            print(f"{name}: missing ({e})")
            continue
        print(f"{name}: {rec.get('banner')}\n  {path}\n  {rec.get('what')}\n  instruction: {rec.get('instruction')}\n"
              f"  text length {rec.get('max_sequence_length')}, {rec.get('resolution')} px, "
              f"{rec.get('transformer_parameters', 0):,} transformer parameters, "
              f"{(rec.get('train_config') or {}).get('steps')} steps")
    return 0
