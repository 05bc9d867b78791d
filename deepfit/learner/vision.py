"""`vision_learner`: a Learner for transfer learning — a (pretrained) body cut from an architecture plus a new head.

    learn = vision_learner("xresnet18", dls, weights="pretrained.pth")   # starts frozen: only the head trains
    learn.fit(2, 1e-3)
    learn.unfreeze()
    learn.fit(3, 1e-4)

`arch` is a name registered in `deepfit.models.MODELS`, `"torchvision.<resnet name>"` when
torchvision is installed, or any callable returning a model. `weights` is a local file holding a
state dict — saved by deepfit (`torch.save(model.state_dict())`, a `Learner.save` checkpoint or a
`vision_learner` model's state dict) or by torchvision — read with `torch.load(weights_only=True)`
(or `safetensors` for `.safetensors` files). Only the body's weights are taken from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.heads import VisionModel, build_arch, load_body_weights, resolve_arch, vision_splitter
from ..safe_io import PickleRefusedError, safe_torch_load
from .learner import Learner

__all__ = ["build_arch", "cnn_learner", "load_body_weights", "read_state_dict", "resolve_arch", "vision_learner"]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file: `torch.load(weights_only=True)`, or safetensors for `.safetensors`.

    A `Learner.save` checkpoint (a dict with a `"model"` entry) gives its model's state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = safe_torch_load(path)  # pickled objects are refused, never run
    except PickleRefusedError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (names → tensors), got {type(obj).__name__}")
    return obj


def vision_learner(arch: str | Callable[..., nn.Module], dls, weights: str | Path | None = None,
                   cut: int | Callable[[nn.Module], nn.Module] | None = None, n_out: int | None = None,
                   c_in: int | None = None, lin_ftrs: Sequence[int] | None = None, ps: float = 0.5,
                   concat_pool: bool = True, first_bn: bool = True, bn_final: bool = False,
                   arch_kwargs: dict | None = None, freeze: bool | None = None, **learner_kwargs) -> Learner:
    """A `Learner` whose model is a `VisionModel`: `nn.Sequential(body, head)`, layer groups `[body, head]`.

    Args:
        arch: registered name (`deepfit.models.MODELS`), `'torchvision.resnet34'`-style name, or callable.
        dls: the data; `n_out` defaults to `dls.c`, `c_in` to the images' channels.
        weights: a local state-dict file whose body weights are loaded (see the module docstring).
        cut: where the body ends (index of the first child dropped, or `model -> body`);
            default: before the last pooling layer.
        lin_ftrs, ps, concat_pool, first_bn, bn_final: see `create_head`.
        arch_kwargs: extra arguments for the architecture (e.g. `widths`).
        freeze: start with the body frozen (`learn.freeze()`); default: when `weights` are given.
        learner_kwargs: passed to `Learner` (loss_func, opt_func, lr, metrics, cbs, path...).
    """
    from ..data.vision import input_channels

    n_out = n_out if n_out is not None else getattr(dls, "c", None)
    if n_out is None:
        raise ValueError("vision_learner: give n_out (the data has no vocab to count classes from)")
    c_in = c_in if c_in is not None else input_channels(dls)
    state = read_state_dict(weights) if weights is not None else None
    model = VisionModel(arch, n_out, c_in=c_in, cut=cut, lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool,
                        first_bn=first_bn, bn_final=bn_final, arch_kwargs=arch_kwargs, state=state,
                        source=str(weights))
    learner_kwargs.setdefault("splitter", vision_splitter)
    learn = Learner(model, dls, **learner_kwargs)
    if freeze if freeze is not None else weights is not None:
        learn.freeze()
    return learn


def cnn_learner(arch: str | Callable[..., nn.Module], dls, *, c_out: int | None = None, **kwargs) -> Learner:
    """fastai's older name of `vision_learner` (the notes' lesson 12 calls it): the same arguments, given by
    keyword after `arch` and `dls` (`loss_func=`, `opt_func=`...); `c_out` is the notes' name of `n_out`."""
    if c_out is not None:
        if kwargs.get("n_out") not in (None, c_out):
            raise ValueError(f"cnn_learner: c_out={c_out} and n_out={kwargs['n_out']} disagree; give n_out only")
        kwargs["n_out"] = c_out
    return vision_learner(arch, dls, **kwargs)
