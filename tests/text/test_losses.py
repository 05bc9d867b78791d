import pytest
import torch
import torch.nn.functional as F

from deepfit.learner.callbacks.core import loss_per_item
from deepfit.learner.losses import resolve_activation
from deepfit.text.losses import FlatCrossEntropyLoss


def test_flat_cross_entropy():
    pred, y = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    loss = FlatCrossEntropyLoss()
    assert torch.allclose(loss(pred, y), F.cross_entropy(pred.reshape(6, 5), y.reshape(6)))
    per = loss_per_item(loss, pred, y)
    assert per.shape == (2, 3) and loss.reduction == "mean"
    assert resolve_activation(loss) is not None  # get_preds applies a softmax
    with pytest.raises(ValueError, match="do not match"):
        loss(pred, y[:, :2])
