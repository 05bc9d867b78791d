"""Random number generators: seeding, saving and restoring their states, per-epoch seeds.

This module imports nothing from deepfit.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch seeds CUDA too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch's shuffle that depends only on `(seed, epoch)`: exact resume needs no generator state."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def get_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CPU, and CUDA/MPS when present)."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "python": {"version": version, "state": list(state), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    if _mps_available():
        out["mps"] = torch.mps.get_rng_state()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by `get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(f"checkpoint has CUDA RNG states for {len(cuda)} devices, this machine has "
                          f"{torch.cuda.device_count()}: CUDA generators not restored", stacklevel=2)
    if "mps" in state and _mps_available():
        torch.mps.set_rng_state(state["mps"])


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()
