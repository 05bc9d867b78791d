import pytest
import torch
from torch import nn

from deepfit.learner import Callback, CancelBatch, CancelStep, Learner, accuracy, auto_precision
from deepfit.learner.callbacks import precision
from deepfit.learner.callbacks.precision import (
    MixedPrecision,
    precision_record,
    set_precision,
    to_float,
    unscale_gradients,
)
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
    monkeypatch.setattr(auto_precision, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(auto_precision, "time_train_step", never_called)  # no probe without native bf16
    probe = DtypeProbe()
    learn = learner(fmnist_tiny, [MixedPrecision(), probe])
    learn.fit(1)
    assert learn.mixed_precision.dtype == torch.float32 and not learn.mixed_precision.scaling
    notices = [m for m in learn.messages if "MixedPrecision" in m]
    assert len(notices) == 1 and "float32" in notices[0] and "\n" not in notices[0]
    assert "no native bf16" in notices[0]
    learn.fit(1)
    assert len([m for m in learn.messages if "MixedPrecision" in m]) == 1  # said once
    assert probe.pred_dtypes == {torch.float32}


def test_default_dtype_without_a_probe(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.default_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda device: False)
    assert precision.default_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda device: True)
    assert precision.default_dtype(torch.device("cuda")) == torch.bfloat16


def never_called(*args, **kwargs):
    raise AssertionError("the bf16 probe ran")


class FakeClock:
    """A mocked timer for the probe: each timed step (two clock reads) lasts `fp32` or `bf16` seconds.

    The probe alternates fp32 and bf16 steps (warm-up pair first), so the durations alternate too.
    """

    def __init__(self, fp32: float, bf16: float):
        self.durations, self.now, self.reads = (fp32, bf16), 100.0, 0

    def __call__(self) -> float:
        if self.reads % 2 == 1:  # the end of a step
            self.now += self.durations[(self.reads // 2) % 2]
        self.reads += 1
        return self.now


def auto_learner(dls, monkeypatch, tmp_path, fp32: float, bf16: float):
    monkeypatch.setattr(auto_precision, "cpu_has_fast_bf16", lambda: True)
    clock = FakeClock(fp32, bf16)
    monkeypatch.setattr(auto_precision, "probe_clock", clock)
    probe = DtypeProbe()
    learn = learner(dls, [probe])
    learn.model = InnerDtype(learn.model)
    set_precision(learn, "auto", cache=tmp_path / "probe.json")
    return learn, probe, clock


def test_auto_picks_fp32_when_the_probe_says_bf16_is_slower(fmnist_tiny, monkeypatch, tmp_path):
    learn, probe, clock = auto_learner(fmnist_tiny, monkeypatch, tmp_path, fp32=0.10, bf16=0.25)
    learn.fit(1)
    choice = learn.mixed_precision.choice
    assert clock.reads == 16  # warm-up pair + 3 alternated pairs, two clock reads per step
    assert choice.dtype == torch.float32 and not learn.mixed_precision.enabled
    assert probe.inner_dtypes == {torch.float32}
    assert "not faster" in choice.reason and "100.0 ms in fp32, 250.0 ms in bf16" in choice.reason
    record = precision_record(learn)
    assert record["precision"] == "fp32" and record["probe_seconds"] == {"fp32": 0.10, "bf16": 0.25}
    assert [m for m in learn.messages if "precision auto chose fp32" in m]


def test_auto_picks_bf16_when_the_probe_says_it_is_faster(fmnist_tiny, monkeypatch, tmp_path):
    learn, probe, clock = auto_learner(fmnist_tiny, monkeypatch, tmp_path, fp32=0.10, bf16=0.05)
    start_loss = learn.validate()[0]
    learn.fit(1)
    choice = learn.mixed_precision.choice
    assert choice.dtype == torch.bfloat16 and not learn.mixed_precision.scaling
    assert probe.inner_dtypes == {torch.bfloat16} and probe.pred_dtypes == {torch.float32}
    assert "2.00× faster" in choice.reason
    assert precision_record(learn) == {"precision": "bf16", "loss_scale": False, "reason": choice.reason,
                                       "probe_seconds": {"fp32": 0.10, "bf16": 0.05}}
    assert len([m for m in learn.messages if "precision auto chose" in m]) == 1
    assert learn.validate()[0] < start_loss
    # the probe ran on a copy: the model's weights are the ones training left, with no stray gradients
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in learn.model.parameters())


def test_auto_needs_a_clear_win(fmnist_tiny, monkeypatch, tmp_path):
    learn, _, _ = auto_learner(fmnist_tiny, monkeypatch, tmp_path, fp32=0.100, bf16=0.095)  # 1.05×
    learn.fit(1)
    assert learn.mixed_precision.choice.dtype == torch.float32


def test_probe_result_is_cached_per_model(monkeypatch, tmp_path):
    monkeypatch.setattr(auto_precision, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(auto_precision, "probe_clock", FakeClock(0.2, 0.1))
    cache = tmp_path / "probe.json"
    model, xb = MLP(hidden=(16,)), torch.randn(8, 1, 28, 28)
    first = auto_precision.choose_precision(model, xb, "cpu", cache=cache)
    assert first.dtype == torch.bfloat16 and "cached" not in first.reason
    steps = []
    monkeypatch.setattr(auto_precision, "time_train_step", lambda *a, **k: steps.append(a[2]) or 1.0)
    again = auto_precision.choose_precision(MLP(hidden=(16,)), xb, "cpu", cache=cache)
    assert again.dtype == torch.bfloat16 and "cached probe" in again.reason and steps == []
    auto_precision.choose_precision(MLP(hidden=(32,)), xb, "cpu", cache=cache)  # another model: probed
    assert steps.count(torch.bfloat16) == 4
    auto_precision.choose_precision(model, torch.randn(4, 1, 28, 28), "cpu", cache=cache)  # another batch shape
    assert steps.count(torch.bfloat16) == 8


def test_cuda_rule(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    monkeypatch.setattr(auto_precision, "cuda_has_bf16", lambda device: True)
    choice = auto_precision.choose_precision(MLP(), None, "cuda")
    assert choice.dtype == torch.bfloat16 and not choice.loss_scale
    monkeypatch.setattr(auto_precision, "cuda_has_bf16", lambda device: False)
    choice = auto_precision.choose_precision(MLP(), None, "cuda")
    assert choice.dtype == torch.float16 and choice.loss_scale and "loss scaling" in str(choice)


def test_a_failing_probe_falls_back_to_fp32(monkeypatch, tmp_path):
    monkeypatch.setattr(auto_precision, "cpu_has_fast_bf16", lambda: True)
    choice = auto_precision.choose_precision(MLP(), torch.randn(2, 5), "cpu", cache=False)  # wrong input size
    assert choice.dtype == torch.float32 and "probe failed" in choice.reason


def test_precision_names_and_learner_argument(fmnist_tiny):
    assert auto_precision.parse_precision("BF16") == torch.bfloat16
    assert auto_precision.parse_precision(None) == "auto"
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        auto_precision.parse_precision("half")
    learn = Learner(MLP(), fmnist_tiny, precision="bf16")
    assert learn.mixed_precision.requested_dtype == torch.bfloat16
    assert precision_record(learn) == {"precision": "bf16", "loss_scale": False, "reason": "requested"}
    assert precision_record(Learner(MLP(), fmnist_tiny, precision="fp16"))["loss_scale"]
    assert Learner(MLP(), fmnist_tiny, precision="auto").mixed_precision.requested_dtype == "auto"
    assert precision_record(Learner(MLP(), fmnist_tiny))["precision"] == "fp32"
    assert not hasattr(Learner(MLP(), fmnist_tiny, precision="fp32"), "mixed_precision")


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


def test_decide_precision_before_training(fmnist_tiny, monkeypatch, tmp_path):
    learn, probe, clock = auto_learner(fmnist_tiny, monkeypatch, tmp_path, fp32=0.10, bf16=0.05)
    assert precision_record(learn)["precision"] == "auto"  # not decided yet
    record = precision.decide_precision(learn)
    assert record["precision"] == "bf16" and clock.reads == 16
    learn.fit(1)
    assert clock.reads == 16  # decided once: the fit did not probe again
    assert probe.inner_dtypes == {torch.bfloat16}
    assert precision.decide_precision(Learner(MLP(), fmnist_tiny))["precision"] == "fp32"
