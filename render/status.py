"""What a sharded job left unfinished, grouped by the shard that owns it (`--status N`).

    from render.status import shard_status, print_status
    st = shard_status("render", "runs/render", sorted_ids, reason_of, count=8)
    code = print_status(st, resubmit="sbatch --array={tasks} scripts/slurm/render.sbatch")

`reason_of(id)` is "" for a finished item, else why it is not (e.g. "not rendered"). Items are
owned by shards exactly as `Shard.select` splits them (round robin over the sorted ids), so the
listing names the array tasks to run again. Used by `python -m render --status N` and
`python -m evaluate generate --status N`. Exit code of print_status: 0 complete, 3 something missing.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Sequence, TextIO

from render.shard import Shard

INCOMPLETE = 3


@dataclass(frozen=True)
class ShardStatus:
    job: str                                   # "render", "evaluate generate (klein)", ...
    out: str                                   # the folder checked
    count: int                                 # N of the split
    planned: tuple[int, ...]                   # items per shard, index = shard
    missing: tuple[tuple[str, int, str], ...]  # (item, owning shard, reason), in sorted-id order

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def shards_missing(self) -> list[int]:
        return sorted({k for _, k, _ in self.missing})


def shard_status(job: str, out: str, ids: Sequence[str], reason_of: Callable[[str], str], count: int = 1,
                 limit: int | None = None, label: Callable[[str], str] = str) -> ShardStatus:
    """Check every item of every shard of a `count`-way split of the sorted `ids`.

    `limit` mirrors a job's `--limit` (applied per shard, after sharding); `label` names an item
    in the listing (e.g. method/sample)."""
    planned, missing = [], []
    for k in range(count):
        mine = Shard(k, count).select(list(ids))
        mine = mine[:limit] if limit else mine
        planned.append(len(mine))
        for item in mine:
            why = reason_of(item)
            if why:
                missing.append((label(item), k, why))
    return ShardStatus(job, str(out), count, tuple(planned), tuple(sorted(missing)))


def merge_status(parts: Sequence[ShardStatus], job: str) -> ShardStatus:
    """Several checks of one split (e.g. one per prediction method) as one listing."""
    first = parts[0]
    planned = tuple(sum(p.planned[k] for p in parts) for k in range(first.count))
    missing = tuple(sorted(m for p in parts for m in p.missing))
    return ShardStatus(job, first.out, first.count, planned, missing)


def print_status(st: ShardStatus, resubmit: str = "", file: TextIO | None = None, max_listed: int = 50) -> int:
    """A per-shard table, the missing items and the tasks to run again; returns 0 or INCOMPLETE."""
    f = file or sys.stdout
    by_shard: dict[int, int] = {}
    for _, k, _ in st.missing:
        by_shard[k] = by_shard.get(k, 0) + 1
    total = sum(st.planned)
    print(f"{st.job} status of {st.out} ({st.count}-way split, round robin over the sorted ids)", file=f)
    print(f"  {'shard':>7} {'planned':>8} {'done':>8} {'missing':>8}", file=f)
    for k, n in enumerate(st.planned):
        if st.count <= 64 or by_shard.get(k):
            print(f"  {f'{k}/{st.count}':>7} {n:>8} {n - by_shard.get(k, 0):>8} {by_shard.get(k, 0):>8}", file=f)
    print(f"  {'all':>7} {total:>8} {total - len(st.missing):>8} {len(st.missing):>8}", file=f)
    if st.complete:
        print(f"complete: all {total} items of {st.job} are finished", file=f)
        return 0
    for item, k, why in st.missing[:max_listed]:
        print(f"missing  {item}  (shard {k}/{st.count}: {why})", file=f)
    if len(st.missing) > max_listed:
        print(f"... and {len(st.missing) - max_listed} more", file=f)
    tasks = ",".join(str(k) for k in st.shards_missing)
    print(f"incomplete: {len(st.missing)} of {total} missing, in shard(s) {tasks} of {st.count}", file=f)
    if resubmit:
        print("run them again (finished items are skipped): " + resubmit.format(tasks=tasks, count=st.count), file=f)
    return INCOMPLETE


def render_status(out, scenes, lightings: Sequence[str] | None, count: int) -> ShardStatus:
    """Every sample the render plan holds (all shards) checked in `out` (sizes, not checksums: fast)."""
    from pathlib import Path

    from render.pipeline import plan_samples, verify_sample

    out = Path(out)
    ids = [j.id for j in plan_samples(scenes, lightings)]
    return shard_status("render", str(out), ids, lambda i: verify_sample(out, i, check_hashes=False)[1], count)


# A study of scripts/slurm/submit.sh: status.sh prints the sbatch commands, complete with the study's resources
STUDY_RERUN = "`bash scripts/slurm/status.sh` prints the sbatch commands of a submitted study"
RENDER_RESUBMIT = STUDY_RERUN + "; or this command without --status and with --shard K/{count} for each K in {tasks}"
