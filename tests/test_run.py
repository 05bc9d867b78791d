"""`RunDir`: making, reopening and locking run folders; config, phases, results and artefacts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deepfit.run import LOCK_FILE, Phase, RunDir, RunDirError, read_config_file, rerun_line

ROOT = Path(__file__).resolve().parents[1]


def test_create_names_the_folder_and_numbers_repeats(tmp_path):
    a = RunDir.create(tmp_path / "runs", "exp")
    b = RunDir.create(tmp_path / "runs", "exp")
    assert a.path == (tmp_path / "runs" / "exp").resolve() and b.path.name == "exp-2"
    assert a.path.is_dir() and b.path.is_dir() and a.path.is_absolute()
    stamped = RunDir.create(tmp_path / "runs")
    assert stamped.path.name[:8].isdigit()


@pytest.mark.parametrize("name", ["../../X", "..", ".", "a/b", "a\\b", ""])
def test_create_refuses_a_name_that_leaves_out(tmp_path, name):
    if name == "":  # an empty name means "a timestamp"
        assert RunDir.create(tmp_path / "runs", name).path.parent == (tmp_path / "runs").resolve()
        return
    with pytest.raises(RunDirError, match="not a plain folder name") as e:
        RunDir.create(tmp_path / "runs" / "deep", name)
    assert e.value.usage
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir() and p.name not in ("runs", "deep")) == []


def test_open_names_what_is_missing(tmp_path):
    with pytest.raises(RunDirError, match="does not exist") as e:
        RunDir.open(tmp_path / "nope")
    assert e.value.usage
    with pytest.raises(RunDirError, match="it has no config.json") as e:
        RunDir.open(tmp_path)
    assert not e.value.usage


def test_config_round_trip_and_rerun_line(tmp_path):
    run = RunDir.create(tmp_path, "r")
    options = {"data": "imgs", "lr": "auto", "epochs": 2, "tta": True, "quiet": False, "stages": [1, 0, 0, 1],
               "name": "r", "weights": None}
    run.write_config("train-vision", options, {"lr": 0.01})
    config = RunDir.open(run.path).read_config()
    assert config["options"] == options and config["resolved"] == {"lr": 0.01}
    assert config["rerun"] == "deepfit train-vision imgs --lr auto --epochs 2 --tta --stages 1,0,0,1"
    assert config["rerun"] == rerun_line("train-vision", options)
    assert read_config_file(run.path) == config  # the folder or its config.json
    # an option with a --no- form given as False is written so; a plain flag left off is not
    assert rerun_line("train-vision", {"data": "imgs", "channels_last": False, "cache": True, "quiet": False}) == \
        "deepfit train-vision imgs --no-channels-last --cache"
    assert set(config["versions"]) >= {"deepfit"}


def test_read_config_file_errors(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        read_config_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RunDirError, match="cannot read"):
        read_config_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"lr": 1}))
    with pytest.raises(RunDirError, match="not a deepfit run configuration"):
        read_config_file(tmp_path / "config.json")


def test_pending_phases_skip_finished_ones(tmp_path):
    run = RunDir.create(tmp_path, "p")
    plan = [Phase("frozen", 1), Phase("checkpoint", 3)]
    assert run.pending_phases(plan, resuming=False) == [(0, plan[0], None), (1, plan[1], None)]
    run.models_dir.mkdir()
    (run.models_dir / "frozen_0.pt").write_bytes(b"x")
    assert run.pending_phases(plan, resuming=True) == [(0, plan[0], run.models_dir / "frozen_0.pt"),
                                                       (1, plan[1], None)]
    for n in (0, 1):
        (run.models_dir / f"checkpoint_{n}.pt").write_bytes(b"x")
    assert run.pending_phases(plan, resuming=True) == [(1, plan[1], run.models_dir / "checkpoint_1.pt")]


def test_results_and_artefacts(tmp_path):
    run = RunDir.create(tmp_path, "a")
    assert run.read_results() is None and run.read_metrics() == []
    run.write_config("train-lm", {}, {})
    run.write_results({"valid_best": {"loss": 1.5}})
    (run.path / "metrics.csv").write_text("epoch,valid_loss\n0,1.5\n")
    run.models_dir.mkdir()
    run.best_weights.write_bytes(b"x")
    (run.path / "vocab.json").write_text("{}")
    (run.path / "notes.txt").write_text("mine")
    assert run.read_results() == {"valid_best": {"loss": 1.5}}
    assert run.read_metrics() == [{"epoch": "0", "valid_loss": "1.5"}]
    assert list(run.artefacts()) == ["config", "metrics", "results", "best checkpoint", "vocabulary", "notes"]
    assert [str(f) for f in run.files()] == ["config.json", "metrics.csv", "metrics.json", "models/best.pth",
                                             "notes.txt", "vocab.json"]


def test_lock_refuses_a_second_writer_and_lets_go(tmp_path):
    run = RunDir.create(tmp_path, "l")
    with run.lock():
        assert f"process {os.getpid()}" in (run.path / LOCK_FILE).read_text()
        assert LOCK_FILE not in [str(f) for f in run.files()]
        with pytest.raises(RunDirError, match=f"is in use by process {os.getpid()} "), RunDir(run.path).lock():
            pass
    assert not (run.path / LOCK_FILE).exists()
    with RunDir(run.path).lock():  # free again
        pass


def test_lock_held_by_another_process_then_left_by_a_killed_one(tmp_path):
    run = RunDir.create(tmp_path, "k")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from deepfit.run import RunDir\n"
         "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(120)", str(run.path)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"in use by process {holder.pid} "), run.lock():
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (run.path / LOCK_FILE).exists()  # a killed writer leaves its lock file behind...
    with run.lock():  # ...but not its lock: a stale lock is taken over
        assert f"process {os.getpid()}" in (run.path / LOCK_FILE).read_text()


def test_negatable_options_are_the_clis_boolean_optional_ones():
    import argparse

    from deepfit.cli import OPTIONS
    from deepfit.run import NEGATABLE_OPTIONS

    negatable = {name for name, (_, kwargs) in OPTIONS.items()
                 if kwargs.get("action") is argparse.BooleanOptionalAction and kwargs.get("default") is None}
    assert negatable == set(NEGATABLE_OPTIONS)
