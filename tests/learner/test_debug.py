"""DebugCallback: a function, a printed line or the debugger at one named event."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from deepfit.learner import CancelFit, Learner
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.callbacks.debug import DebugCallback
from tests.helpers.data import make_linear_data


def make_learner() -> Learner:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    learn = Learner(model, make_linear_data())
    learn.remove_cb(ProgressCallback)
    return learn


def test_the_notes_print_det_stops_after_the_first_batch():
    """Lesson 12: print the parameter groups' hyper-parameters at the first after_batch, then stop."""
    learn = make_learner()
    seen = []

    def print_det(learn):
        seen.append([g["lr"] for g in learn.opt.param_groups if g["apply_wd"]])
        raise CancelFit()  # the notes' CancelTrainException stopped the whole fit: deepfit's CancelFit

    dbg = DebugCallback("after_batch", print_det)
    learn.fit_one_cycle(1, slice(1e-3, 3e-2), cbs=[dbg])
    assert dbg.calls == 1 and len(seen) == 1  # one batch, then fit was cancelled
    lr_body, lr_head = seen[0]
    assert lr_head == pytest.approx(lr_body * 30, rel=1e-6)  # two layer groups, discriminative rates
    assert learn.train_iter <= 1


def test_without_a_function_it_prints_a_line_per_event():
    learn = make_learner()
    lines = []
    learn.logger = lines.append
    learn.fit(1, lr=1e-2, cbs=[DebugCallback("after_loss")])
    n_batches = len(learn.dls.train) + len(learn.dls.valid)
    assert len(lines) == n_batches
    assert lines[0].startswith("after_loss: train epoch 0 batch 0/4, xb 16×4, yb 16, loss ")
    assert lines[-1].startswith("after_loss: valid epoch 0 batch 3/4")


def test_brk_enters_the_debugger_and_unknown_events_are_refused(monkeypatch):
    hits = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: hits.append(1))
    learn = make_learner()
    learn.fit(1, lr=1e-2, cbs=[DebugCallback("before_step", brk=True)])
    assert len(hits) == len(learn.dls.train)
    with pytest.raises(ValueError, match="unknown event 'after_batches'.*after_batch"):
        DebugCallback("after_batches")
