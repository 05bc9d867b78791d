"""Metrics: functions `(pred, target) -> tensor` averaged over an epoch, and accumulator classes.

Accumulators keep their running sums as tensors on the model's device, so nothing is copied to
the host until `value` is read once at the end of the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .events import LearnerLike


def accuracy(pred: Tensor, target: Tensor, axis: int = -1) -> Tensor:
    """Share of items whose arg-max prediction equals the target (class indices: `pred`'s shape without `axis`)."""
    decided = pred.argmax(dim=axis)
    if target.shape != decided.shape:
        hint = (" (multi-hot labels? use accuracy_multi)" if target.shape == pred.shape
                else "")
        raise ValueError(f"accuracy: predictions of shape {list(pred.shape)} need class-index targets of shape "
                         f"{list(decided.shape)}, got {list(target.shape)}{hint}")
    return (decided == target).float().mean()


def error_rate(pred: Tensor, target: Tensor, axis: int = -1) -> Tensor:
    """1 - accuracy."""
    return 1 - accuracy(pred, target, axis)


def top_k_accuracy(pred: Tensor, target: Tensor, k: int = 5) -> Tensor:
    """Share of items whose target is among the k highest predictions."""
    topk = pred.topk(k, dim=-1).indices
    return (topk == target.unsqueeze(-1)).any(dim=-1).float().mean()


# ---------------------------------------------------------------------- multi-label (several labels per item)

def _multi_label_decisions(pred: Tensor, target: Tensor, thresh: float, sigmoid: bool, name: str
                           ) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: predictions {tuple(pred.shape)} and multi-hot targets {tuple(target.shape)} "
                         f"must have the same shape (one column per label)")
    prob = pred.float().sigmoid() if sigmoid else pred.float()
    return prob > thresh, target > 0.5


def accuracy_multi(pred: Tensor, target: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Share of the (item, label) yes/no decisions that are right: label `j` is predicted for item `i` when
    `sigmoid(pred[i, j]) > thresh` (`sigmoid=False` when `pred` already holds probabilities). `target` is
    multi-hot. Use `functools.partial(accuracy_multi, thresh=0.2)` for another threshold."""
    p, t = _multi_label_decisions(pred, target, thresh, sigmoid, "accuracy_multi")
    return (p == t).float().mean()


def fbeta_multi(pred: Tensor, target: Tensor, beta: float = 2.0, thresh: float = 0.5, sigmoid: bool = True,
                zero_division: float = 0.0) -> Tensor:
    """F-beta averaged over items ('samples' average, as scikit-learn's `fbeta_score(average='samples')`): for
    each item, F-beta of its predicted label set against its true set, then the mean over items.

    An item with no true and no predicted label scores `zero_division`. Being a mean over items, it averages
    exactly over batches of any size.
    """
    p, t = _multi_label_decisions(pred, target, thresh, sigmoid, "fbeta_multi")
    b2 = beta * beta
    tp = (p & t).sum(-1).float()
    fp = (p & ~t).sum(-1).float()
    fn = (~p & t).sum(-1).float()
    den = (1 + b2) * tp + b2 * fn + fp
    score = (1 + b2) * tp / den.clamp(min=1e-12)
    return torch.where(den > 0, score, torch.full_like(score, zero_division)).mean()


def f1_multi(pred: Tensor, target: Tensor, thresh: float = 0.5, sigmoid: bool = True,
             zero_division: float = 0.0) -> Tensor:
    """F1 averaged over items (`fbeta_multi` with `beta=1`)."""
    return fbeta_multi(pred, target, beta=1.0, thresh=thresh, sigmoid=sigmoid, zero_division=zero_division)


def batch_size_of(yb) -> int:
    """Number of items in a batch of targets (a tensor, or a tuple whose first item is one)."""
    if isinstance(yb, (tuple, list)):
        yb = yb[0]
    return yb.shape[0] if isinstance(yb, Tensor) and yb.ndim > 0 else 1


class Metric:
    """Accumulates over one validation (or training) pass: `reset`, `accumulate(learn)`, `value`."""

    name: str = "metric"

    def reset(self) -> None:
        raise NotImplementedError

    def accumulate(self, learn: LearnerLike) -> None:
        raise NotImplementedError

    @property
    def value(self) -> float:
        raise NotImplementedError


class WeightedAverage(Metric):
    """Base of the averaging metrics: keeps `total` (a device tensor) and `count`, weighted by batch size."""

    def reset(self) -> None:
        self.total: Tensor | float = 0.0
        self.count = 0

    def add(self, value: Tensor, bs: int) -> None:
        self.total = self.total + value.detach().float() * bs
        self.count += bs

    @property
    def value(self) -> float:
        if self.count == 0:
            return math.nan
        total = self.total.item() if isinstance(self.total, Tensor) else self.total
        return total / self.count


def _func_name(func: Callable) -> str:
    """`func.__name__`; for a `functools.partial`, the wrapped function's name."""
    inner = getattr(func, "func", None)
    if not hasattr(func, "__name__") and inner is not None:
        return _func_name(inner)
    return getattr(func, "__name__", type(func).__name__)


class AvgMetric(WeightedAverage):
    """Average of `func(pred, target)` over the epoch, weighted by batch size."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], name: str | None = None):
        self.func = func
        self.name = name or _func_name(func)
        self.reset()

    def accumulate(self, learn: LearnerLike) -> None:
        self.add(self.func(learn.pred, learn.yb), batch_size_of(learn.yb))


class AvgLoss(WeightedAverage):
    """Average of the batch loss, weighted by batch size."""

    name = "loss"

    def __init__(self) -> None:
        self.reset()

    def accumulate(self, learn: LearnerLike) -> None:
        self.add(learn.loss, batch_size_of(learn.yb))


class Perplexity(AvgLoss):
    """exp of the average cross-entropy loss (for language models)."""

    name = "perplexity"

    @property
    def value(self) -> float:
        return math.exp(super().value)


def as_metric(m: Metric | Callable) -> Metric:
    """Wrap a plain function into an `AvgMetric`; pass `Metric` objects through."""
    return m if isinstance(m, Metric) else AvgMetric(m)

