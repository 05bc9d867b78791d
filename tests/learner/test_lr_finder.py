import math

import pytest
import torch
from torch import nn

from deepfit.learner import Learner
from deepfit.learner.callbacks.lr_finder import LRFinder, suggest_lrs
from deepfit.learner.callbacks.progress import ProgressCallback
from tests.helpers.data import make_linear_data


def bn_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def make_learner(progress: bool = False, **kw) -> Learner:
    torch.manual_seed(0)
    learn = Learner(bn_model(), make_linear_data(n=128), **kw)
    if not progress:
        learn.remove_cb(ProgressCallback)
    return learn


def test_lr_find_restores_model_optimizer_and_history_exactly(tmp_path, capsys):
    learn = make_learner(path=tmp_path, progress=True)
    learn.fit(1, lr=1e-2)  # the optimizer now has state (Adam moments, steps)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt = learn.opt
    opt_state = {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                 for i, s in enumerate(opt.state.values())}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    losses, values = list(learn.recorder.losses), [list(v) for v in learn.recorder.values]

    capsys.readouterr()
    result = learn.lr_find(num_it=40, plot="plots/lr_find.png")
    assert "train_loss" not in capsys.readouterr().out  # no results table for the sweep

    assert all(torch.equal(weights[k], v) for k, v in learn.model.state_dict().items())  # BN buffers too
    assert learn.opt is opt
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups
    for i, s in enumerate(opt.state.values()):
        for k, v in s.items():
            assert torch.equal(v, opt_state[i][k]) if torch.is_tensor(v) else v == opt_state[i][k]
    assert learn.recorder.losses == losses and learn.recorder.values == values
    assert not hasattr(learn, "lr_finder")
    assert isinstance(learn.progress, ProgressCallback) and learn.progress in learn.cbs
    png = tmp_path / "plots" / "lr_find.png"
    assert result.plot_path == png and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 1e-7 <= result.minimum <= 1 and 1e-7 <= result.steepest <= 10


def test_lr_find_sweeps_geometrically_and_stops_on_divergence():
    learn = make_learner(opt_func=lambda p, lr: torch.optim.SGD(p, lr=lr))
    result = learn.lr_find(start_lr=1e-5, end_lr=1e4, num_it=100)
    n = len(result.lrs)
    assert 5 < n < 100  # stopped early: SGD at lr ~1e3 diverges
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([(1e4 / 1e-5) ** (1 / 99)] * (n - 1))
    finite = [v for v in result.losses if math.isfinite(v)]
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 4 * min(finite)
    assert result.minimum < result.lrs[-1]


def test_lr_find_leaves_next_fit_identical():
    """RNG and data order are restored too: a fit after lr_find equals a fit without it."""
    a = make_learner()
    a.fit(1, lr=1e-2)
    b = make_learner()
    b.lr_find(num_it=10)
    b.fit(1, lr=1e-2)
    assert a.recorder.losses == b.recorder.losses
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))
    assert b.opt is not None


def test_lr_find_without_optimizer_leaves_none_skips_validation_and_ignores_trackers(tmp_path):
    from deepfit.learner import Callback
    from deepfit.learner.callbacks.training import EarlyStopping, SaveBestModel

    class CountValid(Callback):
        n = 0

        def after_batch(self):
            if not self.learn.training:
                CountValid.n += 1

    learn = make_learner(cbs=[EarlyStopping(patience=1), SaveBestModel(fname="x"), CountValid()], path=tmp_path)
    assert learn.opt is None
    result = learn.lr_find(num_it=30)  # four epochs of batches: trackers must not stop or save
    assert len(result.lrs) == 30
    assert learn.opt is None
    assert CountValid.n == 0
    assert not (tmp_path / "models").exists()


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    # a loss falling fastest at lr=1e-3 and lowest at lr=1e-2, then rising
    losses = [2 - math.tanh(2 * (math.log10(lr) + 3)) + max(0.0, math.log10(lr) + 2) ** 2 * 20 for lr in lrs]
    steepest, minimum = suggest_lrs(lrs, losses)
    assert steepest == pytest.approx(1e-3, rel=0.2)
    assert minimum == pytest.approx(1e-3, rel=0.3)
    assert all(math.isnan(v) for v in suggest_lrs([], []))
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        LRFinder(start_lr=1, end_lr=0.1)
