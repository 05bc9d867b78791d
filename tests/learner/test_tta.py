"""Test-time augmentation: averaged probabilities over flipped/cropped copies of the validation set."""

from __future__ import annotations

import pytest
import torch

from deepfit.data import Flip, PadCrop
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
        fallback = default_tta_tfms(trained, size=28)
        assert [type(t) for t in fallback] == [Flip, PadCrop] and fallback[1].padding == 2
    finally:
        trained.dls.train.tfms = [trained_flip]


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
