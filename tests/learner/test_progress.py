"""ProgressCallback: the epoch table, a live bar in a terminal, at most one line per 30 s within a long epoch
in a log (checked with a fake clock), never a carriage return in a log."""

import io

import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Callback, Learner, accuracy
from deepfit.learner.callbacks.progress import ProgressCallback, format_time


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tick(Callback):
    """Advances the fake clock by `dt` seconds per batch (before the progress callback sees the batch)."""

    order = 0

    def __init__(self, clock: FakeClock, dt: float):
        self.clock, self.dt = clock, dt

    def after_batch(self):
        self.clock.now += self.dt


def long_epoch_dls(n_batches: int = 300, bs: int = 4) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * bs, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, device="cpu"),
                       TensorLoader(x[:40], y[:40], bs=bs, device="cpu"), device="cpu")


def test_log_output_is_one_line_per_epoch_without_carriage_returns(tiny_dls):
    out = io.StringIO()
    learn = Learner(nn.Linear(4, 3), tiny_dls, metrics=[accuracy], default_cbs=True)
    learn.progress.stream = out
    learn.fit(3)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.strip().splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]


def test_long_epoch_in_a_log_prints_at_most_one_line_per_30_seconds():
    clock, out = FakeClock(), io.StringIO()
    learn = Learner(nn.Linear(4, 2), long_epoch_dls(300), metrics=[accuracy])
    learn.remove_cb(learn.progress)
    learn.add_cb(ProgressCallback(stream=out, clock=clock))
    dt = 0.7  # 300 batches x 0.7 s = 210 s of training per epoch, 10 batches (7 s) of validation
    learn.fit(2, lr=0.1, cbs=[Tick(clock, dt)])
    text = out.getvalue()
    assert "\r" not in text
    lines = text.strip().splitlines()
    progress = [line for line in lines if line.startswith("epoch ") and ":" in line]
    rows = [line for line in lines[1:] if line not in progress]
    assert [r.split()[0] for r in rows] == ["0", "1"]  # the table is unchanged
    per_epoch = 300 * dt // 30  # 210 s: 7 lines at most per epoch, none for the 7 s validation
    assert 2 <= len(progress) <= 2 * per_epoch
    assert all(" valid" not in line for line in progress)
    first = progress[0]
    assert first.startswith("epoch 1/2: batch ") and "/300 (" in first
    assert "loss " in first and "items/s" in first and "batch/s" in first and "eta " in first
    # consecutive lines of one epoch are >= 30 fake seconds apart: batch numbers differ by >= 30 / dt
    batches = [int(line.split("batch ")[1].split("/")[0]) for line in progress if line.startswith("epoch 1/2")]
    assert all(b - a >= 30 / dt - 1 for a, b in zip(batches, batches[1:]))


def test_live_bar_in_terminal(tiny_dls):
    out = FakeTTY()
    learn = Learner(nn.Linear(4, 3), tiny_dls, metrics=[accuracy])
    learn.remove_cb(learn.progress)
    learn.add_cb(ProgressCallback(stream=out, refresh=0.0))
    learn.fit(1)
    text = out.getvalue()
    assert "\repoch 1/1:" in text and "loss" in text and "items/s" in text
    assert "\repoch 1/1 valid:" in text
    assert text.rstrip().splitlines()[-1].split()[0] == "0"  # the bar is erased before the row


def test_get_preds_outside_fit_works_with_the_callback(tiny_dls):
    out = FakeTTY()
    learn = Learner(nn.Linear(4, 3), tiny_dls)
    learn.remove_cb(learn.progress)
    learn.add_cb(ProgressCallback(stream=out, refresh=0.0))
    preds, _ = learn.get_preds()
    assert preds.shape[1] == 3 and "\rpredict:" in out.getvalue()


def test_format_time():
    assert format_time(5) == "00:05" and format_time(125) == "02:05" and format_time(3725) == "1:02:05"
