"""The model registry: every architecture deepfit builds by name, with one keyword set.

    model = get_model("xresnet18", c_in=1, n_out=10)
    model.config                 # {"arch": "xresnet18", "c_in": 1, "n_out": 10, ... every argument}
    same = get_model(**model.config)

Shared keywords, by task (`TASKS`):

- `vision`: `c_in` (input channels) and `n_out` (number of outputs); images `(bs, c_in, h, w)` → `(bs, n_out)`.
  A few fully connected models also need `img_size` (`ModelSpec.needs_img_size`).
- `lm`: `vocab_sz`, `emb_sz`, `n_hid`, `n_layers`; ids `(bs, seq_len)` → scores `(bs, seq_len, vocab_sz)`.
- `classifier`: `vocab_sz` and `n_out`; ids `(bs, seq_len)` → `(bs, n_out)`.
- `next_token`: `vocab_sz`; a window of ids `(bs, n)` → scores `(bs, vocab_sz)` for the token after it.
- `encoder`: `vocab_sz`; ids `(bs, seq_len)` → features `(bs, seq_len, emb_sz)`.
- `transfer`: `body_arch` (a registered vision name), `c_in`, `n_out`: a body cut from it plus a new head.

Each model file registers its own architectures with `register(name, builder, task)` when it is
imported; `deepfit.models` imports them all, so the registry is complete whenever any
`deepfit.models` module has been imported. This module imports nothing from deepfit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

#: what each task's models take and return (`deepfit models` prints this)
TASKS: dict[str, str] = {
    "vision": "images (bs, c_in, h, w) -> (bs, n_out); keywords c_in, n_out",
    "lm": "token ids (bs, seq_len) -> (bs, seq_len, vocab_sz) next-token scores; keywords vocab_sz, emb_sz, n_hid, "
          "n_layers",
    "classifier": "token ids (bs, seq_len) -> (bs, n_out); keywords vocab_sz, n_out",
    "next_token": "a window of ids (bs, n) -> (bs, vocab_sz) scores of the token after it; keyword vocab_sz",
    "encoder": "token ids (bs, seq_len) -> (bs, seq_len, emb_sz) features; keyword vocab_sz",
    "transfer": "a body cut from a registered vision architecture + a new head; keywords body_arch, c_in, n_out",
}

#: the CLI command whose `--arch` takes each task's names
COMMAND_TASKS: dict[str, str] = {"train-vision": "vision", "train-lm": "lm", "train-classifier": "classifier"}

#: keyword names of earlier releases (and of the fast.ai notes) → today's
RENAMED_KWARGS: dict[str, str] = {
    "c_out": "n_out", "n_class": "n_out", "vocab_size": "vocab_sz", "n_fac": "emb_sz", "n_hidden": "n_hid",
}


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture: its builder (a class or a function), its task, and what it needs."""

    name: str
    builder: Callable[..., nn.Module]
    task: str
    needs_img_size: bool = False

    @property
    def summary(self) -> str:
        """The first sentence of the builder's docstring (its first paragraph, on one line)."""
        paragraph = (self.builder.__doc__ or "").strip().split("\n\n")[0]
        text = " ".join(line.strip() for line in paragraph.splitlines())
        first, sep, _ = text.partition(". ")
        return first + "." if sep else text


#: registered name → builder (`MODELS[name](**kwargs)` builds without stamping `config["arch"]`)
MODELS: dict[str, Callable[..., nn.Module]] = {}
_SPECS: dict[str, ModelSpec] = {}


def register(name: str, builder: Callable[..., nn.Module], task: str, *, needs_img_size: bool = False,
             replace: bool = False) -> Callable[..., nn.Module]:
    """Register `builder` under `name` for `task` (a key of `TASKS`); returns `builder`.

    `needs_img_size`: the builder takes `img_size` (fully connected on pixels). Registering a name
    twice raises unless `replace=True`.
    """
    if task not in TASKS:
        raise ValueError(f"register({name!r}): unknown task {task!r}; choose from {', '.join(TASKS)}")
    if not callable(builder):
        raise TypeError(f"register({name!r}): builder must be callable, got {type(builder).__name__}")
    old = _SPECS.get(name)
    if old is not None and old.builder is not builder and not replace:
        raise ValueError(f"architecture {name!r} is already registered ({old.builder.__qualname__}); "
                         "pass replace=True to replace it")
    _SPECS[name] = ModelSpec(name, builder, task, needs_img_size)
    MODELS[name] = builder
    return builder


def spec(arch: str) -> ModelSpec:
    """The `ModelSpec` registered as `arch`; a `KeyError` listing the registered names otherwise."""
    try:
        return _SPECS[arch]
    except (KeyError, TypeError):
        raise KeyError(f"unknown architecture {arch!r}; registered: {', '.join(sorted(_SPECS))}") from None


def arch_names(task: str) -> list[str]:
    """The registered names of `task` (a key of `TASKS`, or a CLI command of `COMMAND_TASKS`), sorted.

    `arch_names("train-lm")` is exactly what `deepfit train-lm --arch` accepts.
    """
    task = COMMAND_TASKS.get(task, task)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join([*TASKS, *COMMAND_TASKS])}")
    return sorted(n for n, s in _SPECS.items() if s.task == task)


def registered_name(builder: Any) -> str | None:
    """The name `builder` (a class or function) is registered under, or None (the first, if several)."""
    for name, s in _SPECS.items():
        if s.builder is builder:
            return name
    return None


def upgrade_kwargs(arch: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`kwargs` with the keyword names of earlier releases renamed (`RENAMED_KWARGS`), with a DeprecationWarning.

    Also reads the exports of earlier releases: an `mlp`'s `n_in` (now `c_in=n_in, img_size=1`), and an
    `"arch"` among the arguments (a `vision_model`'s body, now `body_arch`; the AWD-LSTM text models' encoder,
    now implied by their name).
    """
    out = dict(kwargs)
    if "arch" in out:
        inner = out.pop("arch")
        if arch == "vision_model":
            out.setdefault("body_arch", inner)
    for old, new in RENAMED_KWARGS.items():
        if old in out:
            if new in out:
                raise TypeError(f"{arch}: got both {old!r} and {new!r}; {old!r} is the old name of {new!r}")
            warnings.warn(f"{arch}: the keyword {old!r} is now {new!r}", DeprecationWarning, stacklevel=3)
            out[new] = out.pop(old)
    if arch == "mlp" and "n_in" in out:
        warnings.warn("mlp: n_in=N is now c_in=N, img_size=1", DeprecationWarning, stacklevel=3)
        out.setdefault("c_in", out.pop("n_in"))
        out.setdefault("img_size", 1)
    return out


def get_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build the registered architecture `arch` with `kwargs`; its `config` is `{"arch": arch, **arguments}`.

    The arguments are the model's own record of its constructor arguments (defaults resolved) when it
    keeps one in `model.config`, else `kwargs`; `get_model(**model.config)` rebuilds the same network.
    """
    builder = spec(arch).builder
    kwargs = upgrade_kwargs(arch, kwargs)
    model = builder(**kwargs)
    own = getattr(model, "config", None)
    args = {k: v for k, v in own.items() if k != "arch"} if isinstance(own, dict) else kwargs
    model.config = {"arch": arch, **args}
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """`model.config` with its `"arch"`: models built by calling a registered class directly get its name.

    Raises `ValueError` when the model has no `config` dict or its architecture is not registered.
    """
    config = getattr(model, "config", None)
    arch = config.get("arch") if isinstance(config, dict) else None
    if arch is None:
        arch = registered_name(type(model))
    if arch not in _SPECS:
        raise ValueError(f"{type(model).__name__}: architecture {arch!r} is not registered in deepfit.models.MODELS "
                         "(build a registered one with get_model, or register its class with "
                         "deepfit.models.register and keep its constructor arguments in `self.config`)")
    if not isinstance(config, dict):
        raise ValueError(f"{type(model).__name__} has no `config` dict of constructor arguments; build it with "
                         "deepfit.models.get_model")
    return {"arch": arch, **{k: v for k, v in config.items() if k != "arch"}}


def rebuild(model_or_config: nn.Module | Mapping[str, Any]) -> nn.Module:
    """A new, freshly initialised model built from a model's config (or a config dict) through the registry."""
    config = model_or_config if isinstance(model_or_config, Mapping) else model_config(model_or_config)
    if "arch" not in config:
        raise ValueError(f"a model config needs an 'arch' (a registered name), got keys {sorted(config)}")
    return get_model(**config)


__all__ = ["COMMAND_TASKS", "MODELS", "RENAMED_KWARGS", "TASKS", "ModelSpec", "arch_names", "get_model",
           "model_config", "rebuild", "register", "registered_name", "spec", "upgrade_kwargs"]
