"""`python -m probe prompts`: write prompt pair files and their control sets from scene specs or a pair file
(the generators are probe.design.prompts).

    python -m probe prompts --scenes DIR --out pairs.jsonl --control control.jsonl --vocabulary vocabulary.jsonl \
        --shuffled shuffled.jsonl
    python -m probe prompts --from-pairs prompts/pairs.jsonl --vocabulary prompts/vocabulary.jsonl \
        --shuffled prompts/shuffled.jsonl                       # the shipped files, with the token stand-in
    python -m probe prompts --from-pairs my_pairs.jsonl --vocabulary v.jsonl --tokenizer /data/klein-base-4b
"""
from __future__ import annotations

import argparse
from pathlib import Path

from probe.design.prompts import (PromptFileError, generate_control, generate_pairs, generate_shuffled,
                                  generate_vocabulary)
from render.paths import data_dir


def add_prompts_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `prompts` subcommand's arguments to `parser`."""
    parser.add_argument("--scenes", type=Path, default=None,
                        help="folder of scene specs (*.json) or one scene file (default: the shipped scenes/)")
    parser.add_argument("--from-pairs", type=Path, default=None, metavar="PAIRS",
                        help="instead of scenes, read this pair file and write only its lexical controls (--vocabulary, "
                             "--shuffled): regenerates prompts/vocabulary.jsonl and prompts/shuffled.jsonl after the "
                             "pair file changed")
    parser.add_argument("--out", type=Path, default=None, help="pair file to write (JSON lines: id, a, b)")
    parser.add_argument("--control", type=Path, default=None,
                        help="also write the paraphrase control (same ids and A; B a paraphrase of A) here")
    parser.add_argument("--vocabulary", type=Path, default=None,
                        help="also write the vocabulary control (same ids and A; B the albedo prompt's words meaning a "
                             "lit photograph: negations turned, length-matched to B within 2 tokens) here")
    parser.add_argument("--shuffled", type=Path, default=None,
                        help="also write the shuffled control (same ids and A; B the albedo prompt's words in a seeded "
                             "random order: the same bag of words, no syntax) here")
    parser.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                        help="count tokens for the length matching with this tokenizer (a klein snapshot folder or its "
                             "tokenizer/ folder); default: a stand-in from Qwen's pre-tokenizer, which the shipped "
                             "files use (probe/design/tokens.py says how far it can be off)")
    parser.add_argument("--seed", type=int, default=0, help="picks the wording templates (default 0)")
    parser.add_argument("--lighting", choices=("all", "first"), default="all",
                        help="one pair per scene x lighting (all, ids <scene>__<lighting>) or per scene (first)")
    return parser


def _counter(args):
    from probe.design.tokens import load_tokenizer, token_counter

    if args.tokenizer is None:
        return token_counter()
    try:
        return token_counter(load_tokenizer(args.tokenizer), name=f"tokenizer of {args.tokenizer}")
    except (OSError, ValueError) as e:
        raise PromptFileError(f"--tokenizer {args.tokenizer}: cannot load a tokenizer there ({e})") from None


def _write_lexical(args, pairs, source) -> None:
    counter = _counter(args)
    for name, path, make in (("vocabulary", args.vocabulary, generate_vocabulary),
                             ("shuffled", args.shuffled, generate_shuffled)):
        if path is not None:
            control = make(pairs, path, counter)
            print(f"wrote {len(control)} {name}-control pairs to {path} (from {source}; tokens: {counter.name})")


def main_prompts(args: argparse.Namespace) -> int:
    """Run the `prompts` subcommand from parsed arguments; returns the exit code."""
    if args.from_pairs is not None:
        if args.out is not None or args.control is not None or args.scenes is not None:
            raise PromptFileError("--from-pairs writes only the lexical controls of an existing pair file: drop "
                                  "--scenes/--out/--control, and give --vocabulary OUT and/or --shuffled OUT")
        if args.vocabulary is None and args.shuffled is None:
            raise PromptFileError("--from-pairs needs --vocabulary OUT and/or --shuffled OUT (where to write the "
                                  "lexical controls)")
        _write_lexical(args, args.from_pairs, args.from_pairs)
        return 0
    if args.out is None:
        raise PromptFileError("give --out PAIRS (pairs from scene specs) or --from-pairs PAIRS --vocabulary OUT")
    scenes = args.scenes if args.scenes is not None else data_dir("scenes")
    pairs = generate_pairs(scenes, args.out, lighting=args.lighting, seed=args.seed)
    print(f"wrote {len(pairs)} pairs to {args.out} (scenes: {scenes}, lighting={args.lighting}, seed={args.seed})")
    if args.control is not None:
        generate_control(scenes, args.control, lighting=args.lighting, seed=args.seed)
        print(f"wrote {len(pairs)} control pairs to {args.control}")
    _write_lexical(args, pairs, args.out)
    return 0


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="python -m probe.jobs.prompts", description=__doc__.splitlines()[0])
    raise SystemExit(main_prompts(add_prompts_arguments(_p).parse_args()))
