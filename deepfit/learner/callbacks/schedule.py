"""Hyper-parameter scheduling: the `ParamScheduler` callback and the one-cycle, flat-cos and SGDR recipes.

Every schedule is a pure function of `learn.pct_train` (set by `TrainEvalCallback` from the epoch and
iteration), so a run resumed at a given epoch and iteration continues the schedule exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..events import Callback
from ..optim import LR, lr_for_groups, n_layer_groups, set_hyper
from ..schedules import Schedule, flat_cos_lr, one_cycle_lr, one_cycle_mom, sgdr_cycle_epochs, sgdr_lr

if TYPE_CHECKING:
    from ..events import LearnerLike

Scheds = Schedule | Sequence[Schedule]


class ParamScheduler(Callback):
    """Sets hyper-parameters before every training batch from schedules of the training position.

    `scheds` maps a hyper-parameter name (`lr`, `mom`, `sqr_mom`, `wd`, or any parameter-group key;
    see `optim.set_hyper`) to one schedule for every layer group or a list with one per layer group.
    """

    order = 1  # after TrainEvalCallback has set pct_train for this batch
    run_valid = False

    def __init__(self, scheds: dict[str, Scheds]):
        if not scheds:
            raise ValueError("ParamScheduler needs at least one schedule")
        self.scheds = {name: (list(s) if isinstance(s, (list, tuple)) else s) for name, s in scheds.items()}

    def before_fit(self) -> None:
        n = n_layer_groups(self.learn.opt)
        for name, s in self.scheds.items():
            if isinstance(s, list) and len(s) != n:
                raise ValueError(f"ParamScheduler: {len(s)} schedules for {name!r} but the optimizer has "
                                 f"{n} layer groups")
        self._apply(0.0)

    def values_at(self, pos: float) -> dict[str, float | list[float]]:
        """The scheduled values at training position `pos` (in [0, 1])."""
        return {name: ([f(pos) for f in s] if isinstance(s, list) else s(pos)) for name, s in self.scheds.items()}

    def _apply(self, pos: float) -> None:
        opt = self.learn.opt
        for name, value in self.values_at(pos).items():
            set_hyper(opt, name, value)

    def before_batch(self) -> None:
        if self.learn.training:
            self._apply(self.learn.pct_train)

    def __repr__(self) -> str:
        return f"ParamScheduler({', '.join(self.scheds)})"


class SaveAtCycleEnd(Callback):
    """Saves the model's `state_dict` when each cycle ends (after the epochs in `cycle_ends`).

    Files: `<learn.path>/models/<name>_cycle<i>.pth`, `i` counting cycles from 0.
    """

    order = 66  # after the recorder and the progress line of the epoch

    def __init__(self, cycle_ends: Sequence[int], name: str):
        self.cycle_ends = list(cycle_ends)
        self.fname = name
        self.saved: list[Path] = []

    def after_epoch(self) -> None:
        done = self.learn.epoch + 1
        if done in self.cycle_ends:
            i = self.cycle_ends.index(done)
            path = Path(self.learn.path) / "models" / f"{self.fname}_cycle{i}.pth"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.learn.model.state_dict(), path)
            self.saved.append(path)


# ---------------------------------------------------------------------------------------------- recipes
def _prepare(learn: LearnerLike, wd: float | None, reset_opt: bool) -> int:
    if reset_opt or learn.opt is None:
        learn.create_opt()
    if wd is not None:
        set_hyper(learn.opt, "wd", wd)
    return n_layer_groups(learn.opt)


def _per_group(make: Callable[[float], Schedule], lr: LR, n: int) -> list[Schedule]:
    return [make(v) for v in lr_for_groups(lr, n)]


def fit_one_cycle(learn: LearnerLike, n_epoch: int, lr_max: LR | None = None, div: float = 25.0,
                  div_final: float = 1e5, pct_start: float = 0.25, wd: float | None = None,
                  moms: Sequence[float] | None = (0.95, 0.85, 0.95), cbs: Iterable[Callback] | None = None,
                  reset_opt: bool = False, **fit_kwargs) -> None:
    """Train with the 1cycle policy: lr warms up then anneals (cosine), momentum does the opposite.

    `lr_max` may be a `slice` (one peak per layer group); `wd` sets the weight decay first;
    `fit_kwargs` go to `learn.fit` (e.g. `resume=`).
    """
    n = _prepare(learn, wd, reset_opt)
    lr_max = learn.lr if lr_max is None else lr_max
    scheds: dict[str, Scheds] = {
        "lr": _per_group(lambda v: one_cycle_lr(v, div=div, div_final=div_final, pct_start=pct_start), lr_max, n)}
    if moms is not None:
        scheds["mom"] = one_cycle_mom(moms, pct_start)
    learn.fit(n_epoch, cbs=[ParamScheduler(scheds), *(cbs or ())], **fit_kwargs)


def fit_flat_cos(learn: LearnerLike, n_epoch: int, lr: LR | None = None, div_final: float = 1e5,
                 pct_start: float = 0.75, wd: float | None = None, cbs: Iterable[Callback] | None = None,
                 reset_opt: bool = False, **fit_kwargs) -> None:
    """Train at a flat `lr` for `pct_start` of the epochs, then anneal it (cosine) to `lr/div_final`."""
    n = _prepare(learn, wd, reset_opt)
    lr = learn.lr if lr is None else lr
    scheds = {"lr": _per_group(lambda v: flat_cos_lr(v, pct_start=pct_start, div_final=div_final), lr, n)}
    learn.fit(n_epoch, cbs=[ParamScheduler(scheds), *(cbs or ())], **fit_kwargs)


def fit_sgdr(learn: LearnerLike, n_cycles: int, cycle_len: int, lr_max: LR | None = None, cycle_mult: int = 1,
             lr_min: float = 0.0, wd: float | None = None, save_name: str | None = None,
             cbs: Iterable[Callback] | None = None, reset_opt: bool = False, **fit_kwargs) -> None:
    """SGDR: `n_cycles` cosine cycles from `lr_max` to `lr_min`, cycle `i` lasting `cycle_len*cycle_mult**i` epochs.

    With `save_name`, the model is saved at the end of each cycle (see `SaveAtCycleEnd`).
    """
    lengths = sgdr_cycle_epochs(n_cycles, cycle_len, cycle_mult)
    n = _prepare(learn, wd, reset_opt)
    lr_max = learn.lr if lr_max is None else lr_max
    scheds = {"lr": _per_group(lambda v: sgdr_lr(v, n_cycles, cycle_len, cycle_mult, lr_min), lr_max, n)}
    extra: list[Callback] = [ParamScheduler(scheds)]
    if save_name is not None:
        ends = [sum(lengths[:i + 1]) for i in range(len(lengths))]
        extra.append(SaveAtCycleEnd(ends, save_name))
    learn.fit(sum(lengths), cbs=[*extra, *(cbs or ())], **fit_kwargs)
