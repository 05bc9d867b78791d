"""`DebugCallback`: look at the learner at one named event (lesson 12's `DebugCallback`).

    def show_groups(learn):                      # the notes' _print_det
        print(len(learn.opt.param_groups), [g["lr"] for g in learn.opt.param_groups])
        raise CancelFit()                        # stop right there (the notes' CancelTrainException)

    learn.fit(1, cbs=[DebugCallback("after_batch", show_groups)])
    learn.fit(1, cbs=[DebugCallback("after_loss")])              # print a line at every after_loss
    learn.fit(1, cbs=[DebugCallback("before_step", brk=True)])   # stop in the debugger (the notes' set_trace)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..events import EVENTS, Callback, LearnerLike


def _shape(x: Any) -> str:
    if isinstance(x, Tensor):
        return "×".join(str(s) for s in x.shape) or "scalar"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(_shape(o) for o in x) + ")"
    return type(x).__name__


def describe(learn: LearnerLike, event: str) -> str:
    """One line on where the learner is: the event, phase, epoch, batch, batch shapes and loss."""
    phase = "train" if learn.training else "valid"
    parts = [f"{event}: {phase} epoch {learn.epoch} batch {learn.iter}/{learn.n_iter}",
             f"xb {_shape(learn.xb)}", f"yb {_shape(learn.yb)}"]
    if event not in ("before_batch", "after_pred") and isinstance(learn.loss, Tensor):
        parts.append(f"loss {float(learn.loss.detach().float()):.4f}")
    return ", ".join(parts)


class DebugCallback(Callback):
    """At the event named `event`, call `f(learn)`; without `f`, print a line describing the learner
    (`describe`); with `brk=True`, enter the debugger (`breakpoint()`) after that.

    `f` may raise `CancelBatch`, `CancelTrain`, `CancelFit`... to stop the loop there. `event` is one of
    `deepfit.learner.events.EVENTS`. Runs after every other callback (`order = 999`), so it sees their work.
    """

    order = 999

    def __init__(self, event: str, f: Callable[[LearnerLike], Any] | None = None, brk: bool = False):
        if event not in EVENTS:
            raise ValueError(f"DebugCallback: unknown event {event!r}; events are: {', '.join(EVENTS)}")
        self.event, self.f, self.brk = event, f, brk
        self.calls = 0
        # The Learner looks handlers up by event name, so the one event asked for gets this instance's handler.
        setattr(self, event, self._at_event)

    def _at_event(self) -> None:
        self.calls += 1
        if self.f is not None:
            self.f(self.learn)
        elif not self.brk:
            getattr(self.learn, "logger", print)(describe(self.learn, self.event))
        if self.brk:
            breakpoint()  # noqa: T100  (asked for: brk=True)

    def __repr__(self) -> str:
        return f"DebugCallback({self.event!r}{', f' if self.f else ''}{', brk=True' if self.brk else ''})"
