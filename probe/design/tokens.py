"""Token counts of prompts as klein's text encoder (Qwen3-4B) reads them, exact with its tokenizer, else a stand-in.

    from probe.design.tokens import token_counter, load_tokenizer
    count = token_counter()                          # the stand-in (no model files needed): STANDIN says what it is
    count = token_counter(pipe.tokenizer)            # the pipeline's own tokenizer: exact
    count = token_counter(load_tokenizer("/data/klein-base-4b"))     # a snapshot's tokenizer/ folder
    count("An albedo image of a red cube.")          # tokens of the prompt itself (no chat template, no padding)
    count.name                                       # "qwen-pretokenizer-standin" or the tokenizer's class and path

The length matching of the control sets (`probe.design.prompts`) counts with one of these. The shipped control files
are made with the stand-in, because klein's real tokenizer is not on every machine (`probe prompts --tokenizer DIR`
regenerates them with it).

The stand-in counts the pieces of Qwen2/Qwen3's own pre-tokenizer: the same regular expression (`QWEN_PRETOKENIZE`,
copied from the Qwen2 tokenizer's `pre_tokenizer` after NFC normalisation), applied with the `tokenizers` library.
Every piece is counted as one token. Qwen's byte-level BPE (151,643 merges, shared by Qwen2, Qwen2.5 and Qwen3) turns
each piece into one or more tokens: common English words with their leading space are one token, rarer ones two
or three (" albedo" = " al" + "bedo", " mottled" = 3, " softbox" = 2). So the stand-in never counts more tokens
than Qwen does, and fewer by the number of extra pieces of its rare words. Measured against Qwen's own BPE
ranks (`benchmarks/bench_tokens.py`, numbers in benchmarks/RESULTS.md) on the 125 distinct shipped prompts:
0 to 6 tokens fewer per prompt (mean 1.8). A control made of B's own words has the same rare words as B, so the
error cancels in its length difference to B: 0 for all 78 vocabulary controls (25 shipped, 53 generated from the
shipped scenes), 0 to +2 for the shuffled ones (a word moved to the start loses its leading space); by Qwen's
own count every one of them is within 2 tokens of B.
No torch, no transformers (unless `load_tokenizer` is called).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

__all__ = ["QWEN_PRETOKENIZE", "STANDIN", "STANDIN_NAME", "TokenCounter", "token_counter", "standin_tokens",
           "load_tokenizer"]

# Qwen2TokenizerFast's pre-tokenizer split (tokenizer.json, pre_tokenizer.pretokenizers[0].pattern.Regex).
QWEN_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                    r"\s*[\r\n]+|\s+(?!\S)|\s+")
STANDIN_NAME = "qwen-pretokenizer-standin"
STANDIN = ("stand-in for Qwen3's tokenizer: the pieces of Qwen2/Qwen3's pre-tokenizer regular expression (after NFC), "
           "one token each; a lower bound on Qwen's count (rare words are 2-3 BPE tokens): 0-6 tokens fewer per shipped "
           "prompt (mean 1.8), and 0-2 on a lexical control's difference to B, measured against Qwen's BPE ranks "
           "(benchmarks/bench_tokens.py)")


@lru_cache(maxsize=1)
def _splitter():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated")


def standin_tokens(text: str) -> int:
    """Pieces of Qwen's pre-tokenizer in `text` (see the module docstring for how far this is from Qwen's count)."""
    return len(_splitter().pre_tokenize_str(unicodedata.normalize("NFC", text)))


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of a prompt's own text (no chat template, no special tokens, no padding)."""
    name: str
    count: Callable[[str], int]
    exact: bool

    def __call__(self, text: str) -> int:
        return int(self.count(text))

    def describe(self) -> str:
        return self.name + ("" if self.exact else f" ({STANDIN})")


def token_counter(tokenizer=None, name: str | None = None) -> TokenCounter:
    """The stand-in (tokenizer None) or a counter through `tokenizer` (a Hugging Face tokenizer, e.g. pipe.tokenizer)."""
    if tokenizer is None:
        return TokenCounter(STANDIN_NAME, standin_tokens, exact=False)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    label = name or f"{type(tokenizer).__name__}({getattr(tokenizer, 'name_or_path', '') or 'in memory'})"
    return TokenCounter(label, count, exact=True)


def load_tokenizer(path: str | Path):
    """The tokenizer of a klein snapshot folder (its `tokenizer/` subfolder) or of a tokenizer folder itself."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {path}")
    sub = path / "tokenizer"
    return AutoTokenizer.from_pretrained(str(sub if sub.is_dir() else path))
