import pytest
import torch
from torch import nn

from deepfit.learner import Callback, CancelBatch, CancelStep, Learner, accuracy
from deepfit.learner.callbacks import precision
from deepfit.learner.callbacks.precision import MixedPrecision, to_float, unscale_gradients
from deepfit.models import MLP
from tests.helpers.data import fashion_mnist_available


@pytest.fixture(scope="module")
def fmnist():
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    from deepfit.data import fashion_mnist_loaders

    return fashion_mnist_loaders(bs=64, n_train=1024, n_valid=512, seed=0, device="cpu")


@pytest.fixture(scope="module")
def fmnist_tiny():
    """8 training batches of 32 real images: enough to watch the loss scaler step by step."""
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    from deepfit.data import fashion_mnist_loaders

    return fashion_mnist_loaders(bs=32, n_train=256, n_valid=64, seed=0, device="cpu")


def learner(dls, cbs=(), lr=3e-3, hidden=(64,)):
    torch.manual_seed(0)
    learn = Learner(MLP(hidden=hidden), dls, lr=lr, metrics=accuracy, cbs=list(cbs))
    learn.logger = lambda msg: learn.__dict__.setdefault("messages", []).append(msg)
    return learn


class DtypeProbe(Callback):
    """Sees `pred` and `loss` dtypes after MixedPrecision's hooks (order 95) and checks autocast is off."""

    order = 95

    def __init__(self):
        self.pred_dtypes, self.loss_dtypes, self.autocast_on, self.inner_dtypes = set(), set(), set(), set()

    def before_batch(self):
        getattr(self.learn.model, "seen", set()).clear()

    def after_loss(self):
        self.inner_dtypes |= getattr(self.learn.model, "seen", set())
        self.pred_dtypes.add(self.learn.pred.dtype)
        self.loss_dtypes.add(self.learn.loss.dtype)
        self.autocast_on.add(torch.is_autocast_enabled("cpu"))


class InnerDtype(nn.Module):
    """Wraps a model and records the dtype of its raw output (inside autocast)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, set()

    def forward(self, x):
        out = self.inner(x)
        self.seen.add(out.dtype)
        return out


def test_shortcuts_add_replace_and_remove_the_callback(fmnist_tiny):
    learn = learner(fmnist_tiny)
    assert learn.to_fp16() is learn
    assert learn.mixed_precision.requested_dtype == torch.float16
    learn.to_bf16(loss_scale=True)
    assert sum(isinstance(c, MixedPrecision) for c in learn.cbs) == 1
    assert learn.mixed_precision.requested_dtype == torch.bfloat16 and learn.mixed_precision.loss_scale
    learn.to_fp32()
    assert not any(isinstance(c, MixedPrecision) for c in learn.cbs)
    assert not hasattr(learn, "mixed_precision")
    with pytest.raises(ValueError, match="dtype"):
        MixedPrecision(dtype=torch.int8)


def test_default_on_a_cpu_without_fast_bf16_is_fp32_with_a_notice(fmnist_tiny, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    probe = DtypeProbe()
    learn = learner(fmnist_tiny, [MixedPrecision(), probe])
    learn.fit(1)
    assert learn.mixed_precision.dtype == torch.float32 and not learn.mixed_precision.scaling
    notices = [m for m in learn.messages if "MixedPrecision" in m]
    assert len(notices) == 1 and "float32" in notices[0] and "\n" not in notices[0]
    learn.fit(1)
    assert len([m for m in learn.messages if "MixedPrecision" in m]) == 1  # said once
    assert probe.pred_dtypes == {torch.float32}


def test_default_on_a_cpu_with_fast_bf16_is_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.default_dtype(torch.device("cpu")) == torch.bfloat16
    assert precision.default_dtype(torch.device("cuda")) == torch.float16


def test_bf16_fit_on_cpu_runs_in_bf16_and_learns(fmnist):
    probe = DtypeProbe()
    learn = learner(fmnist, [probe])
    learn.model = InnerDtype(learn.model)
    learn.to_bf16()
    start_loss, start_acc = learn.validate()
    learn.fit(2)
    loss, acc = learn.validate()
    assert probe.inner_dtypes == {torch.bfloat16}  # the forward ran under bf16 autocast ...
    assert probe.pred_dtypes == {torch.float32}  # ... its output reached the loss in float32
    assert probe.loss_dtypes == {torch.float32} and probe.autocast_on == {False}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # fp32 master weights
    assert not learn.mixed_precision.scaling  # bf16 needs no loss scale
    assert acc > 0.65 and loss < start_loss and start_acc < 0.25
    assert learn.recorder.losses[-1] < learn.recorder.losses[0]
    # after fit the model is plain again: no autocast outside the Learner's batches
    learn.model.seen.clear()
    learn.model(torch.randn(2, 1, 28, 28))
    assert learn.model.seen == {torch.float32}


class InjectInf(Callback):
    """Puts an inf into one gradient on the given training batches (after backward, before the step)."""

    order = 10

    def __init__(self, at: set[int]):
        self.at = at

    def after_backward(self):
        if self.learn.train_iter in self.at:
            p = next(self.learn.model.parameters())
            p.grad.view(-1)[0] = float("inf")


class StepWatch(Callback):
    """Records, per training batch, the loss scale after the step and whether the weights changed."""

    order = 100

    def __init__(self):
        self.scales, self.changed, self.losses = [], [], []

    def before_batch(self):
        if self.learn.training:
            self._before = [p.detach().clone() for p in self.learn.model.parameters()]

    def after_batch(self):
        if self.learn.training:
            self.scales.append(self.learn.mixed_precision.scaler.get_scale())
            self.changed.append(any(not torch.equal(a, p) for a, p in zip(self._before, self.learn.model.parameters())))
            self.losses.append(float(self.learn.loss.detach()))


def test_loss_scaler_skips_and_halves_on_inf_then_grows_after_the_interval(fmnist_tiny):
    watch = StepWatch()
    mp = MixedPrecision(torch.float16, init_scale=1024.0, growth_interval=2)
    learn = learner(fmnist_tiny, [mp, InjectInf({2, 5}), watch], hidden=())
    learn.fit(1)
    assert mp.scaling and mp.scaler.get_scale() > 0
    # batches 0,1 clean -> x2 after the second; 2 inf -> /2 and skipped; 3,4 clean -> x2; 5 inf -> /2; 6,7 -> x2
    assert watch.scales == [1024.0, 2048.0, 1024.0, 1024.0, 2048.0, 1024.0, 1024.0, 2048.0]
    assert watch.changed == [True, True, False, True, True, False, True, True]
    # the recorded loss is the unscaled one
    assert all(0.1 < v < 5 for v in watch.losses)
    assert learn.recorder.losses == pytest.approx(watch.losses)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())


class ClipLike(Callback):
    """Stands in for a gradient clipper: unscales, then checks the gradients are real (unscaled) ones."""

    order = 80

    def __init__(self):
        self.norms = []

    def before_step(self):
        unscale_gradients(self.learn)
        unscale_gradients(self.learn)  # idempotent within a step
        self.norms.append(float(torch.cat([p.grad.flatten() for p in self.learn.model.parameters()]).norm()))


class AccumulateLike(Callback):
    """Stands in for gradient accumulation: steps every `n`-th batch only."""

    order = 70

    def __init__(self, n: int = 2):
        self.n = n

    def before_step(self):
        if (self.learn.train_iter + 1) % self.n:
            raise CancelStep()


def test_clipping_and_accumulation_contract(fmnist_tiny):
    clip, watch = ClipLike(), StepWatch()
    mp = MixedPrecision(torch.float16, init_scale=2.0**12, growth_interval=2)
    learn = learner(fmnist_tiny, [mp, clip, AccumulateLike(2), watch], hidden=())
    learn.fit(1)
    # 8 batches, a step every 2nd: 4 scaler updates, the scale doubled after 2 clean steps, twice
    assert watch.changed == [False, True] * 4
    assert watch.scales[-1] == 2.0**14
    assert len(clip.norms) == 4
    # unscaled gradient norms of a linear model's mean loss are O(1), not O(4096)
    assert all(0 < n < 50 for n in clip.norms)


def test_unscale_gradients_without_mixed_precision_is_a_no_op(fmnist_tiny):
    clip = ClipLike()
    learn = learner(fmnist_tiny, [clip], hidden=())
    learn.fit(1)
    assert len(clip.norms) == len(fmnist_tiny.train)


class RaiseInForward(nn.Module):
    def __init__(self, inner, at: int):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("forward failed")
        return self.inner(x)


def test_autocast_never_leaks_out_of_a_failed_fit(fmnist_tiny):
    learn = learner(fmnist_tiny)
    learn.model = RaiseInForward(learn.model, at=3)
    learn.to_bf16()
    with pytest.raises(RuntimeError, match="forward failed"):
        learn.fit(1)
    assert not torch.is_autocast_enabled("cpu")
    out = learn.model(torch.randn(2, 1, 28, 28))  # stale hooks stay inert
    assert out.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    learn.model.at = -1
    learn.fit(1)  # and the next fit works
    assert not torch.is_autocast_enabled("cpu")


class CancelSome(Callback):
    order = 95

    def before_batch(self):
        if self.learn.training and self.learn.iter == 1:
            raise CancelBatch()


def test_cancelled_batches_leave_no_autocast_behind(fmnist_tiny):
    learn = learner(fmnist_tiny, [CancelSome()])
    learn.to_bf16()
    learn.fit(1)
    assert not torch.is_autocast_enabled("cpu")


def test_scaler_state_round_trips(fmnist_tiny):
    mp = MixedPrecision(torch.float16, init_scale=256.0, growth_interval=3)
    learn = learner(fmnist_tiny, [mp], hidden=())
    learn.fit(1)
    state = learn.mixed_precision.state_dict()
    assert state["scale"] == learn.mixed_precision.scaler.get_scale()
    fresh = MixedPrecision(torch.float16, init_scale=1.0, growth_interval=3)
    fresh.load_state_dict(state)  # before any fit: applied when the scaler is created
    learn2 = learner(fmnist_tiny, [fresh], hidden=())
    learn2.fit(0)
    assert fresh.scaler.get_scale() == state["scale"]


def test_to_float_casts_nested_low_precision_tensors():
    out = to_float((torch.ones(2, dtype=torch.bfloat16), [torch.ones(1, dtype=torch.float16)],
                    {"a": torch.ones(1, dtype=torch.long)}))
    assert out[0].dtype == torch.float32 and out[1][0].dtype == torch.float32 and out[2]["a"].dtype == torch.long


def test_with_the_real_gradient_clip_and_accumulation(fmnist_tiny):
    from deepfit.learner.callbacks.training import GradientAccumulation, GradientClip

    watch, clip = StepWatch(), GradientClip(max_norm=0.5)
    mp = MixedPrecision(torch.float16, init_scale=2.0**12, growth_interval=2)
    learn = learner(fmnist_tiny, [mp, clip, GradientAccumulation(n_acc=64), watch], hidden=())
    learn.fit(1)
    assert watch.changed == [False, True] * 4  # bs 32, an effective batch of 64
    assert watch.scales[-1] == 2.0**14  # 4 clean scaler steps, growth every 2
    assert 0 < float(clip.last_norm) < 50  # clipping saw unscaled gradients
