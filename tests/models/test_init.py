"""Initialisation rules: init_cnn, apply_init with any rule, and each family's starting point."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepfit.models import LeNet, apply_init, get_model, init_cnn, xresnet18
from deepfit.models.init import constant, xavier_uniform


def test_init_cnn_is_kaiming_normal_with_zero_biases():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 128, 3), nn.ReLU(), nn.Flatten(), nn.Linear(400, 300))
    for m in model:
        if hasattr(m, "bias"):
            nn.init.constant_(m.bias, 3.0)
    assert init_cnn(model) is model
    conv, lin = model[0], model[3]
    assert torch.all(conv.bias == 0) and torch.all(lin.bias == 0)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    assert lin.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.03)
    assert abs(conv.weight.mean().item()) < 0.01


def test_apply_init_with_xavier_and_constant():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 100), nn.Tanh(), nn.Linear(100, 10), nn.BatchNorm1d(10))
    apply_init(model, nn.init.xavier_uniform_)
    bound = math.sqrt(6 / (200 + 100))
    assert model[0].weight.abs().max().item() <= bound
    assert model[0].weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.all(model[3].weight == 1)  # norm layers untouched
    apply_init(model, constant(42.0), bias_fn=None)
    assert torch.all(model[0].weight == 42) and torch.all(model[2].weight == 42)
    assert torch.all(model[0].bias == 0)  # left as the previous rule set it
    apply_init(model, constant(1.0), bias_fn=constant(0.5), types=(nn.Linear,))
    assert torch.all(model[2].bias == 0.5)


def test_apply_init_restricted_to_types_and_errors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 2))
    before = model[1].weight.clone()
    apply_init(model, constant(0.0), types=(nn.Conv2d,))
    assert torch.all(model[0].weight == 0) and torch.equal(model[1].weight, before)
    with pytest.raises(ValueError, match="no layer"):
        apply_init(nn.Sequential(nn.ReLU()), xavier_uniform)
    with pytest.raises(TypeError, match="callable"):
        apply_init(model, 0.5)


def test_families_start_from_a_sensible_init():
    torch.manual_seed(0)
    # ReLU families: Kaiming, zero biases
    for name in ["conv_net", "conv_bn_net", "resnet2", "alexnet", "nin"]:
        model = get_model(name, c_in=3, n_out=10)
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                assert torch.all(m.bias == 0), name
    conv = get_model("conv_net", c_in=3, n_out=10, widths=(200, 200, 200)).layers[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (200 * 9)), rel=0.05)
    # sigmoid LeNet: Xavier (uniform, within the Glorot bound)
    lenet = LeNet()
    fc = lenet[8]
    assert isinstance(fc, nn.Linear) and fc.weight.abs().max().item() <= math.sqrt(6 / (400 + 120))
    # init_cnn keeps XResNet's zero-initialised BatchNorm
    model = xresnet18(c_in=1, n_out=10, widths=(4, 4, 8, 8))
    init_cnn(model)
    zero = [m.convs[-1][1].weight for m in model.modules() if hasattr(m, "convs")]
    assert zero and all(torch.all(w == 0) for w in zero)


def test_kaiming_keeps_activations_in_scale():
    """A deep ReLU stack initialised by init_cnn neither explodes nor vanishes."""
    torch.manual_seed(0)
    layers = []
    for _ in range(20):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    model = init_cnn(nn.Sequential(*layers))
    x = torch.randn(512, 256)
    with torch.no_grad():
        out = model(x)
    assert 0.3 < out.pow(2).mean().sqrt().item() < 5
