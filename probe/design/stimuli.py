"""What a stimulus is: one prompt, optionally a reference image, its noise seed, its pair and its role.

    from probe.design.stimuli import TextDesign, noise_seed
    design = TextDesign.from_pairs(pairs, {"paraphrase": para, "vocabulary": vocab}, seed=0, seeds_per_pair=2)
    stimuli = design.stimuli()          # every (pair, role, noise draw) as a Stimulus; `run` captures them
    arrays = design.assemble(values)    # {key: [units]} -> a, b [pairs, units] and each control set
    caps = design.captures(values, units, meta)   # captures.npz contents (probe.io.captures.Captures)

A design is anything with `kind`, `pair_ids`, `stimuli()`, `assemble(values)`, `captures(values, units,
meta)` and `record()`: this TextDesign (prompt pairs and control sets), and the image probe's
`probe.design.image_stimuli.ImageDesign` (render and albedo images of a render folder, pair id = base scene).
`probe.klein.capture_loop.capture_stimuli`, the resume cache, shards and `probe.jobs.finish.finish_run` treat both alike.

A `Stimulus` is all `probe.klein.capture_loop.capture_stimuli` needs to know: the text, the reference image (passed
to the pipeline as `image=`, for editing calls; None for text-to-image), the noise seed, and, for
bookkeeping, the pair id, role (`a`, `b`, or `control:NAME`) and draw. Two stimuli with the same
prompt, image and seed are the same computation and are captured once (the A side of every control
set is the pair's A with the pair's noise, so it is never recomputed).

Noise is a sampled factor, not a constant: by default each pair gets its own seed, derived from the
run's --seed and the pair id (`noise_seed`), the same for A, B and every control prompt of that
pair, so each pair is a paired comparison on one noise sample and the pairs sample the noise;
`seeds_per_pair` N > 1 averages each prompt's unit values over N noise draws of its pair.
`noise="shared"` reproduces the earlier design (draw 0 of every pair uses --seed itself).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import numpy as np

NOISE_MODES = ("per-pair", "shared")


def noise_seed(seed: int, pair_id: str, draw: int = 0, mode: str = "per-pair") -> int:
    """The generator seed of draw `draw` of pair `pair_id` under run seed `seed` (a 63-bit integer).

    per-pair: SHA-256 of (seed, pair id, draw), so a pair keeps its noise when other pairs are added or
    removed; shared: every pair uses `seed` for draw 0 (and a seed-derived value for later draws).
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
    if mode == "shared":
        if draw == 0:
            return int(seed)
        pair_id = ""
    digest = hashlib.sha256(f"ray-plantain/noise/{int(seed)}/{pair_id}/{int(draw)}".encode()).hexdigest()
    return int(digest[:15], 16)


_IMAGE_HASHES: dict[tuple[str, int, int], str] = {}


def image_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 (first 20 hex digits) of an image file's bytes, memoised by path, size and mtime."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IMAGE_HASHES:
        _IMAGE_HASHES[key] = hashlib.sha256(p.read_bytes()).hexdigest()[:20]
    return _IMAGE_HASHES[key]


@dataclass(frozen=True)
class Stimulus:
    """One pipeline input: prompt, optional reference image, noise seed; plus where it belongs."""
    pair_id: str
    role: str                   # "a", "b" or "control:NAME" (text probe); any label for other designs
    prompt: str
    seed: int
    image: str | None = None    # reference image file (editing call, `image=`); None: text-to-image
    draw: int = 0               # which noise draw of its pair (0 .. seeds_per_pair - 1)

    def key(self) -> str:
        """Identity of the computation (prompt, image content, seed): equal keys are captured once."""
        img = image_fingerprint(self.image) if self.image else ""
        raw = f"{self.prompt}\0{img}\0{int(self.seed)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def control_role(name: str) -> str:
    return f"control:{name}"


@dataclass(frozen=True)
class TextDesign:
    """The text probe's stimuli: pairs (A, B) and named control sets whose A is the pair's A.

    controls: {name: {pair_id: control prompt}} (a control set may cover a subset of the pairs).
    """
    pair_ids: tuple[str, ...]
    a: tuple[str, ...]
    b: tuple[str, ...]
    controls: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    seed: int = 0
    seeds_per_pair: int = 1
    noise: str = "per-pair"
    kind: ClassVar[str] = "text"

    def __post_init__(self):
        if not (len(self.pair_ids) == len(self.a) == len(self.b)):
            raise ValueError("TextDesign: pair_ids, a and b need the same length")
        if self.seeds_per_pair < 1:
            raise ValueError(f"seeds_per_pair must be >= 1, got {self.seeds_per_pair}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        known = set(self.pair_ids)
        for name, prompts in self.controls.items():
            extra = sorted(set(prompts) - known)
            if extra:
                raise ValueError(f"control set {name!r} has pairs the design does not: {extra[:5]}")

    @classmethod
    def from_pairs(cls, pairs: Sequence, controls: Mapping[str, Sequence] | None = None, **kw) -> "TextDesign":
        """From PromptPair lists: `pairs` (id, a, b) and control sets {name: [PromptPair(id, a, control)]}."""
        return cls(pair_ids=tuple(p.id for p in pairs), a=tuple(p.a for p in pairs), b=tuple(p.b for p in pairs),
                   controls={name: {c.id: c.b for c in cs} for name, cs in (controls or {}).items()}, **kw)

    def seeds(self, pair_id: str) -> list[int]:
        return [noise_seed(self.seed, pair_id, k, self.noise) for k in range(self.seeds_per_pair)]

    def stimuli(self) -> list[Stimulus]:
        """Every (pair, role, draw), pairs in order; A, B, then each control set's prompt."""
        out = []
        for pid, a, b in zip(self.pair_ids, self.a, self.b):
            for k, s in enumerate(self.seeds(pid)):
                out.append(Stimulus(pid, "a", a, s, draw=k))
                out.append(Stimulus(pid, "b", b, s, draw=k))
                for name, prompts in self.controls.items():
                    if pid in prompts:
                        out.append(Stimulus(pid, control_role(name), prompts[pid], s, draw=k))
        return out

    def assemble(self, values: Mapping[str, np.ndarray]) -> dict:
        """Per-prompt unit values (averaged over the draws) from captured values {Stimulus.key(): [units]}.

        Returns {"a": [pairs, units], "b": ..., "controls": {name: (a rows, control rows, pair ids)}},
        float32, rows in pair order (a control set's rows in the order of its pairs among the pairs).
        """
        def mean_of(pid: str, role: str, prompt: str) -> np.ndarray:
            vals = [np.asarray(values[Stimulus(pid, role, prompt, s).key()], dtype=np.float64)
                    for s in self.seeds(pid)]
            return np.mean(vals, axis=0)

        a = np.stack([mean_of(p, "a", x) for p, x in zip(self.pair_ids, self.a)]).astype(np.float32)
        b = np.stack([mean_of(p, "b", x) for p, x in zip(self.pair_ids, self.b)]).astype(np.float32)
        row = {p: i for i, p in enumerate(self.pair_ids)}
        controls = {}
        for name, prompts in self.controls.items():
            ids = [p for p in self.pair_ids if p in prompts]
            cb = np.stack([mean_of(p, control_role(name), prompts[p]) for p in ids]).astype(np.float32)
            controls[name] = (a[[row[p] for p in ids]], cb, np.array(ids))
        return {"a": a, "b": b, "controls": controls}

    def captures(self, values: Mapping[str, np.ndarray], units, meta: Mapping | None = None, unit_blocks=None):
        """captures.npz contents: a, b, the paraphrase set in control_a/_b, the others as control_NAME_*."""
        from probe.io.captures import PARAPHRASE, Captures, ControlSet

        arrays = self.assemble(values)
        named = {n: ControlSet(*v) for n, v in arrays["controls"].items() if n != PARAPHRASE}
        para = arrays["controls"].get(PARAPHRASE)
        meta = {**(meta or {}), "stimuli": "text", "seeds_per_pair": self.seeds_per_pair, "noise": self.noise}
        return Captures(a=arrays["a"], b=arrays["b"], units=np.asarray(units), pair_ids=np.array(self.pair_ids),
                        control_a=para[0] if para else None, control_b=para[1] if para else None,
                        control_pair_ids=para[2] if para else None, controls=named, unit_blocks=unit_blocks,
                        meta=meta)

    def lexicon(self, lengths: Mapping[str, Sequence[int]] | None = None) -> dict:
        """Per control set, how its prompts relate to A and B in words and tokens (`probe.design.prompts.
        control_lexicon`, token stand-in); `lengths`: config.json's `prompt_token_lengths` (the pipeline's own
        tokenizer, per role in design order), added as `tokens_minus_b_pipeline` when given."""
        from probe.design.prompts import control_lexicon

        row = {p: i for i, p in enumerate(self.pair_ids)}
        out = {}
        for name, prompts in self.controls.items():
            ids = [p for p in self.pair_ids if p in prompts]
            own = None
            if lengths and lengths.get(name) and lengths.get("b"):
                own = {"control": list(lengths[name]), "b": [lengths["b"][row[p]] for p in ids]}
            out[name] = control_lexicon([self.a[row[p]] for p in ids], [self.b[row[p]] for p in ids],
                                        [prompts[p] for p in ids], lengths=own)
        return out

    def record(self) -> dict:
        """JSON-able description for config.json: noise design and every pair's seeds."""
        return {"noise": self.noise, "seed": self.seed, "seeds_per_pair": self.seeds_per_pair,
                "derivation": ("sha256('ray-plantain/noise/{seed}/{pair_id}/{draw}') first 15 hex digits"
                               if self.noise == "per-pair" else "draw 0: --seed for every pair"),
                "same_noise_within_pair": "A, B and every control prompt of a pair share each of its seeds",
                "pair_seeds": {p: self.seeds(p) for p in self.pair_ids},
                "control_sets": {name: len(prompts) for name, prompts in self.controls.items()}}
