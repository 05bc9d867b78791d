"""Mixed precision on the GPU: float16 with loss scaling (an inf gradient skips the step and halves the scale),
bfloat16 without scaling."""

from __future__ import annotations

import pytest
import torch

from deepfit.learner import Callback, Learner, accuracy
from tests.helpers.cuda_tasks import image_task, small_cnn

pytestmark = pytest.mark.cuda


class PoisonGradOnce(Callback):
    """At training batch `at`, makes one gradient inf (after backward) and records the weights and the scale
    around that batch's step."""

    order = 95  # after MixedPrecision's after_backward

    def __init__(self, at: int):
        self.at, self.step = at, 0
        self.before = self.after = None
        self.scale_before = self.scale_after = None

    def after_backward(self):
        if self.step == self.at:
            self.before = [p.detach().clone() for p in self.learn.model.parameters()]
            self.scale_before = self.learn.mixed_precision.scaler.get_scale()
            next(self.learn.model.parameters()).grad.fill_(float("inf"))

    def after_batch(self):
        if not self.learn.training:
            return
        if self.step == self.at:
            self.after = [p.detach().clone() for p in self.learn.model.parameters()]
            self.scale_after = self.learn.mixed_precision.scaler.get_scale()
        self.step += 1


def test_fp16_with_grad_scaler_skips_the_step_on_inf(device):
    learn = Learner(small_cnn().to(device), image_task(device), metrics=[accuracy], lr=3e-3)
    learn.remove_cb(learn.progress)
    learn.to_fp16()
    poison = PoisonGradOnce(at=3)
    learn.fit_one_cycle(3, 3e-3, cbs=[poison])
    mp = learn.mixed_precision
    assert mp.dtype == torch.float16 and mp.scaling
    assert all(torch.equal(a, b) for a, b in zip(poison.before, poison.after))  # the step was skipped
    assert poison.scale_after == pytest.approx(poison.scale_before * 0.5)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    losses = learn.recorder.losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert learn.recorder.values[-1][-1] > 0.5  # accuracy well above chance (0.25)


def test_bf16_step_runs_in_bfloat16_without_scaling(device):
    learn = Learner(small_cnn().to(device), image_task(device), metrics=[accuracy], lr=3e-3)
    learn.remove_cb(learn.progress)
    learn.to_bf16()
    seen = []
    conv = learn.model[0]
    handle = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    learn.fit_one_cycle(2, 3e-3)
    handle.remove()
    assert learn.mixed_precision.dtype == torch.bfloat16 and not learn.mixed_precision.scaling
    assert torch.bfloat16 in seen  # convolutions ran in bf16
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # float32 master weights
    losses = learn.recorder.losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_channels_last_trains_and_keeps_its_layout(device):
    from deepfit.models import to_channels_last

    class ChannelsLastBatches(Callback):
        order = 5

        def before_batch(self):
            self.learn.xb = self.learn.xb.contiguous(memory_format=torch.channels_last)

    model = to_channels_last(small_cnn().to(device))
    learn = Learner(model, image_task(device), metrics=[accuracy], lr=3e-3, cbs=[ChannelsLastBatches()])
    learn.remove_cb(learn.progress)
    learn.to_bf16()
    learn.fit_one_cycle(2, 3e-3)
    conv = learn.model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert learn.recorder.values[-1][-1] > 0.5


def test_pinned_host_batches_arrive_intact(device):
    from deepfit.data import TensorLoader

    x = torch.arange(4096 * 8, dtype=torch.float32).reshape(4096, 8)
    y = torch.arange(4096)
    dl = TensorLoader(x.pin_memory() if device.type == "cuda" else x, y, bs=512, device=device)
    got_x, got_y = zip(*[(xb.cpu(), yb.cpu()) for xb, yb in dl])
    assert torch.equal(torch.cat(got_x), x) and torch.equal(torch.cat(got_y), y)
    assert next(iter(dl))[0].device.type == device.type


def test_mixup_and_tta_run_on_the_device(device):
    from deepfit.learner.callbacks.mixup import MixUp

    learn = Learner(small_cnn().to(device), image_task(device), metrics=[accuracy], lr=3e-3)
    learn.remove_cb(learn.progress)
    learn.fit_one_cycle(3, 3e-3, cbs=[MixUp(0.4, seed=0)])
    assert learn.recorder.values[-1][-1] > 0.4
    brighter = lambda x: x * 1.05 + 0.02  # noqa: E731 - a label-preserving batch transform (flips would not be)
    probs, targs = learn.tta(n=2, tfms=[brighter])
    assert probs.shape == (128, 4) and torch.allclose(probs.sum(1), torch.ones(128), atol=1e-4)
    plain, _ = learn.get_preds()
    assert not torch.allclose(probs, plain)
    acc = lambda p: float((p.argmax(1) == targs).float().mean())  # noqa: E731
    assert abs(acc(probs) - acc(plain)) < 0.2
