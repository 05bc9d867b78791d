import math

import pytest
import torch
from torch import nn

from deepfit.learner import Callback, Learner, accuracy
from deepfit.learner.callbacks.progress import ProgressCallback
from deepfit.learner.callbacks.schedule import ParamScheduler
from deepfit.learner.optim import get_hyper
from deepfit.learner.schedules import (
    SchedCos,
    SchedExp,
    SchedLin,
    SchedNo,
    annealer,
    combine_scheds,
    one_cycle_lr,
    sgdr_cycle_epochs,
)
from deepfit.models import MLP
from tests.helpers.data import make_linear_data, requires_fmnist

N_ITER = 4  # make_linear_data(n=64, bs=16): 4 training batches per epoch


class HyperLog(Callback):
    """Records every layer group's lr and momentum as the optimizer steps."""

    order = 80

    def before_fit(self):
        self.lrs, self.moms, self.pcts = [], [], []

    def before_step(self):
        self.lrs.append(get_hyper(self.learn.opt, "lr"))
        self.moms.append(get_hyper(self.learn.opt, "mom"))
        self.pcts.append(self.learn.pct_train)


def two_group_learner(**kw) -> Learner:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    learn = Learner(model, make_linear_data(), **kw)
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda msg: None
    return learn


def cos_anneal(start, end, pos):
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pos))


def test_annealers():
    assert SchedLin(1, 3)(0.5) == 2
    assert SchedCos(1, 3)(0.0) == 1 and SchedCos(1, 3)(0.5) == pytest.approx(2) and SchedCos(1, 3)(1) == 3
    assert SchedExp(1e-4, 1e-2)(0.5) == pytest.approx(1e-3)
    assert SchedNo(5)(0.7) == 5
    with pytest.raises(ValueError, match="unknown annealing 'sine'"):
        annealer("sine", 0, 1)
    with pytest.raises(ValueError, match="positive"):
        SchedExp(0, 1)


def test_combine_scheds_phases_and_boundaries():
    f = combine_scheds([0.25, 0.75], [SchedLin(0, 1), SchedLin(1, 0)])
    assert f(0) == 0 and f(0.125) == pytest.approx(0.5) and f(0.25) == pytest.approx(1)
    assert f(0.625) == pytest.approx(0.5) and f(1.0) == pytest.approx(0) and f(1.5) == pytest.approx(0)
    # float sums of shares must not shift a restart: 3/7 starts the third phase exactly
    g = combine_scheds([1 / 7, 2 / 7, 4 / 7], [SchedCos(1, 0)] * 3)
    assert g(3 / 7) == 1.0 and g(1 / 7) == 1.0
    with pytest.raises(ValueError, match="sum to 1"):
        combine_scheds([0.5, 0.4], [SchedNo(1), SchedNo(1)])


def test_one_cycle_exact_lr_and_mom_per_iteration():
    learn = two_group_learner()
    log = HyperLog()
    n_epoch, lr_max, div, div_final, pct_start = 3, 1e-2, 25.0, 1e5, 0.25
    learn.fit_one_cycle(n_epoch, slice(lr_max), div=div, div_final=div_final, pct_start=pct_start, cbs=[log])
    total = n_epoch * N_ITER
    assert len(log.lrs) == total
    for t in [0, 1, 2, 3, 5, 8, 11]:
        pct = t / total
        if pct < pct_start:
            p = pct / pct_start
            lr = cos_anneal(lr_max / div, lr_max, p)
            mom = cos_anneal(0.95, 0.85, p)
        else:
            p = (pct - pct_start) / (1 - pct_start)
            lr = cos_anneal(lr_max, lr_max / div_final, p)
            mom = cos_anneal(0.85, 0.95, p)
        assert log.lrs[t] == pytest.approx([lr / 10, lr]), t  # slice(hi): hi/10 for the body
        assert log.moms[t] == pytest.approx([mom, mom]), t
    assert learn.recorder.lrs[3] == pytest.approx(lr_max)  # the peak at pct_start exactly
    assert learn.recorder.moms[3] == pytest.approx(0.85)


def test_sgdr_exact_lr_restarts_and_saves_each_cycle(tmp_path):
    learn = two_group_learner(path=tmp_path)
    lr_max = 0.05
    learn.fit_sgdr(3, 1, lr_max=lr_max, cycle_mult=2, save_name="sgdr")
    lengths = sgdr_cycle_epochs(3, 1, 2)
    assert lengths == [1, 2, 4] and len(learn.recorder.values) == 7
    lrs = learn.recorder.lrs
    assert len(lrs) == 7 * N_ITER
    starts = [0, 1, 3]
    for t, lr in enumerate(lrs):
        epoch = t // N_ITER
        c = max(i for i, s in enumerate(starts) if s <= epoch)
        t_in = t - starts[c] * N_ITER
        want = lr_max / 2 * (1 + math.cos(math.pi * t_in / (lengths[c] * N_ITER)))
        assert lr == pytest.approx(want, abs=1e-12), t
    assert lrs[N_ITER] == lr_max and lrs[3 * N_ITER] == lr_max  # restarts
    saved = sorted(p.name for p in (tmp_path / "models").glob("sgdr_cycle*.pth"))
    assert saved == ["sgdr_cycle0.pth", "sgdr_cycle1.pth", "sgdr_cycle2.pth"]
    last = torch.load(tmp_path / "models" / "sgdr_cycle2.pth", weights_only=True)
    assert all(torch.equal(last[k], v) for k, v in learn.model.state_dict().items())


def test_flat_cos_and_schedules_depend_only_on_position():
    learn = two_group_learner()
    learn.fit_flat_cos(2, lr=1e-2, pct_start=0.5)
    lrs = learn.recorder.lrs
    assert lrs[:N_ITER] == [1e-2] * N_ITER
    assert lrs[N_ITER + 2] == pytest.approx(cos_anneal(1e-2, 1e-7, 0.5))
    # the scheduler is a pure function of pct_train: the same position gives the same values
    sched = ParamScheduler({"lr": one_cycle_lr(1e-2), "mom": SchedLin(0.9, 0.8)})
    assert sched.values_at(0.4) == sched.values_at(0.4)
    assert sched.values_at(0.25)["lr"] == pytest.approx(1e-2)


def test_param_scheduler_checks_group_count_and_sets_wd():
    learn = two_group_learner()
    log = []

    class WdLog(Callback):
        order = 80

        def before_step(self):
            log.append([g["weight_decay"] for g in self.learn.opt.param_groups if g["apply_wd"]])

    learn.fit(1, cbs=[ParamScheduler({"wd": SchedLin(0.1, 0.0)}), WdLog()])
    assert log[0] == pytest.approx([0.1, 0.1]) and log[2] == pytest.approx([0.05, 0.05])
    assert all(g["weight_decay"] == 0 for g in learn.opt.param_groups if not g["apply_wd"])
    with pytest.raises(ValueError, match="3 schedules for 'lr' but the optimizer has 2 layer groups"):
        learn.fit(1, cbs=[ParamScheduler({"lr": [SchedNo(1e-3)] * 3})])


@requires_fmnist
def test_one_cycle_beats_constant_lr_on_fashion_mnist():
    """Same model init, data order, epochs and peak lr: one-cycle ends with lower loss, higher accuracy."""
    from deepfit.data import fashion_mnist_loaders

    dls = fashion_mnist_loaders(bs=64, n_train=3000, n_valid=1000, seed=0, device="cpu")
    results = {}
    for name in ("constant", "one_cycle"):
        torch.manual_seed(0)
        learn = Learner(MLP(hidden=(64,)), dls, metrics=[accuracy])
        learn.remove_cb(ProgressCallback)
        dls.train.set_epoch(0)
        if name == "constant":
            learn.fit(2, lr=1e-2)
        else:
            learn.fit_one_cycle(2, 1e-2)
        results[name] = learn.recorder.values[-1]  # [train_loss, valid_loss, accuracy]
    print(f"\nFashion-MNIST 3000/1000, MLP(784-64-10), Adam, 2 epochs, peak lr 1e-2: "
          f"constant valid_loss={results['constant'][1]:.4f} acc={results['constant'][2]:.4f}; "
          f"one_cycle valid_loss={results['one_cycle'][1]:.4f} acc={results['one_cycle'][2]:.4f}")
    assert results["one_cycle"][1] < results["constant"][1]
    assert results["one_cycle"][2] > results["constant"][2]


def test_one_cycle_resumes_exactly_from_a_mid_epoch_checkpoint(tmp_path):
    """Schedules depend only on the position: a resumed run sees the same rates and ends identical."""
    from deepfit.learner import CancelFit, CheckpointCallback

    full = two_group_learner(path=tmp_path / "full")
    full.fit_one_cycle(3, 1e-2)

    class StopAt(Callback):
        order = 95  # after the checkpoint of this batch

        def after_batch(self):
            if self.learn.training and self.learn.train_iter == 6:
                raise CancelFit()

    cut = two_group_learner(path=tmp_path / "cut")
    cut.fit_one_cycle(3, 1e-2, cbs=[CheckpointCallback(every=3), StopAt()])
    assert len(cut.recorder.lrs) == 6
    resumed = two_group_learner(path=tmp_path / "cut")
    resumed.fit_one_cycle(3, 1e-2, resume="last")
    assert resumed.recorder.lrs == full.recorder.lrs and resumed.recorder.moms == full.recorder.moms
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), resumed.model.parameters()))
