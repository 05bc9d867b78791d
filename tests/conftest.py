"""Shared fixtures (helpers that tests import live in tests/helpers/)."""

from __future__ import annotations

import os

import pytest
import torch

from deepfit.data import DataLoaders
from tests.helpers.data import fashion_mnist_available, make_linear_data

# Small models train fastest on one thread, and a busy machine is not oversubscribed;
# DEEPFIT_TEST_THREADS overrides it.
torch.set_num_threads(int(os.environ.get("DEEPFIT_TEST_THREADS", "1")))
# The command line's default --threads (deepfit.threads.choose_threads) is the same in tests.
os.environ.setdefault("DEEPFIT_THREADS", str(torch.get_num_threads()))

@pytest.fixture(scope="session")
def fmnist_small():
    """A seeded 6,000/2,000 real Fashion-MNIST subset as DataLoaders (batch 64)."""
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    from deepfit.data import fashion_mnist_loaders

    return fashion_mnist_loaders(bs=64, n_train=6000, n_valid=2000, seed=0, device="cpu")


@pytest.fixture
def tiny_dls() -> DataLoaders:
    return make_linear_data()
