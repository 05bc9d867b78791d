"""The notes' CIFAR progression: shapes at 28×28/32×32 with 1/3 channels, BnLayer behaviour, a real training run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepfit.data import fashion_mnist_loaders
from deepfit.learner import Learner, accuracy
from deepfit.models import (
    MODELS,
    BnLayer,
    ConvBnNet,
    ConvBnNet2,
    ConvNet,
    ConvNet2,
    Resnet,
    Resnet2,
    ResnetLayer,
    SimpleNet,
    get_model,
)
from tests.helpers.data import requires_fmnist

SHAPES = [(1, 28), (3, 28), (1, 32), (3, 32)]
PROGRESSION = ["simple_net", "conv_net", "conv_net2", "conv_bn_net", "conv_bn_net2", "resnet", "resnet2"]


SMALL_WIDTHS = {"conv_net": (4, 8, 8), "conv_net2": (4, 8, 8), "conv_bn_net": (4, 4, 8, 8, 8),
                "conv_bn_net2": (4, 4, 8, 8, 8), "resnet": (4, 4, 8, 8, 8), "resnet2": (4, 4, 8, 8, 8)}


def build(name: str, c_in: int, size: int, n_out: int = 5, small: bool = False) -> nn.Module:
    kwargs = dict(c_in=c_in, n_out=n_out)
    if name == "simple_net":
        kwargs["img_size"] = size
    elif small:
        kwargs["widths"] = SMALL_WIDTHS[name]
    return get_model(name, **kwargs)


@pytest.mark.parametrize("c_in,size", SHAPES)
@pytest.mark.parametrize("name", PROGRESSION)
def test_shapes_forward_backward(name, c_in, size):
    """Every stage of every model at each input size (narrow layers keep it quick)."""
    torch.manual_seed(0)
    model = build(name, c_in, size, small=True)
    x = torch.randn(3, c_in, size, size)
    out = model(x)
    assert out.shape == (3, 5)
    out.logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    assert model(x[:1]).shape == (1, 5)


@pytest.mark.parametrize("name", PROGRESSION)
def test_default_size_models(name):
    torch.manual_seed(0)
    for c_in, size in [(1, 28), (3, 32)]:
        model = build(name, c_in, size).eval()
        with torch.no_grad():
            assert model(torch.randn(2, c_in, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name", PROGRESSION)
def test_config_rebuilds_model(name):
    model = build(name, 3, 32, n_out=7)
    config = json.loads(json.dumps(model.config))
    rebuilt = get_model(**config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    assert isinstance(rebuilt, type(model)) and isinstance(model, MODELS[name])


def test_progression_classes_and_widths():
    assert [type(build(n, 1, 28)) for n in PROGRESSION] == [SimpleNet, ConvNet, ConvNet2, ConvBnNet, ConvBnNet2,
                                                             Resnet, Resnet2]
    net = ConvBnNet2(c_in=3, widths=(8, 16, 32))
    assert len(net.layers) == len(net.layers2) == 2
    assert all(layer.conv.stride == (1, 1) for layer in net.layers2)
    assert isinstance(Resnet2(p=0.3).drop, nn.Dropout) and Resnet2(p=0.3).drop.p == 0.3
    assert sum(p.numel() for p in SimpleNet(c_in=3, hidden=40, img_size=32).parameters()) == 3072 * 40 + 40 + 410


def test_simple_net_rejects_wrong_input_size():
    net = SimpleNet(c_in=1, img_size=28)
    with pytest.raises(ValueError, match="784"):
        net(torch.randn(2, 3, 32, 32))


def test_bn_layer_uses_batch_stats_in_training():
    torch.manual_seed(0)
    layer = BnLayer(3, 4, stride=1)
    with torch.no_grad():
        layer.m.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))
        layer.a.copy_(torch.tensor([0.0, 1.0, -1.0, 5.0]))
    x = torch.randn(16, 3, 8, 8)
    y = layer(x)
    var, mean = torch.var_mean(y, dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, layer.a.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(var.sqrt(), layer.m.detach(), atol=1e-3, rtol=1e-3)


def test_bn_layer_running_stats_and_eval():
    torch.manual_seed(0)
    layer = BnLayer(2, 3, stride=1, momentum=0.5)
    x = torch.randn(8, 2, 6, 6) * 3 + 1
    act = torch.relu(layer.conv(x)).detach()
    var, mean = torch.var_mean(act, dim=(0, 2, 3), correction=1)
    layer(x)
    torch.testing.assert_close(layer.running_mean, 0.5 * mean)
    torch.testing.assert_close(layer.running_var, 0.5 * torch.ones(3) + 0.5 * var)
    # eval: running statistics, so an item's output does not depend on its batch, and buffers stay put
    layer.eval()
    before = layer.running_mean.clone()
    alone = layer(x[:1])
    in_batch = layer(torch.cat([x[:1], torch.randn(5, 2, 6, 6) * 10]))[:1]
    torch.testing.assert_close(alone, in_batch)
    assert torch.equal(layer.running_mean, before)
    expected = (act[:1] - layer.running_mean.view(1, -1, 1, 1)) / (layer.running_var.view(1, -1, 1, 1) + 1e-5).sqrt()
    torch.testing.assert_close(alone, expected)


def test_bn_layer_eval_with_the_last_batch_statistics_as_in_the_notes():
    torch.manual_seed(0)
    layer = BnLayer(2, 3, stride=1, eval_stats="last_batch")
    first, last = torch.randn(8, 2, 6, 6), torch.randn(8, 2, 6, 6) * 3 + 1
    layer(first)
    trained_out = layer(last)
    layer.eval()
    torch.testing.assert_close(layer(last), trained_out)  # eval on the last training batch = its training output
    act = torch.relu(layer.conv(last)).detach()
    var, mean = torch.var_mean(act, dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(layer.running_mean, mean)  # the last batch's, nothing of the first remains
    torch.testing.assert_close(layer.running_var, var)
    running = BnLayer(2, 3, stride=1)
    running.load_state_dict(layer.state_dict())  # same buffers: the two options differ only in how they fill them
    assert "eval_stats='last_batch'" in repr(layer)
    with pytest.raises(ValueError, match="eval_stats"):
        BnLayer(2, 3, eval_stats="notes")


@pytest.mark.parametrize("name", ["conv_bn_net", "conv_bn_net2", "resnet", "resnet2"])
def test_bn_nets_pass_bn_eval_to_every_bn_layer(name):
    model = get_model(name, c_in=1, n_out=3, widths=(4, 4, 8), bn_eval="last_batch")
    layers = [m for m in model.modules() if isinstance(m, BnLayer)]
    assert layers and all(m.eval_stats == "last_batch" for m in layers)
    assert model.config["bn_eval"] == "last_batch"


def test_bn_layer_shift_and_scale_are_learnt():
    layer = BnLayer(1, 2)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"conv.weight", "a", "m"}
    layer(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
    assert layer.a.grad is not None and layer.m.grad is not None and layer.m.grad.abs().sum() > 0
    assert layer(torch.randn(2, 1, 9, 9)).shape == (2, 2, 5, 5)  # stride 2 halves, rounding up


def test_resnet_layer_adds_its_input():
    layer = ResnetLayer(4, 4)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(layer(x) - x, BnLayer.forward(layer, x))
    with pytest.raises(ValueError, match="ni == nf"):
        ResnetLayer(4, 8)


@requires_fmnist
def test_resnet_trains_on_real_fashion_mnist():
    torch.manual_seed(0)
    dls = fashion_mnist_loaders(bs=32, n_train=2000, n_valid=500, seed=0, device="cpu")
    model = Resnet(c_in=1, n_out=10, widths=(8, 8, 16, 16))
    learn = Learner(model, dls, lr=1e-2, metrics=accuracy)
    learn.remove_cb(learn.progress)
    before = learn.validate()
    learn.fit(1)
    after = learn.validate()
    assert after[0] < before[0]
    assert after[1] > 0.6


def test_adaptive_pool_skip_passes_a_map_of_the_output_size_through_and_pools_any_other():
    from deepfit.models.cnn import AdaptiveAvgPool2dSkip

    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert AdaptiveAvgPool2dSkip(4)(x) is x
    assert AdaptiveAvgPool2dSkip((None, 4))(x) is x
    for size, shape in [(4, (2, 3, 7, 7)), ((2, 3), (2, 3, 8, 6)), ((None, 2), (2, 3, 5, 6))]:
        y = torch.randn(*shape)
        torch.testing.assert_close(AdaptiveAvgPool2dSkip(size)(y), nn.AdaptiveAvgPool2d(size)(y))
    # FastCNN on 28×28 images reaches a 4×4 map: the skip gives exactly what torch's pooling gives
    torch.manual_seed(0)
    model = get_model("fast_cnn", c_in=1, n_out=10, pool_first=True).eval()
    pool_at = next(i for i, m in enumerate(model) if isinstance(m, AdaptiveAvgPool2dSkip))
    images = torch.randn(3, 1, 28, 28)
    expected = model(images)
    model[pool_at] = nn.AdaptiveAvgPool2d(4)
    assert torch.equal(model(images), expected)
