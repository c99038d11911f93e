"""`python -m probe prompts`: write prompt pair files and their control sets from scene specs or a pair file
(the generators are probe.design.prompts).

    python -m probe prompts --scenes DIR --out pairs.jsonl --control control.jsonl --vocabulary vocabulary.jsonl
    python -m probe prompts --from-pairs prompts/pairs.jsonl --vocabulary prompts/vocabulary.jsonl
"""
from __future__ import annotations

import argparse
from pathlib import Path

from probe.design.prompts import PromptFileError, generate_control, generate_pairs, generate_vocabulary
from render.paths import data_dir


def add_prompts_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `prompts` subcommand's arguments to `parser`."""
    parser.add_argument("--scenes", type=Path, default=None,
                        help="folder of scene specs (*.json) or one scene file (default: the shipped scenes/)")
    parser.add_argument("--from-pairs", type=Path, default=None, metavar="PAIRS",
                        help="instead of scenes, read this pair file and write only its --vocabulary control "
                             "(regenerates prompts/vocabulary.jsonl after the pair file changed)")
    parser.add_argument("--out", type=Path, default=None, help="pair file to write (JSON lines: id, a, b)")
    parser.add_argument("--control", type=Path, default=None,
                        help="also write the paraphrase control (same ids and A; B a paraphrase of A) here")
    parser.add_argument("--vocabulary", type=Path, default=None,
                        help="also write the vocabulary control (same ids and A; B the lit photograph in the "
                             "albedo prompt's words) here")
    parser.add_argument("--seed", type=int, default=0, help="picks the wording templates (default 0)")
    parser.add_argument("--lighting", choices=("all", "first"), default="all",
                        help="one pair per scene x lighting (all, ids <scene>__<lighting>) or per scene (first)")
    return parser


def main_prompts(args: argparse.Namespace) -> int:
    """Run the `prompts` subcommand from parsed arguments; returns the exit code."""
    if args.from_pairs is not None:
        if args.out is not None or args.control is not None or args.scenes is not None:
            raise PromptFileError("--from-pairs writes only the vocabulary control of an existing pair file: drop "
                                  "--scenes/--out/--control, and give --vocabulary OUT")
        if args.vocabulary is None:
            raise PromptFileError("--from-pairs needs --vocabulary OUT (where to write the vocabulary control)")
        control = generate_vocabulary(args.from_pairs, args.vocabulary)
        print(f"wrote {len(control)} vocabulary-control pairs to {args.vocabulary} (from {args.from_pairs})")
        return 0
    if args.out is None:
        raise PromptFileError("give --out PAIRS (pairs from scene specs) or --from-pairs PAIRS --vocabulary OUT")
    scenes = args.scenes if args.scenes is not None else data_dir("scenes")
    pairs = generate_pairs(scenes, args.out, lighting=args.lighting, seed=args.seed)
    print(f"wrote {len(pairs)} pairs to {args.out} (scenes: {scenes}, lighting={args.lighting}, seed={args.seed})")
    if args.control is not None:
        generate_control(scenes, args.control, lighting=args.lighting, seed=args.seed)
        print(f"wrote {len(pairs)} control pairs to {args.control}")
    if args.vocabulary is not None:
        generate_vocabulary(pairs, args.vocabulary)
        print(f"wrote {len(pairs)} vocabulary-control pairs to {args.vocabulary}")
    return 0


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="python -m probe.jobs.prompts", description=__doc__.splitlines()[0])
    raise SystemExit(main_prompts(add_prompts_arguments(_p).parse_args()))
