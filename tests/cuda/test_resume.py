"""Checkpoint resume on the GPU: a run that crashes mid-epoch and resumes from its last checkpoint ends with
weights bit-identical to an uninterrupted run, with deterministic algorithms on."""

from __future__ import annotations

import pytest
import torch

from deepfit.learner import Callback, CheckpointCallback, Learner
from tests.helpers.cuda_tasks import image_task, small_cnn

pytestmark = pytest.mark.cuda


class Crash(Callback):
    order = 100  # after the checkpoint of the same batch

    def __init__(self, at: int):
        self.at, self.n = at, 0

    def after_batch(self):
        if self.learn.training:
            self.n += 1
            if self.n == self.at:
                raise RuntimeError("simulated crash")


@pytest.fixture
def deterministic():
    was = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(was[0])
    torch.backends.cudnn.benchmark = was[1]


def make(device, path) -> Learner:
    learn = Learner(small_cnn(seed=3).to(device), image_task(device, seed=3), lr=3e-3, path=path,
                    cbs=[CheckpointCallback(every=4)])
    learn.remove_cb(learn.progress)
    return learn


def test_crash_then_resume_is_bit_identical(device, tmp_path, deterministic):
    torch.manual_seed(0)
    full = make(device, tmp_path / "full")
    full.fit_one_cycle(3, 3e-3)
    torch.manual_seed(0)
    crashed = make(device, tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit_one_cycle(3, 3e-3, cbs=[Crash(at=10)])  # 6 batches per epoch: crashes in the second epoch
    torch.manual_seed(123)  # the resumed run restores every random state from the checkpoint
    resumed = make(device, tmp_path / "crashed")
    resumed.fit_one_cycle(3, 3e-3, resume="last")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert full.recorder.values[-1] == resumed.recorder.values[-1]
