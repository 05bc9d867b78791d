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


def test_accuracy_refuses_targets_of_another_shape_and_points_multi_hot_to_accuracy_multi():
    pred = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"shape \[4, 3\] need class-index targets of shape \[4\], got \[4, 3\] "
                                         r"\(multi-hot labels\? use accuracy_multi\)"):
        accuracy(pred, torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]]))
    with pytest.raises(ValueError, match=r"got \[4, 1\]$"):
        accuracy(pred, torch.zeros(4, 1, dtype=torch.long))
    seq_pred = torch.randn(2, 5, 7)  # (bs, seq, vocab) predictions take (bs, seq) targets
    assert float(accuracy(seq_pred, seq_pred.argmax(-1))) == 1.0


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


def test_accuracy_multi_threshold():
    from deepfit.learner.metrics import accuracy_multi

    probs = torch.tensor([[0.9, 0.3, 0.6], [0.1, 0.7, 0.45]])
    targ = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    # thresh 0.5: decisions [1,0,1],[0,1,0] -> 5 of 6 right; thresh 0.4: [1,0,1],[0,1,1] -> 6 of 6
    assert float(accuracy_multi(probs, targ, sigmoid=False)) == pytest.approx(5 / 6)
    assert float(accuracy_multi(probs, targ, thresh=0.4, sigmoid=False)) == pytest.approx(1.0)
    logits = torch.logit(probs)
    assert float(accuracy_multi(logits, targ)) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="same shape"):
        accuracy_multi(probs, targ[:, :2])


def test_fbeta_multi_samples_average():
    from deepfit.learner.metrics import f1_multi, fbeta_multi

    pred = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    targ = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    # per item (tp, fp, fn): (1,1,1) F1 = 2/4; (1,0,0) F1 = 1; (0,0,0) -> zero_division; (0,1,1) F1 = 0
    assert float(f1_multi(pred, targ, sigmoid=False)) == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert float(f1_multi(pred, targ, sigmoid=False, zero_division=1.0)) == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    # F2 of item 0: 5*1 / (5*1 + 4*1 + 1) = 0.5 as well; item 1: 1
    assert float(fbeta_multi(pred, targ, beta=2, sigmoid=False)) == pytest.approx(1.5 / 4)
    # precision 1/3, recall 1 -> F2 = 5*(1/3) / (4/3 + 1) = 5/7, F0.5 = 1.25*(1/3) / (0.25/3 + 1) = 5/13
    p = torch.tensor([[1.0, 1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0, 0.0]])
    assert float(fbeta_multi(p, t, beta=2, sigmoid=False)) == pytest.approx(5 / 7)
    assert float(fbeta_multi(p, t, beta=0.5, sigmoid=False)) == pytest.approx(5 / 13)


def test_partial_metric_keeps_the_function_name():
    from functools import partial

    from deepfit.learner.metrics import accuracy_multi

    assert AvgMetric(partial(accuracy_multi, thresh=0.2)).name == "accuracy_multi"


def test_multi_label_training_raises_accuracy_multi():
    from deepfit.learner.metrics import accuracy_multi, f1_multi

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    w = torch.randn(8, 4, generator=g)
    y = (x @ w > 0.3).float()  # several labels per item, some items with none
    assert (y.sum(1) > 1).any() and (y.sum(1) == 0).any()
    dls = DataLoaders(TensorLoader(x[:192], y[:192], bs=32, shuffle=True, seed=0, device="cpu"),
                      TensorLoader(x[192:], y[192:], bs=32, device="cpu"), device="cpu")
    torch.manual_seed(0)
    learn = Learner(nn.Linear(8, 4), dls, loss_func=nn.BCEWithLogitsLoss(), metrics=[accuracy_multi, f1_multi],
                    lr=0.1)
    loss0, acc0, f10 = learn.validate()
    learn.fit(5, 0.1)
    loss1, acc1, f11 = learn.validate()
    assert loss1 < loss0 and acc1 > max(acc0, 0.85) and f11 > f10
