"""Callbacks for text models: state resets, applied hyper-parameters per stage, a divergence warning."""

from __future__ import annotations

import math
import warnings

from torch import Tensor, nn

from ..learner.events import Callback


def reset_model_state(model: nn.Module) -> int:
    """Call `reset()` on every sub-module (the model included) that has one; returns how many were reset."""
    n = 0
    for m in model.modules():
        reset = getattr(m, "reset", None)
        if callable(reset):
            reset()
            n += 1
    return n


class RNNResetCallback(Callback):
    """Resets the hidden state of stateful models before each training and each validation phase, so an epoch
    never starts from the state left by a different stream (reachable as `learn.rnn_reset`)."""

    order = -5

    def before_train(self) -> None:
        reset_model_state(self.learn.model)

    def before_validate(self) -> None:
        reset_model_state(self.learn.model)


class DivergenceWarning(Callback):
    """Warns (once per `fit`) when the validation loss diverges: not finite, or above `ratio` times a reference.

    The reference is the lower of the best validation loss seen so far in this `fit` and the loss of a uniform
    guess (`log(n_outputs)`, from the model's last output dimension). A model that overfits does not trigger it
    (its validation loss stays near its best); a learning rate that blows up does. The message goes to
    `warnings.warn` and to `learn.logger`.
    """

    order = 60  # after the Recorder has written the epoch's row

    def __init__(self, ratio: float = 3.0):
        if ratio <= 1:
            raise ValueError(f"DivergenceWarning: ratio must be > 1, got {ratio}")
        self.ratio = ratio
        self.before_fit()  # `validate()` outside `fit` runs batches too

    def before_fit(self) -> None:
        self.best = math.inf
        self.n_out: int | None = None
        self.warned = False
        self.n_valid_batches = 0

    def before_validate(self) -> None:
        self.n_valid_batches = 0

    def after_batch(self) -> None:
        if self.learn.training:
            return
        self.n_valid_batches += 1
        pred = getattr(self.learn, "pred", None)
        if self.n_out is None and isinstance(pred, Tensor) and pred.ndim >= 2:
            self.n_out = pred.shape[-1]

    def after_epoch(self) -> None:
        rec = getattr(self.learn, "recorder", None)
        if rec is None or not rec.last_valid or not getattr(self, "n_valid_batches", 0):
            return  # no validation ran this epoch (lr_find cancels it)
        loss = float(rec.last_valid[0])
        chance = math.log(self.n_out) if self.n_out and self.n_out > 1 else math.inf
        ref = min(self.best, chance)
        if not self.warned and (not math.isfinite(loss) or (math.isfinite(ref) and loss > self.ratio * ref)):
            self.warned = True
            lr = rec.lrs[-1] if getattr(rec, "lrs", None) else math.nan
            msg = (f"validation loss diverged: {loss:.3g} at epoch {self.learn.epoch} (best so far {self.best:.3g}, "
                   f"uniform guess {chance:.3g}); the learning rate (last group's now {lr:.3g}) is probably too "
                   f"high: try a lower --lr / lr")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            self.learn.logger(f"warning: {msg}")
        if math.isfinite(loss):
            self.best = min(self.best, loss)
