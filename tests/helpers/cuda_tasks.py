"""Small in-memory tasks the CUDA tests (tests/cuda) train on: seconds on a GPU."""

from __future__ import annotations

import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader


def image_task(device: torch.device, n: int = 512, size: int = 16, bs: int = 64, seed: int = 0,
               shuffle: bool = True) -> DataLoaders:
    """uint8 images whose class (of 4) is the brightest quadrant, normalized on the device."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 100, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    h = size // 2
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c, 2)
        x[i, :, r * h:(r + 1) * h, q * h:(q + 1) * h] += 120
    stats = dict(mean=[0.3] * 3, std=[0.25] * 3)
    n_valid = n // 4
    return DataLoaders(
        TensorLoader(x[n_valid:], y[n_valid:], bs=bs, shuffle=shuffle, seed=seed, device=device, **stats),
        TensorLoader(x[:n_valid], y[:n_valid], bs=bs, device=device, **stats), device=device,
        vocab=["tl", "tr", "bl", "br"])


def small_cnn(seed: int = 0) -> nn.Module:
    """Convolutions, batch norm and a linear head; no adaptive pooling (whose CUDA backward is not deterministic)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 4))
