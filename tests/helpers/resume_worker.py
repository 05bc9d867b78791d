"""Subprocess used by test_resume.py: trains a tiny model, optionally checkpointing, resuming or dying.

    python tests/helpers/resume_worker.py full   OUT SEED...   # uninterrupted runs -> OUT/full_<seed>.pt
    python tests/helpers/resume_worker.py ckpt   OUT SEED      # checkpointing run (the test SIGKILLs it)
    python tests/helpers/resume_worker.py resume OUT SEED...   # resume='last' -> OUT/resumed_<seed>.pt

Every source of randomness is exercised: dropout and a noise augmentation (torch's global generator), a
flip augmentation with its own generator, a learning rate jittered with Python's `random` and NumPy, and
a shuffled `TensorLoader`.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from deepfit.data import DataLoaders, Flip, TensorLoader  # noqa: E402
from deepfit.learner import Callback, Learner  # noqa: E402
from deepfit.learner.callbacks import ProgressCallback  # noqa: E402
from deepfit.learner.checkpoint import CheckpointCallback  # noqa: E402
from deepfit.models import MLP  # noqa: E402

N_EPOCH, EVERY = 3, 3


class JitterLR(Callback):
    """Draws from Python's and NumPy's generators every batch."""

    def before_batch(self) -> None:
        if self.learn.training:
            self.learn.set_lr(1e-2 * (0.5 + random.random()) * (0.9 + 0.2 * float(np.random.rand())))


class Heartbeat(Callback):
    """Prints the number of finished training batches so the parent can pick when to kill.

    Before the last batch it stalls, so that a slow parent still kills the run before it finishes.
    """

    order = 100

    def after_batch(self) -> None:
        if self.learn.training:
            print(f"B {self.learn.train_iter}", flush=True)
            time.sleep(0.01)
            if self.learn.train_iter == N_EPOCH * 11 - 1:
                time.sleep(120)


def noise(xb: torch.Tensor) -> torch.Tensor:
    return xb + 0.05 * torch.randn_like(xb)


def make_learner(seed: int, path: Path) -> Learner:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randint(0, 256, (100, 1, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (100,), generator=g)
    train = TensorLoader(x[:84], y[:84], bs=8, shuffle=True, seed=seed, device="cpu", mean=[0.5], std=[0.3],
                         tfms=[noise, Flip(p=0.5, seed=seed)])
    valid = TensorLoader(x[84:], y[84:], bs=16, device="cpu", mean=[0.5], std=[0.3])
    model = MLP(c_in=36, img_size=1, hidden=(16,), n_out=3, dropout=0.2)
    learn = Learner(model, DataLoaders(train, valid, device="cpu"), lr=1e-2, cbs=[JitterLR()], path=path)
    learn.remove_cb(ProgressCallback)
    return learn


def result(learn: Learner) -> dict:
    return {"model": learn.model.state_dict(), "losses": torch.tensor(learn.recorder.losses, dtype=torch.float64)}


def main() -> None:
    torch.set_num_threads(1)
    mode, out, seeds = sys.argv[1], Path(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    for seed in seeds:
        run_dir = out / f"run_{seed}"
        learn = make_learner(seed, run_dir)
        if mode == "full":
            learn.fit(N_EPOCH)
            torch.save(result(learn), out / f"full_{seed}.pt")
        elif mode == "ckpt":
            learn.fit(N_EPOCH, cbs=[CheckpointCallback(every=EVERY, keep_last=2), Heartbeat()])
            print("FINISHED", flush=True)
        elif mode == "resume":
            learn.fit(N_EPOCH, resume="last", cbs=[CheckpointCallback(every=EVERY, keep_last=2)])
            torch.save(result(learn), out / f"resumed_{seed}.pt")
        else:
            raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
