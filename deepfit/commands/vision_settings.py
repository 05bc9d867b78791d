"""The settings of a train-vision (or vision lr-find) run: the command line, `--recipe`, the demo recipe, or plain.

Each option a recipe sets (`vision_defaults.RECIPE_OPTIONS`: architecture, epochs, batch size, learning rate,
label smoothing, augmentation preset, precision, channels-last, TTA passes) is, in order of precedence:

1. the value given on the command line (or in the `--config` file);
2. the value of `--recipe NAME` (`deepfit.recipes`), which also sets the architecture's arguments (its widths),
   the one-cycle warm-up fraction and the weight decay, none of which are command-line options;
3. without `--recipe`, for images 28-32 px wide (fashion-mnist) trained from scratch, one label each: the demo
   recipe's value (`vision_defaults.DEMO_RECIPE`), and `args.recipe` is set to its name so that config.json
   and `--config` re-runs say where the settings came from;
4. otherwise `vision_defaults.PLAIN`.

A recipe's architecture arguments apply when the architecture trained is the recipe's (an `--arch` that names
another one drops them). With `--multi-label` a recipe's label smoothing is not used.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ..recipes import get_recipe
from .vision_defaults import DEMO_RECIPE, PLAIN, RECIPE_OPTIONS, SMALL_IMAGES


@dataclass
class VisionSettings:
    """What `resolve_settings` decided besides the options themselves (which it writes into `args`)."""

    source: str  # where the defaults came from, in words
    recipe: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    wd: float | None = None
    pct_start: float = 0.25
    div_final: float = 1e5  # the one-cycle schedule ends at lr / div_final
    given: list[str] = field(default_factory=list)  # the recipe's options given on the command line

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "recipe": self.recipe, "arch_kwargs": self.arch_kwargs, "wd": self.wd,
                "pct_start": self.pct_start, "div_final": self.div_final}

    def describe(self) -> str:
        given = f"; given on the command line: {', '.join(_flag(n) for n in self.given)}" if self.given else ""
        return f"settings from {self.source}{given}"


def is_small(size: int | None) -> bool:
    return size is not None and SMALL_IMAGES[0] <= size <= SMALL_IMAGES[1]


def resolve_settings(args: argparse.Namespace, image_size: int | None) -> VisionSettings:
    """Fill the recipe options of `args` that are None (see the module docstring); return the rest of the settings.

    `image_size`: the side of the training images in pixels, where it is known (None: not small).
    """
    present = [n for n in RECIPE_OPTIONS if n in vars(args)]
    given = [n for n in present if getattr(args, n) is not None]
    multi = bool(getattr(args, "multi_label", False))
    name = getattr(args, "recipe", None)
    if name is not None:
        source = f"recipe {name}"
    elif is_small(image_size) and getattr(args, "weights", None) is None and not multi:
        name = DEMO_RECIPE
        source = (f"the demo recipe {name} (images {image_size} px wide, from scratch; --recipe chooses another, "
                  f"and options given override it)")
        if "recipe" in vars(args):
            args.recipe = name
    else:
        source = "the plain defaults (no recipe)"
    if "tta" in present and isinstance(args.tta, bool):  # config.json of runs before --tta N: a flag
        args.tta = 4 if args.tta else 0
    if name is None:
        for n in present:
            if getattr(args, n) is None:
                setattr(args, n, PLAIN[n])
        return VisionSettings(source, given=given)
    recipe = get_recipe(name)
    values = recipe.cli_options()
    if multi:
        values["label_smoothing"] = 0.0
    for n in present:
        if getattr(args, n) is None:
            setattr(args, n, values[n])
    arch = getattr(args, "arch", recipe.arch)
    return VisionSettings(source, recipe=name, arch_kwargs=dict(recipe.arch_kwargs) if arch == recipe.arch else {},
                          wd=recipe.wd, pct_start=recipe.pct_start, div_final=recipe.div_final, given=given)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
