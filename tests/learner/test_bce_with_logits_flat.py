import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Learner
from deepfit.learner.losses import BCEWithLogitsFlat, NoneReduce


def test_multi_hot_targets_equal_pytorch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g)
    target = (torch.rand(16, 5, generator=g) > 0.6).float()
    for reduction in ("mean", "sum", "none"):
        ours = BCEWithLogitsFlat(reduction=reduction)(logits, target)
        torch.testing.assert_close(ours, F.binary_cross_entropy_with_logits(logits, target, reduction=reduction))
    pw = torch.tensor([1.0, 2.0, 3.0, 1.0, 0.5])
    torch.testing.assert_close(BCEWithLogitsFlat(pos_weight=pw)(logits, target),
                               nn.BCEWithLogitsLoss(pos_weight=pw)(logits, target))
    with NoneReduce(BCEWithLogitsFlat()) as lf:
        assert lf(logits, target).shape == (16, 5)


def test_single_output_takes_integer_labels():
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    labels = torch.tensor([1, 0, 0])
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    torch.testing.assert_close(BCEWithLogitsFlat()(logits, labels), expected)
    with pytest.raises(ValueError, match="0 or 1"):
        BCEWithLogitsFlat()(logits, torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="does not match"):
        BCEWithLogitsFlat()(torch.zeros(3, 2), labels)


def test_activation_and_decodes():
    loss = BCEWithLogitsFlat(thresh=0.3)
    probs = loss.activation(torch.tensor([[0.0, -2.0, 3.0]]))
    torch.testing.assert_close(probs, torch.sigmoid(torch.tensor([[0.0, -2.0, 3.0]])))
    assert loss.decodes(probs).tolist() == [[True, False, True]]
    with pytest.raises(ValueError, match="thresh"):
        BCEWithLogitsFlat(thresh=1.5)


def test_binary_classifier_trains_on_integer_labels():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    dls = DataLoaders(TensorLoader(x[:160], y[:160], bs=32, shuffle=True, seed=0, device="cpu"),
                      TensorLoader(x[160:], y[160:], bs=32, device="cpu"), device="cpu")
    torch.manual_seed(0)
    learn = Learner(nn.Linear(4, 1), dls, loss_func=BCEWithLogitsFlat(), lr=0.1)
    before = learn.validate()[0]
    learn.fit(4, 0.1)
    after = learn.validate()[0]
    assert after < before * 0.7
    with torch.no_grad():
        pred = learn.loss_func.decodes(learn.loss_func.activation(learn.model(x[160:])))[:, 0]
    assert (pred == y[160:].bool()).float().mean() > 0.85
