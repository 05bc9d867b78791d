"""The D2L family: shapes at 28×28/32×32 with 1/3 channels, the from-scratch BatchNorm against PyTorch's."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepfit.models import (
    VGG,
    AlexNet,
    BatchNorm,
    GoogLeNet,
    Inception,
    LeNet,
    NiN,
    get_model,
    vgg,
    vgg_block,
)

SHAPES = [(1, 28), (3, 28), (1, 32), (3, 32)]

# narrow versions of each architecture, so every input shape gets a quick forward + backward
SMALL = {
    "lenet": {},
    "lenet_bn": {},
    "alexnet": dict(widths=(8, 8, 8, 8, 8), hidden=16),
    "vgg": dict(conv_arch=((1, 4), (1, 8), (2, 8), (2, 8), (2, 8)), hidden=16),
    "nin": dict(widths=(8, 8, 8)),
    "googlenet": dict(width_div=16),
}


@pytest.mark.parametrize("c_in,size", SHAPES)
@pytest.mark.parametrize("name", list(SMALL))
def test_shapes_forward_backward(name, c_in, size):
    torch.manual_seed(0)
    model = get_model(name, c_in=c_in, n_out=6, **SMALL[name])
    out = model(torch.randn(3, c_in, size, size))
    assert out.shape == (3, 6)
    out.logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ["lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet"])
def test_default_size_models(name):
    """The registered defaults (full width) at both input sizes, forward only."""
    torch.manual_seed(0)
    for c_in, size in [(1, 28), (3, 32)]:
        model = get_model(name, c_in=c_in, n_out=10).eval()
        with torch.no_grad():
            assert model(torch.randn(1, c_in, size, size)).shape == (1, 10)
        config = json.loads(json.dumps(model.config))
        assert type(get_model(**config)) is type(model)


def test_lenet_layout():
    plain, with_bn = LeNet(), get_model("lenet_bn")
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in with_bn.modules()) == 4
    assert with_bn.config["bn"] is True
    # 28×28 is exactly LeNet-5: 16 maps of 5×5 reach the first dense layer
    features = plain[:6](torch.randn(1, 1, 28, 28))
    assert features.shape == (1, 16, 5, 5)
    assert sum(p.numel() for p in plain.parameters()) == 61706
    with pytest.raises(ValueError, match="activation"):
        LeNet(act="swish")


def test_vgg_builds_blocks_from_conv_arch():
    arch = ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))
    model = vgg(arch, c_in=1, n_out=10, hidden=32)
    assert isinstance(model, VGG)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    block = vgg_block(3, 4, 8)
    assert sum(isinstance(m, nn.Conv2d) for m in block) == 3 and isinstance(block[-1], nn.MaxPool2d)
    assert block(torch.randn(1, 4, 7, 7)).shape == (1, 8, 4, 4)
    with pytest.raises(ValueError, match="conv_arch"):
        VGG(conv_arch=())


def test_imagenet_stems_on_larger_images():
    alex = AlexNet(widths=(8, 8, 8, 8, 8), hidden=16, small_input=False)
    assert alex[0].kernel_size == (11, 11) and alex[0].stride == (4, 4)
    assert alex(torch.randn(2, 1, 96, 96)).shape == (2, 10)
    nin = NiN(widths=(8, 8, 8), small_input=False)
    assert nin(torch.randn(2, 1, 96, 96)).shape == (2, 10)


def test_nin_has_no_dense_layer_and_inception_concatenates():
    assert not any(isinstance(m, nn.Linear) for m in NiN().modules())
    block = Inception(8, 4, (3, 5), (2, 6), 7)
    assert block(torch.randn(2, 8, 6, 6)).shape == (2, 4 + 5 + 6 + 7, 6, 6)
    assert sum(isinstance(m, Inception) for m in GoogLeNet(width_div=16).modules()) == 9


def _copy_affine(ours: BatchNorm, ref: nn.Module) -> None:
    with torch.no_grad():
        w, b = torch.rand(ours.num_features) + 0.5, torch.randn(ours.num_features)
        ours.weight.copy_(w), ours.bias.copy_(b)
        ref.weight.copy_(w), ref.bias.copy_(b)


@pytest.mark.parametrize("ref_cls,shape", [(nn.BatchNorm2d, (8, 5, 6, 7)), (nn.BatchNorm1d, (16, 5))])
def test_batchnorm_equals_pytorch(ref_cls, shape):
    torch.manual_seed(0)
    ours, ref = BatchNorm(5, momentum=0.2), ref_cls(5, momentum=0.2)
    _copy_affine(ours, ref)
    for step in range(3):  # training: batch statistics, running averages, gradients
        x = (torch.randn(shape) * (step + 1) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y, y_ref = ours(x), ref(x_ref)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(y)
        y.backward(g), y_ref.backward(g)
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.running_mean, ref.running_mean)
        torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ours.eval(), ref.eval()
    x = torch.randn(shape) * 2
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    assert ours.state_dict().keys() == ref.state_dict().keys()


def test_batchnorm_rejects_bad_input():
    bn = BatchNorm(4)
    with pytest.raises(ValueError, match=r"\(N, 4"):
        bn(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="more than one value"):
        bn(torch.randn(1, 4))
