"""Real data the tests may use when it is installed, and a small task the tests make in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepfit.data import DataLoaders, TensorLoader
from deepfit.data.external import DEBIAN_FASHION_MNIST

FORTUNES_DIR = Path("/usr/share/games/fortunes")


def fashion_mnist_available() -> bool:
    from deepfit.data.external import FASHION_MNIST_FILES, _find_folder

    try:
        _find_folder(list(FASHION_MNIST_FILES), None, download=False)
        return True
    except FileNotFoundError:
        return False


requires_fmnist = pytest.mark.skipif(not fashion_mnist_available(),
                                     reason=f"Fashion-MNIST not installed ({DEBIAN_FASHION_MNIST}); run `make data`")
requires_fortunes = pytest.mark.skipif(not (FORTUNES_DIR / "computers").exists(),
                                       reason="fortunes not installed; run `make data`")



def make_linear_data(n: int = 64, n_in: int = 4, n_out: int = 3, bs: int = 16, seed: int = 0) -> DataLoaders:
    """A small linearly separable classification task built in memory."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, n_out, generator=g)
    y = (x @ w).argmax(1)
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=seed, device="cpu"),
                       TensorLoader(x, y, bs=bs, device="cpu"), device="cpu")
