"""MixUp and CutMix: train on blends of each batch with a shuffled copy of itself.

Both callbacks act on training batches only (validation, `validate`, `get_preds` and `predict`
see the plain data and the plain loss). For a batch `x` with targets `y` they draw a permutation
`perm`, build a mixed input, and replace the loss the Learner computed with

    loss = reduce(λ·loss(pred, y) + (1-λ)·loss(pred, y[perm]))

where both terms are per-item losses (the loss's `reduction` is switched to `'none'` inside a
`NoneReduce` block, so it is back to its old value afterwards even if something raises) and
`reduce` is the loss's own reduction ('mean', 'sum' or 'none'). Nothing is one-hot encoded, so
any loss with a `reduction` (or a plain function taking `reduction=`) works, including
`LabelSmoothingCrossEntropy`.

Random draws come from a NumPy generator seeded with `seed` (or, when `seed=None`, from torch's
global generator at `before_fit`, so `torch.manual_seed` makes a run reproducible). Per batch,
MixUp draws `λ = rng.beta(α, α, size=bs)` then `perm = rng.permutation(bs)`; CutMix draws
`λ = rng.beta(α, α)`, the box centre `(rng.integers(H), rng.integers(W))`, then `perm`.
The draws of the latest batch are kept as `.lam` and `.perm` (on the batch's device).

`order = 10`: after batch transforms that run in `before_batch` with a lower order, and before the
Recorder (50) and MixedPrecision (90). MixUp replaces `learn.loss` in `after_loss`; a callback
that rescales the loss (e.g. gradient accumulation) should do it in `before_backward` or in
`after_loss` with an order above 10.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from torch import Tensor

from ..events import Callback
from ..losses import NoneReduce, loss_reduction, reduce_loss


def _to_device(a: np.ndarray, device: torch.device) -> Tensor:
    """Host array to `device` without a blocking copy on CUDA."""
    t = torch.from_numpy(a)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _expand_like(lam: Tensor, t: Tensor) -> Tensor:
    """Reshape a per-item `(bs,)` weight so it broadcasts over `t` of shape `(bs, ...)`."""
    return lam.view(lam.shape[0], *([1] * (t.ndim - 1))) if lam.ndim == 1 else lam


class _MixHandler(Callback):
    """Shared part of MixUp and CutMix: the generator, the target permutation and the mixed loss."""

    order = 10
    run_valid = False

    def __init__(self, alpha: float, seed: int | None = None):
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.seed = seed
        self.rng: np.random.Generator | None = None
        self.lam: Tensor | None = None
        self.perm: Tensor | None = None
        self._restored = False

    def before_fit(self) -> None:
        if self._restored:
            self._restored = False
        elif self.rng is None or self.seed is None:
            seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
            self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        """The generator's state (as JSON text), so a resumed run draws what the interrupted one would have."""
        return {"rng": json.dumps(self.rng.bit_generator.state) if self.rng is not None else ""}

    def load_state_dict(self, state: dict) -> None:
        """Restore the generator saved by `state_dict`; the next `fit` continues from it."""
        if state.get("rng"):
            bit_state = json.loads(state["rng"])
            self.rng = np.random.Generator(getattr(np.random, bit_state["bit_generator"])())
            self.rng.bit_generator.state = bit_state
            self._restored = True

    def _check_input(self, xb) -> Tensor:
        if not isinstance(xb, Tensor) or not xb.is_floating_point():
            what = f"a {xb.dtype} tensor" if isinstance(xb, Tensor) else type(xb).__name__
            raise TypeError(f"{type(self).__name__} mixes a floating-point input tensor, got {what}")
        if xb.shape[0] < 1:
            raise ValueError(f"{type(self).__name__} got an empty batch")
        return xb

    def after_loss(self) -> None:
        learn = self.learn
        y = learn.yb
        loss_func = learn.loss_func
        reduction = loss_reduction(loss_func)
        with NoneReduce(loss_func) as per_item:
            loss_a = per_item(learn.pred, y)
            loss_b = per_item(learn.pred, y[self.perm])
        if loss_a.ndim == 0:
            raise TypeError(f"{type(self).__name__}: the loss {loss_func!r} returned a scalar with reduction='none'; "
                            "it must return one loss per item")
        lam = _expand_like(self.lam, loss_a).to(loss_a.dtype)
        learn.loss = reduce_loss(torch.lerp(loss_b, loss_a, lam), reduction)


class MixUp(_MixHandler):
    """MixUp (Zhang et al. 2017) with fastai's refinements: one λ per item, `λ = max(λ, 1-λ)`.

    Each item `i` becomes `λ_i·x_i + (1-λ_i)·x_perm[i]`; λ ~ Beta(α, α) folded to `[0.5, 1]` so the
    unshuffled image always dominates (avoids near-duplicate pairs). Small `alpha` (0.2-0.4) mixes
    gently; larger values mix more.
    """

    def __init__(self, alpha: float = 0.4, seed: int | None = None):
        super().__init__(alpha, seed)

    def before_batch(self) -> None:
        x = self._check_input(self.learn.xb)
        bs = x.shape[0]
        lam = self.rng.beta(self.alpha, self.alpha, size=bs)
        lam = np.maximum(lam, 1.0 - lam).astype(np.float32)
        perm = self.rng.permutation(bs)
        self.lam = _to_device(lam, x.device)
        self.perm = _to_device(perm, x.device)
        self.learn.xb = torch.lerp(x[self.perm], x, _expand_like(self.lam, x).to(x.dtype))


def cutmix_box(lam: float, height: int, width: int, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The box `(y1, y2, x1, x2)` of side ratio `sqrt(1-lam)` centred at `(cy, cx)`, clipped to the image."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y1, y2, x1, x2


class CutMix(_MixHandler):
    """CutMix (Yun et al. 2019): paste a random box from the shuffled batch into every image.

    λ ~ Beta(α, α) sets the box's side to `sqrt(1-λ)` of the image's; after clipping the box to the
    image, λ is recomputed as the share of pixels kept from the original image, so the loss weights
    match the pixels exactly. Inputs are `(N, C, H, W)` (or any `(N, ..., H, W)`). One box per batch.
    """

    def __init__(self, alpha: float = 1.0, seed: int | None = None):
        super().__init__(alpha, seed)
        self.box: tuple[int, int, int, int] | None = None

    def before_batch(self) -> None:
        x = self._check_input(self.learn.xb)
        if x.ndim < 3:
            raise ValueError(f"CutMix needs (N, ..., H, W) images, got shape {tuple(x.shape)}")
        bs, (height, width) = x.shape[0], x.shape[-2:]
        lam = float(self.rng.beta(self.alpha, self.alpha))
        cy, cx = int(self.rng.integers(height)), int(self.rng.integers(width))
        perm = self.rng.permutation(bs)
        y1, y2, x1, x2 = self.box = cutmix_box(lam, height, width, cy, cx)
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
        self.perm = _to_device(perm, x.device)
        self.lam = torch.full((bs,), lam, dtype=torch.float32, device=x.device)
        mixed = x.clone()
        mixed[..., y1:y2, x1:x2] = x[self.perm][..., y1:y2, x1:x2]
        self.learn.xb = mixed
