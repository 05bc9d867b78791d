"""PNG plots of a `Recorder`'s history: losses, learning-rate and momentum schedules, metrics.

Each function takes a `Recorder` or a `Learner` (its `recorder` is used) and a path, and returns
the path. Nothing needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..learner.callbacks.recorder import Recorder


def _recorder(obj) -> Recorder:
    rec = obj if isinstance(obj, Recorder) else getattr(obj, "recorder", None)
    if not isinstance(rec, Recorder):
        raise TypeError(f"expected a Recorder or a Learner with a recorder, got {type(obj).__name__}")
    rec.flush()
    return rec


def plot_loss(obj, path: str | Path, skip_start: int = 0, with_valid: bool = True) -> Path:
    """Smoothed training loss per batch and validation loss per epoch (`Recorder.plot_loss`)."""
    return _recorder(obj).plot_loss(path, skip_start=skip_start, with_valid=with_valid)


def plot_lr(obj, path: str | Path) -> Path:
    """The learning rate of the last parameter group per training batch."""
    from ..plotting import new_figure, save_figure

    rec = _recorder(obj)
    fig, ax = new_figure()
    ax.plot(range(len(rec.lrs)), rec.lrs)
    ax.set_xlabel("training batch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate schedule")
    return save_figure(fig, path)


def plot_sched(obj, path: str | Path) -> Path:
    """Learning rate and momentum (or Adam's beta1) per training batch, side by side."""
    from ..plotting import new_figure, save_figure

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


def plot_metrics(obj, path: str | Path, ncols: int = 3) -> Path:
    """One panel per column of the results table (losses and metrics) over epochs."""
    from ..plotting import new_figure, save_figure

    rec = _recorder(obj)
    names = rec.metric_names[1:]
    if rec.add_time:
        names = names[:-1]
    if not rec.values:
        raise ValueError("plot_metrics: the recorder has no epoch results yet (call fit first)")
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


def plot_all(obj, folder: str | Path) -> dict[str, Path]:
    """Save `loss.png`, `lr.png`, `sched.png` and `metrics.png` in `folder`."""
    folder = Path(folder)
    return {"loss": plot_loss(obj, folder / "loss.png"), "lr": plot_lr(obj, folder / "lr.png"),
            "sched": plot_sched(obj, folder / "sched.png"), "metrics": plot_metrics(obj, folder / "metrics.png")}
