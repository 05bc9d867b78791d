"""Freezing layer groups for transfer learning, and the batchnorm layers of frozen groups.

A frozen parameter has `requires_grad=False`: it gets no gradient, so no optimizer moves it and no
weight decay touches it (deepfit's optimizers and torch's skip parameters without a gradient).

Which groups: the learner's `splitter` when it has one (`vision_learner`'s body and head, ULMFiT's
layers); without one, the model's top-level children, one group each (`optim.children_splitter`), as
the notes' fastai split a custom model: on the notes' dogs-vs-cats model
`nn.Sequential(*resnet_children[:-2], conv, pool, Flatten(), LogSoftmax())`, `freeze_to(-4)` trains the
four layers added at the end. `freeze()` trains the last group that holds parameters (the new head, even
when parameterless layers follow it). A model that is one group (no children, or a splitter giving one
group) cannot be frozen: that raises a `ValueError` saying so.

BatchNorm (notes, lessons 7 and 12): with `train_bn=True` (the default) the affine weights of batchnorm
layers stay trainable even in frozen groups, and with `bn_freeze="frozen"` (the default) the batchnorm
layers of frozen groups are kept in eval mode during training, so their running statistics stay the
pretrained ones. `bn_freeze=True` (the notes' `learn.bn_freeze=True`) keeps every batchnorm layer in eval
mode, frozen or not; `bn_freeze=False` lets every running statistic move (torch's default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from .events import Callback
from .optim import BN_TYPES, LayerGroups, bn_param_ids, check_layer_groups, children_splitter, top_children, unwrap

if TYPE_CHECKING:
    from .events import LearnerLike

BN_FREEZE_MODES = ("frozen", True, False)


def freeze_groups(learn: LearnerLike) -> LayerGroups:
    """The layer groups freezing counts: the learner's splitter's, else the model's top-level children."""
    if getattr(learn, "splitter", None) is not None:
        return learn.parameter_groups()
    model = unwrap(learn.model)
    return check_layer_groups(model, children_splitter(model))


def _single_group_error(learn: LearnerLike, call: str) -> ValueError:
    model = unwrap(learn.model)
    why = ("its splitter gives one layer group" if getattr(learn, "splitter", None) is not None
           else f"{type(model).__name__} has no child modules to split it by")
    return ValueError(f"{call}: the model is a single layer group ({why}), so freezing would leave nothing to "
                      "train; pass splitter= to the Learner (e.g. lambda m: [m.body, m.head]) to say which layers "
                      "form the body")


def freeze_to(learn: LearnerLike, n: int, train_bn: bool | None = None) -> int:
    """Freeze the layer groups before index `n` (negative counts from the end) and unfreeze the rest.

    Returns the index of the first trainable group, also kept as `learn.frozen_idx`.
    """
    groups = freeze_groups(learn)
    n_groups = len(groups)
    idx = n if n >= 0 else n_groups + n
    if not 0 <= idx < n_groups:
        raise ValueError(f"freeze_to({n}): the model has {n_groups} layer groups; "
                         f"n must be in [{-n_groups}, {n_groups - 1}] so that at least one group trains")
    if n != 0 and sum(1 for g in groups if g) < 2:
        raise _single_group_error(learn, f"freeze_to({n})")
    if idx > 0 and not any(groups[idx:]):
        raise ValueError(f"freeze_to({n}): layer groups {idx}..{n_groups - 1} hold no parameters, so nothing would "
                         f"train; use freeze() to train the last group that has parameters")
    train_bn = getattr(learn, "train_bn", True) if train_bn is None else train_bn
    keep = bn_param_ids(learn.model) if train_bn else set()
    for i, params in enumerate(groups):
        for p in params:
            trainable = i >= idx or id(p) in keep
            p.requires_grad_(trainable)
            if not trainable:
                p.grad = None
    learn.frozen_idx = idx
    return idx


def freeze(learn: LearnerLike, train_bn: bool | None = None) -> int:
    """Freeze every layer group before the last one that holds parameters (the head)."""
    groups = freeze_groups(learn)
    with_params = [i for i, g in enumerate(groups) if g]
    if len(with_params) < 2:
        raise _single_group_error(learn, "freeze()")
    return freeze_to(learn, with_params[-1], train_bn=train_bn)


def unfreeze(learn: LearnerLike) -> int:
    """Make every parameter trainable again."""
    return freeze_to(learn, 0)


def frozen_bn_layers(learn: LearnerLike) -> list[nn.Module]:
    """Batchnorm layers in frozen layer groups (before `learn.frozen_idx`).

    A batchnorm layer belongs to the group of its affine parameters; one without them (`affine=False`) to the
    group of the top-level child holding it, when the groups are the model's children.
    """
    idx = getattr(learn, "frozen_idx", 0)
    if idx <= 0:
        return []
    groups = freeze_groups(learn)
    frozen = {id(p) for params in groups[:idx] for p in params}
    frozen_children: set[int] = set()
    if getattr(learn, "splitter", None) is None:
        children = top_children(learn.model)
        if len(children) == len(groups):
            frozen_children = {id(m) for c in children[:idx] for m in c.modules()}
    out = []
    for m in learn.model.modules():
        if not isinstance(m, BN_TYPES):
            continue
        params = list(m.parameters(recurse=False))
        if any(id(p) in frozen for p in params) or (not params and id(m) in frozen_children):
            out.append(m)
    return out


def check_bn_freeze(mode: Any) -> bool | str:
    """Validate a `bn_freeze` setting ('frozen', True or False)."""
    if mode not in BN_FREEZE_MODES or isinstance(mode, int) and not isinstance(mode, bool):
        raise ValueError(f"bn_freeze must be 'frozen' (batchnorm of frozen groups in eval mode), True (every "
                         f"batchnorm layer) or False (none), got {mode!r}")
    return mode


def apply_bn_freeze(learn: LearnerLike) -> None:
    """Put the batchnorm layers `learn.bn_freeze` names in eval mode (called after `model.train()`)."""
    mode = getattr(learn, "bn_freeze", "frozen")
    if mode is False:
        return
    if mode is True:
        layers = [m for m in learn.model.modules() if isinstance(m, BN_TYPES)]
    else:
        layers = frozen_bn_layers(learn)
    for m in layers:
        m.eval()


class BnFreeze(Callback):
    """Keeps the running statistics of batchnorm layers fixed during training (puts them in eval mode).

    By default only the batchnorm layers of frozen layer groups, which a `Learner` already does by itself
    (`bn_freeze='frozen'`); with `all=True`, every batchnorm layer of the model (`bn_freeze=True`). Their
    affine weights still train when they require grad.
    """

    order = -9  # right after TrainEvalCallback puts the model in train mode

    def __init__(self, all: bool = False):
        self.all = all

    def before_train(self) -> None:
        model = self.learn.model
        layers = ([m for m in model.modules() if isinstance(m, BN_TYPES)] if self.all
                  else frozen_bn_layers(self.learn))
        for m in layers:
            m.eval()
