"""How far the token stand-in (probe/design/tokens.py) is from Qwen3's real token counts, on the shipped prompts.

    pip install tiktoken                     # not a project dependency
    python benchmarks/bench_tokens.py --ranks qwen.tiktoken

`--ranks`: Qwen's byte-level BPE ranks in tiktoken format (base64 token, rank per line; 151,643 lines: the
vocabulary Qwen, Qwen2, Qwen2.5 and Qwen3 share). One copy ships as `dashscope/resources/qwen.tiktoken` inside
the `dashscope` wheel on PyPI (`pip download dashscope --no-deps`, then unzip). Without `--ranks` (or without
tiktoken) the script says so and exits 0: the stand-in is what the project uses; this only measures it.

Prints, for every distinct prompt of prompts/*.jsonl, Qwen's count minus the stand-in's, and for each lexical
control set (vocabulary, shuffled) and the paraphrase set the error of the length difference to B
(real(control) - real(B) minus standin(control) - standin(B)), on the shipped pairs and on the pairs `probe prompts`
generates from the shipped scenes (every scene x lighting). Counting only, no timing.
"""
from __future__ import annotations

import argparse
import base64
import collections
import json
import sys
from pathlib import Path

from probe.design.prompts import generate_pairs, load_control, load_pairs, shipped_control_path, shuffled_control
from probe.design.prompts import vocabulary_control
from probe.design.tokens import QWEN_PRETOKENIZE, standin_tokens
from render.paths import data_dir


def qwen_counter(ranks_path: Path):
    import tiktoken

    ranks = {}
    for line in ranks_path.read_bytes().splitlines():
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    enc = tiktoken.Encoding("qwen", pat_str=QWEN_PRETOKENIZE, mergeable_ranks=ranks, special_tokens={})
    return lambda text: len(enc.encode(text)), len(ranks)


def _dist(values) -> str:
    c = collections.Counter(values)
    return ", ".join(f"{k:+d}: {c[k]}" for k in sorted(c))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=Path, default=None, help="Qwen's BPE ranks in tiktoken format (qwen.tiktoken)")
    args = ap.parse_args(argv)
    if args.ranks is None or not args.ranks.is_file():
        print("skipped: give --ranks qwen.tiktoken (Qwen's BPE ranks; see the docstring) to measure the stand-in")
        return 0
    try:
        real, n = qwen_counter(args.ranks)
    except ImportError:
        print("skipped: `pip install tiktoken` to apply Qwen's BPE ranks")
        return 0
    print(f"Qwen BPE ranks: {n:,} ({args.ranks}); stand-in: pieces of Qwen's pre-tokenizer")
    texts = set()
    for f in sorted(data_dir("prompts").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                texts |= {rec["a"], rec["b"]}
    err = [real(t) - standin_tokens(t) for t in sorted(texts)]
    print(f"{len(texts)} distinct shipped prompts: Qwen minus stand-in per prompt: mean {sum(err) / len(err):.2f}, "
          f"min {min(err)}, max {max(err)}  ({_dist(err)})")
    shipped = load_pairs()
    generated = generate_pairs(data_dir("scenes"), None, lighting="all", seed=0)
    sets = {
        "shipped": (shipped, {name: [c.b for c in load_control(shipped_control_path(name))[1]]
                              for name in ("paraphrase", "vocabulary", "shuffled")}),
        "generated": (generated, {"vocabulary": [c.b for c in vocabulary_control(generated)],
                                  "shuffled": [c.b for c in shuffled_control(generated)]}),
    }
    for label, (pairs, controls) in sets.items():
        for name, prompts in controls.items():
            d_real = [real(c) - real(p.b) for c, p in zip(prompts, pairs)]
            d_stand = [standin_tokens(c) - standin_tokens(p.b) for c, p in zip(prompts, pairs)]
            e = [r - s for r, s in zip(d_real, d_stand)]
            within = sum(abs(x) <= 2 for x in d_real)
            print(f"{label} {name} ({len(pairs)} pairs): tokens(control) - tokens(B) by Qwen: {_dist(d_real)}; "
                  f"within 2 by Qwen: {within}/{len(pairs)}; error of the stand-in's difference: {_dist(e)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
