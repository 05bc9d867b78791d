"""Test-time augmentation: average the predicted probabilities over augmented copies of a dataset.

`tta(learn, n=4)` predicts the validation set once as it is and `n` more times with random batch
augmentations (by default copies of the training loader's augmentations — flips, pad-and-crop,
rotations... — else a horizontal flip plus a small pad-and-crop), then averages the probabilities:
the plain mean of the `n + 1` passes as in the notes, or `lerp(mean of augmented, plain, beta)`
when `beta` is given.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data.transforms import BatchTransform, Flip, PadCrop, apply_batch_tfms
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


def default_tta_tfms(learn: LearnerLike, size: int) -> list:
    """The training loader's augmentations (those marked `augment`), else a flip plus a pad-and-crop."""
    train_tfms = [t for t in getattr(learn.dls.train, "tfms", []) if getattr(t, "augment", False)]
    if train_tfms:
        return train_tfms
    return [Flip(p=0.5), PadCrop(padding=max(1, size // 10), mode="replicate")]


def tta(learn: LearnerLike, dl=None, n: int = 4, tfms: Sequence[Callable[[Tensor], Tensor]] | None = None,
        beta: float | None = None, seed: int = 0, act="auto") -> tuple[Tensor, Tensor]:
    """`(probabilities, targets)` averaged over the plain pass and `n` augmented passes over `dl`.

    `tfms` are batch transforms applied to the (normalized) inputs; random ones are re-seeded with
    `seed + i` for pass `i`, so the result is reproducible and the originals' random streams are untouched.
    """
    if n < 0:
        raise ValueError(f"tta: n must be >= 0, got {n}")
    dl = learn.dls.valid if dl is None else dl
    if getattr(dl, "shuffle", False):
        raise ValueError("tta: the loader shuffles, so passes would not line up; use one with shuffle=False")
    preds, targs = learn.get_preds(dl, act=act)
    if n == 0:
        return preds, targs
    if tfms is None:
        xb = getattr(dl, "x", None)
        ds_size = getattr(getattr(dl, "dataset", None), "size", None)
        size = xb.shape[-1] if isinstance(xb, Tensor) and xb.ndim == 4 else ds_size[-1] if ds_size else 32
        tfms = default_tta_tfms(learn, size)
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
