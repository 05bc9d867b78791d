"""train-vision's settings (commands/vision_settings.py): command line, then --recipe, then the demo recipe for
small images, then the plain defaults."""

from __future__ import annotations

import argparse

import pytest

from deepfit.cli import build_parser
from deepfit.commands.vision_data import image_size
from deepfit.commands.vision_defaults import DEMO_RECIPE, PLAIN, RECIPE_OPTIONS
from deepfit.commands.vision_settings import resolve_settings
from deepfit.recipes import get_recipe


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train-vision", *argv])


def options(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in RECIPE_OPTIONS}


def test_small_images_get_the_demo_recipe():
    demo = get_recipe(DEMO_RECIPE)
    args = parse("fashion-mnist")
    settings = resolve_settings(args, image_size(args))
    assert options(args) == {n: demo.cli_options()[n] for n in RECIPE_OPTIONS}
    assert args.recipe == DEMO_RECIPE and settings.recipe == DEMO_RECIPE  # config.json says where they came from
    assert settings.arch_kwargs == demo.arch_kwargs and settings.wd == demo.wd
    assert settings.pct_start == demo.pct_start and settings.given == []


def test_options_given_override_the_recipe():
    recipe = get_recipe("fmnist_fast")
    args = parse("imgs", "--recipe", "fmnist_fast", "--epochs", "1", "--augment", "crop", "--tta", "0",
                 "--no-channels-last", "--precision", "fp32")
    settings = resolve_settings(args, 64)  # --recipe applies to images of any size
    assert (args.epochs, args.augment, args.tta, args.channels_last, args.precision) == (1, "crop", 0, False, "fp32")
    assert (args.arch, args.lr, args.bs, args.label_smoothing) == (recipe.arch, recipe.lr, recipe.bs,
                                                                    recipe.label_smoothing)
    assert settings.arch_kwargs == recipe.arch_kwargs
    assert settings.given == ["epochs", "augment", "precision", "channels_last", "tta"]
    args = parse("imgs", "--recipe", "fmnist_fast", "--arch", "xresnet18")
    assert resolve_settings(args, 28).arch_kwargs == {}  # another architecture: the recipe's widths do not apply


@pytest.mark.parametrize("argv, size", [
    (["imgs"], 64),  # larger images
    (["imgs"], None),  # size unknown (a CSV)
    (["imgs", "--weights", "w.pth"], 28),  # transfer learning: the body's architecture is the user's
    (["imgs", "--multi-label"], 28),
])
def test_plain_defaults_otherwise(argv, size):
    args = parse(*argv)
    settings = resolve_settings(args, size)
    assert options(args) == PLAIN and args.recipe is None
    assert settings.recipe is None and settings.arch_kwargs == {} and settings.wd is None


def test_multi_label_drops_a_recipes_label_smoothing():
    args = parse("labels.csv", "--multi-label", "--recipe", "fmnist_demo")
    resolve_settings(args, None)
    assert args.label_smoothing == 0.0 and args.arch == get_recipe("fmnist_demo").arch


def test_tta_flag_of_older_configs_and_tta_alone():
    args = parse("imgs", "--tta")
    assert args.tta == 4  # `--tta` alone
    args = parse("imgs")
    args.tta = True  # config.json of a run from before --tta N
    resolve_settings(args, 64)
    assert args.tta == 4


def test_image_size(tmp_path):
    from PIL import Image

    assert image_size(parse("fashion-mnist")) == 28
    assert image_size(parse(str(tmp_path), "--size", "30")) == 30
    (tmp_path / "a").mkdir()
    Image.new("L", (40, 36)).save(tmp_path / "a" / "0.png")
    assert image_size(parse(str(tmp_path))) == 40
    assert image_size(parse(str(tmp_path / "missing"))) is None


def test_a_recipes_ema_and_schedule_end_reach_the_run(monkeypatch):
    import deepfit.commands.vision_settings as vision_settings

    recipe = get_recipe("fmnist_fast").with_(ema=0.97, div_final=8.0)
    monkeypatch.setattr(vision_settings, "get_recipe", lambda name: recipe)
    args = parse("imgs", "--recipe", "fmnist_fast")
    settings = resolve_settings(args, 28)
    assert args.ema == 0.97 and settings.div_final == 8.0 and settings.as_dict()["div_final"] == 8.0
    args = parse("imgs", "--recipe", "fmnist_fast", "--ema", "0")
    resolve_settings(args, 28)
    assert args.ema == 0.0  # given on the command line: off
