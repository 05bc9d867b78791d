"""Test-time augmentation: averaged probabilities over flipped/cropped copies of the validation set."""

from __future__ import annotations

import pytest
import torch

from deepfit.data import DataLoaders, Flip, PadCrop, TensorLoader
from deepfit.data.transforms import augment_preset
from deepfit.learner import Learner, accuracy
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.tta import AugmentBatch, default_tta_tfms
from tests.helpers.data import requires_fmnist
from tests.helpers.vision import subset_loaders, tiny_cnn


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained with flips on 2,000 real Fashion-MNIST images; 1,000 test images to validate."""
    torch.manual_seed(0)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    dls = subset_loaders(range(10), 200, 100, bs=64, seed=0, tfms=[Flip(seed=0)])
    learn = Learner(tiny_cnn(1, 10, width=16), dls, metrics=accuracy)
    learn.remove_cb(ProgressCallback)
    learn.fit_one_cycle(3, 2e-2)
    torch.set_num_threads(old)
    return learn


@requires_fmnist
def test_tta_probabilities_sum_to_one_and_are_reproducible(trained):
    probs, targs = trained.tta(n=3)
    plain, plain_targs = trained.get_preds()
    assert probs.shape == plain.shape == (1000, 10) and torch.equal(targs, plain_targs)
    assert torch.allclose(probs.sum(dim=1), torch.ones(1000), atol=1e-5) and (probs >= 0).all()
    assert torch.equal(probs, trained.tta(n=3)[0])  # same seed, same augmentations
    assert not torch.allclose(probs, plain)  # the augmented passes changed something
    via_get_preds, _ = trained.get_preds(with_tta=True)
    assert torch.allclose(via_get_preds, trained.tta()[0])
    assert torch.equal(trained.tta(n=0)[0], plain)
    lerped, _ = trained.tta(n=3, beta=1.0)
    assert torch.allclose(lerped, plain)


@requires_fmnist
def test_tta_does_not_lower_accuracy_beyond_noise(trained):
    plain, targs = trained.get_preds()
    probs, _ = trained.tta(n=4)
    plain_acc = (plain.argmax(1) == targs).float().mean().item()
    tta_acc = (probs.argmax(1) == targs).float().mean().item()
    assert plain_acc > 0.7
    assert tta_acc >= plain_acc - 0.015, (plain_acc, tta_acc)


@requires_fmnist
def test_default_tta_transforms_come_from_training(trained):
    tfms = default_tta_tfms(trained, size=28)
    assert len(tfms) == 1 and isinstance(tfms[0], Flip)
    trained_flip = trained.dls.train.tfms[0]
    state = trained_flip.generator.get_state()
    trained.tta(n=2)
    assert torch.equal(trained_flip.generator.get_state(), state)  # TTA leaves the training stream alone
    trained.dls.train.tfms = []
    try:
        assert default_tta_tfms(trained) == []  # no augmentation in training: nothing to average over
        messages = []
        trained.logger = messages.append
        plain, _ = trained.get_preds()
        assert torch.equal(trained.tta(n=2)[0], plain)
        assert len(messages) == 1 and "no label-preserving augmentation" in messages[0]
    finally:
        trained.dls.train.tfms = [trained_flip]
        trained.logger = print


class InputRecorder(torch.nn.Module):
    """A linear classifier on the image that records every input batch it sees."""

    def __init__(self, n_pixels: int):
        super().__init__()
        self.lin, self.seen = torch.nn.Linear(n_pixels, 2), []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1))


def half_bright_loaders(tfms):
    """16 images 1×12×12: the left half white, the right half black (so a mirror shows)."""
    x = torch.zeros(16, 1, 12, 12)
    x[..., :6] = 1.0
    y = torch.arange(16) % 2
    return DataLoaders(TensorLoader(x, y, bs=8, shuffle=True, seed=0, device="cpu", tfms=tfms),
                       TensorLoader(x, y, bs=8, device="cpu"), device="cpu")


def tta_inputs(train_tfms, **kw):
    dls = half_bright_loaders(train_tfms)
    model = InputRecorder(144)
    learn = Learner(model, dls)
    learn.remove_cb(ProgressCallback)
    learn.tta(n=6, **kw)
    return model.seen[2:]  # the augmented passes (two batches of plain predictions first)


def left_heavy(batch):
    return bool((batch[..., :6].sum(dim=(1, 2, 3)) > batch[..., 6:].sum(dim=(1, 2, 3))).all())


def test_no_flip_preset_never_flips_at_test_time():
    tfms = augment_preset("crop", size=12)
    assert not any(isinstance(t, Flip) for t in tfms)
    seen = tta_inputs(tfms)
    assert len(seen) == 12
    assert all(left_heavy(b) for b in seen)  # shifted by pad-and-crop, never mirrored
    plain = half_bright_loaders([]).valid.x
    assert any(not torch.equal(b, plain[:8]) for b in seen)  # and the crops did move the images


def test_flip_preset_flips_and_a_transform_can_be_turned_off():
    seen = tta_inputs(augment_preset("standard", size=12))
    assert not all(left_heavy(b) for b in seen)  # the flip is label-preserving by default: TTA uses it
    no_flip = augment_preset("standard", size=12)
    no_flip[0].tta = False  # e.g. digits: a mirrored 3 is not a 3
    assert [type(t) for t in default_tta_tfms_of(no_flip)] == [PadCrop]
    assert all(left_heavy(b) for b in tta_inputs(no_flip))
    assert all(left_heavy(b) for b in tta_inputs([], tfms=[Flip(p=1.0, tta=False), PadCrop(1)]))


def default_tta_tfms_of(tfms):
    return default_tta_tfms(Learner(torch.nn.Identity(), half_bright_loaders(tfms)))


def test_augment_batch_callback_and_errors(tiny_dls):
    learn = Learner(torch.nn.Linear(4, 3), tiny_dls)
    learn.remove_cb(ProgressCallback)
    seen = []
    aug = AugmentBatch([lambda x: seen.append(x.shape) or x * 0])
    preds, _ = learn.get_preds(cbs=[aug], act=None)
    assert seen and torch.allclose(preds, learn.model.bias.detach().expand_as(preds))
    with pytest.raises(ValueError, match="shuffles"):
        learn.tta(dl=tiny_dls.train)
    with pytest.raises(ValueError, match="with_tta"):
        learn.get_preds(with_tta=True, with_input=True)


def test_tta_averages_probabilities_of_a_log_softmax_model():
    """A notes-style model ending in log_softmax, trained with NLLLoss: tta averages exp(log-probabilities)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 6, 6, generator=g)
    y = (x[..., :3].mean((1, 2, 3)) > x[..., 3:].mean((1, 2, 3))).long()  # left half brighter: flips change it
    dls = DataLoaders(TensorLoader(x, y, bs=8, device="cpu"), TensorLoader(x, y, bs=8, device="cpu"), device="cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 2), torch.nn.LogSoftmax(dim=1))
    learn = Learner(model, dls, loss_func=torch.nn.NLLLoss())
    learn.remove_cb(ProgressCallback)
    learn.fit(2, lr=1e-1)
    plain_logp, _ = learn.get_preds(act=None)
    flip_logp, _ = learn.get_preds(act=None, cbs=[AugmentBatch([Flip(p=1.0)])])
    probs, _ = learn.tta(n=1, tfms=[Flip(p=1.0)])
    assert torch.allclose(probs, (plain_logp.exp() + flip_logp.exp()) / 2, atol=1e-6)
    assert not torch.allclose(probs, ((plain_logp + flip_logp) / 2).exp(), atol=1e-3)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    with pytest.raises(ValueError, match="averaged as probabilities"):
        learn.tta(n=1, act=None)
