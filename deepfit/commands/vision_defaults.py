"""train-vision's defaults: the recipe names, the demo recipe that small images get, and the plain defaults.

The parser imports this module, so it imports nothing (no torch). Each setting of a train-vision run comes from,
in order: the command line; `--recipe NAME`; for images `SMALL_IMAGES` pixels wide (fashion-mnist and the like)
trained from scratch with one label each, the demo recipe `DEMO_RECIPE`; else `PLAIN` (see
`commands.vision_settings`).
"""

from __future__ import annotations

#: the names of `deepfit.recipes.RECIPES` (tests/test_cli.py checks that they agree)
RECIPE_NAMES = ("fmnist_demo", "fmnist_fast")
#: the recipe `make demo` runs (`deepfit.recipes.FMNIST_DEMO`), whose settings small images get without --recipe
DEMO_RECIPE = "fmnist_demo"
#: the image sides (pixels, inclusive) that get the demo recipe's settings without --recipe
SMALL_IMAGES = (28, 32)
#: the settings of every other run without --recipe (larger images, --weights, --multi-label)
PLAIN: dict[str, object] = {"arch": "simple_cnn", "epochs": 3, "bs": 64, "lr": 3e-3, "label_smoothing": 0.0,
                            "ema": 0.0, "augment": "none", "precision": "auto", "channels_last": False, "tta": 0}
#: the options a recipe sets, by their `args` name
RECIPE_OPTIONS = tuple(PLAIN)


def default_help(name: str) -> str:
    """The '(default: ...)' text of an option a recipe sets."""
    plain = PLAIN[name]
    plain = {True: "on", False: "off"}.get(plain, plain) if isinstance(plain, bool) else plain
    return (f"default: the recipe's; without --recipe, for {SMALL_IMAGES[0]}-{SMALL_IMAGES[1]} px images (fashion-"
            f"mnist) the demo recipe's ({DEMO_RECIPE}), else {plain}")
