"""Turning normalized model inputs back into displayable images, and image grids."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor


def is_image_batch(x: Any) -> bool:
    """True for a float/uint8 tensor shaped `N×C×H×W` with 1 or 3 channels."""
    return isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] in (1, 3)


def denormalize(x: Tensor, dl: Any = None) -> Tensor:
    """Undo a loader's normalization (`dl.mean`/`dl.std`, channel axis 1 of a batch, 0 of one image)
    and return float values clipped to [0, 1]. uint8 inputs are divided by 255. Without known
    statistics each image is min-max scaled."""
    x = x.detach().cpu()
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    batched = x.ndim == 4
    xb = x if batched else x.unsqueeze(0)
    mean, std = getattr(dl, "mean", None), getattr(dl, "std", None)
    if mean is not None and std is not None:
        shape = [1, -1] + [1] * (xb.ndim - 2)
        xb = xb * torch.as_tensor(std, dtype=torch.float32).view(shape) + torch.as_tensor(
            mean, dtype=torch.float32).view(shape)
    else:
        flat = xb.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        shape = [-1] + [1] * (xb.ndim - 1)
        xb = (xb - lo.view(shape)) / (hi - lo).clamp_min(1e-8).view(shape)
    xb = xb.clamp(0, 1)
    return xb if batched else xb[0]


def to_numpy_image(img: Tensor) -> np.ndarray:
    """`C×H×W` (C = 1 or 3) or `H×W` tensor in [0, 1] → `H×W` or `H×W×3` numpy array for `imshow`."""
    img = img.detach().cpu().float()
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    elif img.ndim == 3 and img.shape[0] == 3:
        img = img.permute(1, 2, 0)
    elif img.ndim != 2:
        raise ValueError(f"cannot display an image of shape {tuple(img.shape)}; expected C×H×W with C=1 or 3, or H×W")
    return img.numpy()


def make_grid(images: Tensor, ncols: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile a batch `N×C×H×W` (values in [0, 1]) into one `3×H'×W'` image (grayscale is repeated)."""
    if not is_image_batch(images):
        raise ValueError(f"make_grid expects N×C×H×W with C = 1 or 3, got {tuple(getattr(images, 'shape', ()))}")
    images = images.detach().cpu().float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, _, h, w = images.shape
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    grid = torch.full((3, nrows * (h + padding) + padding, ncols * (w + padding) + padding), pad_value)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def figure_to_array(fig) -> np.ndarray:
    """Render a matplotlib `Figure` to an `H×W×3` uint8 array (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def class_name(vocab: Any, idx: int) -> str:
    """`vocab[idx]` when a vocabulary is known, else the index as text."""
    if vocab is not None and 0 <= idx < len(vocab):
        return str(vocab[idx])
    return str(idx)
