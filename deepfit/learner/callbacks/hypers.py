"""`AppliedHypers`: the learning rates, momentum and weight decay the optimizer actually applied, per layer group."""

from __future__ import annotations

from ..events import Callback
from ..optim import get_hyper


class AppliedHypers(Callback):
    """Records the hyper-parameters the optimizer actually applied during a `fit`, per layer group.

    After `fit`: `lrs` (the peak learning rate of each layer group), `moms` (`(highest, lowest)` momentum or
    Adam beta1 of the last group) and `wds` (weight decay of each layer group), read from the optimizer after
    every training step (plain Python numbers: no device sync). `fit_ulmfit` attaches one to each stage.
    """

    order = 60

    def before_fit(self) -> None:
        self.lrs: list[float] = []
        self.wds: list[float] = []
        self.moms: tuple[float, float] | None = None

    def after_step(self) -> None:
        opt = self.learn.opt
        lrs, wds, mom = get_hyper(opt, "lr"), get_hyper(opt, "wd"), get_hyper(opt, "mom")[-1]
        self.lrs = lrs if not self.lrs else [max(a, b) for a, b in zip(self.lrs, lrs)]
        self.wds = wds
        self.moms = (mom, mom) if self.moms is None else (max(self.moms[0], mom), min(self.moms[1], mom))
