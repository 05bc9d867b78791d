"""PNG plots of a training history: losses, learning-rate and momentum schedules, metrics.

Every plot of a run lives here. Each function takes a `Recorder`, a `Learner` (its `recorder` is
used) or any object with the recorder's plain attributes (`losses`, `smooth_losses`, `lrs`, `moms`,
`values`, `metric_names`), and a path; it returns the path. Nothing needs a display, and nothing here
imports the learner package: the recorder is read, not typed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..plotting import new_figure, save_figure

_HISTORY = ("losses", "smooth_losses", "lrs", "moms", "values")


def _recorder(obj: Any) -> Any:
    """The history to plot: `obj` itself when it has a recorder's attributes, else `obj.recorder`."""
    rec = obj if all(hasattr(obj, k) for k in _HISTORY) else getattr(obj, "recorder", None)
    if rec is None or not all(hasattr(rec, k) for k in _HISTORY):
        raise TypeError(f"expected a Recorder, a Learner with a recorder, or an object with the attributes "
                        f"{', '.join(_HISTORY)}; got {type(obj).__name__}")
    if callable(getattr(rec, "flush", None)):
        rec.flush()
    return rec


def plot_loss(obj: Any, path: str | Path, skip_start: int = 0, with_valid: bool = True) -> Path:
    """Smoothed training loss per batch and, with `with_valid`, the validation loss at the end of each epoch."""
    rec = _recorder(obj)
    fig, ax = new_figure()
    ax.plot(range(skip_start, len(rec.smooth_losses)), rec.smooth_losses[skip_start:], label="train (smoothed)")
    if with_valid and rec.values:
        per_epoch = len(rec.losses) / len(rec.values)
        xs = [per_epoch * (i + 1) for i in range(len(rec.values))]
        ax.plot(xs, [row[1] for row in rec.values], marker="o", label="valid")
    ax.set_xlabel("training batch")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.legend()
    return save_figure(fig, path)


def plot_lr(obj: Any, path: str | Path) -> Path:
    """The learning rate of the last parameter group per training batch."""
    rec = _recorder(obj)
    fig, ax = new_figure()
    ax.plot(range(len(rec.lrs)), rec.lrs)
    ax.set_xlabel("training batch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate schedule")
    return save_figure(fig, path)


def plot_sched(obj: Any, path: str | Path) -> Path:
    """Learning rate and momentum (or Adam's beta1) per training batch, side by side."""
    rec = _recorder(obj)
    fig, (ax0, ax1) = new_figure(1, 2, figsize=(10, 4))
    ax0.plot(range(len(rec.lrs)), rec.lrs)
    ax0.set_xlabel("training batch")
    ax0.set_ylabel("learning rate")
    ax0.set_title("Learning rate")
    moms = [m for m in rec.moms if not (isinstance(m, float) and math.isnan(m))]
    if moms:
        ax1.plot(range(len(rec.moms)), rec.moms)
    else:
        ax1.text(0.5, 0.5, "optimizer has no momentum", ha="center", va="center", transform=ax1.transAxes)
    ax1.set_xlabel("training batch")
    ax1.set_ylabel("momentum")
    ax1.set_title("Momentum")
    return save_figure(fig, path)


def plot_metrics(obj: Any, path: str | Path, ncols: int = 3) -> Path:
    """One panel per column of the results table (losses and metrics) over epochs."""
    rec = _recorder(obj)
    if not rec.values:
        raise ValueError("plot_metrics: the recorder has no epoch results yet (call fit first)")
    names = list(rec.metric_names[1:])
    if names and names[-1] == "time":
        names = names[:-1]
    # train_loss and valid_loss share the first panel.
    panels: list[list[int]] = [[0, 1]] + [[i] for i in range(2, len(names))]
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(4.5 * ncols, 3.6 * nrows))
    axes = [axes] if not hasattr(axes, "flatten") else list(axes.flatten())
    epochs = list(range(len(rec.values)))
    for ax, cols in zip(axes, panels):
        for c in cols:
            ax.plot(epochs, [row[c] for row in rec.values], marker="o", label=names[c])
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if cols == [0, 1] else names[cols[0]])
        ax.set_title("Losses" if cols == [0, 1] else names[cols[0]])
        if len(cols) > 1:
            ax.legend()
    for ax in axes[len(panels):]:
        ax.axis("off")
    return save_figure(fig, path)


def plot_all(obj: Any, folder: str | Path) -> dict[str, Path]:
    """Save `loss.png`, `lr.png`, `sched.png` and `metrics.png` in `folder`."""
    folder = Path(folder)
    return {"loss": plot_loss(obj, folder / "loss.png"), "lr": plot_lr(obj, folder / "lr.png"),
            "sched": plot_sched(obj, folder / "sched.png"), "metrics": plot_metrics(obj, folder / "metrics.png")}
