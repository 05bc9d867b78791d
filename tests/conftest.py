"""Shared fixtures: small real data and tiny synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deepfit.data import DataLoaders, TensorLoader
from deepfit.data.external import DEBIAN_FASHION_MNIST

FORTUNES_DIR = Path("/usr/share/games/fortunes")

# Small models train fastest on one thread, and a busy machine is not oversubscribed;
# DEEPFIT_TEST_THREADS overrides it.
torch.set_num_threads(int(os.environ.get("DEEPFIT_TEST_THREADS", "1")))


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


@pytest.fixture(scope="session")
def fmnist_small():
    """A seeded 6,000/2,000 real Fashion-MNIST subset as DataLoaders (batch 64)."""
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    from deepfit.data import fashion_mnist_loaders

    return fashion_mnist_loaders(bs=64, n_train=6000, n_valid=2000, seed=0, device="cpu")


def make_linear_data(n: int = 64, n_in: int = 4, n_out: int = 3, bs: int = 16, seed: int = 0) -> DataLoaders:
    """A small linearly separable classification task built in memory."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, n_out, generator=g)
    y = (x @ w).argmax(1)
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=seed, device="cpu"),
                       TensorLoader(x, y, bs=bs, device="cpu"), device="cpu")


@pytest.fixture
def tiny_dls() -> DataLoaders:
    return make_linear_data()
