"""Test-time augmentation: average the predicted probabilities over augmented copies of a dataset.

`tta(learn, n=4)` predicts the validation set once as it is and `n` more times with random batch
augmentations, then averages the probabilities: the plain mean of the `n + 1` passes as in the
notes, or `lerp(mean of augmented, plain, beta)` when `beta` is given.

Which augmentations: by default copies of the training loader's augmentations that keep the label
(`deepfit.data.transforms.tta_transforms`: those whose `tta` attribute is true), so a preset
without flips (`augment_preset('crop')`) never flips at test time, and one transform can be left
out with `Flip(tta=False)` (or `tfm.tta = False`). When the training pipeline has no such
augmentation there is nothing to average over: `tta` says so once and returns the plain
predictions. Explicit `tfms` are used as given, minus any marked `tta=False`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data.transforms import BatchTransform, apply_batch_tfms, tta_transforms
from .events import Callback

if TYPE_CHECKING:
    from .events import LearnerLike


class AugmentBatch(Callback):
    """Applies batch transforms to each validation batch's input (before the model sees it)."""

    order = -5
    run_train = False

    def __init__(self, tfms: Sequence[Callable[[Tensor], Tensor]]):
        self.tfms = list(tfms)

    def before_batch(self) -> None:
        self.learn.xb = apply_batch_tfms(self.learn.xb, self.tfms)


def _reseeded(tfm, seed: int):
    if isinstance(tfm, BatchTransform) and hasattr(tfm, "generator"):
        tfm = copy.copy(tfm)
        tfm.generator = torch.Generator().manual_seed(seed)
    return tfm


def default_tta_tfms(learn: LearnerLike, size: int | None = None) -> list:
    """The training loader's label-preserving augmentations (`tta_transforms`); empty when it has none.

    `size` is accepted for compatibility and not used.
    """
    return tta_transforms(getattr(learn.dls.train, "tfms", None) or [])


def tta(learn: LearnerLike, dl=None, n: int = 4, tfms: Sequence[Callable[[Tensor], Tensor]] | None = None,
        beta: float | None = None, seed: int = 0, act="auto") -> tuple[Tensor, Tensor]:
    """`(probabilities, targets)` averaged over the plain pass and `n` augmented passes over `dl`.

    Each pass is turned into probabilities first (`act='auto'`, as `Learner.get_preds`: `exp` for an
    `NLLLoss`/`log_softmax` model, nothing more for a model ending in `softmax`), then the probabilities
    are averaged, never the log-probabilities or logits.

    `tfms` are batch transforms applied to the (normalized) inputs (default: the training loader's
    label-preserving augmentations; see the module docstring); random ones are re-seeded for each
    pass from `seed`, so the result is reproducible and the originals' random streams are untouched.
    """
    if n < 0:
        raise ValueError(f"tta: n must be >= 0, got {n}")
    if act is None:  # averaging log-probabilities (a log_softmax model) or logits is not averaging predictions
        raise ValueError("tta: the passes are averaged as probabilities, and act=None would average raw outputs; "
                         "use act='auto' (see Learner.get_preds) or a function giving probabilities")
    dl = learn.dls.valid if dl is None else dl
    if getattr(dl, "shuffle", False):
        raise ValueError("tta: the loader shuffles, so passes would not line up; use one with shuffle=False")
    preds, targs = learn.get_preds(dl, act=act)
    if n == 0:
        return preds, targs
    tfms = default_tta_tfms(learn) if tfms is None else [t for t in tfms if getattr(t, "tta", True)]
    if not tfms:
        if not getattr(learn, "_tta_noticed", False):
            learn._tta_noticed = True
            getattr(learn, "logger", print)("tta: no label-preserving augmentation to apply (the training data has "
                                            "no transform with tta=True); returning the plain predictions")
        return preds, targs
    total = torch.zeros_like(preds)
    for i in range(n):
        aug = [_reseeded(t, seed + i * 7919 + j) for j, t in enumerate(tfms)]
        p, t = learn.get_preds(dl, act=act, cbs=[AugmentBatch(aug)])
        if p.shape != preds.shape or not torch.equal(t, targs):
            raise RuntimeError("tta: augmented pass did not line up with the plain pass (is the loader ordered?)")
        total += p
    aug_mean = total / n
    if beta is None:
        return (preds + total) / (n + 1), targs
    return torch.lerp(aug_mean, preds, beta), targs
