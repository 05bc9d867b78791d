"""Losses and reduction helpers: label-smoothing cross-entropy, `NoneReduce`, `reduce_loss`.

Label smoothing replaces the one-hot target by `(1-eps)` on the true class plus `eps/k` spread
over all `k` classes, so the loss is `(1-eps)·nll + eps·mean_j(-log p_j)`: the same objective as
`nn.CrossEntropyLoss(label_smoothing=eps)`. `NoneReduce` switches any loss to per-item values for
the duration of a `with` block (MixUp mixes per-item losses, then reduces them the loss's own way).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_loss(loss: Tensor, reduction: str = "mean") -> Tensor:
    """Reduce per-item losses the way `reduction` ('mean', 'sum' or 'none') says."""
    _check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class NoneReduce:
    """Context manager giving a per-item version of `loss_func`; the original reduction is restored on exit.

    A loss object with a `reduction` attribute (every `nn.*Loss`, `LabelSmoothingCrossEntropy`) has
    it set to `'none'` inside the block and restored afterwards, even if the block raises. A plain
    function (e.g. `F.cross_entropy`) is wrapped as `partial(loss_func, reduction='none')`.

        with NoneReduce(learn.loss_func) as lf:
            per_item = lf(pred, target)
    """

    def __init__(self, loss_func: Callable[..., Tensor]):
        self.loss_func = loss_func
        self._old: str | None = None

    def __enter__(self) -> Callable[..., Tensor]:
        if hasattr(self.loss_func, "reduction"):
            self._old = self.loss_func.reduction
            self.loss_func.reduction = "none"
            return self.loss_func
        return partial(self.loss_func, reduction="none")

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            self.loss_func.reduction = self._old
            self._old = None


def loss_reduction(loss_func: Any) -> str:
    """The reduction a loss applies by default ('mean' for plain functions)."""
    return getattr(loss_func, "reduction", "mean")


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against smoothed targets: `(1-eps)·nll + eps·mean_j(-log p_j)`.

    Same inputs and result as `nn.CrossEntropyLoss(label_smoothing=eps, reduction=...)`: `output`
    is `(N, C)` or `(N, C, d1, ...)` logits, `target` holds class indices `(N,)` or `(N, d1, ...)`;
    items whose target is `ignore_index` count neither in the loss nor in the mean. Computed in
    float32 whatever the logits' dtype. `eps=0` gives plain cross-entropy.
    `activation` (softmax over classes) lets `get_preds`/`predict` turn outputs into probabilities.
    """

    def __init__(self, eps: float = 0.1, reduction: str = "mean", ignore_index: int = -100):
        super().__init__()
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {eps}")
        self.eps = float(eps)
        self.reduction = _check_reduction(reduction)
        self.ignore_index = ignore_index

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        if output.ndim < 2:
            raise ValueError(f"output must be (N, C) or (N, C, ...) logits, got shape {tuple(output.shape)}")
        if target.shape != output.shape[:1] + output.shape[2:]:
            raise ValueError(f"target shape {tuple(target.shape)} does not match output shape "
                             f"{tuple(output.shape)} (expected {tuple(output.shape[:1] + output.shape[2:])})")
        _check_reduction(self.reduction)
        log_p = F.log_softmax(output.float(), dim=1)
        keep = target != self.ignore_index
        safe_target = torch.where(keep, target, torch.zeros_like(target))
        nll = -log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1)
        smooth = -log_p.mean(dim=1)
        loss = torch.lerp(nll, smooth, self.eps) * keep
        if self.reduction == "mean":
            return loss.sum() / keep.sum()
        return reduce_loss(loss, self.reduction)

    def activation(self, x: Tensor) -> Tensor:
        """Probabilities from logits (softmax over the class dimension)."""
        return torch.softmax(x.float(), dim=1 if x.ndim > 1 else 0)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"


class BCEWithLogitsFlat(nn.Module):
    """Binary cross-entropy on logits for multi-label and single-output binary classifiers.

    `target` is multi-hot `(N, C)` (several labels per item; same shape as `output`), or, for a
    single-output binary classifier (`output` `(N,)` or `(N, 1)`), the usual integer labels 0/1 `(N,)`.
    `activation` (a sigmoid) turns outputs into per-label probabilities; `decodes` keeps every label whose
    probability is above `thresh`. Computed in float32 whatever the logits' dtype.
    """

    def __init__(self, thresh: float = 0.5, pos_weight: Tensor | None = None, reduction: str = "mean"):
        super().__init__()
        if not 0.0 < thresh < 1.0:
            raise ValueError(f"thresh must be in (0, 1), got {thresh}")
        self.thresh = float(thresh)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight).float())

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        if target.shape != output.shape:
            single = output.ndim == 2 and output.shape[1] == 1
            if single and target.shape == output.shape[:1]:
                target = target.unsqueeze(1)
            else:
                raise ValueError(f"target shape {tuple(target.shape)} does not match output shape "
                                 f"{tuple(output.shape)}: give multi-hot targets of the output's shape, or 0/1 "
                                 f"labels (N,) for a single-output (N, 1) model")
        if not target.is_floating_point() and not bool(((target == 0) | (target == 1)).all()):
            raise ValueError("BCEWithLogitsFlat: integer targets must be 0 or 1 (for more classes use "
                             "cross-entropy, or multi-hot targets)")
        return F.binary_cross_entropy_with_logits(output.float(), target.float(), pos_weight=self.pos_weight,
                                                  reduction=_check_reduction(self.reduction))

    def activation(self, x: Tensor) -> Tensor:
        """Per-label probabilities (sigmoid)."""
        return torch.sigmoid(x.float())

    def decodes(self, probs: Tensor) -> Tensor:
        """Boolean decisions: each label whose probability is above `thresh`."""
        return probs > self.thresh

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}, reduction={self.reduction!r}"


def _softmax(x: Tensor) -> Tensor:
    return torch.softmax(x.float(), dim=-1)


def _exp(x: Tensor) -> Tensor:
    return torch.exp(x.float())


def resolve_activation(loss_func: Any) -> Callable[[Tensor], Tensor] | None:
    """The function that turns model outputs into probabilities for this loss, if known.

    A loss's own `activation` method wins; cross-entropy losses get a softmax, `BCEWithLogitsLoss` a sigmoid,
    and `NLLLoss` (whose model already ends in `log_softmax`, as in the fast.ai lesson-7 models) an `exp`.
    """
    act = getattr(loss_func, "activation", None)
    if callable(act):
        return act
    if isinstance(loss_func, nn.CrossEntropyLoss) or getattr(loss_func, "is_cross_entropy", False):
        return _softmax
    if isinstance(loss_func, nn.BCEWithLogitsLoss):
        return torch.sigmoid
    if isinstance(loss_func, nn.NLLLoss) or loss_func is F.nll_loss:
        return _exp
    return None
