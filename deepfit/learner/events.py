"""The training loop's events, the `Callback` base class and the cancel exceptions.

Event order during `Learner.fit` (each `after_cancel_*` runs only when that stage was cancelled):

    before_fit
      before_epoch
        before_train
          before_batch, after_pred, after_loss,
          before_backward, after_backward, before_step, after_step,   # training only
          after_batch
        after_train
        before_validate
          before_batch, after_pred, after_loss, after_batch
        after_validate
      after_epoch
    after_fit
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class LearnerLike(Protocol):
    """What callbacks and helper modules use of a `Learner`, for type hints without importing the loop.

    `deepfit.learner.Learner` satisfies it; this module stays a leaf that anything may import.
    """

    model: Any
    dls: Any
    loss_func: Callable
    opt: Any
    metrics: list
    cbs: list
    path: Path
    training: bool
    resuming: bool
    epoch: int
    n_epoch: int
    iter: int
    n_iter: int
    train_iter: int
    xb: Any
    yb: Any
    pred: Any
    loss: Any

    def add_cb(self, cb: Any) -> Any: ...

    def remove_cb(self, cb: Any) -> None: ...

    def create_opt(self, lr: Any = None) -> Any: ...

    def fit(self, n_epoch: int, lr: Any = None, cbs: Any = None, reset_opt: bool = False,
            resume: Any = None) -> None: ...


EVENTS: tuple[str, ...] = (
    "before_fit", "before_epoch", "before_train", "before_batch", "after_pred", "after_loss",
    "before_backward", "after_backward", "before_step", "after_step", "after_batch",
    "after_train", "before_validate", "after_validate", "after_epoch", "after_fit",
    "after_cancel_fit", "after_cancel_epoch", "after_cancel_train", "after_cancel_validate",
    "after_cancel_batch", "after_cancel_backward", "after_cancel_step",
)


class CancelFit(Exception):
    """Raise in a callback to stop `fit`; `after_cancel_fit` and `after_fit` still run."""


class CancelEpoch(Exception):
    """Skip the rest of the current epoch; `after_epoch` still runs."""


class CancelTrain(Exception):
    """Skip the rest of the training phase of this epoch; `after_train` still runs."""


class CancelValidate(Exception):
    """Skip the rest of the validation phase; `after_validate` still runs."""


class CancelBatch(Exception):
    """Skip the rest of the current batch; `after_batch` still runs."""


class CancelBackward(Exception):
    """Skip `loss.backward()` for this batch."""


class CancelStep(Exception):
    """Skip the optimizer step (and the `zero_grad` after it) for this batch."""


CANCEL_EXCEPTIONS = (CancelFit, CancelEpoch, CancelTrain, CancelValidate, CancelBatch, CancelBackward,
                     CancelStep)


def _snake(name: str) -> str:
    name = re.sub(r"Callback$", "", name) or name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Callback:
    """Base class: subclass it and define methods named after events (`before_fit`, `after_batch`...).

    `order` sorts callbacks (lower runs first). `learn` is set when the callback is added to a
    Learner, and the Learner exposes the callback as `learn.<name>` (e.g. `learn.recorder`).
    Set `run_train=False` or `run_valid=False` to skip the callback in that phase.
    """

    order: int = 0
    run_train: bool = True
    run_valid: bool = True
    learn: LearnerLike

    @property
    def name(self) -> str:
        return _snake(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
