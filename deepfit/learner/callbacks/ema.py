"""Exponential moving average of the weights (Polyak averaging), validated and kept in place of the raw weights.

After every optimizer step the callback moves a shadow copy of the model's floating-point state (parameters and
BatchNorm running statistics) towards the live one: `shadow += (1 - d) * (live - shadow)`. Early on `d` is
`min(decay, (1 + n) / (10 + n))` after `n` updates, so the average is not dominated by the random initial weights.

During `fit`, each validation runs on the averaged weights, and so do the callbacks that read the model after it in
the epoch (the best-model savers, order below 85); the raw weights come back before the checkpoint (order 90), so a
checkpoint holds the raw weights plus this callback's `state_dict()` and resumes exactly. After the last epoch the
model keeps the averaged weights: exports, `get_preds` and later `validate` calls use them. A second `fit` starts a
new average from the weights it starts with. `lr_find` leaves it alone.

The average pays off when the weights are noisy: mid-schedule, or with a schedule that does not anneal to zero.
At the end of a full one-cycle schedule it gives about the same accuracy as the raw weights (measured on
Fashion-MNIST; see the README's recipe search).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...distributed import unwrap_model
from ..events import Callback


class EMA(Callback):
    """Keeps, validates and finally installs an exponential moving average of the weights (see the module doc)."""

    order = 85  # validation and the savers see the average; the checkpoint (90) sees the raw weights

    def __init__(self, decay: float = 0.99, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA: decay must be between 0 and 1 (exclusive), got {decay}")
        self.decay, self.warmup = float(decay), warmup
        self.shadow: dict[str, Tensor] | None = None
        self.n_updates = 0
        self._raw: dict[str, Tensor] | None = None  # the raw weights while the average is swapped in
        self._in_fit = False
        self._pairs: tuple[list[Tensor], list[Tensor]] | None = None  # (shadow, live) tensors, found once per fit

    # ------------------------------------------------------------------ the average
    def _live(self) -> dict[str, Tensor]:
        """The model's floating-point state entries (they share storage with the model)."""
        state = unwrap_model(self.learn.model).state_dict()
        return {k: v for k, v in state.items() if v.is_floating_point()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.n_updates) / (10.0 + self.n_updates))

    def _shadow_and_live(self) -> tuple[list[Tensor], list[Tensor]]:
        """The shadow tensors and the model's, in the same order: looked up at the first step of a fit, not per step
        (the model's entries share storage with its parameters and buffers, which are updated in place)."""
        if self._pairs is None:
            live = self._live()
            if self.shadow is None or self.shadow.keys() != live.keys():
                self.shadow = {k: v.detach().clone() for k, v in live.items()}
            else:
                self.shadow = {k: v.to(live[k].device) for k, v in self.shadow.items()}
            self._pairs = ([self.shadow[k] for k in live], [v.detach() for v in live.values()])
        return self._pairs

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step (called after each optimizer step)."""
        shadow, live = self._shadow_and_live()
        torch._foreach_lerp_(shadow, live, 1.0 - self.current_decay())
        self.n_updates += 1

    @torch.no_grad()
    def _swap_in(self) -> None:
        if self.shadow is None or self._raw is not None:
            return
        live = self._live()
        self._raw = {k: v.detach().clone() for k, v in live.items()}
        for k, v in live.items():
            v.copy_(self.shadow[k])

    @torch.no_grad()
    def _swap_out(self) -> None:
        if self._raw is None:
            return
        for k, v in self._live().items():
            v.copy_(self._raw[k])
        self._raw = None

    # ------------------------------------------------------------------ events
    def _finding_lr(self) -> bool:
        return getattr(self.learn, "lr_finder", None) is not None

    def before_fit(self) -> None:
        if self._finding_lr():  # lr_find's sweep is not training: nothing to average
            return
        self._in_fit, self._pairs = True, None
        if not getattr(self.learn, "resuming", False):
            self.shadow, self.n_updates = None, 0

    def after_step(self) -> None:
        if self._in_fit:
            self.update()

    def before_validate(self) -> None:
        if self._in_fit:
            self._swap_in()

    def after_epoch(self) -> None:
        if self._in_fit and self.learn.epoch + 1 < self.learn.n_epoch:
            self._swap_out()

    def after_fit(self) -> None:
        """The model keeps the averaged weights (already in place when the last epoch validated)."""
        if self._in_fit and self._raw is None:
            self._swap_in()
        self._raw, self._pairs = None, None
        self._in_fit = False

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        shadow = None if self.shadow is None else {k: v.detach().cpu().clone() for k, v in self.shadow.items()}
        return {"decay": self.decay, "n_updates": self.n_updates, "shadow": shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pairs = None
        self.n_updates = int(state["n_updates"])
        shadow = state.get("shadow")
        if shadow is None:
            self.shadow = None
            return
        live = self._live() if getattr(self, "learn", None) is not None else {}
        self.shadow = {k: v.to(live[k].device) if k in live else v.clone() for k, v in shadow.items()}

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay})"
