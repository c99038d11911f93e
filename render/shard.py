"""`--shard K/N` for every job: a deterministic split of sorted work items, or `--shard auto`.

    from render.shard import Shard
    shard = Shard.parse("2/8")          # K is 0-based: 0 <= K < N
    shard = Shard.parse("auto")         # K/N from the scheduler (below); prints the resolved shard once
    mine = shard.select(sorted_ids)     # items i with i % N == K
    shard.source                        # where K/N came from, e.g. "SLURM array (SLURM_ARRAY_TASK_ID=2, ...)"

Round-robin over the sorted ids keeps shards balanced when scenes differ in cost, and the
union over K = 0..N-1 is exactly the unsharded list, each item once.

`auto` reads the scheduler's environment, in this order:
- a SLURM job array: K = (SLURM_ARRAY_TASK_ID - MIN) / STEP and N = the number of tasks, from
  SLURM_ARRAY_TASK_COUNT and/or SLURM_ARRAY_TASK_MIN/MAX (and SLURM_ARRAY_TASK_STEP for
  `--array=0-30:10`); an array that is not one evenly stepped range (`--array=1,4,9`) is refused;
- torchrun (torch.distributed.run): K = RANK, N = WORLD_SIZE (LOCAL_RANK picks the GPU, see
  probe.klein.model.resolve_device);
- both (torchrun inside each task of an array: one node per task, one process per GPU): the
  shards nest, K = task * WORLD_SIZE + RANK and N = tasks * WORLD_SIZE;
- neither: 0/1, the whole run.
Partial or inconsistent variables (an array task id without a task count, RANK without
WORLD_SIZE, an id outside its range) raise ValueError with a one-paragraph message.
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")

AUTO = "auto"
SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
              "SLURM_ARRAY_TASK_STEP")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
_ANNOUNCED: set[tuple[int, int, str]] = set()


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    # Where K/N came from: "whole run (no --shard)", "--shard K/N", or the scheduler variables read
    # by `--shard auto`. Not part of equality: the same split is the same shard, whatever named it.
    source: str = field(default="whole run (no --shard)", compare=False)

    def __post_init__(self) -> None:
        if self.count < 1 or not (0 <= self.index < self.count):
            raise ValueError(f"bad shard {self.index}/{self.count}: need N >= 1 and 0 <= K < N")

    @classmethod
    def parse(cls, text: str | None, environ: Mapping[str, str] | None = None, announce: bool = True) -> "Shard":
        """`None`/"" (the whole run), "K/N", or "auto" (from `environ`, default os.environ).

        "auto" prints the resolved shard and its source to stderr, once per process.
        """
        if text is None or text == "":
            return cls()
        if str(text).strip().lower() == AUTO:
            shard = cls.from_environment(environ)
            if announce:
                shard.announce()
            return shard
        try:
            k, n = (int(x) for x in str(text).split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like K/N (e.g. 0/4) or be 'auto', got {text!r}") from None
        return cls(k, n, f"--shard {k}/{n}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Shard":
        """The shard a scheduler gave this process (see the module docstring); 0/1 outside one."""
        env = os.environ if environ is None else environ
        array = _slurm_array(env)
        world = _torchrun(env)
        if array and world:
            (t, n_t, s_src), (r, n_r, r_src) = array, world
            return cls(t * n_r + r, n_t * n_r, f"--shard auto: SLURM array task {t} of {n_t} x torchrun rank {r} "
                                                f"of {n_r} ({s_src}; {r_src})")
        if array:
            k, n, src = array
            return cls(k, n, f"--shard auto: SLURM array ({src})")
        if world:
            k, n, src = world
            return cls(k, n, f"--shard auto: torchrun ({src})")
        return cls(0, 1, "--shard auto: no SLURM array or torchrun variables (whole run)")

    def select(self, items: Sequence[T]) -> list[T]:
        return [x for i, x in enumerate(items) if i % self.count == self.index]

    def owner(self, position: int) -> int:
        """The shard index (of `count`) that owns the item at `position` of the sorted list."""
        return position % self.count

    def as_dict(self) -> dict:
        """JSON-able record for config files: {"index", "count", "source"}."""
        return asdict(self)

    def describe(self) -> str:
        return f"shard {self} ({self.source})"

    def announce(self) -> None:
        """Print `describe()` to stderr, once per process for each distinct shard."""
        key = (self.index, self.count, self.source)
        if key not in _ANNOUNCED:
            _ANNOUNCED.add(key)
            print(self.describe(), file=sys.stderr, flush=True)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def is_whole(self) -> bool:
        return self.count == 1


def _int_vars(env: Mapping[str, str], names: Sequence[str], what: str, fix: str) -> dict[str, int]:
    out = {}
    for name in names:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            out[name] = int(raw.strip())
        except ValueError:
            raise ValueError(f"--shard auto: {name}={raw!r} is not an integer, so the {what} shard cannot be "
                             f"read from it. {fix}") from None
        if out[name] < 0:
            raise ValueError(f"--shard auto: {name}={raw} is negative; {what} ids are >= 0. {fix}")
    return out


def _shown(v: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={x}" for k, x in v.items())


def _slurm_array(env: Mapping[str, str]) -> tuple[int, int, str] | None:
    fix = ("Submit the job as an array with one evenly stepped range (e.g. `sbatch --array=0-7 ...`; Slurm then "
           "sets SLURM_ARRAY_TASK_ID, _COUNT, _MIN and _MAX), or give the shard explicitly with --shard K/N.")
    v = _int_vars(env, SLURM_VARS, "SLURM array", fix)
    if not v:
        return None
    tid, count = v.get("SLURM_ARRAY_TASK_ID"), v.get("SLURM_ARRAY_TASK_COUNT")
    lo, hi, step = v.get("SLURM_ARRAY_TASK_MIN"), v.get("SLURM_ARRAY_TASK_MAX"), v.get("SLURM_ARRAY_TASK_STEP")
    if tid is None:
        raise ValueError(f"--shard auto: {_shown(v)} is set but SLURM_ARRAY_TASK_ID is not, so this task's "
                         f"index is unknown (partial SLURM array variables). {fix}")
    if (lo is None) != (hi is None):
        raise ValueError(f"--shard auto: only one of SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_MAX is set "
                         f"({_shown(v)}), so the array's range is unknown. {fix}")
    if lo is None:
        if count is None:
            raise ValueError(f"--shard auto: SLURM_ARRAY_TASK_ID={tid} is set but neither SLURM_ARRAY_TASK_COUNT "
                             f"nor SLURM_ARRAY_TASK_MIN/MAX are, so the number of shards is unknown. {fix}")
        if step not in (None, 1):
            raise ValueError(f"--shard auto: SLURM_ARRAY_TASK_STEP={step} without SLURM_ARRAY_TASK_MIN/MAX: the "
                             f"task ids cannot be mapped to shards 0..N-1 ({_shown(v)}). {fix}")
        if count < 1 or not 0 <= tid < count:
            raise ValueError(f"--shard auto: SLURM_ARRAY_TASK_ID={tid} is outside 0..{count - 1} given by "
                             f"SLURM_ARRAY_TASK_COUNT={count}, and without SLURM_ARRAY_TASK_MIN the array's first "
                             f"id is unknown. {fix}")
        return tid, count, _shown(v)
    step = 1 if step is None else step
    if step < 1 or hi < lo or (hi - lo) % step:
        raise ValueError(f"--shard auto: the SLURM array range is inconsistent ({_shown(v)}): need MIN <= MAX "
                         f"and MAX - MIN a multiple of STEP. {fix}")
    n = (hi - lo) // step + 1
    if count is not None and count != n:
        raise ValueError(f"--shard auto: the SLURM array is not one evenly stepped range: "
                         f"SLURM_ARRAY_TASK_COUNT={count} but MIN..MAX by STEP holds {n} ids ({_shown(v)}); an "
                         f"array such as --array=1,4,9 cannot be mapped to shards 0..N-1. {fix}")
    if not lo <= tid <= hi or (tid - lo) % step:
        raise ValueError(f"--shard auto: SLURM_ARRAY_TASK_ID={tid} is not one of the array's ids "
                         f"{lo}..{hi} by {step} ({_shown(v)}). {fix}")
    return (tid - lo) // step, n, _shown(v)


def _torchrun(env: Mapping[str, str]) -> tuple[int, int, str] | None:
    fix = ("Launch with `torchrun --nproc-per-node G -m ...` (it sets RANK, WORLD_SIZE, LOCAL_RANK and "
           "LOCAL_WORLD_SIZE together), unset the stray variables, or give the shard explicitly with --shard K/N.")
    v = _int_vars(env, TORCHRUN_VARS, "torchrun", fix)
    if not v:
        return None
    rank, world = v.get("RANK"), v.get("WORLD_SIZE")
    if rank is None or world is None:
        raise ValueError(f"--shard auto: partial torchrun variables ({_shown(v)}): RANK and WORLD_SIZE must both "
                         f"be set to know this process's shard. {fix}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"--shard auto: RANK={rank} is outside 0..{world - 1} given by WORLD_SIZE={world}. {fix}")
    local, local_world = v.get("LOCAL_RANK"), v.get("LOCAL_WORLD_SIZE")
    if local is not None and local > rank:
        raise ValueError(f"--shard auto: LOCAL_RANK={local} is larger than RANK={rank}, which torchrun never "
                         f"does ({_shown(v)}). {fix}")
    if local is not None and local_world is not None and local >= local_world:
        raise ValueError(f"--shard auto: LOCAL_RANK={local} is outside 0..{local_world - 1} given by "
                         f"LOCAL_WORLD_SIZE={local_world}. {fix}")
    if local_world is not None and local_world > world:
        raise ValueError(f"--shard auto: LOCAL_WORLD_SIZE={local_world} exceeds WORLD_SIZE={world} "
                         f"({_shown(v)}). {fix}")
    return rank, world, _shown(v)
