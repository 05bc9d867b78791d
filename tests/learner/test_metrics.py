import math

import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import AvgMetric, Learner, Perplexity, accuracy, error_rate
from deepfit.learner.metrics import top_k_accuracy


def test_accuracy_and_error_rate():
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    targ = torch.tensor([1, 0, 0, 0])
    assert float(accuracy(pred, targ)) == pytest.approx(0.75)
    assert float(error_rate(pred, targ)) == pytest.approx(0.25)
    assert float(top_k_accuracy(pred, targ, k=2)) == 1.0


def test_metric_weighted_by_batch_size_over_ragged_last_batch():
    # 10 items in batches of 4, 4, 2. The model predicts class 0 always; targets make the per-batch
    # accuracies 1.0, 0.0 and 0.5, so the unweighted batch mean would be 0.5 but the item mean is 0.5*... = 5/10.
    x = torch.zeros(10, 1)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])

    class AlwaysZero(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1) + self.w * 0

    dl = TensorLoader(x, y, bs=4, device="cpu")
    assert [len(b[1]) for b in dl] == [4, 4, 2]
    learn = Learner(AlwaysZero(), DataLoaders(dl, dl, device="cpu"), metrics=[accuracy], default_cbs=False)
    loss, acc = learn.validate()
    assert acc == pytest.approx(5 / 10)
    y2 = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])  # batch accuracies 1, 0, 1 -> item mean 0.6, batch mean 0.667
    dl2 = TensorLoader(x, y2, bs=4, device="cpu")
    _, acc2 = Learner(AlwaysZero(), DataLoaders(dl2, dl2, device="cpu"), metrics=[accuracy]).validate()
    assert acc2 == pytest.approx(0.6)


def test_avg_metric_and_perplexity_values():
    m = AvgMetric(lambda p, t: (p == t).float().mean(), name="eq")

    class FakeLearn:
        pass

    fl = FakeLearn()
    m.reset()
    for p, t in [(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 0])), (torch.tensor([5]), torch.tensor([5]))]:
        fl.pred, fl.yb = p, t
        m.accumulate(fl)
    assert m.value == pytest.approx(3 / 4)
    ppl = Perplexity()
    fl.loss, fl.yb = torch.tensor(math.log(4.0)), torch.zeros(2)
    ppl.accumulate(fl)
    assert ppl.value == pytest.approx(4.0)
    assert math.isnan(AvgMetric(accuracy).value)
