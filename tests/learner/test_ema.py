"""EMA: the average's arithmetic, validation on the average, the model it leaves, exact resume, and that it helps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Callback, Learner
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.callbacks.ema import EMA
from deepfit.learner.checkpoint import CheckpointCallback
from deepfit.learner.events import CancelFit


def regression_learner(path, seed: int = 0, lr: float = 0.05, cbs=(), n: int = 256, noise: float = 1.0) -> Learner:
    """Linear regression with noisy targets and plain SGD at a constant rate: the weights jitter around the optimum,
    which is what an average smooths out."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(8, 1, generator=g)
    x = torch.randn(n + 512, 8, generator=g)
    y = x @ w_true + noise * torch.randn(n + 512, 1, generator=g)
    valid_y = x[n:] @ w_true  # noiseless: the validation loss measures the distance to the optimum
    dls = DataLoaders(TensorLoader(x[:n], y[:n], bs=8, shuffle=True, seed=seed, device="cpu"),
                      TensorLoader(x[n:], valid_y, bs=256, device="cpu"), device="cpu")
    learn = Learner(nn.Linear(8, 1), dls, loss_func=nn.MSELoss(), lr=lr, path=path, cbs=list(cbs),
                    opt_func=lambda params, lr: torch.optim.SGD(params, lr=lr))
    learn.remove_cb(ProgressCallback)
    return learn


class WeightLog(Callback):
    """The raw weights after every optimizer step (before EMA's update: lower order)."""

    order = 0

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def after_step(self) -> None:
        self.steps.append({k: v.detach().clone() for k, v in self.learn.model.state_dict().items()})


def test_average_follows_the_formula_with_warmup(tmp_path):
    log = WeightLog()
    ema = EMA(decay=0.9)
    learn = regression_learner(tmp_path, cbs=[log, ema])
    learn.fit(1, lr=0.05)
    expected = None
    for n, step in enumerate(log.steps):
        d = min(0.9, (1 + n) / (10 + n))
        if expected is None:  # the shadow starts from the weights after the first step
            expected = {k: v.clone() for k, v in step.items()}
        else:
            expected = {k: d * expected[k] + (1 - d) * step[k] for k in step}
    assert ema.n_updates == len(log.steps) == 32
    for k, v in learn.model.state_dict().items():  # after fit the model holds the average
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(learn.model.weight, log.steps[-1]["weight"])


def test_validation_uses_the_average_and_training_the_raw_weights(tmp_path):
    plain = regression_learner(tmp_path / "plain", lr=0.05)
    plain.fit(3)
    ema = EMA(decay=0.95)
    averaged = regression_learner(tmp_path / "ema", lr=0.05, cbs=[ema])
    averaged.fit(3)
    train_plain = [r["train_loss"] for r in plain.recorder.table()]
    train_ema = [r["train_loss"] for r in averaged.recorder.table()]
    assert train_plain == train_ema  # the average never touches the trajectory
    valid_plain = [r["valid_loss"] for r in plain.recorder.table()]
    valid_ema = [r["valid_loss"] for r in averaged.recorder.table()]
    assert valid_plain != valid_ema
    # the last validation ran on the weights the model now holds
    assert averaged.validate()[0] == pytest.approx(valid_ema[-1], rel=1e-6)


def test_the_average_beats_noisy_weights(tmp_path):
    """Constant-rate SGD on noisy targets: the averaged weights are closer to the optimum than the last ones."""
    plain = regression_learner(tmp_path / "plain", lr=0.1)
    plain.fit(4)
    averaged = regression_learner(tmp_path / "ema", lr=0.1, cbs=[EMA(decay=0.98)])
    averaged.fit(4)
    raw_loss = plain.recorder.table()[-1]["valid_loss"]
    ema_loss = averaged.recorder.table()[-1]["valid_loss"]
    assert ema_loss < 0.5 * raw_loss, (ema_loss, raw_loss)


class StopAfter(Callback):
    def __init__(self, n_batches: int):
        self.n_batches, self.seen = n_batches, 0

    def after_batch(self) -> None:
        if self.learn.training:
            self.seen += 1
            if self.seen == self.n_batches:
                raise CancelFit


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    full = regression_learner(tmp_path / "full", cbs=[EMA(decay=0.9)])
    full.fit(3)
    interrupted = regression_learner(tmp_path / "run", cbs=[EMA(decay=0.9)])
    interrupted.fit(3, cbs=[CheckpointCallback(every=5, keep_last=2), StopAfter(47)])  # mid second epoch
    resumed = regression_learner(tmp_path / "run", seed=0, cbs=[EMA(decay=0.9)])
    resumed.fit(3, resume="last")
    for k, v in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_checkpoints_hold_the_raw_weights(tmp_path):
    log = WeightLog()
    learn = regression_learner(tmp_path, cbs=[EMA(decay=0.9), log])
    learn.fit(2, cbs=[CheckpointCallback(every="epoch", keep_last=2)])
    first = torch.load(tmp_path / "models" / "checkpoint_000000.pt", weights_only=True)
    raw_after_epoch_1 = log.steps[31]
    assert all(torch.equal(first["model"][k], v) for k, v in raw_after_epoch_1.items())
    assert first["callbacks"]["ema"]["n_updates"] == 32


def test_batchnorm_statistics_are_averaged_too(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4) * 3 + 2, torch.randint(0, 2, (64,))
    dls = DataLoaders(TensorLoader(x, y, bs=16, shuffle=True, seed=0, device="cpu"),
                      TensorLoader(x, y, bs=64, device="cpu"), device="cpu")
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
    ema = EMA(decay=0.9)
    learn = Learner(model, dls, lr=1e-2, cbs=[ema])
    learn.remove_cb(ProgressCallback)
    learn.fit(1)
    assert "0.running_mean" in ema.shadow and "0.num_batches_tracked" not in ema.shadow
    assert torch.equal(model[0].running_mean, ema.shadow["0.running_mean"])
    assert model[0].running_mean.abs().sum() > 0


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 2.0])
def test_bad_decay_is_a_clear_error(decay):
    with pytest.raises(ValueError, match="decay must be between 0 and 1"):
        EMA(decay=decay)


def test_lr_find_neither_averages_nor_changes_the_model(tmp_path):
    ema = EMA(decay=0.9)
    learn = regression_learner(tmp_path, cbs=[ema])
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.lr_find(num_it=10, progress=False)
    assert ema.n_updates == 0 and ema.shadow is None
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    learn.fit(1)
    assert ema.n_updates == 32
