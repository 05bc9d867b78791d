"""XResNet: shapes, the stem, zero-initialised BatchNorm, shortcuts, bottlenecks, channels_last."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepfit.data import fashion_mnist_loaders
from deepfit.learner import Learner, accuracy
from deepfit.models import ResBlock, XResNet, get_model, to_channels_last, xresnet18, xresnet50
from tests.helpers.data import requires_fmnist

SMALL = dict(widths=(4, 8, 8, 16))
SHAPES = [(1, 28), (3, 28), (1, 32), (3, 32)]


@pytest.mark.parametrize("c_in,size", SHAPES)
@pytest.mark.parametrize("name", ["xresnet18", "xresnet34"])
def test_basic_block_models_forward_backward(name, c_in, size):
    torch.manual_seed(0)
    model = get_model(name, c_in=c_in, n_out=7, **SMALL)
    out = model(torch.randn(2, c_in, size, size))
    assert out.shape == (2, 7)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("c_in,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("name", ["xresnet50", "xresnet101", "xresnet152"])
def test_bottleneck_models_forward(name, c_in, size):
    model = get_model(name, c_in=c_in, n_out=7, widths=(2, 2, 4, 4), stem_widths=(4, 4, 8)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, c_in, size, size)).shape == (2, 7)
    assert model[-1].in_features == 4 * 4  # last stage width × expansion 4


def test_block_counts_and_default_head():
    counts = {"xresnet18": (1, [2, 2, 2, 2]), "xresnet34": (1, [3, 4, 6, 3]), "xresnet50": (4, [3, 4, 6, 3]),
              "xresnet101": (4, [3, 4, 23, 3]), "xresnet152": (4, [3, 8, 36, 3])}
    for name, (expansion, layers) in counts.items():
        model = get_model(name, c_in=3, n_out=10, widths=(2, 2, 2, 2), stem_widths=(2, 2, 2))
        stages = [m for m in model if isinstance(m, nn.Sequential) and isinstance(m[0], ResBlock)]
        assert [len(s) for s in stages] == layers, name
        assert model.config["layers"] == layers and model.config["expansion"] == expansion
        assert stages[0][0].nf == 2 * expansion
    assert xresnet18(n_out=10)[-1].in_features == 512
    assert xresnet50(n_out=10)[-1].in_features == 2048
    body = xresnet18(n_out=10)[:-3]  # slices are plain nn.Sequential holding the same layers
    assert type(body) is nn.Sequential and body(torch.randn(2, 3, 32, 32)).shape == (2, 512, 1, 1)


def test_stem_follows_the_notes():
    for c_in in (1, 3):
        model = xresnet18(c_in=c_in, n_out=10)
        convs = [model[i][0] for i in range(3)]
        assert [c.out_channels for c in convs] == [(c_in + 1) * 8, 32, 64]
        assert [c.in_channels for c in convs] == [c_in, (c_in + 1) * 8, 32]
        assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
        assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
        assert isinstance(model[3], nn.MaxPool2d)


def test_stem_widths_presets_and_the_notes_stem():
    for c_in in (1, 3):
        notes = xresnet18(c_in=c_in, n_out=10, stem_widths="notes")
        assert [notes[i][0].out_channels for i in range(3)] == [(c_in + 1) * 8, 64, 64]
        assert notes.config["stem_widths"] == [(c_in + 1) * 8, 64, 64]  # the config records widths, not the name
        assert xresnet18(c_in=c_in, stem_widths="default").config["stem_widths"] == [(c_in + 1) * 8, 32, 64]
    custom = xresnet18(c_in=1, stem_widths=(8, 16))
    assert [custom[i][0].out_channels for i in range(2)] == [8, 16] and isinstance(custom[2], nn.MaxPool2d)
    with pytest.raises(ValueError, match="unknown stem_widths 'fastai'"):
        xresnet18(stem_widths="fastai")
    with pytest.raises(ValueError, match="positive widths"):
        xresnet18(stem_widths=())


def test_last_batchnorm_of_each_block_starts_at_zero():
    model = xresnet18(c_in=1, n_out=10, widths=(4, 8, 8, 16))
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    assert len(blocks) == 8
    for block in blocks:
        bns = [m for m in block.convs.modules() if isinstance(m, nn.BatchNorm2d)]
        assert torch.all(bns[-1].weight == 0)
        assert all(torch.all(bn.weight == 1) for bn in bns[:-1])
    # so at initialisation a block is relu(shortcut(x))
    block = blocks[2]  # the first block of stage 2: downsamples and widens
    block.eval()
    x = torch.randn(2, block.ni, 7, 7)
    torch.testing.assert_close(block(x), torch.relu(block.idconv(block.pool(x))))


def test_shortcuts():
    same = ResBlock(8, 8)
    assert isinstance(same.pool, nn.Identity) and isinstance(same.idconv, nn.Identity)
    down = ResBlock(8, 16, stride=2)
    assert isinstance(down.pool, nn.AvgPool2d) and down.pool.ceil_mode
    conv = down.idconv[0]
    assert conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.out_channels == 16
    for size, expected in [(7, 4), (8, 4), (5, 3)]:  # odd sizes: main path and shortcut both round up
        assert down(torch.randn(2, 8, size, size)).shape == (2, 16, expected, expected)
    widen = ResBlock(8, 4, expansion=4)  # no pool, 1×1 conv to 16 channels
    assert isinstance(widen.pool, nn.Identity) and widen.idconv[0].out_channels == 16


def test_bottleneck_puts_the_stride_on_the_3x3_conv():
    block = ResBlock(64, 16, expansion=4, stride=2)
    convs = [m for m in block.convs.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((1, 1), (1, 1)), ((3, 3), (2, 2)), ((1, 1), (1, 1))]
    assert [c.out_channels for c in convs] == [16, 16, 64]
    basic = ResBlock(16, 32, stride=2)
    assert [m.stride for m in basic.convs.modules() if isinstance(m, nn.Conv2d)] == [(2, 2), (1, 1)]


def test_options_and_errors():
    model = XResNet(layers=[1, 1], widths=[4, 8], c_in=1, n_out=3, stem_stride=1, stem_pool=False, p=0.25)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model)
    assert isinstance(model[-2], nn.Dropout) and model[-2].p == 0.25
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(ValueError, match="same length"):
        XResNet(layers=[1, 1], widths=[4])
    with pytest.raises(ValueError, match="at least one block"):
        XResNet(layers=[0, 1], widths=[4, 8])


def test_config_rebuilds_model():
    model = get_model("xresnet34", c_in=1, n_out=5, widths=(4, 4, 8, 8))
    config = json.loads(json.dumps(model.config))
    rebuilt = get_model(**config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    assert type(get_model(**{**config, "arch": "xresnet"})) is XResNet


def test_channels_last_keeps_layout_and_results():
    torch.manual_seed(0)
    model = xresnet18(c_in=1, n_out=10, widths=(8, 8, 16, 16)).train()
    x = torch.randn(4, 1, 28, 28)
    ref = model(x)
    to_channels_last(model)
    assert model[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    layouts = []
    hooks = [m.register_forward_hook(lambda m, i, o: layouts.append(o.is_contiguous(memory_format=torch.channels_last)))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d, ResBlock))]
    out = model(x.contiguous(memory_format=torch.channels_last))
    for h in hooks:
        h.remove()
    assert layouts and all(layouts)  # no layer silently converts back to NCHW
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    out.sum().backward()


@requires_fmnist
def test_small_xresnet_trains_on_real_fashion_mnist():
    torch.manual_seed(0)
    dls = fashion_mnist_loaders(bs=32, n_train=2000, n_valid=500, seed=0, device="cpu")
    model = xresnet18(c_in=1, n_out=10, widths=(8, 8, 16, 16), stem_widths=(8, 8, 8))
    learn = Learner(model, dls, lr=1e-2, metrics=accuracy)
    learn.remove_cb(learn.progress)
    before = learn.validate()
    learn.fit(1)
    after = learn.validate()
    assert after[0] < before[0]
    assert after[1] > 0.5
