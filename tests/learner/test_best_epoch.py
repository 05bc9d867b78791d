"""The best-epoch rule: the first metric when there is one (loss otherwise), said in the output; best and last."""

import torch
from torch import nn

from deepfit.learner import Learner, Metric
from deepfit.learner.callbacks.progress import ProgressCallback
from deepfit.learner.callbacks.training import SaveBestModel, default_monitor, epoch_summary
from tests.helpers.data import make_linear_data


class Scripted(Metric):
    """A metric whose value at epoch e is `values[e]`."""

    def __init__(self, values, name):
        self.values, self.name, self.epoch = list(values), name, 0

    def reset(self):
        pass

    def accumulate(self, learn):
        self.epoch = learn.epoch

    @property
    def value(self):
        return self.values[self.epoch]


def make_learner(tmp_path, metrics=(), cbs=()):
    torch.manual_seed(0)
    learn = Learner(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), make_linear_data(),
                    metrics=list(metrics), cbs=list(cbs), path=tmp_path)
    learn.remove_cb(ProgressCallback)
    learn.messages = []
    learn.logger = learn.messages.append
    return learn


def test_first_metric_decides_not_the_loss(tmp_path):
    # accuracy peaks at epoch 1 while the loss keeps falling: the metric wins
    learn = make_learner(tmp_path, metrics=[Scripted([0.80, 0.95, 0.90, 0.85], "accuracy"),
                                            Scripted([0.3, 0.2, 0.1, 0.0], "error_rate")],
                         cbs=[SaveBestModel(load_at_end=False)])
    learn.fit(4, lr=1e-2)
    cb = learn.save_best_model
    assert (cb.monitor, cb.mode, cb.best_epoch) == ("accuracy", "max", 1)
    assert "SaveBestModel: best epoch = highest accuracy" in learn.messages
    summary = cb.summary()
    assert summary["best_epoch"] == 1 and summary["best"]["accuracy"] == 0.95
    assert summary["last_epoch"] == 3 and summary["last"]["accuracy"] == 0.85
    assert summary["monitor"] == "accuracy" and summary["mode"] == "max"
    assert set(summary["best"]) == {"epoch", "train_loss", "valid_loss", "accuracy", "error_rate"}


def test_an_error_metric_first_is_minimised(tmp_path):
    learn = make_learner(tmp_path, metrics=[Scripted([0.3, 0.1, 0.2], "error_rate")], cbs=[SaveBestModel()])
    learn.fit(3, lr=1e-2)
    assert learn.save_best_model.mode == "min" and learn.save_best_model.best_epoch == 1
    assert any("loaded epoch 1 (error_rate 0.1)" in m for m in learn.messages)


def test_without_metrics_the_validation_loss_decides(tmp_path):
    learn = make_learner(tmp_path, cbs=[SaveBestModel(load_at_end=False)])
    assert default_monitor(learn) == "valid_loss"
    learn.fit(3, lr=1e-2)
    losses = [row["valid_loss"] for row in learn.recorder.table()]
    cb = learn.save_best_model
    assert cb.monitor == "valid_loss" and cb.mode == "min"
    assert cb.best_epoch == losses.index(min(losses))
    assert "SaveBestModel: best epoch = lowest valid_loss" in learn.messages


def test_explicit_monitor_still_wins(tmp_path):
    learn = make_learner(tmp_path, metrics=[Scripted([0.5, 0.9, 0.7], "accuracy")],
                         cbs=[SaveBestModel("valid_loss", load_at_end=False)])
    learn.fit(3, lr=1e-2)
    assert learn.save_best_model.monitor == "valid_loss"


def test_epoch_summary_without_a_tracker(tmp_path):
    learn = make_learner(tmp_path, metrics=[Scripted([0.5, 0.9, 0.9, 0.7], "accuracy")])
    learn.fit(4, lr=1e-2)
    summary = epoch_summary(learn)
    assert summary["best_epoch"] == 1  # ties go to the earlier epoch
    assert summary["last_epoch"] == 3
    loss_summary = epoch_summary(learn, "valid_loss")
    assert loss_summary["mode"] == "min"
    assert loss_summary["best"]["valid_loss"] == min(r["valid_loss"] for r in learn.recorder.table())


def test_epoch_summary_before_any_epoch(tmp_path):
    learn = make_learner(tmp_path)
    assert epoch_summary(learn) == {"monitor": "valid_loss", "mode": "min", "best_epoch": None, "best": None,
                                    "last_epoch": None, "last": None}
