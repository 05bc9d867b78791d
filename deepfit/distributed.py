"""Multi-process training on PyTorch's own distributed engine (`torchrun` + DistributedDataParallel).

The same script runs on one process or many:

    python train.py                                  # one process: everything here is a no-op
    torchrun --nproc_per_node=2 train.py             # two processes on this machine
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 train.py

When `Learner.fit` sees the environment that `torchrun` sets (`WORLD_SIZE` > 1), it enters
`learn.distrib_ctx()`, which initialises the process group (`nccl` on CUDA, `gloo` on CPU), places
the model on this process's device, wraps it in `DistributedDataParallel`, shards the loaders so
that each rank sees a disjoint part of every epoch (same per-epoch shuffle on all ranks), reduces
validation metrics across ranks, and keeps output-writing callbacks on rank 0 only.

This module holds the process-level helpers (rank, world size, the process group) and imports nothing from
deepfit; the Learner's side (`distrib_ctx`, `DistributedCallback`, loader sharding) is
`deepfit.learner.distributed`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


def launched_by_torchrun() -> bool:
    """True when this process is one of several started by `torchrun`."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, and always in a single process: only it writes files and prints."""
    return rank() == 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a `DistributedDataParallel` wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_device() -> torch.device:
    """This process's device: `cuda:LOCAL_RANK` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def init_distributed(backend: str | None = None, timeout_s: float = 600) -> bool:
    """Initialise the default process group from torchrun's environment; False when not launched by it."""
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        create_process_group(backend, timeout_s)
    return True


def create_process_group(backend: str | None = None, timeout_s: float = 600) -> None:
    """Create the default process group (`nccl` on CUDA, else `gloo`) from torchrun's environment."""
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def destroy_process_group() -> None:
    """Wait for every rank, then destroy the default process group (so that every node's agent exits cleanly)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
