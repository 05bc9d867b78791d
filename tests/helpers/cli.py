"""Helpers for the command-line tests: run `deepfit` in-process, read a run folder's metrics."""

from __future__ import annotations

import csv
from pathlib import Path

from deepfit.cli import main

TINY = ["--epochs", "1", "--bs", "16", "--quiet"]


def run(capsys, *argv) -> tuple[int, str, str]:
    """`deepfit *argv` in this process: `(exit status, stdout, stderr)`."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def kill_after_first_epoch(monkeypatch) -> None:
    """Make training stop as if killed (Ctrl-C) right after the first epoch's checkpoint is written."""
    from deepfit.learner.checkpoint import CheckpointCallback

    original = CheckpointCallback.after_epoch

    def killed(self):
        original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointCallback, "after_epoch", killed)
