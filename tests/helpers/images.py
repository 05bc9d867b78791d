"""Small shared pieces for the interpret tests: PNG checks and a synthetic image task."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from deepfit.data import DataLoaders, TensorLoader


def assert_png(path: str | Path, size: tuple[int, int]) -> None:
    """`path` is a non-empty PNG of `size` (width, height) pixels that is not a single flat colour."""
    path = Path(path)
    assert path.exists() and path.stat().st_size > 0, f"{path} missing or empty"
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        lo, hi = im.convert("L").getextrema()
        assert hi > lo, f"{path} is a flat image"


def square_images(n: int, size: int = 16, sq: int = 5, seed: int = 0):
    """uint8 images `n×1×size×size` of dim noise with one bright `sq×sq` square; the label is the
    quadrant holding the square (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).
    Also returns the square's top-left corners (`n×2`, row and column)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, 1, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (n,), generator=g)
    half = size // 2
    offs = torch.randint(0, half - sq + 1, (n, 2), generator=g)
    corners = offs + torch.stack([(y // 2) * half, (y % 2) * half], 1)
    for i in range(n):
        r, c = corners[i].tolist()
        x[i, 0, r:r + sq, c:c + sq] = 255
    return x, y, corners


def square_dls(n_train: int = 512, n_valid: int = 64, bs: int = 32, seed: int = 0) -> DataLoaders:
    x, y, _ = square_images(n_train + n_valid, seed=seed)
    train = TensorLoader(x, y, bs=bs, shuffle=True, seed=seed, device="cpu", indices=torch.arange(n_train),
                         mean=[0.2], std=[0.3])
    valid = TensorLoader(x, y, bs=bs, device="cpu", indices=torch.arange(n_train, n_train + n_valid),
                         mean=[0.2], std=[0.3])
    return DataLoaders(train, valid, device="cpu", vocab=["top-left", "top-right", "bottom-left", "bottom-right"])


def tiny_cnn(n_out: int = 4, c_in: int = 1) -> nn.Module:
    """conv → ReLU → conv → ReLU → global average pool → flatten → linear."""
    return nn.Sequential(nn.Conv2d(c_in, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_out))
