"""Data-parallel runs under ``torchrun`` or ``accelerate launch``: which rank this is, and a barrier.

Both launchers set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the
rendezvous variables ``MASTER_ADDR``/``MASTER_PORT``) in each process's
environment; a plain process has none of them and is rank 0 of 1.  The
barrier uses ``torch.distributed`` with the gloo backend, which needs no GPU,
so the same code runs on a CPU machine, an 8-GPU node and a Slurm job.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from emogen_bench.errors import UsageError

T = TypeVar("T")

#: How long a rank waits at the barrier for the others (feature extraction of a large shard takes hours).
BARRIER_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``size``-th one from ``rank`` (interleaved, so shares balance)."""
        return list(items[self.rank :: self.size])

    def device(self, device: str) -> str:
        """``auto`` becomes this rank's own GPU (``cuda:LOCAL_RANK``) when CUDA is available."""
        if device != "auto" or self.size == 1:
            return device
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"


def parse_shard(value: str | None, world: World) -> tuple[int, int]:
    """``--shard K/N`` as ``(K, N)``; without it, this rank's share of the launcher's world (``(0, 1)`` alone)."""
    if value is None:
        return world.rank, world.size
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard {value!r}: expected K/N, e.g. 0/8 for the first of 8 processes") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard {value}: expected K/N with 0 <= K < N")
    if world.size > 1:
        raise UsageError(f"--shard {value} under a launcher of {world.size} processes: give one or the other")
    return index, count


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world the launcher set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); rank 0 of 1 without a launcher."""
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError(
            f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}: "
            "not integers; start the command with torchrun or accelerate launch, or unset them"
        ) from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise UsageError(f"RANK={rank} and WORLD_SIZE={size} do not describe a process group")
    return World(rank, size, local_rank)


@contextmanager
def process_group(world: World) -> Iterator[None]:
    """A gloo process group for the duration of the block (nothing to do for a single process)."""
    if world.size == 1:
        yield
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=world.rank, world_size=world.size, timeout=BARRIER_TIMEOUT)
        try:
            yield
        finally:
            dist.destroy_process_group()
    else:
        yield


def barrier(world: World) -> None:
    """Wait until every rank arrives (inside :func:`process_group`)."""
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()
