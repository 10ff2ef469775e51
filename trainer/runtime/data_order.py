"""A deterministic, resumable data order: per-epoch micro-batch plans, sharded over processes.

The trainer supplies ``plan_epoch(epoch)``: the *global* list of micro-batches (lists of dataset indices)
for that epoch, a pure function of the epoch and its own seed. Update ``s`` of an epoch consumes
``world_size * grad_accum`` consecutive micro-batches: accumulation slot ``a`` of process ``r`` takes
micro-batch ``(s * grad_accum + a) * world_size + r``. A position is therefore just (epoch, updates done in
that epoch), which is what a checkpoint stores and what ``--resume`` continues from. The tail of an epoch
that cannot fill a whole update is skipped (and reported), so every process always runs the same number
of updates, which DDP requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

MicroBatch = list[int]


class DataOrderError(ValueError):
    """The data plan cannot feed the run (e.g. fewer micro-batches than one update needs)."""


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    step_in_epoch: int = 0

    def __post_init__(self) -> None:
        if self.epoch < 0 or self.step_in_epoch < 0:
            raise ValueError(f"DataPosition must be non-negative, got {self}")


class DataOrder:
    """Which micro-batches this process runs, from any position on."""

    def __init__(
        self,
        plan_epoch: Callable[[int], Sequence[Sequence[int]]],
        *,
        world_size: int = 1,
        rank: int = 0,
        grad_accum: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world_size {world_size}")
        if grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
        self.world_size, self.rank, self.grad_accum = world_size, rank, grad_accum
        self._plan = lru_cache(maxsize=2)(lambda epoch: [list(b) for b in plan_epoch(epoch)])

    @property
    def micro_batches_per_update(self) -> int:
        return self.world_size * self.grad_accum

    def plan(self, epoch: int) -> list[MicroBatch]:
        return self._plan(epoch)

    def updates_in_epoch(self, epoch: int) -> int:
        count = len(self.plan(epoch)) // self.micro_batches_per_update
        if count == 0:
            raise DataOrderError(
                f"epoch {epoch} has {len(self.plan(epoch))} micro-batches, fewer than one update needs "
                f"({self.world_size} process(es) x grad_accum {self.grad_accum}); use more data or smaller batches"
            )
        return count

    def skipped_in_epoch(self, epoch: int) -> int:
        """Micro-batches at the end of ``epoch`` that no update uses."""
        return len(self.plan(epoch)) - self.updates_in_epoch(epoch) * self.micro_batches_per_update

    def update_batches(self, epoch: int, step_in_epoch: int) -> list[MicroBatch]:
        """This process's ``grad_accum`` micro-batches for one update."""
        plan = self.plan(epoch)
        first = step_in_epoch * self.grad_accum
        return [plan[(first + a) * self.world_size + self.rank] for a in range(self.grad_accum)]

    def rank_batches(self, position: DataPosition) -> list[MicroBatch]:
        """This process's micro-batches from ``position`` to the end of that epoch, in order."""
        updates = self.updates_in_epoch(position.epoch)
        return [
            batch
            for step in range(position.step_in_epoch, updates)
            for batch in self.update_batches(position.epoch, step)
        ]

    def advance(self, position: DataPosition) -> DataPosition:
        """The position after one more update (rolling over to the next epoch)."""
        if position.step_in_epoch + 1 >= self.updates_in_epoch(position.epoch):
            return DataPosition(position.epoch + 1, 0)
        return DataPosition(position.epoch, position.step_in_epoch + 1)
