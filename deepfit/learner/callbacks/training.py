"""Training helpers as callbacks: gradient clipping and accumulation, early stopping, saving the best
model, reducing the learning rate on a plateau, and stopping on a NaN loss.

The trackers (`EarlyStopping`, `SaveBestModel`, `ReduceLROnPlateau`) read the metric they monitor
from the `Recorder`'s row of the epoch (`train_loss`, `valid_loss`, a metric's name, or
`train_<metric>`), so they run after it (order > 50). They keep a `state_dict()` for checkpoints and
do not reset it when the Learner is resuming (`learn.resuming`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ...safe_io import atomic_torch_save, safe_torch_load
from ..events import Callback, CancelFit, CancelStep
from ..metrics import batch_size_of
from .precision import unscale_gradients

# ---------------------------------------------------------------------------------------------- gradients


class GradientClip(Callback):
    """Clips the gradients' total `norm_type` norm to `max_norm` before each optimizer step.

    No host sync: the pre-clipping norm is kept on the device as `last_norm`. With a loss-scaling
    `MixedPrecision` callback the gradients are unscaled first (`unscale_gradients`).
    """

    order = -4  # after GradientAccumulation (which may skip or rescale the step)

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0):
        if max_norm <= 0:
            raise ValueError(f"GradientClip: max_norm must be > 0, got {max_norm}")
        self.max_norm, self.norm_type = max_norm, norm_type
        self.last_norm: torch.Tensor | None = None

    def before_step(self) -> None:
        unscale_gradients(self.learn)
        params = [p for p in self.learn.model.parameters() if p.grad is not None]
        if params:
            self.last_norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)


class GradientAccumulation(Callback):
    """Steps the optimizer once at least `n_acc` items have been seen: an effective batch of `n_acc`.

    Gradients of the accumulated batches are summed by backward, then divided by the number of
    batches before the step, so the update is that of the mean loss over the effective batch
    (exact when the batches have equal sizes). Accumulation carries over epoch boundaries.
    """

    order = -5  # before clipping and before any callback that performs the step itself

    def __init__(self, n_acc: int = 32):
        if n_acc < 1:
            raise ValueError(f"GradientAccumulation: n_acc must be >= 1, got {n_acc}")
        self.n_acc = n_acc
        self.count = 0
        self.n_batches = 0

    def before_fit(self) -> None:
        if not self.learn.resuming:
            self.count, self.n_batches = 0, 0
            self.learn.opt.zero_grad(set_to_none=True)

    def before_step(self) -> None:
        self.count += batch_size_of(self.learn.yb)
        self.n_batches += 1
        if self.count < self.n_acc:
            raise CancelStep()
        if self.n_batches > 1:
            grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, 1.0 / self.n_batches)
        self.count, self.n_batches = 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "n_batches": self.n_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.n_batches = int(state["count"]), int(state["n_batches"])


# ---------------------------------------------------------------------------------------------- trackers
def recorded_names(learn) -> list[str]:
    """Names of the values in the Recorder's per-epoch rows (`train_loss`, `valid_loss`, metrics...)."""
    rec = _recorder(learn)
    names = rec.metric_names[1:]
    return names[:-1] if rec.add_time else names


def _recorder(learn):
    rec = getattr(learn, "recorder", None)
    if rec is None or rec not in learn.cbs:
        raise RuntimeError("this callback reads the Recorder's results: keep the default callbacks (Recorder)")
    return rec


def default_monitor(learn) -> str:
    """What the best epoch is chosen by: the first metric's name when there is a metric, else `valid_loss`."""
    metrics = getattr(learn, "metrics", None) or []
    return metrics[0].name if metrics else "valid_loss"


def monitor_mode(monitor: str) -> str:
    """`'min'` for names containing loss, error or perplexity, else `'max'` (accuracy, F1...)."""
    return "min" if any(k in monitor for k in ("loss", "error", "perplexity")) else "max"


class TrackerCallback(Callback):
    """Base for callbacks that follow one recorded value and note when it improves.

    Args:
        monitor: the recorded value to follow (`valid_loss`, `train_loss`, a metric name...), or
            `'auto'`: the first metric when the Learner has one, else `valid_loss` (`default_monitor`),
            resolved at the start of each `fit`.
        mode: `'min'`, `'max'`, or `'auto'` (min for names containing loss, error or perplexity).
        min_delta: an improvement must beat the best value by more than this.
    """

    order = 65  # after Recorder (50) wrote the epoch's row and ProgressCallback (60) printed it

    def __init__(self, monitor: str = "valid_loss", mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{type(self).__name__}: mode must be 'min', 'max' or 'auto', got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"{type(self).__name__}: min_delta must be >= 0, got {min_delta}")
        self.requested_monitor, self.requested_mode, self.min_delta = monitor, mode, min_delta
        self.monitor: str = monitor
        self.mode: str = "min"
        if monitor != "auto":
            self._resolve(monitor)
        self._reset()

    def _resolve(self, monitor: str) -> None:
        self.monitor = monitor
        self.mode = monitor_mode(monitor) if self.requested_mode == "auto" else self.requested_mode

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0

    def before_fit(self) -> None:
        if self.requested_monitor == "auto":
            self._resolve(default_monitor(self.learn))
        names = recorded_names(self.learn)
        if self.monitor not in names:
            raise ValueError(f"{type(self).__name__}: cannot monitor {self.monitor!r}; recorded values are {names}")
        if not self.learn.resuming:
            self._reset()

    def _measure(self) -> float | None:
        """This epoch's value, or None when there is none (lr_find, or no validation this epoch)."""
        learn = self.learn
        if getattr(learn, "lr_finder", None) is not None:
            return None
        rec = _recorder(learn)
        if not rec.values:
            return None
        if not self.monitor.startswith("train_") and not rec.last_valid:
            return None
        return rec.values[-1][recorded_names(learn).index(self.monitor)]

    def _improved(self) -> bool | None:
        value = self._measure()
        if value is None:
            return None
        if self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, self.learn.epoch, 0
        else:
            self.wait += 1
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = float(state["best"]), int(state["best_epoch"]), int(state["wait"])


class EarlyStopping(TrackerCallback):
    """Stops `fit` when `monitor` has not improved for `patience` epochs in a row."""

    order = 70  # after SaveBestModel has seen the epoch

    def __init__(self, monitor: str = "valid_loss", mode: str = "auto", min_delta: float = 0.0, patience: int = 1):
        super().__init__(monitor, mode, min_delta)
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        self.patience = patience
        self.stopped_epoch: int | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self.stopped_epoch = None

    def after_epoch(self) -> None:
        if self._improved() is False and self.wait >= self.patience:
            self.stopped_epoch = self.learn.epoch
            self.learn.logger(f"EarlyStopping: no improvement in {self.monitor} since epoch {self.best_epoch} "
                              f"(best {self.best:.6g}); stopped after epoch {self.learn.epoch}")
            raise CancelFit()


class SaveBestModel(TrackerCallback):
    """Saves the model whenever `monitor` improves, and loads the best weights back after `fit`.

    The file is `<learn.path>/models/<fname>.pth` (the model's `state_dict`). By default the best
    epoch is the one with the best first metric (highest accuracy, lowest error rate...), or the
    lowest validation loss when the Learner has no metric; the choice is logged at the start of
    `fit`. `summary()` gives the best and the last epoch's results side by side.
    """

    def __init__(self, monitor: str = "auto", mode: str = "auto", min_delta: float = 0.0,
                 fname: str = "best", load_at_end: bool = True):
        super().__init__(monitor, mode, min_delta)
        self.fname, self.load_at_end = fname, load_at_end
        self._saved_this_fit = False

    @property
    def path(self) -> Path:
        return Path(self.learn.path) / "models" / f"{self.fname}.pth"

    def before_fit(self) -> None:
        super().before_fit()
        self._saved_this_fit = False
        if getattr(self.learn, "lr_finder", None) is None:
            self.learn.logger(f"SaveBestModel: best epoch = {'highest' if self.mode == 'max' else 'lowest'} "
                              f"{self.monitor}")

    def summary(self) -> dict[str, Any]:
        """The best epoch (by this callback's `monitor`) and the last epoch, with their recorded results."""
        return epoch_summary(self.learn, self.monitor, self.mode)

    def after_epoch(self) -> None:
        if self._improved():
            atomic_torch_save(self.learn.model.state_dict(), self.path)  # never half a file, even if killed
            self._saved_this_fit = True

    def after_fit(self) -> None:
        if self.load_at_end and self._saved_this_fit and getattr(self.learn, "lr_finder", None) is None:
            self.learn.model.load_state_dict(safe_torch_load(self.path))
            self.learn.logger(f"SaveBestModel: loaded epoch {self.best_epoch} ({self.monitor} {self.best:.6g}) "
                              f"from {self.path}")


def epoch_summary(learn, monitor: str = "auto", mode: str = "auto") -> dict[str, Any]:
    """The best and the last epoch of the Recorder's table: `{'monitor', 'mode', 'best_epoch', 'best',
    'last_epoch', 'last'}`, where `best` and `last` are the recorded rows (losses and metrics by name).

    `monitor='auto'` is the first metric, else `valid_loss` (as `SaveBestModel`); ties go to the
    earlier epoch. Epochs without a value for `monitor` are skipped; with none at all, `best_epoch`
    is None. This is what a run's `metrics.json` reports as `best` and `last`.
    """
    if monitor == "auto":
        monitor = default_monitor(learn)
    mode = monitor_mode(monitor) if mode == "auto" else mode
    table = _recorder(learn).table()
    scored = [row for row in table if isinstance(row.get(monitor), (int, float)) and math.isfinite(row[monitor])]
    pick = max if mode == "max" else min  # both return the earliest of equal values
    best = pick(scored, key=lambda r: r[monitor]) if scored else None
    last = table[-1] if table else None
    return {"monitor": monitor, "mode": mode,
            "best_epoch": None if best is None else best["epoch"], "best": best,
            "last_epoch": None if last is None else last["epoch"], "last": last}


class ReduceLROnPlateau(TrackerCallback):
    """Divides every learning rate by `factor` when `monitor` has not improved for `patience` epochs.

    Meant for a constant-rate `fit`: a `ParamScheduler` would overwrite the rate on the next batch.
    """

    def __init__(self, monitor: str = "valid_loss", mode: str = "auto", min_delta: float = 0.0, patience: int = 1,
                 factor: float = 10.0, min_lr: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        if patience < 1 or factor <= 1:
            raise ValueError(f"ReduceLROnPlateau: need patience >= 1 and factor > 1, got {patience}, {factor}")
        self.patience, self.factor, self.min_lr = patience, factor, min_lr

    def after_epoch(self) -> None:
        if self._improved() is False and self.wait >= self.patience:
            for g in self.learn.opt.param_groups:
                g["lr"] = max(g["lr"] / self.factor, self.min_lr)
            self.wait = 0
            self.learn.logger(f"ReduceLROnPlateau: {self.monitor} did not improve for {self.patience} epochs; "
                              f"lr now {self.learn.opt.param_groups[-1]['lr']:.3g}")


# ---------------------------------------------------------------------------------------------- NaN
class TerminateOnNaN(Callback):
    """Stops `fit` as soon as a training loss is NaN or infinite, naming the epoch and batch.

    This reads the loss on the host once per training batch (a device sync each batch): the
    price of stopping at the batch where it happens.
    """

    order = 55  # after the Recorder stored the batch loss
    run_valid = False

    def __init__(self):
        self.message: str | None = None

    @property
    def name(self) -> str:
        return "terminate_on_nan"

    def before_fit(self) -> None:
        self.message = None

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None or bool(torch.isfinite(learn.loss.detach()).all()):
            return
        rec = getattr(learn, "recorder", None)
        if rec is not None and hasattr(rec, "flush"):
            rec.flush()
        self.message = (f"TerminateOnNaN: training loss is {float(learn.loss.detach().float().mean())} "
                        f"at epoch {learn.epoch}, batch {learn.iter}; stopping fit")
        learn.logger(self.message)
        raise CancelFit(self.message)
