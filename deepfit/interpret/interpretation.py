"""`ClassificationInterpretation`: confusion matrix, most confused pairs and top losses."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .images import class_name, denormalize, is_image_batch, to_numpy_image


def confusion_counts(preds: Tensor, targets: Tensor, n_classes: int) -> Tensor:
    """`n×n` int64 matrix: rows = actual class, columns = predicted class."""
    idx = targets.long() * n_classes + preds.long()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes)


class ClassificationInterpretation:
    """Predictions of a classifier on a dataset, with tools to see where it goes wrong.

    Attributes: `probs` (N×C), `targets` (N), `preds` (N, arg-max), `losses` (N, per item),
    `inputs` (the model inputs, as batched by the loader), `vocab` (class names or None), `dl`.
    """

    def __init__(self, probs: Tensor, targets: Tensor, losses: Tensor, inputs: Any = None, vocab=None,
                 dl: Any = None):
        if probs.ndim != 2:
            raise ValueError(f"ClassificationInterpretation: predictions must be N×classes, got {tuple(probs.shape)}")
        if targets.ndim != 1 or len(targets) != len(probs):
            raise ValueError(f"ClassificationInterpretation: targets must be a vector of {len(probs)} class indices, "
                             f"got shape {tuple(targets.shape)}")
        self.probs, self.targets, self.losses = probs, targets.long(), losses
        self.preds = probs.argmax(1)
        self.inputs, self.vocab, self.dl = inputs, vocab, dl

    @classmethod
    def from_learner(cls, learn, dl: Any = None) -> ClassificationInterpretation:
        """Run `learn` over `dl` (default: the validation loader) and keep predictions, targets, inputs and
        per-item losses (`learn.get_preds(with_input=True, with_loss=True)`)."""
        dl = learn.dls.valid if dl is None else dl
        if dl is None:
            raise ValueError("ClassificationInterpretation.from_learner: no loader given and no validation loader")
        probs, targets, inputs, losses = learn.get_preds(dl=dl, with_input=True, with_loss=True)
        return cls(probs, targets, losses, inputs, vocab=getattr(learn.dls, "vocab", None), dl=dl)

    @property
    def n_classes(self) -> int:
        return len(self.vocab) if self.vocab is not None else self.probs.shape[1]

    def class_names(self) -> list[str]:
        return [class_name(self.vocab, i) for i in range(self.n_classes)]

    # ---------------------------------------------------------------- confusion
    def confusion_matrix(self) -> Tensor:
        """`C×C` counts: rows = actual class, columns = predicted class."""
        return confusion_counts(self.preds, self.targets, self.n_classes)

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """`(actual, predicted, count)` for off-diagonal cells with at least `min_val` items, largest first."""
        cm = self.confusion_matrix()
        names = self.class_names()
        pairs = [(names[a], names[p], int(cm[a, p])) for a in range(len(cm)) for p in range(len(cm))
                 if a != p and cm[a, p] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def plot_confusion_matrix(self, path: str | Path, normalize: bool = False, title: str = "Confusion matrix",
                              cmap: str = "Blues") -> Path:
        """Save the confusion matrix as a PNG (counts in each cell; row-normalized with `normalize=True`)."""
        from ..plotting import new_figure, save_figure

        cm = self.confusion_matrix().float()
        if normalize:
            cm = cm / cm.sum(1, keepdim=True).clamp_min(1)
        n = len(cm)
        size = max(4.0, 0.55 * n + 2)
        fig, ax = new_figure(figsize=(size + 1, size))
        im = ax.imshow(cm.numpy(), cmap=cmap, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        names = self.class_names()
        ax.set_xticks(range(n), names, rotation=90 if n > 4 else 0)
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(title)
        if n <= 30:
            top = float(cm.max()) if cm.numel() else 0.0
            for a in range(n):
                for p in range(n):
                    v = float(cm[a, p])
                    text = f"{v:.2f}" if normalize else f"{int(v)}"
                    ax.text(p, a, text, ha="center", va="center", fontsize=8,
                            color="white" if v > top / 2 else "black")
        return save_figure(fig, path)

    # ---------------------------------------------------------------- losses
    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[Tensor, Tensor]:
        """The `k` largest (or smallest) per-item losses and their indices (all items when `k` is None)."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        res = self.losses.float().topk(k, largest=largest)
        return res.values, res.indices

    def plot_top_losses(self, k: int, path: str | Path, ncols: int = 4) -> Path:
        """PNG grid of the `k` worst items, titled `prediction/actual/loss/probability of the prediction`."""
        from ..plotting import new_figure, save_figure

        if not is_image_batch(self.inputs):
            raise ValueError("plot_top_losses needs image inputs N×C×H×W (C = 1 or 3); got "
                             f"{getattr(self.inputs, 'shape', type(self.inputs).__name__)}")
        values, idxs = self.top_losses(k)
        n = len(idxs)
        ncols = max(1, min(ncols, n))
        nrows = max(1, math.ceil(n / ncols))
        fig, axes = new_figure(nrows, ncols, figsize=(2.7 * ncols, 2.9 * nrows))
        axes = np.atleast_1d(axes).flatten()
        images = denormalize(self.inputs[idxs], self.dl) if n else None
        for j, ax in enumerate(axes):
            ax.axis("off")
            if j >= n:
                continue
            i = int(idxs[j])
            img = to_numpy_image(images[j])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            pred, actual = int(self.preds[i]), int(self.targets[i])
            ax.set_title(f"{class_name(self.vocab, pred)}/{class_name(self.vocab, actual)}\n"
                         f"{float(values[j]):.2f}/{float(self.probs[i, pred]):.2f}", fontsize=9)
        fig.suptitle("prediction/actual\nloss/probability", fontsize=10)
        return save_figure(fig, path)


def write_classifier_report(learn, run_dir: str | Path, k: int = 16, dl: Any = None) -> dict[str, Path]:
    """Save `confusion_matrix.png` and `top_losses.png` (the `k` worst validation items) in `run_dir`.

    Returns `{'confusion_matrix': path, 'top_losses': path}` (top losses only for image inputs).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    interp = ClassificationInterpretation.from_learner(learn, dl=dl)
    out = {"confusion_matrix": interp.plot_confusion_matrix(run_dir / "confusion_matrix.png")}
    if is_image_batch(interp.inputs):
        out["top_losses"] = interp.plot_top_losses(k, run_dir / "top_losses.png")
    return out
