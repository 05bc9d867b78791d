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
    for k in BN_PARAMS:  # train_bn=True: BN affine weights train
        assert not torch.equal(body0[k], body1[k]), k
    for k in BN_STATS:  # bn_freeze='frozen': the frozen body's running statistics stay the pretrained ones
        assert torch.equal(body0[k], body1[k]), k
    assert all(not torch.equal(head0[k], head1[k]) for k in head0)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters()) and learn.frozen_idx == 0
    learn.fit(1, lr=1e-2)
    assert not torch.equal(body1["0.weight"], learn.model[0][0].weight)
    assert not torch.equal(body1["1.running_mean"], learn.model[0][1].running_mean)  # unfrozen: stats move


def test_bn_freeze_false_lets_frozen_stats_move():
    learn = make_learner(bn_freeze=False)
    learn.freeze()
    body0 = snapshot(learn.model[0])
    learn.fit(1, lr=1e-2)
    assert not torch.equal(body0["1.running_mean"], learn.model[0][1].running_mean)
    assert torch.equal(body0["0.weight"], learn.model[0][0].weight)


def test_bn_freeze_true_keeps_every_bn_in_eval_mode():
    """The notes' `learn.bn_freeze=True`: running statistics stay fixed even in unfrozen layers."""
    learn = make_learner(bn_freeze=True)
    stats0 = snapshot(learn.model[0])
    learn.fit(1, lr=1e-2)
    for k in BN_STATS:
        assert torch.equal(stats0[k], learn.model[0].state_dict()[k]), k
    assert not torch.equal(stats0["1.weight"], learn.model[0][1].weight)  # the affine weights train
    with pytest.raises(ValueError, match="bn_freeze"):
        make_learner(bn_freeze="all")


def test_train_bn_false_freezes_bn_weights_too():
    learn = make_learner(train_bn=False)
    learn.freeze()
    body0 = snapshot(learn.model[0])
    learn.fit(1, lr=1e-2)
    body1 = snapshot(learn.model[0])
    for k in CONV_PARAMS + BN_PARAMS + BN_STATS:
        assert torch.equal(body0[k], body1[k]), k


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


def notes_dogs_cats_model() -> nn.Sequential:
    """The notes' lesson-7 CAM model: a resnet's children but the last two, then a 2-channel conv, average
    pooling, Flatten and LogSoftmax. The resnet body is a small stand-in with a resnet's twelve children."""

    def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    resnet_children = [nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                       nn.MaxPool2d(2), block(8, 8, 1), block(8, 16, 2), block(16, 16, 1), block(16, 16, 1),
                       nn.AdaptiveAvgPool2d(1), nn.Linear(16, 1000)]  # avgpool and fc: dropped by [:-2]
    return nn.Sequential(*resnet_children[:-2], nn.Conv2d(16, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.LogSoftmax(dim=1))


def rgb_dls(n: int = 64, bs: int = 16) -> DataLoaders:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 16, 16, generator=g) + y.view(-1, 1, 1, 1)  # class 1 is brighter
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=0, device="cpu"),
                       TensorLoader(x, y, bs=bs, device="cpu"), device="cpu")


def test_freeze_to_minus_4_on_the_notes_dogs_cats_model():
    torch.manual_seed(0)
    model = notes_dogs_cats_model()
    learn = Learner(model, rgb_dls(n=128), loss_func=nn.NLLLoss())
    learn.remove_cb(ProgressCallback)
    assert learn.freeze_to(-4) == 8  # 12 children: the conv, pool, Flatten and LogSoftmax added last train
    new_conv = model[8]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    bn_names = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert {n for n in trainable if n.rsplit(".", 1)[0] not in bn_names} == {"8.weight", "8.bias"}
    assert frozen_bn_layers(learn) == [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = snapshot(model)
    loss0 = learn.validate()[0]
    learn.fit(4, lr=3e-2)
    after = snapshot(model)
    assert torch.equal(before["0.weight"], after["0.weight"]) and torch.equal(before["7.0.weight"], after["7.0.weight"])
    assert torch.equal(before["1.running_mean"], after["1.running_mean"])  # frozen BN keeps its statistics
    assert not torch.equal(before["8.weight"], new_conv.weight)
    assert learn.validate()[0] < loss0 - 0.1  # the new conv head learns on the frozen body
    assert learn.freeze() == 8  # freeze() trains the last group holding parameters: the same here
    with pytest.raises(ValueError, match="hold no parameters"):
        learn.freeze_to(-1)  # only the LogSoftmax


class FashionNetwork(nn.Module):
    """The cookbook's network: not an nn.Sequential, its layers registered in this order."""

    def __init__(self):
        super().__init__()
        self.hidden1 = nn.Linear(64, 32)
        self.hidden2 = nn.Linear(32, 16)
        self.output = nn.Linear(16, 2)
        self.log_softmax = nn.LogSoftmax(dim=1)
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.activation(self.hidden1(x.flatten(1)))
        x = self.activation(self.hidden2(x))
        return self.log_softmax(self.output(x))


def test_freeze_splits_a_one_group_model_by_its_children():
    model = FashionNetwork()
    learn = Learner(model, image_dls(), loss_func=nn.NLLLoss())
    assert len(learn.parameter_groups()) == 1  # learning rates: one group
    assert learn.freeze() == 2  # freezing: hidden1, hidden2 | output (log_softmax, activation hold nothing)
    assert [p.requires_grad for p in model.parameters()] == [False, False, False, False, True, True]
    assert learn.freeze_to(1) == 1 and model.hidden2.weight.requires_grad and not model.hidden1.weight.requires_grad
    wrapped = nn.Module()
    wrapped.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2))
    wrapped.forward = wrapped.layers.forward
    learn = Learner(wrapped, image_dls())
    assert learn.freeze() == 3 and not wrapped.layers[1].weight.requires_grad  # looks through the wrapper


def test_freeze_a_single_group_model_is_a_clear_error():
    learn = Learner(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), image_dls())
    with pytest.raises(ValueError, match="single layer group.*splitter="):
        learn.freeze()
    learn = Learner(nn.Linear(4, 2), image_dls())
    with pytest.raises(ValueError, match="Linear has no child modules"):
        learn.freeze()
    with pytest.raises(ValueError, match="single layer group"):
        learn.freeze_to(-1)
    assert learn.unfreeze() == 0 and all(p.requires_grad for p in learn.model.parameters())
    learn = Learner(body_head(), image_dls(), splitter=lambda m: [m])
    with pytest.raises(ValueError, match="its splitter gives one layer group"):
        learn.freeze()
