"""Kill-and-resume: a run SIGKILLed at a random batch and resumed from its last checkpoint ends with weights
bit-identical to an uninterrupted run (CPU), for several seeds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from deepfit.learner.checkpoint import CheckpointCallback, find_last_checkpoint
from tests.helpers import resume_worker as worker

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)
TOTAL_BATCHES = worker.N_EPOCH * 11  # 84 items, bs=8 -> 11 batches per epoch


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(Path(worker.__file__)), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _kill_at(proc: subprocess.Popen, target: int, delay: float, seen: list) -> None:
    """Read the child's heartbeat and SIGKILL it `delay` seconds after `target` training batches are done
    (the child spends ~10 ms per batch, so the kill lands anywhere in the following batch or two, a
    checkpoint write included)."""
    for line in proc.stdout:
        seen.append(line.strip())
        if line.startswith("B ") and int(line.split()[1]) >= target:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory):
    """Uninterrupted runs, in this process (one thread, like the children)."""
    out = tmp_path_factory.mktemp("full")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for seed in SEEDS:
            learn = worker.make_learner(seed, out / f"run_{seed}")
            learn.fit(worker.N_EPOCH)
            results[seed] = worker.result(learn)
    finally:
        torch.set_num_threads(threads)
    return results


def test_sigkill_then_resume_is_bit_identical(tmp_path, full_runs):
    targets = {seed: random.Random(100 + seed).randint(worker.EVERY + 1, TOTAL_BATCHES - 3) for seed in SEEDS}
    procs = {seed: _spawn("ckpt", str(tmp_path), str(seed)) for seed in SEEDS}
    seen = {seed: [] for seed in SEEDS}
    delays = {seed: random.Random(200 + seed).uniform(0, 0.015) for seed in SEEDS}
    threads = [threading.Thread(target=_kill_at, args=(procs[s], targets[s], delays[s], seen[s])) for s in SEEDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for seed, proc in procs.items():
        assert proc.returncode == -signal.SIGKILL, (seed, proc.returncode, proc.stderr.read()[-2000:])
        assert "FINISHED" not in seen[seed]
        assert find_last_checkpoint(tmp_path / f"run_{seed}" / "models").exists()

    # resume each run with a new learner (here, to spare a process start: nothing is carried over but the files)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in SEEDS:
            learn = worker.make_learner(seed, tmp_path / f"run_{seed}")
            learn.fit(worker.N_EPOCH, resume="last", cbs=[CheckpointCallback(every=worker.EVERY, keep_last=2)])
            resumed, full = worker.result(learn), full_runs[seed]
            where = f"seed {seed}, killed after batch {seen[seed][-1]}"
            assert _same_state(resumed["model"], full["model"]), f"{where}: weights differ after resume"
            assert torch.equal(resumed["losses"], full["losses"]), f"{where}: loss history differs"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("every", ["epoch", 4])
def test_resume_in_process_matches(tmp_path, full_runs, every):
    """Stop after some checkpoints (any of them) and resume in the same process from an older one."""
    seed = SEEDS[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learn = worker.make_learner(seed, tmp_path)
        learn.fit(worker.N_EPOCH, cbs=[CheckpointCallback(every=every, keep_last=None)])
        files = sorted((tmp_path / "models").glob("checkpoint_*.pt"))
        assert len(files) == (worker.N_EPOCH if every == "epoch" else TOTAL_BATCHES // every)
        assert _same_state(learn.model.state_dict(), full_runs[seed]["model"])
        again = worker.make_learner(seed, tmp_path)
        again.dls.train.seed = 12345  # scramble: the loader seed and the generators must come from the checkpoint
        random.seed(1)
        torch.manual_seed(1)
        again.fit(worker.N_EPOCH, resume=files[1])
    finally:
        torch.set_num_threads(threads)
    assert _same_state(again.model.state_dict(), full_runs[seed]["model"])
    assert torch.equal(torch.tensor(again.recorder.losses, dtype=torch.float64), full_runs[seed]["losses"])
    assert len(again.recorder.values) == worker.N_EPOCH


def test_resume_one_cycle_mid_epoch(tmp_path):
    """Schedules are functions of the training position, so a resumed 1cycle run matches too."""
    seed = SEEDS[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = worker.make_learner(seed, tmp_path / "ref")
        ref.fit_one_cycle(2, 1e-2)
        learn = worker.make_learner(seed, tmp_path / "ck")
        learn.fit_one_cycle(2, 1e-2, cbs=[CheckpointCallback(every=5, keep_last=None)])
        files = sorted((tmp_path / "ck" / "models").glob("checkpoint_*.pt"))
        again = worker.make_learner(seed, tmp_path / "ck")
        again.fit_one_cycle(2, 1e-2, resume=files[2])  # train_iter 15: mid second epoch
    finally:
        torch.set_num_threads(threads)
    assert _same_state(again.model.state_dict(), ref.model.state_dict())
    assert again.recorder.lrs == ref.recorder.lrs
