"""Named recipes: each builds a registered, rebuildable model; a short run learns; the fields make sense."""

from __future__ import annotations

import pytest
import torch

from deepfit.data.transforms import AUGMENT_PRESETS, Flip, tta_transforms
from deepfit.models import get_model
from deepfit.recipes import RECIPES, ChannelsLast, Recipe, get_recipe, train_recipe
from tests.helpers.data import requires_fmnist


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_fields_and_model(name):
    recipe = get_recipe(name)
    assert recipe.name == name and recipe.description
    assert recipe.augment in AUGMENT_PRESETS and recipe.precision in ("auto", "fp32", "bf16", "fp16")
    assert recipe.epochs >= 1 and recipe.bs >= 1 and recipe.lr > 0 and 0 <= recipe.label_smoothing < 1
    model = recipe.build_model(c_in=1, n_out=10)
    out = model(torch.randn(2, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 10)
    rebuilt = get_model(**model.config)  # what load_learner does with an export
    assert rebuilt.load_state_dict(model.state_dict()) is not None
    options = recipe.cli_options()
    assert options["arch"] == recipe.arch and options["epochs"] == recipe.epochs


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(KeyError, match="fmnist_fast"):
        get_recipe("nope")
    recipe = get_recipe("fmnist_fast")
    assert get_recipe(recipe) is recipe
    shorter = recipe.with_(epochs=1)
    assert shorter.epochs == 1 and recipe.epochs != 1 and shorter.arch == recipe.arch


def test_channels_last_is_a_layout_step_not_an_augmentation():
    x = torch.randn(3, 2, 5, 5)
    y = ChannelsLast()(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    assert tta_transforms([ChannelsLast(), Flip()])[0].__class__ is Flip and len(tta_transforms([ChannelsLast()])) == 0


@requires_fmnist
def test_a_short_recipe_run_learns_and_reports():
    tiny = Recipe(name="tiny", description="a test", arch="xresnet",
                  arch_kwargs=dict(layers=[1], widths=[16], stem_widths=[16], stem_stride=1, stem_pool=True),
                  epochs=2, bs=64, lr=3e-2, augment="crop", precision="auto", tta=2)
    result = train_recipe(tiny, n_train=1024, n_valid=500, valid="split", quiet=True)
    assert result.accuracy > 0.25  # ten classes: chance is 0.1 (32 steps of a residual net that starts as identity)
    assert result.tta_accuracy is not None and 0.2 < result.tta_accuracy <= 1
    assert len(result.history) == 2 and result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]
    assert result.precision["precision"] in ("fp32", "bf16") and result.precision["reason"]
    assert result.train_seconds > 0 and "tiny: test accuracy" in result.summary()
    first = next(result.learn.model.parameters())
    assert first.is_contiguous(memory_format=torch.channels_last)  # the model trained channels-last


def test_fast_cnn_pool_first_normalises_pooled_maps():
    from torch import nn

    plain = get_model("fast_cnn", c_in=1, n_out=10, widths=[4, 8], n_convs=[1, 2], hidden=8)
    first = get_model("fast_cnn", c_in=1, n_out=10, widths=[4, 8], n_convs=[1, 2], hidden=8, pool_first=True)
    kinds = [type(m) for m in first.modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.BatchNorm2d)]
    # stage 1: conv → pool → BN; stage 2: conv → BN (not its last), then conv → pool → BN
    assert kinds == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d,
                     nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d]
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in first.parameters())
    x = torch.randn(3, 1, 28, 28)
    assert first(x).shape == plain(x).shape == (3, 10)
    assert get_model(**first.config).config["pool_first"] is True
