"""DistributedDataParallel with the nccl backend on one process (world size 1): deepfit's DDP path (wrapping,
loader sharding, all-reduced metrics) on the GPU."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from deepfit.learner import Callback, Learner, accuracy
from deepfit.learner.distributed import DistributedCallback, _distributed
from tests.helpers.cuda_tasks import image_task, small_cnn

pytestmark = pytest.mark.cuda


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_nccl_one_process(device):
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        assert dist.get_backend() == backend
        dls = image_task(device)
        learn = Learner(small_cnn(), dls, metrics=[accuracy], lr=3e-3)
        learn.remove_cb(learn.progress)
        seen = []
        with _distributed(learn, sync_bn=False, find_unused_parameters=False):
            assert any(isinstance(cb, DistributedCallback) for cb in learn.cbs)
            learn.fit_one_cycle(3, 3e-3, cbs=[_Probe(seen)])
        assert seen and all(isinstance(m, torch.nn.parallel.DistributedDataParallel) for m in seen)
        assert next(learn.model.parameters()).device.type == device.type
        assert learn.recorder.values[-1][-1] > 0.5
    finally:
        dist.destroy_process_group()


class _Probe(Callback):
    """Records the module the Learner calls during training (the DDP wrapper while distributed)."""

    order = 99
    run_valid = False

    def __init__(self, seen: list):
        self.seen = seen

    def after_pred(self):
        self.seen.append(self.learn.model)
