"""Checkpoints: what they hold, atomic writes, refusing pickles, CheckpointCallback bookkeeping."""

from __future__ import annotations

import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Callback, Learner
from deepfit.learner.callbacks import MixedPrecision, ProgressCallback
from deepfit.learner.checkpoint import (
    CheckpointCallback,
    CheckpointError,
    PickleRefusedError,
    find_last_checkpoint,
    get_rng_state,
    save_checkpoint,
    set_rng_state,
)
from deepfit.learner.events import CancelBatch
from deepfit.models import MLP

ROOT = Path(__file__).resolve().parents[2]


def tiny_learner(path: Path, seed: int = 0, cbs=()) -> Learner:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (48, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    dls = DataLoaders(TensorLoader(x[:32], y[:32], bs=8, shuffle=True, seed=seed, device="cpu"),
                      TensorLoader(x[32:], y[32:], bs=16, device="cpu"), device="cpu")
    learn = Learner(MLP(c_in=16, img_size=1, hidden=(8,), n_out=3), dls, lr=1e-2, path=path, cbs=cbs)
    learn.remove_cb(ProgressCallback)
    return learn


class Counter(Callback):
    """A callback with state to be checkpointed."""

    def __init__(self):
        self.n = 0

    def after_batch(self) -> None:
        self.n += 1

    def state_dict(self) -> dict:
        return {"n": self.n, "arr": np.arange(3)}

    def load_state_dict(self, state: dict) -> None:
        self.n = state["n"]
        self.arr = state["arr"]


def test_save_load_roundtrip(tmp_path):
    learn = tiny_learner(tmp_path, cbs=[Counter()])
    learn.fit(2)
    path = learn.save("ck")
    assert path == tmp_path / "models" / "ck.pt"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"
    raw = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert raw["position"] == {"epoch": 2, "batches_done": 0, "train_iter": 8, "mid_epoch": 0}
    assert raw["loaders"]["train"] == {"seed": 0, "epoch": 2}

    other = tiny_learner(tmp_path, seed=1, cbs=[Counter()])
    other.fit(1)
    other.load("ck")
    for k, v in learn.model.state_dict().items():
        assert torch.equal(other.model.state_dict()[k], v)
    s1, s2 = learn.opt.state_dict(), other.opt.state_dict()
    assert all(torch.equal(s1["state"][i]["exp_avg"], s2["state"][i]["exp_avg"]) for i in s1["state"])
    assert other.recorder.losses == learn.recorder.losses and other.recorder.values == learn.recorder.values
    assert other.counter.n == learn.counter.n == 10  # 2 epochs of 4 training + 1 validation batches
    assert torch.equal(other.counter.arr, torch.arange(3))
    assert other.train_iter == 8


def test_scaler_state_roundtrip(tmp_path):
    """The loss scaler travels through MixedPrecision's own state_dict, once."""
    learn = tiny_learner(tmp_path)
    learn.add_cb(MixedPrecision(torch.float16, init_scale=512.0))
    learn.mixed_precision.scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    path = learn.save("amp")
    raw = torch.load(path, weights_only=True)
    assert "scaler" not in raw and raw["callbacks"]["mixed_precision"]["scale"] == 512.0
    other = tiny_learner(tmp_path)
    other.add_cb(MixedPrecision(torch.float16))
    other.mixed_precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    other.load("amp")
    assert other.mixed_precision.scaler.get_scale() == 512.0


def test_rng_state_roundtrip():
    state = get_rng_state()
    a = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), float(np.random.rand()), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_unstorable_callback_state_is_named(tmp_path):
    class Bad(Callback):
        def state_dict(self):
            return {"thing": object()}

        def load_state_dict(self, state):
            pass

    learn = tiny_learner(tmp_path, cbs=[Bad()])
    with pytest.raises(CheckpointError, match=r"Bad.state_dict\(\)\['thing'\].*object"):
        learn.save("x")
    assert not (tmp_path / "models" / "x.pt").exists()


def test_plain_state_dict_loads(tmp_path):
    learn = tiny_learner(tmp_path)
    sd = {k: v + 1 for k, v in learn.model.state_dict().items()}
    torch.save(sd, tmp_path / "weights.pt")
    learn.load(tmp_path / "weights.pt")
    assert all(torch.equal(learn.model.state_dict()[k], v) for k, v in sd.items())


def test_wrong_architecture_is_a_clear_error(tmp_path):
    learn = tiny_learner(tmp_path)
    learn.save("ck")
    other = tiny_learner(tmp_path)
    other.model = MLP(c_in=16, img_size=1, hidden=(5,), n_out=3)
    with pytest.raises(CheckpointError, match="weights do not fit this model"):
        other.load("ck")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    learn = tiny_learner(tmp_path)
    for path in (evil, raw):
        with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
            learn.load(path)
    assert not marker.exists()


def test_checkpoint_callback_keeps_last(tmp_path):
    learn = tiny_learner(tmp_path)
    cb = CheckpointCallback(every=3, keep_last=2)
    learn.fit(3, cbs=[cb])  # 12 batches -> 4 checkpoints, 2 kept
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert files == ["checkpoint_000002.pt", "checkpoint_000003.pt"]
    assert find_last_checkpoint(tmp_path / "models").name == "checkpoint_000003.pt"
    learn.fit(1, cbs=[CheckpointCallback(every="epoch", keep_last=2)])  # numbering continues
    assert find_last_checkpoint(tmp_path / "models").name == "checkpoint_000004.pt"
    with pytest.raises(ValueError, match="every"):
        CheckpointCallback(every=0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tiny_learner(tmp_path / "empty").fit(1, resume="last")


def test_resume_from_finished_checkpoint_trains_nothing(tmp_path):
    learn = tiny_learner(tmp_path)
    learn.fit(2, cbs=[CheckpointCallback(every="epoch")])
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    other = tiny_learner(tmp_path, seed=3)
    with pytest.warns(UserWarning, match="nothing left"):
        other.fit(2, resume="last")
    assert all(torch.equal(other.model.state_dict()[k], v) for k, v in before.items())


INTERRUPTED_SAVE = textwrap.dedent("""
    import io, sys, time
    sys.path.insert(0, {root!r})
    import torch
    from tests.learner.test_checkpoint import tiny_learner
    from deepfit.learner import checkpoint
    learn = tiny_learner(__import__("pathlib").Path({path!r}))
    learn.save("ck")                       # the good checkpoint
    real_save = torch.save
    def half_then_hang(obj, f):
        buf = io.BytesIO(); real_save(obj, buf); data = buf.getvalue()
        f.write(data[: len(data) // 2]); f.flush()
        print("HALF", flush=True); time.sleep(120)
    checkpoint.torch.save = half_then_hang
    with torch.no_grad():
        for p in learn.model.parameters():
            p.add_(1.0)
    learn.save("ck")                       # killed in the middle of this one
""")


def test_interrupted_save_keeps_previous_checkpoint(tmp_path):
    code = INTERRUPTED_SAVE.format(root=str(ROOT), path=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    assert line.strip() == "HALF", proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    folder = tmp_path / "models"
    partial = [p for p in folder.iterdir() if p.name.startswith(".ck.pt.tmp-")]
    assert partial, "the kill should have left the half-written temporary file"
    learn = tiny_learner(tmp_path)
    learn.load("ck")  # the previous checkpoint, complete and untouched
    fresh = tiny_learner(tmp_path)
    assert all(torch.equal(learn.model.state_dict()[k], v) for k, v in fresh.model.state_dict().items())
    assert find_last_checkpoint(folder).name == "ck.pt"
    with pytest.raises(CheckpointError):
        learn.load(partial[0])


def test_model_only_checkpoint_cannot_resume(tmp_path):
    learn = tiny_learner(tmp_path)
    torch.save(learn.model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        learn.fit(1, resume=tmp_path / "w.pt")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tiny_learner(tmp_path).load("nope")


def test_save_does_not_change_training(tmp_path):
    """Saving mid-run (RNG reads, recorder flushes) must not change the result."""
    a = tiny_learner(tmp_path / "a")
    a.fit(2)
    b = tiny_learner(tmp_path / "b")
    b.fit(2, cbs=[CheckpointCallback(every=1)])
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    assert isinstance(b.model, nn.Module)


# ---------------------------------------------------------------------------------------------- NaN runs
def _all_finite(path: Path) -> bool:
    return all(torch.isfinite(v).all() for v in torch.load(path, weights_only=True)["model"].values())


def _checkpoints(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "models").glob("checkpoint_*.pt"))


def test_fit_stops_at_the_first_nan_loss_by_default(tmp_path):
    """No callback asked for: a diverging fit raises, naming the epoch and batch (it used to finish silently)."""
    from deepfit.learner.checks import NonFiniteLossError

    learn = tiny_learner(tmp_path)
    learn.fit(1)
    with pytest.raises(NonFiniteLossError, match=r"the training loss became nan at epoch 0, batch 1: lower the "
                                                 r"learning rate") as e:
        learn.fit(2, lr=float("nan"))  # the first step makes the weights NaN, so batch 1's loss is NaN
    assert (e.value.epoch, e.value.batch) == (0, 1)
    learn = tiny_learner(tmp_path)
    learn.fit(1)
    learn.check_nan = False  # the old behaviour, asked for
    learn.fit(1, lr=float("nan"))
    assert math.isnan(learn.recorder.values[-1][0])


def test_diverging_run_keeps_its_finite_checkpoints(tmp_path):
    """keep_last=2 used to rotate every finite checkpoint out and keep two NaN ones."""
    learn = tiny_learner(tmp_path)
    ck = CheckpointCallback(every="epoch", keep_last=2)
    learn.fit(2, cbs=[ck])
    good = _checkpoints(tmp_path)
    assert good == ["checkpoint_000000.pt", "checkpoint_000001.pt"]
    with pytest.raises(FloatingPointError, match=r"the training loss became nan at epoch \d, batch \d"):
        learn.fit(3, lr=1e6, cbs=[ck])  # Adam's steps of size 1e6: the loss overflows within two epochs
    kept = _checkpoints(tmp_path)
    assert len(kept) == 2 and good[-1] in kept  # the rotation went on only while checkpoints were finite
    assert all(_all_finite(tmp_path / "models" / n) for n in kept)


class NaNStepAt(Callback):
    """From training batch `at` on, the optimizer's learning rate is NaN: that step makes the weights NaN."""

    def __init__(self, at: int):
        self.at = at

    def before_step(self) -> None:
        if self.learn.train_iter >= self.at:
            for g in self.learn.opt.param_groups:
                g["lr"] = float("nan")


def test_no_checkpoint_of_nan_weights_mid_epoch(tmp_path):
    """A batch checkpoint right after the poisoning step: its loss was still finite, its weights are not."""
    from deepfit.learner.checkpoint import NonFiniteWeightsError

    learn = tiny_learner(tmp_path)
    with pytest.raises(NonFiniteWeightsError, match=r"weights became NaN/inf by epoch 0, batch 2 .*checkpoint_000002"
                                                    r".pt was not written") as e:
        learn.fit(2, cbs=[CheckpointCallback(every=1, keep_last=2), NaNStepAt(2)])
    assert (e.value.epoch, e.value.batch) == (0, 2)
    kept = _checkpoints(tmp_path)
    assert kept == ["checkpoint_000000.pt", "checkpoint_000001.pt"]
    assert all(_all_finite(tmp_path / "models" / n) for n in kept)
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
    with pytest.raises(NonFiniteWeightsError):
        learn.save("by_hand")
    assert save_checkpoint(learn, "by_hand", check_finite=False).is_file()  # asked for explicitly


class NaNLossFor(Callback):
    """Training batches `start .. start+n-1` get a NaN loss and skip their step (as a loss scaler would)."""

    order = 10

    def __init__(self, start: int, n: int):
        self.start, self.n = start, n

    def after_loss(self) -> None:
        if self.learn.training and self.start <= self.learn.train_iter < self.start + self.n:
            self.learn.loss = self.learn.loss * float("nan")
            raise CancelBatch()


@pytest.mark.parametrize("n_bad, stops", [(2, False), (3, True)])
def test_max_skipped_tolerates_that_many_non_finite_losses_in_a_row(tmp_path, n_bad, stops):
    from deepfit.learner.checks import NaNLossCheck, NonFiniteLossError

    learn = tiny_learner(tmp_path)
    cbs = [NaNLossFor(start=1, n=n_bad), NaNLossCheck(max_skipped=2)]
    if stops:
        with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 0, batch 1 \(3 non-finite losses in a row"):
            learn.fit(1, cbs=cbs)
    else:
        learn.fit(2, cbs=cbs)
        assert sum(math.isnan(v) for v in learn.recorder.losses) == 2
    with pytest.raises(ValueError, match="max_skipped"):
        NaNLossCheck(max_skipped=-1)


# ---------------------------------------------------------------------------------------------- resume
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    learn = tiny_learner(tmp_path)
    learn.fit(3, cbs=[CheckpointCallback(every="epoch", keep_last=3)])
    folder = tmp_path / "models"
    newest = folder / "checkpoint_000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a full disk or a bad copy
    expected = tiny_learner(tmp_path / "ref")
    expected.fit(4, resume=folder / "checkpoint_000001.pt")
    for resume in ("last", newest):
        said: list[str] = []
        other = tiny_learner(tmp_path)
        other.logger = said.append
        other.fit(4, resume=resume)
        assert any("cannot read checkpoint_000002.pt" in s and f"resuming from {folder / 'checkpoint_000001.pt'}"
                   in s for s in said), said
        assert all(torch.equal(other.model.state_dict()[k], v) for k, v in expected.model.state_dict().items())
    (folder / "checkpoint_000001.pt").write_bytes(b"garbage")
    (folder / "checkpoint_000000.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no readable checkpoint to resume from"):
        tiny_learner(tmp_path).fit(4, resume=newest)
    with pytest.raises(CheckpointError, match="cannot read"):  # a file outside a series: no fallback
        tiny_learner(tmp_path).fit(4, resume=newest.rename(folder / "mine.pt"))


def test_checkpoint_callback_keeps_the_temporary_files_of_a_live_writer(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_tmp = folder / f".checkpoint_000000.pt.tmp-{int(dead.stdout)}"
    live_tmp = folder / f".checkpoint_000000.pt.tmp-{os.getppid()}"  # our parent process is alive
    dead_tmp.write_bytes(b"half"), live_tmp.write_bytes(b"half")
    tiny_learner(tmp_path).fit(1, cbs=[CheckpointCallback()])
    assert live_tmp.exists() and not dead_tmp.exists()


# ---------------------------------------------------------------------------------------------- best.pth
def test_best_model_is_written_atomically(tmp_path, monkeypatch):
    """A kill while best.pth is being written leaves the previous best.pth whole (it used to be half a file)."""
    from deepfit import safe_io
    from deepfit.learner.callbacks import SaveBestModel

    learn = tiny_learner(tmp_path)
    learn.fit(1, cbs=[SaveBestModel(monitor="train_loss", load_at_end=False)])
    best = tmp_path / "models" / "best.pth"
    before = torch.load(best, weights_only=True)
    real_save = torch.save

    def killed_halfway(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(safe_io.torch, "save", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, cbs=[SaveBestModel(monitor="train_loss", load_at_end=False)])
    after = torch.load(best, weights_only=True)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [p.name for p in best.parent.iterdir() if p.name.startswith(".")] == []
