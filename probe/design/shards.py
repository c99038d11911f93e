"""Probe shards: which pairs a `--shard K/N` run captures, and the partial file it leaves (numpy only, no torch).

    from probe.design.shards import shard_stimuli, shard_path, write_shard, read_shard
    mine = shard_stimuli(design.stimuli(), Shard.parse("1/3"))   # the stimuli of this shard's pairs
    write_shard(shard_path(out, shard), ...)                     # after capture_stimuli
    part = read_shard(out / "shards" / "partial-1-of-3.npz")     # what `probe merge` reads

The unit of a split is `Stimulus.pair_id` (CONTRACTS C5): a pair's A, B, control prompts and all its
noise draws stay in one shard; for the image probe the pair id is the base scene, so a scene's
lightings, colour variants and albedo images stay together. Shard K of N takes the sorted unique pair
ids round robin (`render.shard.Shard.select`), so the shards' union is every pair exactly once.

One file per shard, written only by that shard's process, atomically (temporary name with host and
pid, then a rename), in `OUT/shards/partial-K-of-N.npz`. While the shard captures, the file is its
resume cache (the layout of `probe.klein.capture_loop.save_cache`: config_key, key_fields, keys, values); when the
shard has finished, it is rewritten with everything `probe merge` needs:

    config_key   str scalar        the resume key: hash of key_fields
    key_fields   str scalar        JSON: capture settings, model revision, randomisation, dtype, device
                                   type, torch/diffusers/transformers versions (probe.klein.capture_loop.cache_fields)
    keys         str [stimuli]     Stimulus.key() of every captured stimulus of this shard's pairs
    values       float32 [stimuli, units]
    units        str [units]       unit names, in capture order
    pair_ids     str [pairs]       the pairs this shard holds (sorted)
    shard_json   str scalar        JSON: format, shard {index, count, source}, design {fingerprint,
                                   n_pairs, n_stimuli}, configuration_key (key_fields + design),
                                   args (the run's parsed options), cwd, host, pid, written (UTC),
                                   config (the run record that becomes config.json after the merge)

A file without `shard_json` is a shard still capturing (or one that was stopped): `probe merge`
lists it as unfinished and never merges it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from render.shard import Shard

SHARD_DIR = "shards"
SHARD_FORMAT = 1
_NAME_RE = re.compile(r"^partial-(\d+)-of-(\d+)\.npz$")

# Options that do not change what a shard captured (where it writes, how it reports, statistics done at the
# merge): left out when two shards' options are compared to explain a design difference.
RUN_ONLY_ARGS = {"out", "shard", "quiet", "no_resume", "n_perm", "n_splits", "n_boot", "stats_seed", "no_report",
                 "baseline", "batch_size", "device", "offload", "command"}


class ShardFileError(ValueError):
    """A shard file cannot be read (the message names the file and why)."""


def shard_path(out: str | os.PathLike, shard: Shard) -> Path:
    """OUT/shards/partial-K-of-N.npz (K zero-padded to N's width, so the files sort by shard)."""
    width = len(str(shard.count - 1))
    return Path(out) / SHARD_DIR / f"partial-{shard.index:0{width}d}-of-{shard.count}.npz"


def pair_ids_of(stimuli: Iterable) -> list[str]:
    """The sorted unique pair ids of `stimuli`: the items a split divides."""
    return sorted({s.pair_id for s in stimuli})


def shard_pairs(stimuli: Sequence, shard: Shard) -> list[str]:
    """The pair ids shard K/N owns (round robin over the sorted unique pair ids)."""
    return shard.select(pair_ids_of(stimuli))


def shard_stimuli(stimuli: Sequence, shard: Shard) -> list:
    """The stimuli of the pairs `shard` owns, in design order (all of them for the whole run)."""
    if shard.is_whole:
        return list(stimuli)
    mine = set(shard_pairs(stimuli, shard))
    return [s for s in stimuli if s.pair_id in mine]


def design_fingerprint(stimuli: Sequence) -> str:
    """Identity of a design: every stimulus's pair, role, draw and key (prompt, image content, seed), in order."""
    rows = [[s.pair_id, s.role, int(s.draw), s.key()] for s in stimuli]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def configuration_key(key_fields: dict, fingerprint: str) -> str:
    """One hash of everything that made a shard's values: capture and model fields, and the design."""
    raw = json.dumps({"fields": key_fields, "design": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def jsonable_args(args) -> dict:
    """The parsed options of a run as JSON values (what `probe merge` rebuilds the design from)."""
    out = {}
    for k, v in vars(args).items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x if isinstance(x, (str, int, float, bool)) or x is None else str(x) for x in v]
        else:
            out[k] = str(v)
    return out


def write_shard(path: Path, *, shard: Shard, key_fields: dict, config_key: str, values: dict[str, np.ndarray],
                units: Sequence[str], pair_ids: Sequence[str], design_stimuli: Sequence, args, config: dict) -> Path:
    """Write a finished shard's file atomically (the module docstring lists its arrays)."""
    from probe.io.jsonio import json_clean
    from render.imageio import atomic_path

    keys = list(values)
    vals = (np.stack([np.asarray(values[k], dtype=np.float32) for k in keys]) if keys
            else np.zeros((0, len(units)), dtype=np.float32))
    fp = design_fingerprint(design_stimuli)
    record = {
        "format": SHARD_FORMAT, "shard": shard.as_dict(),
        "design": {"fingerprint": fp, "n_pairs": len(pair_ids_of(design_stimuli)), "n_stimuli": len(design_stimuli)},
        "configuration_key": configuration_key(key_fields, fp), "args": jsonable_args(args), "cwd": os.getcwd(),
        "host": platform.node(), "pid": os.getpid(), "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": json_clean(config),
    }
    with atomic_path(path) as tmp:
        np.savez(tmp, config_key=np.array(config_key), key_fields=np.array(json.dumps(key_fields, sort_keys=True)),
                 keys=np.array(keys, dtype=str), values=vals, units=np.array(list(units), dtype=str),
                 pair_ids=np.array(sorted(pair_ids), dtype=str),
                 shard_json=np.array(json.dumps(record, default=str, allow_nan=False)))
    return path


@dataclass(frozen=True, eq=False)
class ShardFile:
    """One shard file as read back. `finished` is False for a shard still capturing (or stopped): then only
    `keys`/`values` (its resume cache) and the K/N of its name are known."""
    path: Path
    shard: Shard
    finished: bool
    keys: tuple[str, ...]
    values: np.ndarray                  # float32 [stimuli, units]
    key_fields: dict
    units: tuple[str, ...] = ()
    pair_ids: tuple[str, ...] = ()
    record: dict | None = None

    @property
    def fingerprint(self) -> str:
        return (self.record or {}).get("design", {}).get("fingerprint", "")

    @property
    def configuration_key(self) -> str:
        return (self.record or {}).get("configuration_key", "")

    def value_map(self) -> dict[str, np.ndarray]:
        return dict(zip(self.keys, self.values))

    def label(self) -> str:
        return f"{self.path.name} (shard {self.shard})"


def read_shard(path: str | os.PathLike) -> ShardFile:
    """Read a shard file (finished or still a resume cache); ShardFileError if it is not one."""
    path = Path(path)
    m = _NAME_RE.match(path.name)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zip / format errors: not a shard file
        raise ShardFileError(f"{path}: not a readable shard file ({type(e).__name__}: {e})") from e
    if not {"keys", "values", "key_fields"} <= set(data):
        raise ShardFileError(f"{path}: not a probe shard file (no keys/values/key_fields arrays)")
    try:
        key_fields = json.loads(str(data["key_fields"]))
        record = json.loads(str(data["shard_json"])) if "shard_json" in data else None
    except json.JSONDecodeError as e:
        raise ShardFileError(f"{path}: its JSON header is damaged ({e})") from e
    if record is not None:
        s = record.get("shard") or {}
        shard = Shard(int(s.get("index", 0)), int(s.get("count", 1)), str(s.get("source", "")))
    elif m:
        shard = Shard(int(m.group(1)), int(m.group(2)), "from the file name")
    else:
        raise ShardFileError(f"{path}: an unfinished shard file whose name does not say its shard "
                             f"(expected partial-K-of-N.npz)")
    values = np.asarray(data["values"], dtype=np.float32)
    keys = tuple(str(k) for k in data["keys"])
    if values.ndim != 2 or values.shape[0] != len(keys):
        raise ShardFileError(f"{path}: values {values.shape} do not match its {len(keys)} keys")
    if record is None:
        return ShardFile(path, shard, False, keys, values, key_fields)
    units = tuple(str(u) for u in data.get("units", np.array([], dtype=str)))
    if len(units) != values.shape[1]:
        raise ShardFileError(f"{path}: {len(units)} unit names for {values.shape[1]} value columns")
    return ShardFile(path, shard, True, keys, values, key_fields, units,
                     tuple(str(p) for p in data.get("pair_ids", np.array([], dtype=str))), record)


def find_shard_files(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """Shard files in each folder's shards/ (or the folder itself, or files named directly), each once."""
    found: dict[Path, None] = {}
    for f in folders:
        p = Path(f)
        if p.is_file():
            found[p.resolve()] = None
            continue
        for d in (p / SHARD_DIR, p):
            for q in sorted(d.glob("partial-*-of-*.npz")):
                found[q.resolve()] = None
    return list(found)


def write_shard_of_run(out: Path, shard: Shard, path: Path, args, design_stimuli: Sequence, values: dict,
                       units: Sequence[str], info: dict, config: dict) -> int:
    """`probe run --shard K/N`'s last step: its finished file (no statistics), and how to merge."""
    import sys

    pairs = shard_pairs(design_stimuli, shard)
    if not pairs:
        print(f"note: shard {shard} has no pairs (the design has {len(pair_ids_of(design_stimuli))} pairs for "
              f"{shard.count} shards); its file records that it ran", file=sys.stderr)
    if getattr(args, "baseline", None):
        print("note: --baseline is compared after the merge: pass it to `python -m probe merge`", file=sys.stderr)
    write_shard(path, shard=shard, key_fields=info["cache_fields"], config_key=info["cache_key"], values=values,
                units=units, pair_ids=pairs, design_stimuli=design_stimuli, args=args, config=config)
    print(done_message(out, shard, path, len(pairs), len(pair_ids_of(design_stimuli)), len(values)))
    return 0


def done_message(out: Path, shard: Shard, path: Path, n_pairs: int, n_total: int, n_stimuli: int) -> str:
    """What a finished shard prints: where its captures are and how to merge."""
    return (f"shard {shard}: {n_pairs} of {n_total} pairs ({n_stimuli} stimuli) captured into {path}. A sharded run "
            f"computes no statistics: when all {shard.count} shards have finished, run "
            f"`python -m probe merge {out}` with the statistics options (`--dry-run` lists what is still missing).")
