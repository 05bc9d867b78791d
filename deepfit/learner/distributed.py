"""The Learner's side of distributed training: `distrib_ctx`, `DistributedCallback`, loader sharding.

See `deepfit.distributed` for the process-level helpers and the launch commands. `Learner.fit` enters
`distrib_ctx` by itself when torchrun's environment is present. When deepfit created the process group, it
destroys it when the process exits (after a barrier), so that every node's agent exits cleanly; the group stays
up between `fit` calls (a `fine_tune` is two of them), and a group the user created is left alone.
"""

from __future__ import annotations

import atexit
import warnings
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..distributed import create_process_group, destroy_process_group, launched_by_torchrun, local_device
from .events import Callback, LearnerLike


def shard_loader(dl: Any, rank_: int, world: int, pad: bool) -> Any:
    """Give this rank its disjoint part of `dl`.

    Loaders with a `shard(rank, world, pad)` method (deepfit's `TensorLoader`, the language-model
    loader) shard themselves; a `DeviceLoader` over a `torch.utils.data.DataLoader` gets a
    `DistributedSampler`. `pad=True` (training) makes every rank see the same number of batches.
    """
    if dl is None or world <= 1:
        return dl
    if hasattr(dl, "shard"):
        dl.shard(rank_, world, pad=pad)
        return dl
    source = getattr(dl, "source", None)
    if isinstance(source, torch.utils.data.DataLoader):
        from torch.utils.data import DistributedSampler, RandomSampler

        shuffle = isinstance(source.sampler, RandomSampler)
        sampler = DistributedSampler(source.dataset, num_replicas=world, rank=rank_, shuffle=shuffle,
                                     drop_last=not pad and False)
        dl.source = torch.utils.data.DataLoader(
            source.dataset, batch_size=source.batch_size, sampler=sampler, num_workers=source.num_workers,
            collate_fn=source.collate_fn, pin_memory=source.pin_memory, drop_last=source.drop_last)
        dl._original_source = source
        return dl
    raise TypeError(f"cannot shard a {type(dl).__name__} for distributed training: give it a "
                    "shard(rank, world, pad) method or use a torch DataLoader")


def unshard_loader(dl: Any) -> None:
    if dl is None:
        return
    if hasattr(dl, "shard"):
        dl.shard(0, 1, pad=False)
    elif hasattr(dl, "_original_source"):
        dl.source = dl._original_source
        del dl._original_source


class DistributedCallback(Callback):
    """Reduces validation metrics over ranks and gathers `get_preds` results, so that figures equal
    those of one process on the whole validation set. Added by `distrib_ctx`; rarely used directly.

    Validation runs on the unwrapped model (no DDP collectives), so ranks may hold different
    numbers of validation batches.
    """

    order = 40  # before the Recorder (50) reads the metrics

    def before_train(self) -> None:
        self.learn.model = self.ddp_model

    def before_validate(self) -> None:
        self.learn.model = self.raw_model

    def after_epoch(self) -> None:
        recorder = getattr(self.learn, "recorder", None)
        if recorder is None or not hasattr(recorder, "train_loss_sums"):
            return
        total, count = recorder.train_loss_sums
        buf = torch.tensor([float(total), float(count)], dtype=torch.float64, device=self.learn.dls.device)
        dist.all_reduce(buf)
        recorder.train_loss_sums = (buf[0].item(), int(buf[1].item()))

    def after_validate(self) -> None:
        learn = self.learn
        device = learn.dls.device
        accumulators = [getattr(getattr(learn, "recorder", None), "_valid_loss", None), *learn.metrics]
        for acc in accumulators:
            if acc is None:
                continue
            if not (hasattr(acc, "total") and hasattr(acc, "count")):
                warnings.warn(f"metric {getattr(acc, 'name', acc)!r} has no total/count: it is computed on each "
                              "rank's shard only", stacklevel=1)
                continue
            buf = torch.stack([torch.as_tensor(acc.total, dtype=torch.float64, device=device).reshape(()),
                               torch.tensor(float(acc.count), dtype=torch.float64, device=device)])
            dist.all_reduce(buf)
            acc.total, acc.count = buf[0], int(buf[1].item())
        gather = getattr(learn, "gather_preds", None)
        if gather is not None and gather in learn.cbs and hasattr(gather, "preds"):
            for name in ("preds", "targets", "inputs", "losses"):
                value = getattr(gather, name, None)
                if isinstance(value, torch.Tensor):
                    setattr(gather, name, _gather_strided(value, device))


def _gather_strided(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Gather each rank's rows (rank r holds items r, r+W, r+2W, ...) back into the original order."""
    world = dist.get_world_size()
    n = torch.tensor([len(t)], device=device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    max_n = max(sizes)
    padded = torch.zeros((max_n, *t.shape[1:]), dtype=t.dtype, device=device)
    padded[: len(t)] = t.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    total = sum(sizes)
    out = torch.empty((total, *t.shape[1:]), dtype=t.dtype)
    for r, (part, size) in enumerate(zip(parts, sizes)):
        out[r::world] = part[:size].cpu()
    return out


@contextmanager
def distrib_ctx(learn: LearnerLike, sync_bn: bool = False, find_unused_parameters: bool = False):
    """Run the `with` block distributed when launched by torchrun; a no-op in a single process."""
    if getattr(learn, "_in_distrib", False) or not launched_by_torchrun():
        yield learn
        return
    if not dist.is_initialized():
        create_process_group()
        atexit.register(_destroy_at_exit)
    try:
        with _distributed(learn, sync_bn, find_unused_parameters):
            yield learn
    except BaseException:
        _STATE["failed"] = True  # the other ranks may never reach a barrier: let torchrun stop them
        raise


_STATE = {"failed": False}


def _destroy_at_exit() -> None:
    """At exit of a process whose group deepfit created: barrier and destroy, unless a rank failed."""
    if not _STATE["failed"]:
        destroy_process_group()


@contextmanager
def _distributed(learn: LearnerLike, sync_bn: bool, find_unused_parameters: bool):
    from torch.nn.parallel import DistributedDataParallel

    rank_, world = dist.get_rank(), dist.get_world_size()
    device = local_device()
    dls = learn.dls
    old_device, old_model = dls.device, learn.model
    _set_loaders_device(dls, device)
    raw = learn.model.to(device)
    if sync_bn:
        raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)
    ddp = DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=find_unused_parameters)
    shard_loader(dls.train, rank_, world, pad=True)
    shard_loader(dls.valid, rank_, world, pad=False)
    quiet = [cb for cb in learn.cbs if getattr(cb, "main_process_only", False)] if rank_ != 0 else []
    learn.remove_cbs(quiet)
    cb = DistributedCallback()
    cb.raw_model, cb.ddp_model = raw, ddp
    learn.add_cb(cb)
    learn.model = raw
    learn._in_distrib = True
    try:
        yield learn
    finally:
        learn._in_distrib = False
        learn.remove_cb(cb)
        learn.add_cbs(quiet)
        learn.model = raw if not sync_bn else old_model
        unshard_loader(dls.train)
        unshard_loader(dls.valid)
        _set_loaders_device(dls, old_device)


def _set_loaders_device(dls: Any, device: torch.device) -> None:
    dls.device = device
    for dl in (dls.train, dls.valid, getattr(dls, "test", None)):
        if dl is not None and hasattr(dl, "device"):
            dl.device = device
            if hasattr(dl, "_mean_dev"):
                dl._mean_dev = dl._std_dev = None
