"""Ready-made `DataLoaders` for the built-in datasets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .core import DataLoaders, TensorLoader, Transform
from .external import FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist


def random_split_indices(n: int, valid_pct: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint `(train_idx, valid_idx)` covering `range(n)`, drawn with `seed`."""
    if not 0 <= valid_pct < 1:
        raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_valid = int(round(n * valid_pct))
    return perm[n_valid:].sort().values, perm[:n_valid].sort().values


def fashion_mnist_loaders(
    bs: int = 256,
    valid: str = "split",
    valid_pct: float = 0.1,
    n_train: int | None = None,
    n_valid: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    tfms: Sequence[Transform] = (),
    path: str | Path | None = None,
    download: bool = False,
) -> DataLoaders:
    """Fashion-MNIST as `DataLoaders` of normalized `N×1×28×28` float batches.

    `valid='split'` holds out `valid_pct` of the training images (seeded); `valid='test'` validates
    on the 10,000 test images. The test images are always available as `dls.test`.
    `n_train`/`n_valid` take seeded random subsets (for quick experiments and tests).
    `tfms` are batch transforms applied to training batches only.
    """
    train, test = fashion_mnist(path, download=download)
    x_train, y_train = train.images.unsqueeze(1), train.labels
    x_test, y_test = test.images.unsqueeze(1), test.labels
    stats = dict(mean=[FASHION_MNIST_MEAN], std=[FASHION_MNIST_STD])
    g = torch.Generator().manual_seed(seed + 1)
    if valid == "split":
        train_idx, valid_idx = random_split_indices(len(y_train), valid_pct, seed)
        valid_x, valid_y = x_train, y_train
    elif valid == "test":
        train_idx = torch.arange(len(y_train))
        valid_idx = torch.arange(len(y_test))
        valid_x, valid_y = x_test, y_test
    else:
        raise ValueError(f"valid must be 'split' or 'test', got {valid!r}")
    if n_train is not None:
        train_idx = train_idx[torch.randperm(len(train_idx), generator=g)[:n_train]]
    if n_valid is not None:
        valid_idx = valid_idx[torch.randperm(len(valid_idx), generator=g)[:n_valid]]
    dls = DataLoaders(
        TensorLoader(x_train, y_train, bs=bs, shuffle=True, seed=seed, device=device, tfms=tfms,
                     indices=train_idx, **stats),
        TensorLoader(valid_x, valid_y, bs=bs * 2, device=device, indices=valid_idx, **stats),
        device=device, vocab=train.classes)
    dls.test = TensorLoader(x_test, y_test, bs=bs * 2, device=dls.device, **stats)
    return dls
