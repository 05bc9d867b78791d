"""Fixtures of the CUDA tests (marked `cuda`; `benchmarks/gpu_suite.py` runs them on a GPU).

Without CUDA every test here is skipped by the `device` fixture. `DEEPFIT_CUDA_TESTS_ON_CPU=1` runs them on
the CPU instead, a dry run of the tests' own logic for machines without a GPU (what is CUDA-only, such as
nccl, is replaced by its CPU counterpart or skipped).
"""

from __future__ import annotations

import os

import pytest
import torch

# cuBLAS needs this before its first use for deterministic results (checkpoint resume bit-exactness)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@pytest.fixture
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("DEEPFIT_CUDA_TESTS_ON_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("needs a CUDA device (DEEPFIT_CUDA_TESTS_ON_CPU=1 dry-runs these tests on the CPU)")
