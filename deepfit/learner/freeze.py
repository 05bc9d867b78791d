"""Freezing layer groups for transfer learning, and `BnFreeze` for batchnorm running statistics.

A frozen parameter has `requires_grad=False`: it gets no gradient, so no optimizer moves it and no
weight decay touches it (deepfit's optimizers and torch's skip parameters without a gradient).
With `train_bn=True` (the default) the affine weights of batchnorm layers stay trainable even in
frozen groups: a pretrained body's normalization must adapt to the new data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .events import Callback
from .optim import BN_TYPES, bn_param_ids

if TYPE_CHECKING:
    from .events import LearnerLike


def freeze_to(learn: LearnerLike, n: int, train_bn: bool | None = None) -> int:
    """Freeze the layer groups before index `n` (negative counts from the end) and unfreeze the rest.

    Returns the index of the first trainable group, also kept as `learn.frozen_idx`.
    """
    groups = learn.parameter_groups()
    n_groups = len(groups)
    idx = n if n >= 0 else n_groups + n
    if not 0 <= idx < n_groups:
        raise ValueError(f"freeze_to({n}): the model has {n_groups} layer groups; "
                         f"n must be in [{-n_groups}, {n_groups - 1}] so that at least one group trains")
    train_bn = getattr(learn, "train_bn", True) if train_bn is None else train_bn
    keep = bn_param_ids(learn.model) if train_bn else set()
    for i, params in enumerate(groups):
        for p in params:
            trainable = i >= idx or id(p) in keep
            p.requires_grad_(trainable)
            if not trainable:
                p.grad = None
    learn.frozen_idx = idx
    return idx


def freeze(learn: LearnerLike, train_bn: bool | None = None) -> int:
    """Freeze every layer group but the last."""
    return freeze_to(learn, -1, train_bn=train_bn)


def unfreeze(learn: LearnerLike) -> int:
    """Make every parameter trainable again."""
    return freeze_to(learn, 0)


def frozen_bn_layers(learn: LearnerLike) -> list[nn.Module]:
    """Batchnorm layers whose affine parameters lie in frozen layer groups (before `learn.frozen_idx`)."""
    idx = getattr(learn, "frozen_idx", 0)
    if idx <= 0:
        return []
    frozen = {id(p) for params in learn.parameter_groups()[:idx] for p in params}
    return [m for m in learn.model.modules()
            if isinstance(m, BN_TYPES) and any(id(p) in frozen for p in m.parameters(recurse=False))]


class BnFreeze(Callback):
    """Keeps the running statistics of batchnorm layers fixed during training (puts them in eval mode).

    By default only the batchnorm layers of frozen layer groups (see `freeze_to`); with `all=True`,
    every batchnorm layer of the model. Their affine weights still train when they require grad.
    """

    order = -9  # right after TrainEvalCallback puts the model in train mode

    def __init__(self, all: bool = False):
        self.all = all

    def before_train(self) -> None:
        model = self.learn.model
        layers = ([m for m in model.modules() if isinstance(m, BN_TYPES)] if self.all
                  else frozen_bn_layers(self.learn))
        for m in layers:
            m.eval()
