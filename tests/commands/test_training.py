"""What every train-* command shares (commands/training.py): diverging runs, resumed runs, a full disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from deepfit.cli import main
from deepfit.commands.vision_defaults import DEMO_RECIPE
from deepfit.recipes import get_recipe
from tests.helpers.cli import metrics_rows, run
from tests.helpers.data import requires_fmnist

QUICK = ["--bs", "16", "--quiet"]


@requires_fmnist
def test_a_diverging_run_stops_with_one_line_and_exports_nothing(png_dir, tmp_path, capsys):
    """`--lr 1e6` used to exit 0, export a NaN model, and rotate every finite checkpoint out."""
    rc, out, err = run(capsys, "train-vision", png_dir, "--epochs", "3", "--lr", "1e6", *QUICK, "--out", tmp_path,
                       "--name", "nan")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert re.fullmatch(r"deepfit: error: training diverged: the "
                        r"(training loss became (nan|inf)|weights became NaN/inf) at epoch \d, batch \d; "
                        r"lower --lr \(this run used --lr 1e\+06\)", lines[0]), lines[0]
    assert lines[1].startswith("hint: ") and "nothing was exported" in lines[1]
    folder = tmp_path / "nan"
    assert not (folder / "export").exists() and not (folder / "models" / "last.pt").exists()
    for ck in (folder / "models").glob("*.pt*") if (folder / "models").exists() else []:
        state = torch.load(ck, weights_only=True)
        state = state.get("model", state)
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ck
    assert not (folder / ".lock").exists()


@requires_fmnist
def test_kill_between_row_and_checkpoint_then_resume_lists_each_epoch_once(png_dir, tmp_path, capsys, monkeypatch):
    from deepfit.learner.checkpoint import CheckpointCallback

    original = CheckpointCallback.after_epoch

    def killed_before_the_second_checkpoint(self):
        if self.learn.epoch == 1:
            raise KeyboardInterrupt  # metrics.csv has epoch 1's row, models/ has no checkpoint of it
        original(self)

    with monkeypatch.context() as m:
        m.setattr(CheckpointCallback, "after_epoch", killed_before_the_second_checkpoint)
        rc, _, _ = run(capsys, "train-vision", png_dir, "--epochs", "2", "--lr", "1e-2", *QUICK, "--out", tmp_path,
                       "--name", "k")
    assert rc == 130
    folder = tmp_path / "k"
    assert [r["epoch"] for r in metrics_rows(folder)] == ["0", "1"]
    rc, out, err = run(capsys, "train-vision", "--resume", folder)
    assert rc == 0, err
    assert [r["epoch"] for r in metrics_rows(folder)] == ["0", "1"]  # was 0, 1, 1
    rc, out, err = run(capsys, "summary", folder)
    assert rc == 0, err
    table = out[out.index("epoch "):out.index("best epoch by")].strip().splitlines()[1:]
    assert [line.split()[0] for line in table] == ["0", "1"]


@requires_fmnist
def test_resume_refuses_options_that_cannot_change_and_takes_more_epochs(png_dir, tmp_path, capsys):
    args = ["train-vision", str(png_dir), "--epochs", "1", "--lr", "1e-2", *QUICK, "--out", str(tmp_path)]
    assert main([*args, "--name", "r"]) == 0
    folder = tmp_path / "r"
    rc, _, err = run(capsys, "train-vision", "--resume", folder, "--epochs", "10", "--arch", "mlp", "--lr", "1")
    assert rc == 2
    first = err.splitlines()[0]
    assert first == (f"deepfit: error: --resume continues {folder} as it was started: --arch mlp, --lr 1.0 cannot "
                     f"change (the run has --arch {get_recipe(DEMO_RECIPE).arch}, --lr 0.01)")
    assert "hint: only --epochs (more), --quiet and the machine settings --threads, --workers and --cache go" in err
    rc, _, err = run(capsys, "train-vision", "--resume", folder, "--epochs", "0")
    assert rc == 2 and "--epochs 0 is fewer than the 1 the run was started with" in err
    assert [r["epoch"] for r in metrics_rows(folder)] == ["0"]  # nothing trained
    rc, out, err = run(capsys, "train-vision", "--resume", folder, "--epochs", "2", "--arch",
                       get_recipe(DEMO_RECIPE).arch)
    assert rc == 0, err  # repeating an option as it was is fine
    assert "--epochs 2: the run was started with --epochs 1; it now trains to 2 epochs" in out
    assert [r["epoch"] for r in metrics_rows(folder)] == ["0", "1"]
    assert json.loads((folder / "config.json").read_text())["options"]["epochs"] == 2


@requires_fmnist
def test_resume_uses_the_threads_workers_and_cache_given(png_dir, tmp_path, capsys, monkeypatch):
    """Threads, data workers and the decoded cache are settings of the machine: a resumed run takes them from the
    command line, uses them, says so and records them (the run's own options stay)."""
    from deepfit.commands import vision
    from deepfit.learner.checkpoint import CheckpointCallback

    seen: dict[str, list] = {"threads": [], "workers": [], "cache": []}
    build, save = vision.build_vision_dls, CheckpointCallback.after_epoch

    def build_dls(args, *a, **k):
        seen["workers"].append(args.workers)
        seen["cache"].append(args.cache)
        return build(args, *a, **k)

    def after_epoch(self):
        seen["threads"].append(torch.get_num_threads())
        save(self)

    monkeypatch.setattr(vision, "build_vision_dls", build_dls)
    monkeypatch.setattr(CheckpointCallback, "after_epoch", after_epoch)
    args = ["train-vision", png_dir, "--epochs", "1", "--lr", "1e-2", *QUICK, "--out", tmp_path, "--name", "m"]
    rc, out, err = run(capsys, *args, "--threads", "1", "--workers", "0")
    assert rc == 0, err
    folder = tmp_path / "m"
    config = json.loads((folder / "config.json").read_text())
    assert config["resolved"]["threads"] == {"threads": 1, "reason": "requested"}
    assert "1 thread(s): requested" in out
    rc, out, err = run(capsys, "train-vision", "--resume", folder, "--epochs", "2", "--threads", "2", "--workers", "1",
                       "--cache")
    assert rc == 0, err
    assert seen == {"threads": [1, 2], "workers": [0, 1], "cache": [False, True]}
    assert "deepfit: --threads 2: this session's setting (the run was started with 1)" in out
    assert "deepfit: --workers 1: this session's setting (the run was started with 0)" in out
    config = json.loads((folder / "config.json").read_text())
    assert (config["options"]["threads"], config["options"]["workers"], config["options"]["cache"]) == (2, 1, True)
    assert config["resolved"]["threads"] == {"threads": 2, "reason": "requested"}
    assert config["options"]["lr"] == 0.01 and config["options"]["epochs"] == 2
    assert [r["epoch"] for r in metrics_rows(folder)] == ["0", "1"]


def test_best_and_last_epochs_by_the_first_metric_or_the_loss(tmp_path):
    """The rule behind metrics.json's `best` and the line that says which epoch was exported."""
    from types import SimpleNamespace

    from deepfit.commands.training import best_and_last, describe_epochs

    rows = [{"epoch": 0, "train_loss": 1.0, "valid_loss": 0.9, "accuracy": 0.5},
            {"epoch": 1, "train_loss": 0.8, "valid_loss": 0.7, "accuracy": 0.8},
            {"epoch": 2, "train_loss": 0.6, "valid_loss": 0.6, "accuracy": 0.7}]
    recorder = SimpleNamespace(table=lambda: rows)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best.pth").write_bytes(b"")
    run_dir = SimpleNamespace(best_weights=tmp_path / "models" / "best.pth")
    with_metric = SimpleNamespace(recorder=recorder, metrics=[SimpleNamespace(name="accuracy")], cbs=[recorder])
    best_cb = SimpleNamespace(monitor="accuracy", best_epoch=1)
    epochs = best_and_last(with_metric, best_cb, run_dir)
    assert epochs["best"] == {**rows[1], "monitor": "accuracy", "mode": "max", "exported": True}
    assert epochs["last"] == rows[2]
    assert describe_epochs(epochs) == ("best model: epoch 1 by highest accuracy (accuracy 0.8000), exported "
                                       "(export/, models/best.pth); last epoch 2 (accuracy 0.7000)")
    no_metric = SimpleNamespace(recorder=recorder, metrics=[], cbs=[recorder])
    epochs = best_and_last(no_metric, SimpleNamespace(monitor="valid_loss", best_epoch=2), run_dir)
    assert (epochs["best"]["epoch"], epochs["best"]["monitor"], epochs["best"]["mode"]) == (2, "valid_loss", "min")
    assert describe_epochs(epochs).startswith("best model: epoch 2 by lowest valid_loss (valid_loss 0.6000)")
    epochs = best_and_last(no_metric, None, run_dir)  # the last phase trained no epoch: nothing saved as best
    assert describe_epochs(epochs) == "best model: the last epoch (2) is exported (no best epoch was saved)"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@requires_fmnist
def test_full_disk_is_named(png_dir, tmp_path, capsys, monkeypatch):
    """Writing a model on a full disk said `RuntimeError: [enforce fail at inline_container.cc:672]`, 'a bug'."""
    from deepfit import safe_io

    real_open = open
    monkeypatch.setattr(safe_io, "open", lambda p, mode="r", *a, **k: real_open("/dev/full" if "w" in mode else p,
                                                                               mode, *a, **k), raising=False)
    rc, _, err = run(capsys, "train-vision", png_dir, "--epochs", "1", *QUICK, "--out", tmp_path, "--name", "full")
    assert rc == 1
    lines = err.strip().splitlines()
    best = tmp_path / "full" / "models" / "best.pth"
    assert lines[0] == f"deepfit: error: no space left on device while writing {best}"
    assert lines[1].startswith("hint: free some disk space") and "bug" not in err
