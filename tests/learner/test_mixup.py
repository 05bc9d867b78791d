import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepfit.learner import Callback, CancelFit, CancelTrain, Learner, accuracy
from deepfit.learner.callbacks.mixup import CutMix, MixUp, cutmix_box
from deepfit.learner.losses import LabelSmoothingCrossEntropy
from deepfit.models import MLP
from tests.helpers.data import fashion_mnist_available


@pytest.fixture(scope="module")
def fmnist():
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    from deepfit.data import fashion_mnist_loaders

    return fashion_mnist_loaders(bs=64, n_train=1024, n_valid=512, seed=0, device="cpu")


class Probe(Callback):
    """Records the batch before (order 5) or after (order 20) MixUp, in training and validation."""

    def __init__(self, order: int):
        self.order = order
        self.train_x, self.train_loss, self.valid_x, self.valid_y, self.valid_loss = [], [], [], [], []
        self.plain_valid_loss = []
        self.lams, self.perms, self.preds, self.ys = [], [], [], []

    def before_batch(self):
        xb = self.learn.xb.clone()
        (self.train_x if self.learn.training else self.valid_x).append(xb)
        if not self.learn.training:
            self.valid_y.append(self.learn.yb.clone())

    def after_loss(self):
        learn = self.learn
        if learn.training:
            self.train_loss.append(learn.loss.detach().clone())
            self.preds.append(learn.pred.detach().clone())
            self.ys.append(learn.yb.clone())
            mix = getattr(learn, "mix_up", None) or getattr(learn, "cut_mix", None)
            self.lams.append(mix.lam.clone())
            self.perms.append(mix.perm.clone())
        else:
            self.valid_loss.append(learn.loss.detach().clone())
            self.plain_valid_loss.append(F.cross_entropy(learn.pred, learn.yb).detach())


class Before(Probe):
    def __init__(self):
        super().__init__(5)


class After(Probe):
    def __init__(self):
        super().__init__(20)


class StopTraining(Callback):
    """Ends the training phase after `n` batches (keeps the formula tests short)."""

    order = 30

    def __init__(self, n: int = 4):
        self.n = n

    def after_batch(self):
        if self.learn.training and self.learn.iter + 1 >= self.n:
            raise CancelTrain()


def small_learner(dls, cbs=(), loss_func=None, lr=2e-3):
    torch.manual_seed(0)
    return Learner(MLP(hidden=(64,)), dls, loss_func=loss_func, lr=lr, metrics=accuracy, cbs=list(cbs))


def test_mixed_batch_and_loss_equal_the_formula(fmnist):
    before, after, mix = Before(), After(), MixUp(alpha=0.4, seed=123)
    learn = small_learner(fmnist, [before, after, mix, StopTraining(4)])
    learn.fit(1)
    rng = np.random.default_rng(123)
    assert len(after.train_x) == 4
    for x, mixed, lam, perm, loss, pred, y in zip(before.train_x, after.train_x, after.lams, after.perms,
                                                  after.train_loss, after.preds, after.ys):
        bs = x.shape[0]
        exp_lam = rng.beta(0.4, 0.4, size=bs)
        exp_lam = torch.from_numpy(np.maximum(exp_lam, 1 - exp_lam)).float()
        exp_perm = torch.from_numpy(rng.permutation(bs))
        torch.testing.assert_close(lam, exp_lam)
        assert torch.equal(perm, exp_perm)
        l4 = exp_lam.view(-1, 1, 1, 1)
        torch.testing.assert_close(mixed, l4 * x + (1 - l4) * x[exp_perm])
        exp_loss = (exp_lam * F.cross_entropy(pred, y, reduction="none")
                    + (1 - exp_lam) * F.cross_entropy(pred, y[exp_perm], reduction="none")).mean()
        torch.testing.assert_close(loss, exp_loss)
    assert learn.loss_func.reduction == "mean"


def test_lambda_is_at_least_one_half():
    mix = MixUp(alpha=0.2, seed=0)
    learn = Learner(nn.Identity(), None, default_cbs=False, cbs=[mix])
    mix.before_fit()
    lams = []
    for _ in range(50):
        learn.xb = torch.randn(64, 3)
        mix.before_batch()
        lams.append(mix.lam)
    lams = torch.cat(lams)
    assert lams.min() >= 0.5 and lams.max() <= 1.0
    assert (lams < 0.9).any()  # it does mix


def test_validation_is_untouched(fmnist):
    before, after = Before(), After()
    learn = small_learner(fmnist, [before, after, MixUp(seed=0)])
    learn.fit(1)
    valid_batches = list(fmnist.valid)
    assert len(after.valid_x) == len(valid_batches)
    for x_seen, y_seen, (x, y) in zip(after.valid_x, after.valid_y, valid_batches):
        assert torch.equal(x_seen, x) and torch.equal(y_seen, y)
    for loss, plain in zip(after.valid_loss, after.plain_valid_loss):
        torch.testing.assert_close(loss, plain)
    # validate() and get_preds() outside fit see the plain data too
    preds, targs = learn.get_preds()
    assert torch.equal(targs, torch.cat([y for _, y in valid_batches]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reduction_restored_after_fit_and_respected(fmnist, reduction):
    after = After()
    lf = nn.CrossEntropyLoss(reduction=reduction)
    learn = small_learner(fmnist, [after, MixUp(seed=1), StopTraining(2)], loss_func=lf)
    learn.fit(1)
    assert lf.reduction == reduction and learn.loss_func is lf
    pred, y, lam, perm = after.preds[0], after.ys[0], after.lams[0], after.perms[0]
    per_item = (lam * F.cross_entropy(pred, y, reduction="none")
                + (1 - lam) * F.cross_entropy(pred, y[perm], reduction="none"))
    expected = per_item.sum() if reduction == "sum" else per_item.mean()
    torch.testing.assert_close(after.train_loss[0], expected)


class Raiser(Callback):
    order = 20

    def __init__(self, exc, at: int = 3):
        self.exc, self.at, self.n = exc, at, 0

    def after_loss(self):
        if self.learn.training:
            self.n += 1
            if self.n == self.at:
                raise self.exc("stop")


class FailingLoss(nn.CrossEntropyLoss):
    """Raises when called with reduction='none' on the 5th call: inside MixUp's NoneReduce block."""

    calls = 0

    def forward(self, pred, target):
        if self.reduction == "none":
            FailingLoss.calls += 1
            if FailingLoss.calls == 5:
                raise RuntimeError("loss exploded")
        return super().forward(pred, target)


@pytest.mark.parametrize("exc", [CancelFit, RuntimeError])
def test_reduction_restored_when_fit_is_cancelled_or_raises(fmnist, exc):
    lf = nn.CrossEntropyLoss()
    learn = small_learner(fmnist, [MixUp(seed=0), Raiser(exc)], loss_func=lf)
    if exc is CancelFit:
        learn.fit(1)
    else:
        with pytest.raises(RuntimeError, match="stop"):
            learn.fit(1)
    assert lf.reduction == "mean" and learn.loss_func is lf


def test_reduction_restored_when_the_loss_raises_mid_mix(fmnist):
    lf = FailingLoss()
    learn = small_learner(fmnist, [MixUp(seed=0)], loss_func=lf)
    with pytest.raises(RuntimeError, match="loss exploded"):
        learn.fit(1)
    assert lf.reduction == "mean"


def test_plain_function_loss_and_label_smoothing_work_under_mixup(fmnist):
    for lf in (F.cross_entropy, LabelSmoothingCrossEntropy(0.1)):
        after = After()
        learn = small_learner(fmnist, [after, MixUp(seed=2), StopTraining(2)], loss_func=lf)
        learn.fit(1)
        pred, y, lam, perm = after.preds[0], after.ys[0], after.lams[0], after.perms[0]
        eps = 0.1 if isinstance(lf, LabelSmoothingCrossEntropy) else 0.0
        expected = (lam * F.cross_entropy(pred, y, reduction="none", label_smoothing=eps)
                    + (1 - lam) * F.cross_entropy(pred, y[perm], reduction="none", label_smoothing=eps)).mean()
        torch.testing.assert_close(after.train_loss[0], expected, atol=1e-6, rtol=1e-5)
        if isinstance(lf, LabelSmoothingCrossEntropy):
            assert lf.reduction == "mean"


def test_mixup_training_on_fashion_mnist_still_learns(fmnist):
    learn = small_learner(fmnist, [MixUp(alpha=0.4, seed=0)], loss_func=LabelSmoothingCrossEntropy(), lr=3e-3)
    start_loss, start_acc = learn.validate()
    learn.fit(3)
    loss, acc = learn.validate()
    assert start_acc < 0.25
    assert acc > 0.65 and loss < start_loss


def test_seed_makes_draws_reproducible_and_state_dict_resumes():
    def draws(mix, n):
        out = []
        for _ in range(n):
            mix.learn.xb = torch.zeros(8, 2)
            mix.before_batch()
            out.append(torch.cat([mix.lam, mix.perm.float()]))
        return out

    a, b = MixUp(seed=7), MixUp(seed=7)
    for m in (a, b):
        Learner(nn.Identity(), None, default_cbs=False, cbs=[m])
        m.before_fit()
    first = draws(a, 3)
    assert all(torch.equal(x, y) for x, y in zip(first, draws(b, 3)))
    state = a.state_dict()
    expected = draws(a, 2)
    c = MixUp(seed=99)
    Learner(nn.Identity(), None, default_cbs=False, cbs=[c])
    c.load_state_dict(state)
    c.before_fit()  # a restored generator is not reseeded
    assert all(torch.equal(x, y) for x, y in zip(expected, draws(c, 2)))


def test_mixup_rejects_integer_inputs():
    mix = MixUp(seed=0)
    learn = Learner(nn.Identity(), None, default_cbs=False, cbs=[mix])
    mix.before_fit()
    learn.xb = torch.zeros(4, 10, dtype=torch.long)
    with pytest.raises(TypeError, match="floating-point"):
        mix.before_batch()
    with pytest.raises(ValueError, match="alpha"):
        MixUp(alpha=0)


def test_cutmix_box_area_matches_lambda(fmnist):
    before, after, cut = Before(), After(), CutMix(alpha=1.0, seed=5)
    learn = small_learner(fmnist, [before, after, cut, StopTraining(6)])
    learn.fit(1)
    rng = np.random.default_rng(5)
    h = w = 28
    seen_partial = False
    for x, mixed, lam, perm, loss, pred, y in zip(before.train_x, after.train_x, after.lams, after.perms,
                                                  after.train_loss, after.preds, after.ys):
        bs = x.shape[0]
        raw = float(rng.beta(1.0, 1.0))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        exp_perm = torch.from_numpy(rng.permutation(bs))
        assert torch.equal(perm, exp_perm)
        y1, y2, x1, x2 = cutmix_box(raw, h, w, cy, cx)
        inside = torch.zeros(h, w, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        # pixels inside the box come from the shuffled image, the rest from the original
        assert torch.equal(mixed[..., inside], x[exp_perm][..., inside])
        assert torch.equal(mixed[..., ~inside], x[..., ~inside])
        kept = 1 - inside.float().mean()
        torch.testing.assert_close(lam, torch.full((bs,), float(kept)))
        seen_partial |= 0 < float(kept) < 1
        exp_loss = (kept * F.cross_entropy(pred, y, reduction="none")
                    + (1 - kept) * F.cross_entropy(pred, y[exp_perm], reduction="none")).mean()
        torch.testing.assert_close(loss, exp_loss)
    assert seen_partial
    assert len(after.valid_x) == len(fmnist.valid)


def test_cutmix_box_is_clipped_to_the_image():
    assert cutmix_box(0.0, 28, 28, 0, 0) == (0, 14, 0, 14)
    assert cutmix_box(1.0, 28, 28, 10, 10) == (10, 10, 10, 10)
    y1, y2, x1, x2 = cutmix_box(0.75, 32, 32, 16, 16)
    assert (y2 - y1) * (x2 - x1) == 16 * 16
