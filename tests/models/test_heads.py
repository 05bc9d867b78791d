"""AdaptiveConcatPool2d, create_head, create_body and the body/head split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.models import MODELS, AdaptiveConcatPool2d, create_body, create_head, num_features, vision_splitter
from deepfit.models.heads import adapt_input_channels, find_cut


def test_adaptive_concat_pool_is_max_then_mean():
    x = torch.randn(2, 3, 5, 7)
    out = AdaptiveConcatPool2d()(x)
    assert out.shape == (2, 6, 1, 1)
    assert torch.allclose(out[:, :3, 0, 0], x.amax(dim=(2, 3)))
    assert torch.allclose(out[:, 3:, 0, 0], x.mean(dim=(2, 3)))


def test_create_head_layers_and_shapes():
    head = create_head(64, 7)
    kinds = [type(m) for m in head]
    assert kinds == [AdaptiveConcatPool2d, nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU,
                     nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert head[4].in_features == 128 and head[4].out_features == 512 and head[8].out_features == 7
    assert head[3].p == 0.25 and head[7].p == 0.5
    assert head(torch.randn(4, 64, 3, 3)).shape == (4, 7)
    plain = create_head(10, 3, lin_ftrs=[], ps=0.0, concat_pool=False, first_bn=False)
    assert [type(m) for m in plain] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    with pytest.raises(ValueError, match="dropout"):
        create_head(10, 3, lin_ftrs=[8, 8], ps=[0.1])


@pytest.mark.parametrize("name", ["simple_cnn", "xresnet18"])
def test_create_body_cuts_before_the_pool_and_keeps_names(name):
    kwargs = dict(c_in=1, n_out=5) if name != "xresnet18" else dict(c_in=1, n_out=5, widths=(8, 8, 16, 16))
    model = MODELS[name](**kwargs)
    body = create_body(model)
    assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.Linear)) for m in body.children())
    assert set(body.state_dict()) <= set(model.state_dict())  # same keys: full-model weights load into it
    nf = num_features(body)
    assert body(torch.randn(2, 1, 28, 28)).shape[1] == nf
    net = nn.Sequential(body, create_head(nf, 3))
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    groups = vision_splitter(net)
    assert len(groups) == 2 and sum(len(g) for g in groups) == len(list(net.parameters()))


def test_create_body_with_index_or_function_and_errors():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    assert len(create_body(model, cut=-2)) == 3
    assert isinstance(create_body(model, cut=lambda m: m[0]), nn.Sequential)
    with pytest.raises(ValueError, match="no pooling layer"):
        find_cut(model)
    with pytest.raises(ValueError, match="empty body"):
        create_body(model, cut=0)
    with pytest.raises(TypeError, match="Sequential"):
        vision_splitter(model)


def test_adapt_input_channels_keeps_the_response_to_a_constant_image():
    body = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False))
    x3 = torch.full((1, 3, 5, 5), 0.5)
    before = body(x3)
    adapt_input_channels(body, 1)
    assert body[0].weight.shape == (4, 1, 3, 3) and body[0].in_channels == 1
    assert torch.allclose(body(torch.full((1, 1, 5, 5), 0.5)), before, atol=1e-6)


def test_vision_model_config_rebuilds_it_and_takes_pretrained_body_weights():
    from deepfit.learner.vision import load_body_weights
    from deepfit.models import VisionModel, get_model

    model = VisionModel("simple_cnn", 4, c_in=1, lin_ftrs=[32], arch_kwargs=dict(width=8))
    rebuilt = get_model("vision_model", **model.config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert all(k.startswith(("0.", "1.")) for k in model.state_dict())  # body, head
    assert rebuilt(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    pretrained = get_model("simple_cnn", c_in=1, n_out=10, width=8)
    load_body_weights(model[0], pretrained.state_dict())
    for k, v in model[0].state_dict().items():
        assert torch.equal(v, pretrained.state_dict()[k])
