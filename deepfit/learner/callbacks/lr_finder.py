"""The learning-rate finder: an exponential sweep of the learning rate over a few training batches.

`lr_find` trains with a rate growing geometrically from `start_lr` to `end_lr`, records the smoothed
loss, stops once it exceeds 4× its minimum, then puts everything back: model weights and buffers,
the optimizer (the sweep uses a temporary one), the Recorder's history, the loaders' epoch
counters and torch's random generators. It suggests two rates and can save a plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...distributed import is_main_process
from ...progress import Progress
from ..events import Callback, CancelFit, CancelValidate
from ..optim import set_hyper

if TYPE_CHECKING:
    from ..events import LearnerLike


@dataclass
class LRFindResult:
    """What `lr_find` measured: the rates tried, the smoothed (and raw) losses, and two suggestions.

    `steepest`: the rate where the smoothed loss falls fastest (per log-rate step).
    `minimum`: the rate of the lowest smoothed loss, divided by 10.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    steepest: float
    minimum: float
    plot_path: Path | None = field(default=None)

    def plot(self, path: str | Path, skip_start: int = 0, skip_end: int = 0) -> Path:
        """Save a PNG of the smoothed loss against the learning rate (log x-axis), marking the suggestions."""
        from ...plotting import new_figure, save_figure

        end = len(self.lrs) - skip_end
        lrs, losses = self.lrs[skip_start:end], self.losses[skip_start:end]
        fig, ax = new_figure()
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        for lr, label, marker in ((self.steepest, "steepest", "o"), (self.minimum, "minimum/10", "s")):
            if math.isfinite(lr):
                ax.plot([lr], [float(np.interp(np.log(lr), np.log(self.lrs), self.losses))], marker,
                        label=f"{label}: {lr:.2e}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.set_title("Learning-rate finder")
        ax.legend()
        return save_figure(fig, path)


class LRFinder(Callback):
    """Sets a geometrically growing learning rate per batch and stops when the loss diverges.

    Reads each batch's loss on the host (one sync per batch): the stop test needs it.
    """

    order = 1

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
                 beta: float = 0.98):
        if not 0 < start_lr < end_lr:
            raise ValueError(f"lr_find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
        if num_it < 2:
            raise ValueError(f"lr_find: num_it must be >= 2, got {num_it}")
        self.start_lr, self.end_lr, self.num_it, self.stop_div, self.beta = start_lr, end_lr, num_it, stop_div, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.raw_losses: list[float] = []
        self.progress: Progress | None = None  # set by `lr_find`: reports each batch of the sweep

    def lr_at(self, i: int) -> float:
        """The rate of sweep iteration `i` (0 .. num_it-1)."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.num_it - 1))

    def before_fit(self) -> None:
        self.lrs, self.losses, self.raw_losses = [], [], []
        self._i, self._avg, self._best = 0, 0.0, math.inf

    def before_batch(self) -> None:
        if self.learn.training:
            self._lr = self.lr_at(self._i)
            set_hyper(self.learn.opt, "lr", self._lr)

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        loss = float(self.learn.loss.detach().float())
        self._i += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta**self._i)
        self.lrs.append(self._lr)
        self.losses.append(smooth)
        self.raw_losses.append(loss)
        self._best = min(self._best, smooth)
        if self.progress is not None:
            self.progress.update(1, info=f"lr {self._lr:.2e}, loss {smooth:.4f}")
        diverged = not math.isfinite(smooth) or (self.stop_div and smooth > 4 * self._best)
        if diverged or self._i >= self.num_it:
            raise CancelFit()

    def before_validate(self) -> None:
        raise CancelValidate()


def suggest_lrs(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """`(steepest, minimum/10)` from a sweep, ignoring the first tenth and the last five points when possible."""
    n = len(lrs)
    if n == 0:
        return math.nan, math.nan
    lo, hi = n // 10, n - 5
    if hi - lo < 3:
        lo, hi = 0, n
    x = np.log(np.asarray(lrs[lo:hi], dtype=np.float64))
    y = np.asarray(losses[lo:hi], dtype=np.float64)
    finite = np.isfinite(y)
    x, y = x[finite], y[finite]
    if len(y) == 0:
        return math.nan, math.nan
    minimum = float(np.exp(x[np.argmin(y)])) / 10
    if len(y) < 2:
        return math.nan, minimum
    slopes = np.diff(y) / np.diff(x)
    steepest = float(np.exp(x[int(np.argmin(slopes))]))
    return steepest, minimum


def _snapshot(learn: LearnerLike) -> dict[str, Any]:
    state: dict[str, Any] = {
        "model": {k: v.detach().clone() for k, v in learn.model.state_dict().items()},
        "training_mode": learn.model.training,
        "opt": learn.opt,
        "attrs": {k: getattr(learn, k, None) for k in ("epoch", "n_epoch", "iter", "n_iter", "train_iter",
                                                       "pct_train", "training", "xb", "yb", "pred", "loss")},
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None,
        "epochs": [(dl, dl.epoch) for dl in _loaders(learn) if isinstance(getattr(dl, "epoch", None), int)],
    }
    rec = getattr(learn, "recorder", None)
    if rec is not None:
        state["recorder"] = (rec, {k: (list(v) if isinstance(v, list) else v) for k, v in vars(rec).items()})
    return state


def _restore(learn: LearnerLike, state: dict[str, Any]) -> None:
    learn.model.load_state_dict(state["model"])
    learn.model.train(state["training_mode"])
    learn.opt = state["opt"]
    for k, v in state["attrs"].items():
        setattr(learn, k, v)
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    for dl, epoch in state["epochs"]:
        dl.epoch = epoch
    if "recorder" in state:
        rec, saved = state["recorder"]
        vars(rec).update(saved)


def _loaders(learn: LearnerLike) -> list:
    dls = learn.dls
    return [dl for dl in (getattr(dls, "train", None), getattr(dls, "valid", None)) if dl is not None]


def lr_find(learn: LearnerLike, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
            plot: str | Path | None = None, progress: bool = True) -> LRFindResult:
    """Sweep the learning rate from `start_lr` to `end_lr` over up to `num_it` batches and suggest rates.

    The model, optimizer and training history are exactly as before when it returns. With `plot`,
    saves the loss-vs-rate curve there as PNG (relative paths are under `learn.path`). `progress`: report
    the sweep on stderr (a bar in a terminal, a line per 30 s and one at the end in a log; see
    `deepfit.progress`), on the main process only.
    """
    from .progress import ProgressCallback

    finder = LRFinder(start_lr, end_lr, num_it, stop_div)
    train = learn.dls.train
    n_batches = len(train) if hasattr(train, "__len__") else 1  # unsized: up to num_it epochs; the finder stops it
    if n_batches == 0:
        raise ValueError("lr_find: the training loader is empty")
    state = _snapshot(learn)
    hidden = [cb for cb in learn.cbs if isinstance(cb, ProgressCallback)]
    learn.remove_cbs(hidden)
    finder.progress = Progress(num_it, "lr_find", "batch", show=progress and is_main_process())
    try:
        learn.create_opt()  # a temporary optimizer: the user's is never stepped
        learn.fit(math.ceil(num_it / n_batches), cbs=[finder])
    finally:
        finder.progress.close()
        finder.progress = None
        learn.add_cbs(hidden)
        _restore(learn, state)
    steepest, minimum = suggest_lrs(finder.lrs, finder.losses)
    result = LRFindResult(finder.lrs, finder.losses, finder.raw_losses, steepest, minimum)
    if plot is not None:
        path = Path(plot)
        if not path.is_absolute():
            path = Path(learn.path) / path
        result.plot_path = result.plot(path)
    return result
