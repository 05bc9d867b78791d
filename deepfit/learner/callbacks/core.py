"""Default callbacks: train/eval switching, device placement, and a predictions gatherer."""

from __future__ import annotations

import torch
from torch import Tensor

from ..events import Callback
from ..freeze import apply_bn_freeze


class TrainEvalCallback(Callback):
    """Puts the model in train mode for training and eval mode for validation; keeps iteration counters.

    While training, the batchnorm layers `learn.bn_freeze` names stay in eval mode (by default those of
    frozen layer groups: see `deepfit.learner.freeze`).
    """

    order = -10

    def before_fit(self) -> None:
        self.learn.train_iter = 0
        self.learn.pct_train = 0.0

    def before_train(self) -> None:
        self.learn.model.train()
        apply_bn_freeze(self.learn)

    def before_batch(self) -> None:
        learn = self.learn
        if learn.training:
            n_iter = max(learn.n_iter, 1)
            learn.pct_train = (learn.epoch + learn.iter / n_iter) / max(learn.n_epoch, 1)

    def after_batch(self) -> None:
        if self.learn.training:
            self.learn.train_iter += 1

    def before_validate(self) -> None:
        self.learn.model.eval()


class DeviceCallback(Callback):
    """Moves the model to the data's device before training or evaluating."""

    order = -20

    def _place(self) -> None:
        device = torch.device(getattr(self.learn.dls, "device", "cpu"))
        param = next(self.learn.model.parameters(), None)
        if param is not None and param.device != device:
            self.learn.model.to(device)

    def before_fit(self) -> None:
        self._place()

    def before_validate(self) -> None:
        self._place()


def loss_per_item(loss_func, pred: Tensor, target: Tensor) -> Tensor:
    """Evaluate `loss_func` without reduction (see `losses.NoneReduce`)."""
    from ..losses import NoneReduce

    with NoneReduce(loss_func) as per_item:
        return per_item(pred, target)


class GatherPreds(Callback):
    """Collects predictions, targets (and optionally inputs and per-item losses) over a pass."""

    order = 100
    run_train = False

    def __init__(self, with_input: bool = False, with_loss: bool = False):
        self.with_input, self.with_loss = with_input, with_loss

    def before_validate(self) -> None:
        self._preds, self._targs, self._inputs, self._losses = [], [], [], []

    def after_batch(self) -> None:
        learn = self.learn
        self._preds.append(learn.pred.detach())
        self._targs.append(learn.yb.detach() if isinstance(learn.yb, Tensor) else learn.yb)
        if self.with_input:
            self._inputs.append(learn.xb.detach() if isinstance(learn.xb, Tensor) else learn.xb)
        if self.with_loss:
            self._losses.append(loss_per_item(learn.loss_func, learn.pred, learn.yb).detach())

    def after_validate(self) -> None:
        self.preds = _concat(self._preds)
        self.targets = _concat(self._targs)
        self.inputs = _concat(self._inputs)
        self.losses = _concat(self._losses)


def _concat(xs: list) -> Tensor | list:
    """Concatenate batches on the CPU; batches of sequences whose lengths differ (a language model's
    last, shorter batch) are flattened to one row per token first."""
    if not xs or not isinstance(xs[0], Tensor):
        return xs
    if len({tuple(x.shape[1:]) for x in xs}) > 1 and all(x.ndim >= 2 for x in xs):
        xs = [x.reshape(-1, *x.shape[2:]) for x in xs]
    return torch.cat([x.cpu() for x in xs])
