import math

import pytest
import torch
from torch import nn

from deepfit.learner import Callback, Learner
from deepfit.learner.optim import (
    SGD,
    SGDW,
    Adam,
    build_param_groups,
    check_layer_groups,
    default_splitter,
    fused_supported,
    get_hyper,
    lr_for_groups,
    n_layer_groups,
    set_hyper,
)
from deepfit.models import MLP, SimpleCNN
from tests.helpers.data import make_linear_data


def three_group_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def three_groups(m: nn.Sequential) -> list:
    return [m[0:3], m[3:5], m[5]]


def quiet(learn: Learner) -> Learner:
    learn.logger = lambda msg: None
    from deepfit.learner.callbacks.progress import ProgressCallback

    learn.remove_cb(ProgressCallback)
    return learn


def test_lr_for_groups_float_slice_and_list():
    assert lr_for_groups(0.1, 3) == [0.1, 0.1, 0.1]
    assert lr_for_groups(slice(1e-2), 3) == pytest.approx([1e-3, 1e-3, 1e-2])
    assert lr_for_groups(slice(1e-4, 1e-2), 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert lr_for_groups(slice(1e-4, 1e-2), 1) == [1e-2]
    assert lr_for_groups([1, 2], 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match="2 learning rates for 3 layer groups"):
        lr_for_groups([1, 2], 3)
    with pytest.raises(ValueError, match="step"):
        lr_for_groups(slice(1, 2, 3), 2)


def test_default_splitter_body_and_head():
    model = SimpleCNN()
    body, head = default_splitter(model)
    assert [id(p) for p in head] == [id(p) for p in model[-1].parameters()]
    assert len(body) + len(head) == len(list(model.parameters()))
    assert len(default_splitter(nn.Linear(3, 2))) == 1
    assert len(default_splitter(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))) == 1


def test_check_layer_groups_modules_tied_weights_and_missing():
    m = three_group_model()
    groups = check_layer_groups(m, three_groups(m))
    assert [len(g) for g in groups] == [4, 2, 2]
    # a parameter named twice (tied weights) stays in the first group
    groups = check_layer_groups(m, [list(m.parameters()), m[5]])
    assert len(groups[1]) == 0
    with pytest.raises(ValueError, match="2 model parameters are in no layer group"):
        check_layer_groups(m, [m[0:5]])
    with pytest.raises(TypeError, match="group 0 holds a str"):
        check_layer_groups(m, [["weight"]])


def test_slice_lrs_land_in_the_right_groups():
    m = three_group_model()
    learn = Learner(m, make_linear_data(), splitter=three_groups, lr=slice(1e-4, 1e-2))
    opt = learn.create_opt()
    assert n_layer_groups(opt) == 3
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for params, want in zip(three_groups(m), [1e-4, 1e-3, 1e-2]):
        for p in params.parameters():
            assert lr_of[id(p)] == pytest.approx(want)
    learn.set_lr(slice(3e-3))
    assert get_hyper(opt, "lr") == pytest.approx([3e-4, 3e-4, 3e-3])


def test_fit_with_slice_lr_sets_every_group():
    seen = []

    class Probe(Callback):
        def before_step(self):
            seen.append(get_hyper(self.learn.opt, "lr"))

    learn = quiet(Learner(three_group_model(), make_linear_data(), splitter=three_groups))
    learn.fit(1, lr=slice(1e-2), cbs=[Probe()])
    assert seen and all(v == pytest.approx([1e-3, 1e-3, 1e-2]) for v in seen)


def test_no_weight_decay_on_biases_and_norm_weights_by_default():
    m = three_group_model()
    groups = build_param_groups(m, check_layer_groups(m, three_groups(m)), 1e-3, wd=0.1)
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert wd_of[id(m[0].weight)] == 0.1 and wd_of[id(m[3].weight)] == 0.1
    for p in (m[0].bias, m[1].weight, m[1].bias, m[3].bias, m[5].bias):
        assert wd_of[id(p)] == 0.0
    groups = build_param_groups(m, check_layer_groups(m, three_groups(m)), 1e-3, wd=0.1, wd_bn_bias=True)
    assert all(g["weight_decay"] == 0.1 for g in groups)


@pytest.mark.parametrize("opt_func", [Adam, SGD])
def test_weight_decay_is_decoupled(opt_func):
    """With zero gradients the only change is the decay: w <- w * (1 - lr*wd); biases untouched."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 2)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    lr, wd = 0.1, 0.5
    opt = opt_func(build_param_groups(lin, [list(lin.parameters())], lr, wd=wd), lr=lr)
    for _ in range(2):
        (lin(torch.randn(3, 5)).sum() * 0).backward()
        opt.step()
        opt.zero_grad()
    torch.testing.assert_close(lin.weight.detach(), w0 * (1 - lr * wd) ** 2)
    assert torch.equal(lin.bias.detach(), b0)
    if opt_func is SGD:
        assert isinstance(opt, SGDW)
    else:
        assert isinstance(opt, torch.optim.AdamW)


def test_adam_uses_the_fused_kernel_where_it_can_and_takes_the_same_steps():
    torch.manual_seed(0)
    model = SimpleCNN(c_in=1, n_out=3, width=4, hidden=8)
    twin = SimpleCNN(c_in=1, n_out=3, width=4, hidden=8)
    twin.load_state_dict(model.state_dict())
    start = [p.detach().clone() for p in model.parameters()]
    groups = lambda m: build_param_groups(m, [list(m.parameters())], 1e-2, wd=0.1)  # noqa: E731
    fused, loop = Adam(groups(model), lr=1e-2), Adam(groups(twin), lr=1e-2, fused=False)
    assert fused.defaults.get("fused") is True and not loop.defaults.get("fused")
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    for _ in range(5):
        for m, opt in ((model, fused), (twin, loop)):
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), start))


def test_fused_is_not_used_for_integer_or_mixed_device_parameters():
    assert fused_supported([nn.Parameter(torch.ones(3))])
    assert fused_supported([{"params": [nn.Parameter(torch.ones(3))]}])
    assert not fused_supported([])
    assert not fused_supported([torch.ones(3, dtype=torch.long)])
    assert not fused_supported([nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3, device="meta"))])
    opt = Adam([nn.Parameter(torch.ones(3, device="meta"))], lr=1e-3)
    assert not opt.defaults.get("fused")


def test_default_optimizer_is_adamw_with_wd():
    learn = Learner(MLP(c_in=4, img_size=1, hidden=(8,), n_out=3), make_linear_data())
    opt = learn.create_opt()
    assert isinstance(opt, torch.optim.AdamW)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.01}
    learn = Learner(MLP(c_in=4, img_size=1, hidden=(8,), n_out=3), make_linear_data(), wd=0.2)
    assert {g["weight_decay"] for g in learn.create_opt().param_groups} == {0.0, 0.2}


@pytest.mark.parametrize("opt_func", [torch.optim.SGD, torch.optim.RMSprop, torch.optim.Adagrad,
                                      lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True)])
def test_any_torch_optimizer_trains(opt_func):
    torch.manual_seed(0)
    learn = quiet(Learner(three_group_model(), make_linear_data(n=128), opt_func=opt_func, lr=0.05,
                          splitter=three_groups))
    learn.fit_one_cycle(3, lr_max=slice(0.05))
    first, last = learn.recorder.values[0][0], learn.recorder.values[-1][0]
    assert last < first


def test_set_hyper_mom_wd_and_unknown_key():
    m = three_group_model()
    groups = build_param_groups(m, check_layer_groups(m, three_groups(m)), 1e-3, wd=0.1)
    sgd = torch.optim.SGD(groups, lr=1e-3, momentum=0.9)
    set_hyper(sgd, "mom", [0.1, 0.2, 0.3])
    assert get_hyper(sgd, "mom") == [0.1, 0.2, 0.3]
    set_hyper(sgd, "wd", 0.05)
    assert {g["weight_decay"] for g in sgd.param_groups if g["apply_wd"]} == {0.05}
    assert {g["weight_decay"] for g in sgd.param_groups if not g["apply_wd"]} == {0.0}
    adam = torch.optim.Adam(build_param_groups(m, [list(m.parameters())], 1e-3), lr=1e-3)
    set_hyper(adam, "mom", 0.8)
    set_hyper(adam, "sqr_mom", 0.9)
    assert all(g["betas"] == (0.8, 0.9) for g in adam.param_groups)
    with pytest.raises(KeyError, match="no 'gamma'"):
        set_hyper(adam, "gamma", 1.0)
    assert math.isnan(get_hyper(torch.optim.Adagrad(m.parameters()), "mom")[0])
