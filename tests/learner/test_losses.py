import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepfit.learner import Learner
from deepfit.learner.losses import LabelSmoothingCrossEntropy, NoneReduce, reduce_loss
from tests.helpers.data import make_linear_data


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_equals_pytorch(eps, reduction):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=g) * 3
    target = torch.randint(0, 10, (32,), generator=g)
    ours = LabelSmoothingCrossEntropy(eps, reduction=reduction)(logits, target)
    ref = nn.CrossEntropyLoss(label_smoothing=eps, reduction=reduction)(logits, target)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


def test_label_smoothing_spatial_and_ignore_index():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, 3, 3, generator=g)
    target = torch.randint(0, 5, (4, 3, 3), generator=g)
    target[0, 0, 0] = target[2, 1, 2] = -100
    for reduction in ("mean", "sum", "none"):
        ours = LabelSmoothingCrossEntropy(0.2, reduction=reduction)(logits, target)
        ref = F.cross_entropy(logits, target, label_smoothing=0.2, reduction=reduction)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


def test_eps_zero_is_cross_entropy_and_gradients_match():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 7, generator=g, requires_grad=True)
    target = torch.randint(0, 7, (16,), generator=g)
    ours = LabelSmoothingCrossEntropy(0.0)(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target), atol=1e-6, rtol=1e-6)
    (grad_ours,) = torch.autograd.grad(LabelSmoothingCrossEntropy(0.1)(logits, target), logits)
    (grad_ref,) = torch.autograd.grad(F.cross_entropy(logits, target, label_smoothing=0.1), logits)
    torch.testing.assert_close(grad_ours, grad_ref, atol=1e-6, rtol=1e-6)


def test_label_smoothing_computes_in_float32_from_half_logits():
    logits = torch.randn(8, 4).to(torch.bfloat16)
    target = torch.randint(0, 4, (8,))
    out = LabelSmoothingCrossEntropy()(logits, target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(logits.float(), target, label_smoothing=0.1))


def test_label_smoothing_bad_input():
    with pytest.raises(ValueError, match="eps"):
        LabelSmoothingCrossEntropy(eps=1.5)
    with pytest.raises(ValueError, match="reduction"):
        LabelSmoothingCrossEntropy(reduction="avg")
    with pytest.raises(ValueError, match="target shape"):
        LabelSmoothingCrossEntropy()(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


def test_activation_makes_get_preds_and_predict_return_probabilities():
    dls = make_linear_data(n=48, n_in=4, n_out=3)
    learn = Learner(nn.Linear(4, 3), dls, loss_func=LabelSmoothingCrossEntropy(), default_cbs=False)
    preds, targets = learn.get_preds()
    assert preds.shape == (48, 3)
    torch.testing.assert_close(preds.sum(1), torch.ones(48))
    assert (preds >= 0).all()
    _, idx, probs = learn.predict(dls.valid.x[0])
    assert abs(float(probs.sum()) - 1) < 1e-5 and 0 <= idx < 3


def test_none_reduce_switches_and_restores_even_on_error():
    lf = nn.CrossEntropyLoss(reduction="sum")
    logits, target = torch.randn(6, 3), torch.randint(0, 3, (6,))
    with NoneReduce(lf) as per_item:
        assert per_item(logits, target).shape == (6,)
    assert lf.reduction == "sum"
    with pytest.raises(RuntimeError), NoneReduce(lf) as per_item:
        assert lf.reduction == "none"
        raise RuntimeError("boom")
    assert lf.reduction == "sum"


def test_none_reduce_wraps_plain_functions():
    logits, target = torch.randn(6, 3), torch.randint(0, 3, (6,))
    with NoneReduce(F.cross_entropy) as per_item:
        out = per_item(logits, target)
    torch.testing.assert_close(out, F.cross_entropy(logits, target, reduction="none"))


def test_reduce_loss():
    x = torch.tensor([1.0, 2.0, 6.0])
    assert float(reduce_loss(x, "mean")) == 3.0
    assert float(reduce_loss(x, "sum")) == 9.0
    assert reduce_loss(x, "none") is x
    with pytest.raises(ValueError, match="reduction"):
        reduce_loss(x, "max")
