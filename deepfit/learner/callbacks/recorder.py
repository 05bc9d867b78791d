"""`Recorder`: per-batch losses and hyper-parameters, per-epoch results table.

Nothing here synchronises with the device per batch: batch losses are kept as device tensors and
read in one go at the end of the training phase, or when `flush()` is called (a progress refresh).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

from ..events import Callback
from ..metrics import AvgLoss, batch_size_of


class Recorder(Callback):
    """Records training history.

    Attributes after `fit`:
        losses, smooth_losses: one float per training batch (raw, and exponentially smoothed with
            `beta` and bias correction);
        lrs, moms: the last parameter group's learning rate and momentum (or Adam's beta1) per batch;
        values: one row per epoch `[train_loss, valid_loss, *metrics]`;
        metric_names: `['epoch', 'train_loss', 'valid_loss', *metric names, 'time']`;
        last_valid: `[valid_loss, *metrics]` of the latest validation pass.
    """

    order = 50

    def __init__(self, beta: float = 0.98, train_metrics: bool = False, add_time: bool = True):
        self.beta = beta
        self.train_metrics = train_metrics
        self.add_time = add_time
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.values: list[list[float]] = []
        self.last_valid: list[float] = []
        self._pending: list[Tensor] = []
        self._pending_bs: list[int] = []
        self._avg = 0.0
        self._count = 0
        self._train_total, self._train_count = 0.0, 0
        self._valid_loss = AvgLoss()

    # ---------------------------------------------------------------- names
    @property
    def metric_names(self) -> list[str]:
        names = ["epoch", "train_loss", "valid_loss"]
        names += [m.name for m in self.learn.metrics]
        if self.train_metrics:
            names += [f"train_{m.name}" for m in self.learn.metrics]
        return names + (["time"] if self.add_time else [])

    @property
    def smooth_loss(self) -> float:
        """The current smoothed training loss (reads pending batch losses from the device)."""
        self.flush()
        return self.smooth_losses[-1] if self.smooth_losses else math.nan

    @property
    def train_loss_sums(self) -> tuple[float, int]:
        """`(sum of item losses, item count)` of this epoch's training phase (distributed runs all-reduce it)."""
        return self._train_total, self._train_count

    @train_loss_sums.setter
    def train_loss_sums(self, sums: tuple[float, int]) -> None:
        self._train_total, self._train_count = float(sums[0]), int(sums[1])

    # ---------------------------------------------------------------- checkpoints
    _HISTORY = ("losses", "smooth_losses", "lrs", "moms", "values")

    def state_dict(self) -> dict:
        """The history and the smoothing state, as plain lists and numbers (see `checkpoint.py`)."""
        self.flush()
        state: dict = {k: list(getattr(self, k)) for k in self._HISTORY}
        state["avg"], state["count"] = float(self._avg), int(self._count)
        state["epoch_sums"] = [float(self._train_total), int(self._train_count)]
        return state

    def load_state_dict(self, state: dict) -> None:
        for k in self._HISTORY:
            setattr(self, k, list(state[k]))
        self._avg, self._count = state["avg"], state["count"]

    # ---------------------------------------------------------------- events
    def before_fit(self) -> None:
        if not self.learn.resuming:
            self.losses, self.smooth_losses, self.lrs, self.moms, self.values = [], [], [], [], []
            self._avg, self._count = 0.0, 0
        self._pending, self._pending_bs = [], []

    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_total, self._train_count = 0.0, 0
        self.last_valid = []

    def before_train(self) -> None:
        if self.train_metrics:
            for m in self.learn.metrics:
                m.reset()

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None:
            return
        if learn.training:
            self._pending.append(learn.loss.detach())
            self._pending_bs.append(batch_size_of(learn.yb))
            group = learn.opt.param_groups[-1]
            self.lrs.append(group["lr"])
            mom = group.get("momentum", None)
            if mom is None and "betas" in group:
                mom = group["betas"][0]
            self.moms.append(mom if mom is not None else math.nan)
            if self.train_metrics:
                for m in learn.metrics:
                    m.accumulate(learn)
        else:
            self._valid_loss.accumulate(learn)
            for m in learn.metrics:
                m.accumulate(learn)

    def after_train(self) -> None:
        self.flush()

    def before_validate(self) -> None:
        self._valid_loss.reset()
        for m in self.learn.metrics:
            m.reset()

    def after_validate(self) -> None:
        self.last_valid = [self._valid_loss.value] + [m.value for m in self.learn.metrics]

    def after_epoch(self) -> None:
        train_loss = self._train_total / self._train_count if self._train_count else math.nan
        row = [train_loss]
        row += self.last_valid if self.last_valid else [math.nan] * (1 + len(self.learn.metrics))
        if self.train_metrics:
            row += [m.value for m in self.learn.metrics]
        self.values.append(row)
        self.epoch_time = time.perf_counter() - self._epoch_start
        self.last_row = [self.learn.epoch, *row] + ([self.epoch_time] if self.add_time else [])

    # ---------------------------------------------------------------- host reads
    def flush(self) -> None:
        """Read the batch losses gathered since the last flush from the device (one sync)."""
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        for value, bs in zip(values, self._pending_bs):
            self._count += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * value
            self.losses.append(value)
            self.smooth_losses.append(self._avg / (1 - self.beta**self._count))
            self._train_total += value * bs
            self._train_count += bs
        self._pending, self._pending_bs = [], []

    # ---------------------------------------------------------------- output
    def table(self) -> list[dict[str, float]]:
        """The results table as a list of dicts (one per epoch)."""
        names = self.metric_names[1:]
        if self.add_time:
            names = names[:-1]
        return [{"epoch": i, **dict(zip(names, row))} for i, row in enumerate(self.values)]

    def plot_loss(self, path: str | Path, skip_start: int = 0, with_valid: bool = True) -> Path:
        """Save a PNG of the smoothed training loss per batch and the validation loss per epoch
        (`deepfit.interpret.plots.plot_loss`, where every plot lives)."""
        from ...interpret.plots import plot_loss

        return plot_loss(self, path, skip_start=skip_start, with_valid=with_valid)
