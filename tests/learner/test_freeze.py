import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Learner
from deepfit.learner.callbacks.progress import ProgressCallback
from deepfit.learner.freeze import BnFreeze, frozen_bn_layers
from deepfit.learner.optim import SGD


def image_dls(n: int = 64, bs: int = 16) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=0, device="cpu"),
                       TensorLoader(x, y, bs=bs, device="cpu"), device="cpu")


def body_head() -> nn.Sequential:
    body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    head = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    return nn.Sequential(body, head)


def make_learner(**kw) -> Learner:
    torch.manual_seed(0)
    learn = Learner(body_head(), image_dls(), **kw)
    learn.remove_cb(ProgressCallback)
    return learn


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


BN_PARAMS = ("1.weight", "1.bias", "4.weight", "4.bias")
BN_STATS = ("1.running_mean", "1.running_var", "4.running_mean", "4.running_var")
CONV_PARAMS = ("0.weight", "0.bias", "3.weight", "3.bias")


@pytest.mark.parametrize("opt_func", [None, SGD])
def test_frozen_params_bit_identical_after_fit(opt_func):
    kw = {} if opt_func is None else {"opt_func": opt_func}
    learn = make_learner(wd=0.1, **kw)  # large decay: it must not touch frozen weights either
    learn.fit(1, lr=1e-2)  # optimizer state (momentum, Adam moments) exists before freezing
    assert learn.freeze() == 1 and learn.frozen_idx == 1
    body0, head0 = snapshot(learn.model[0]), snapshot(learn.model[1])
    learn.fit_one_cycle(2, 1e-2)
    body1, head1 = snapshot(learn.model[0]), snapshot(learn.model[1])
    for k in CONV_PARAMS:
        assert torch.equal(body0[k], body1[k]), k
    for k in BN_PARAMS + BN_STATS:  # train_bn=True: BN affine weights train, and stats update
        assert not torch.equal(body0[k], body1[k]), k
    assert all(not torch.equal(head0[k], head1[k]) for k in head0)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters()) and learn.frozen_idx == 0
    learn.fit(1, lr=1e-2)
    assert not torch.equal(body1["0.weight"], learn.model[0][0].weight)


def test_train_bn_false_freezes_bn_weights_too():
    learn = make_learner(train_bn=False)
    learn.freeze()
    body0 = snapshot(learn.model[0])
    learn.fit(1, lr=1e-2)
    body1 = snapshot(learn.model[0])
    for k in CONV_PARAMS + BN_PARAMS:
        assert torch.equal(body0[k], body1[k]), k
    assert not torch.equal(body0["1.running_mean"], body1["1.running_mean"])


def test_bn_freeze_keeps_running_stats_of_frozen_groups():
    learn = make_learner(cbs=[BnFreeze()])
    learn.freeze()
    assert frozen_bn_layers(learn) == [learn.model[0][1], learn.model[0][4]]
    body0 = snapshot(learn.model[0])
    learn.fit(2, lr=1e-2)
    body1 = snapshot(learn.model[0])
    for k in BN_STATS + ("1.num_batches_tracked",):
        assert torch.equal(body0[k], body1[k]), k
    assert not torch.equal(body0["1.weight"], body1["1.weight"])  # affine weights still train


def test_bn_freeze_all_and_nothing_frozen():
    learn = make_learner(cbs=[BnFreeze()])
    stats0 = snapshot(learn.model[0])["1.running_mean"]
    learn.fit(1, lr=1e-2)  # nothing frozen: stats move
    assert not torch.equal(stats0, learn.model[0][1].running_mean)
    learn = make_learner(cbs=[BnFreeze(all=True)])
    stats0 = snapshot(learn.model[0])["1.running_mean"]
    learn.fit(1, lr=1e-2)
    assert torch.equal(stats0, learn.model[0][1].running_mean)


def test_freeze_to_with_three_groups_and_bounds():
    model = body_head()
    learn = Learner(model, image_dls(), splitter=lambda m: [m[0][:3], m[0][3:], m[1]])
    assert learn.freeze_to(-2) == 1
    assert not model[0][0].weight.requires_grad and model[0][1].weight.requires_grad  # BN stays trainable
    assert model[0][3].weight.requires_grad and model[1][1].weight.requires_grad
    assert learn.freeze_to(2) == 2
    assert not model[0][3].weight.requires_grad and model[0][4].weight.requires_grad
    for bad in (3, -4):
        with pytest.raises(ValueError, match="3 layer groups"):
            learn.freeze_to(bad)
    learn.freeze_to(-3)
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_single_group_model_freezes_nothing():
    learn = Learner(nn.Linear(4, 2), image_dls())
    assert learn.freeze() == 0
    assert all(p.requires_grad for p in learn.model.parameters())
