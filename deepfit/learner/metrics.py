"""Metrics: functions `(pred, target) -> tensor` averaged over an epoch, and accumulator classes.

Accumulators keep their running sums as tensors on the model's device, so nothing is copied to
the host until `value` is read once at the end of the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from .learner import Learner


def accuracy(pred: Tensor, target: Tensor, axis: int = -1) -> Tensor:
    """Share of items whose arg-max prediction equals the target."""
    return (pred.argmax(dim=axis) == target).float().mean()


def error_rate(pred: Tensor, target: Tensor, axis: int = -1) -> Tensor:
    """1 - accuracy."""
    return 1 - accuracy(pred, target, axis)


def top_k_accuracy(pred: Tensor, target: Tensor, k: int = 5) -> Tensor:
    """Share of items whose target is among the k highest predictions."""
    topk = pred.topk(k, dim=-1).indices
    return (topk == target.unsqueeze(-1)).any(dim=-1).float().mean()


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

    def accumulate(self, learn: Learner) -> None:
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


class AvgMetric(WeightedAverage):
    """Average of `func(pred, target)` over the epoch, weighted by batch size."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], name: str | None = None):
        self.func = func
        self.name = name or getattr(func, "__name__", type(func).__name__)
        self.reset()

    def accumulate(self, learn: Learner) -> None:
        self.add(self.func(learn.pred, learn.yb), batch_size_of(learn.yb))


class AvgLoss(WeightedAverage):
    """Average of the batch loss, weighted by batch size."""

    name = "loss"

    def __init__(self) -> None:
        self.reset()

    def accumulate(self, learn: Learner) -> None:
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

