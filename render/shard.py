"""`--shard K/N` for every job: a deterministic split of sorted work items.

    from render.shard import Shard
    shard = Shard.parse("2/8")          # K is 0-based: K = $SLURM_ARRAY_TASK_ID, 0 <= K < N
    mine = shard.select(sorted_ids)     # items i with i % N == K

Round-robin over the sorted ids keeps shards balanced when scenes differ in cost, and the
union over K = 0..N-1 is exactly the unsharded list, each item once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not (0 <= self.index < self.count):
            raise ValueError(f"bad shard {self.index}/{self.count}: need N >= 1 and 0 <= K < N")

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        if text is None or text == "":
            return cls()
        try:
            k, n = (int(x) for x in str(text).split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
        return cls(k, n)

    def select(self, items: Sequence[T]) -> list[T]:
        return [x for i, x in enumerate(items) if i % self.count == self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def is_whole(self) -> bool:
        return self.count == 1
