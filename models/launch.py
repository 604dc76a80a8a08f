"""This process's place in a training run: single process, or one of many under ``torchrun``.

``setup_launch`` joins the process group that ``torchrun`` describes in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``): NCCL on GPUs, gloo on CPUs, one GPU per local rank.
Without ``torchrun`` it is a world of one and nothing is initialised, so the same code runs
on a laptop CPU and on many GPUs. ``autocast_for`` gives the mixed-precision context used for
training and code extraction (bf16 autocast on GPUs by default; not a choice of the paper).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from models.errors import ConfigError

# The one precision vocabulary (torch's dtype names), for training, extraction and sampling.
# float32 means the model's own dtype (float64 in some tests).
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class Launch:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The one device resolver: ``None`` -> cuda if available else cpu; "cpu", "cuda", "cuda:N".

    A device name torch does not know, or CUDA on a machine without it, is a ``ConfigError``
    (never a silent fall-back to the CPU).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was requested but no CUDA device is available; use cpu")
    return dev


def setup_launch(device: str | None = None) -> Launch:
    """Join the ``torchrun`` process group if there is one; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Launch(rank, world, dev)


def autocast_for(device: torch.device, precision: str):
    """The arithmetic of a training or extraction step: ``"auto"`` (bfloat16 autocast on GPUs,
    float32 elsewhere) or one of ``PRECISIONS``."""
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
    use_bf16 = precision == "bfloat16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
