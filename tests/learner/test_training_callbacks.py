import math

import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Callback, Learner, Metric
from deepfit.learner.callbacks.progress import ProgressCallback
from deepfit.learner.callbacks.training import (
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    ReduceLROnPlateau,
    SaveBestModel,
    TerminateOnNaN,
)
from tests.helpers.data import make_linear_data


class Scripted(Metric):
    """A metric whose value at epoch e is `values[e]`."""

    def __init__(self, values, name="score"):
        self.values, self.name, self.epoch = list(values), name, 0

    def reset(self):
        pass

    def accumulate(self, learn):
        self.epoch = learn.epoch

    @property
    def value(self):
        return self.values[self.epoch]


def make_learner(metrics=(), cbs=(), messages=None, **kw) -> Learner:
    torch.manual_seed(0)
    learn = Learner(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), make_linear_data(),
                    metrics=list(metrics), cbs=list(cbs), **kw)
    learn.remove_cb(ProgressCallback)
    learn.logger = (messages.append if messages is not None else lambda msg: None)
    return learn


class GradNorm(Callback):
    """Total gradient norm right before the optimizer steps (after clipping)."""

    order = 50

    def before_fit(self):
        self.norms = []

    def before_step(self):
        grads = [p.grad.flatten() for p in self.learn.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


def test_gradient_clip_bounds_the_norm():
    probe, clip = GradNorm(), GradientClip(max_norm=0.05)
    learn = make_learner(cbs=[clip, probe])
    learn.fit(2, lr=1e-2)
    assert len(probe.norms) == 8
    assert max(probe.norms) <= 0.05 * (1 + 1e-4)
    assert float(clip.last_norm) > 0.05  # clipping really cut something
    unclipped = GradNorm()
    make_learner(cbs=[unclipped]).fit(1, lr=1e-2)
    assert max(unclipped.norms) > 0.05


def plain_sgd(p, lr):
    return torch.optim.SGD(p, lr=lr)


def test_gradient_accumulation_equals_a_big_batch():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)

    def run(bs, cbs):
        torch.manual_seed(0)
        dls = DataLoaders(TensorLoader(x, y, bs=bs, device="cpu"), TensorLoader(x, y, bs=32, device="cpu"),
                          device="cpu")
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        steps = []

        class CountSteps(Callback):
            order = 50  # GradientAccumulation (order -5) cancels the step before this runs

            def before_step(self):
                steps.append(self.learn.iter)

        learn = Learner(model, dls, opt_func=plain_sgd, lr=0.5, cbs=[*cbs, CountSteps()])
        learn.remove_cb(ProgressCallback)
        learn.fit(2)
        return model, steps

    big, big_steps = run(32, [])
    acc, acc_steps = run(8, [GradientAccumulation(n_acc=32)])
    assert big_steps == [0, 0] and acc_steps == [3, 3]
    for a, b in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    _, no_acc_steps = run(8, [])
    assert len(no_acc_steps) == 8


def test_early_stopping_stops_at_the_right_epoch():
    msgs = []
    # valid "score" (higher is better): best at epoch 1, no improvement at 2 and 3 -> stop after epoch 3
    learn = make_learner(metrics=[Scripted([0.5, 0.7, 0.6, 0.69, 0.9, 0.95])],
                         cbs=[EarlyStopping("score", patience=2)], messages=msgs)
    learn.fit(6, lr=1e-2)
    assert len(learn.recorder.values) == 4
    assert learn.early_stopping.stopped_epoch == 3 and learn.early_stopping.best_epoch == 1
    assert "stopped after epoch 3" in msgs[-1]


def test_early_stopping_min_delta_and_min_mode():
    # an "error" lower by less than min_delta does not count as an improvement
    learn = make_learner(metrics=[Scripted([1.0, 0.95, 0.92, 0.5, 0.4], name="error")],
                         cbs=[EarlyStopping("error", patience=2, min_delta=0.1)])
    learn.fit(5, lr=1e-2)
    assert learn.early_stopping.mode == "min"
    assert len(learn.recorder.values) == 3
    with pytest.raises(ValueError, match="cannot monitor 'nope'"):
        make_learner(cbs=[EarlyStopping("nope")]).fit(1)


class Snapshots(Callback):
    order = 60

    def before_fit(self):
        self.weights = []

    def after_epoch(self):
        self.weights.append({k: v.clone() for k, v in self.learn.model.state_dict().items()})


def test_save_best_model_keeps_best_epoch_weights(tmp_path):
    snaps = Snapshots()
    learn = make_learner(metrics=[Scripted([0.9, 0.5, 0.7, 0.6], name="valid_error")],
                         cbs=[SaveBestModel("valid_error"), snaps], path=tmp_path)
    learn.fit(4, lr=1e-2)
    assert learn.save_best_model.best_epoch == 1
    assert (tmp_path / "models" / "best.pth").exists()
    best = snaps.weights[1]
    assert all(torch.equal(best[k], v) for k, v in learn.model.state_dict().items())
    assert not torch.equal(snaps.weights[3]["0.weight"], learn.model[0].weight)


def test_tracker_state_dict_round_trip():
    cb = EarlyStopping("valid_loss", patience=3)
    cb.best, cb.best_epoch, cb.wait = 0.25, 4, 2
    other = EarlyStopping("valid_loss", patience=3)
    other.load_state_dict(cb.state_dict())
    assert other.state_dict() == {"best": 0.25, "best_epoch": 4, "wait": 2}
    acc = GradientAccumulation(64)
    acc.load_state_dict({"count": 16, "n_batches": 1})
    assert acc.state_dict() == {"count": 16, "n_batches": 1}


def test_reduce_lr_on_plateau():
    lrs = []

    class LrAtEpochStart(Callback):
        def before_epoch(self):
            lrs.append(self.learn.opt.param_groups[-1]["lr"])

    learn = make_learner(metrics=[Scripted([1.0, 0.8, 0.9, 0.85, 0.7, 0.75], name="loss_x")],
                         cbs=[ReduceLROnPlateau("loss_x", patience=2, factor=10), LrAtEpochStart()])
    learn.fit(6, lr=0.1)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_terminate_on_nan_names_epoch_and_batch():
    msgs = []

    class PoisonLoss(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 2:
                self.learn.loss = self.learn.loss * math.nan

    learn = make_learner(cbs=[PoisonLoss(), TerminateOnNaN()], messages=msgs)
    learn.fit(3, lr=1e-2)
    assert learn.train_iter == 4 + 3  # stopped at epoch 1, batch 2
    assert len(learn.recorder.values) == 1
    assert "epoch 1, batch 2" in learn.terminate_on_nan.message and msgs == [learn.terminate_on_nan.message]
    assert math.isnan(learn.recorder.losses[-1])
