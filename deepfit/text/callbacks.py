"""Callbacks for recurrent models."""

from __future__ import annotations

from torch import nn

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
