"""The CLI's one-line errors for refused pickles, a full disk and diverged training (commands/errors.py)."""

from __future__ import annotations

import errno
import pickle
import shutil
from pathlib import Path

import torch

from deepfit.commands.errors import describe
from deepfit.safe_io import DiskFullError, PickleRefusedError
from tests.helpers.cli import TINY, run
from tests.helpers.data import requires_fmnist, requires_fortunes


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_describe_full_disk_refusals_and_divergence():
    message, hint = describe(DiskFullError("/runs/r/models/best.pth"))
    assert message == "no space left on device while writing /runs/r/models/best.pth"
    assert hint.startswith("free some disk space")
    message, _ = describe(OSError(errno.ENOSPC, "No space left on device"))
    assert message == "no space left on device"
    refused = PickleRefusedError("refusing ... pass allow_pickle=True", path="/x/evil.pt",
                                 reason="it contains pickled Python objects (GLOBAL os.system)")
    for e in (refused, _wrapped(refused)):
        message, hint = describe(e)
        assert message == ("refused to load /x/evil.pt: it contains pickled Python objects (GLOBAL os.system), and "
                           "unpickling can run arbitrary code")
        assert "allow_pickle" not in message + hint and "never unpickles" in hint and "bug" not in hint
    message, hint = describe(pickle.UnpicklingError("Weights only load failed."))
    assert message.startswith("refused to load a file holding pickled Python objects") and "bug" not in hint
    message, hint = describe(FloatingPointError("the training loss became nan at epoch 1, batch 2"))
    assert message == "the training loss became nan at epoch 1, batch 2" and "--lr" in hint


def _wrapped(inner: Exception) -> Exception:
    try:
        raise ValueError("weights.pt: cannot read weights") from inner
    except ValueError as e:
        return e


@requires_fmnist
def test_pickled_weights_are_refused_not_run(png_dir, tmp_path, capsys):
    """`--weights` holding a pickle: 'refused', and no hint at an allow_pickle=True the CLI does not have."""
    marker = tmp_path / "PWNED"
    evil = tmp_path / "weights.pt"
    torch.save({"model": _Payload(marker)}, evil)
    rc, _, err = run(capsys, "train-vision", png_dir, "--weights", evil, "--out", tmp_path / "runs", *TINY)
    assert rc == 1 and not marker.exists()
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"deepfit: error: refused to load {evil}: it contains pickled Python objects")
    assert lines[1].startswith("hint: the command line never unpickles files") and "allow_pickle" not in err


@requires_fortunes
def test_pickled_encoder_is_refused_not_a_bug(awd_lm_run, fortunes_dir, tmp_path, capsys):
    """An encoder file holding a pickle said 'this looks like a bug'."""
    lm = tmp_path / "lm"
    shutil.copytree(awd_lm_run, lm)
    marker = tmp_path / "PWNED"
    encoder = lm / "models" / "encoder.pth"
    torch.save({"state_dict": _Payload(marker)}, encoder)
    rc, _, err = run(capsys, "train-classifier", fortunes_dir, "--lm", lm, "--stages", "1,0,0,0", "--out",
                     tmp_path / "runs", "--bs", "16", "--quiet")
    assert rc == 1 and not marker.exists()
    assert err.startswith(f"deepfit: error: refused to load {encoder}: it contains pickled Python objects")
    assert "bug" not in err and "allow_pickle" not in err
