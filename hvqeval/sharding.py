"""Work split over the processes of a ``torchrun`` launch (sampling, NLL, feature extraction).

Under ``torchrun --nproc_per_node=N -m hvqeval -- <command> ...`` (or several nodes through its
rendezvous) every process runs the same command; the ``--`` keeps torchrun from reading the
command's options (``--run`` would match its ``--run-path``). ``join`` enters the process group that torchrun describes in the
environment (``models.setup_launch``: gloo on CPUs, NCCL on GPUs, one GPU per local rank);
without torchrun it is a world of one and nothing is initialised.

The work is always cut into the batches a single process would make, and batch ``b`` goes
to rank ``b % world``::

    batches   0   1   2   3   4   5   6        (batch size B, the last one may be short)
    world 2   r0  r1  r0  r1  r0  r1  r0

so every batch holds the same items in every world size: per-item results (images, per-image
NLL, features) are bit-identical to a single process, and merging is reordering. Results
travel with ``torch.distributed.all_gather_object``; rank 0 writes manifests and result rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's rank in a world of ``world`` processes (1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world == self.rank

    def batches(self, first: int, stop: int) -> list[int]:
        """Batch indices in ``[first, stop)`` this rank draws."""
        return [b for b in range(first, stop) if self.owns(b)]

    def rounds(self, first: int, stop: int) -> Iterator[list[int]]:
        """Batches ``[first, stop)`` in rounds of ``world``: every rank takes part in every round
        (with ``[]`` when it has no batch left), so the collectives after each round match."""
        for start in range(first, stop, self.world):
            yield [b for b in range(start, min(start + self.world, stop))]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without torchrun)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree_min(self, value: int) -> int:
        """The smallest ``value`` over all ranks (e.g. the batch size that fits every device)."""
        if not self.distributed:
            return int(value)
        return int(min(self.gather(int(value))))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def current() -> Shard:
    """The shard of an already initialised process group (world of one otherwise)."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def join(device: str | torch.device | None = None) -> Shard:
    """Join torchrun's process group if this process was started by it; pick the device."""
    from models import setup_launch

    launch = setup_launch(None if device is None else str(device))
    return Shard(launch.rank, launch.world_size, launch.device)


def leave() -> None:
    """Leave the process group (end of a command), if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def batch_indices(n: int, batch_size: int, shard: Shard) -> list[int]:
    """Item indices of the batches (of ``batch_size`` over ``n`` items) that ``shard`` owns,
    batch after batch: a loader over them with the same batch size makes the same batches."""
    out: list[int] = []
    for b in shard.batches(0, -(-n // batch_size)):
        out.extend(range(b * batch_size, min((b + 1) * batch_size, n)))
    return out
