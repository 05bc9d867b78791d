"""The `deepfit` parser: options defined once, help, one-line errors, `--config`, and no torch to answer `--help`.

The commands themselves are tested in tests/commands/ (small real data in tmp folders).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepfit import cli
from deepfit.cli import apply_run_config, build_parser, main
from deepfit.commands.vision_defaults import DEMO_RECIPE, PLAIN, RECIPE_NAMES, RECIPE_OPTIONS
from tests.helpers.cli import run

ROOT = Path(__file__).resolve().parents[1]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_parser_loads_no_torch():
    script = "import deepfit.cli, sys; deepfit.cli.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=120)
    script = ("import sys; from deepfit.cli import main; rc = main(['train-vision', '--epochs', '-1']); "
              "assert rc == 2 and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=120, capture_output=True)


def test_every_option_is_defined_once_and_used():
    used = {name for _, groups in cli.COMMANDS.values() for _, names in groups for name in names}
    assert used == set(cli.OPTIONS)
    for command, overrides in cli.OVERRIDES.items():
        names = {n for _, names in cli.COMMANDS[command][1] for n in names}
        assert set(overrides) <= names, command  # an override of an option the command does not take
    for command, p in subparsers(build_parser()).items():
        flags = [f for a in p._actions for f in a.option_strings]
        assert len(flags) == len(set(flags)), command


def test_per_command_defaults():
    parsers = subparsers(build_parser())
    vision = parsers["train-vision"].parse_args([])
    lm = parsers["train-lm"].parse_args([])
    clas = parsers["train-classifier"].parse_args([])
    # train-vision's recipe options are resolved by the command (commands/vision_settings.py)
    assert all(getattr(vision, name) is None for name in RECIPE_OPTIONS) and vision.recipe is None
    assert (lm.bs, lm.arch, lm.n_hid) == (32, "awd_lstm", 512)  # the text commands' own defaults
    assert (clas.bs, clas.n_hid) == (32, 128)
    assert lm.precision == clas.precision == "auto" and lm.threads is None and clas.threads is None


def test_parser_lists_mirror_the_library():
    """The parser imports no torch, so it keeps its own copy of the augmentation presets and recipe names."""
    from deepfit import recipes
    from deepfit.data.transforms import AUGMENT_PRESETS

    assert {k: v.replace("%%", "%") for k, v in cli.AUGMENT_PRESETS.items()} == AUGMENT_PRESETS
    assert sorted(RECIPE_NAMES) == sorted(recipes.RECIPES)  # a new recipe: add its name to vision_defaults.py
    assert DEMO_RECIPE == recipes.FMNIST_DEMO.name
    assert set(PLAIN) <= set(recipes.FMNIST_DEMO.cli_options())
    choices = subparsers(build_parser())["train-vision"]._option_string_actions["--augment"].choices
    assert "crop" in choices and set(choices) == set(AUGMENT_PRESETS)


@pytest.mark.parametrize("command", ["train-vision", "train-lm", "train-classifier", "lr-find"])
def test_threads_on_every_training_command(command, capsys):
    p = subparsers(build_parser())[command]
    assert p.parse_args(["--threads", "3"]).threads == 3 and p.parse_args([]).threads is None
    rc, _, err = run(capsys, command, "--threads", "0")
    assert rc == 2 and "argument --threads: must be >= 1, got 0" in err


def test_threads_are_applied_while_the_command_runs_and_put_back(monkeypatch):
    seen = {}

    def handler(args):
        seen["threads"] = torch.get_num_threads()
        return 0

    monkeypatch.setattr(cli, "_handler", lambda command: handler)
    before = torch.get_num_threads()
    assert main(["train-vision", "x", "--threads", "3"]) == 0
    assert seen["threads"] == 3 and torch.get_num_threads() == before
    monkeypatch.setenv("DEEPFIT_THREADS", "2")  # the default: deepfit.threads.choose_threads()
    assert main(["train-lm", "x"]) == 0
    assert seen["threads"] == 2 and torch.get_num_threads() == before


def test_help_lists_every_option_with_its_default(capsys):
    for name, p in subparsers(build_parser()).items():
        rc, out, _ = run(capsys, name, "--help")
        assert rc == 0
        flat = " ".join(out.split())
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.option_strings[0] in out, (name, action.dest)
        assert flat.count("default") >= len([a for a in p._actions if a.option_strings and a.dest != "help"]), name


def _config_file(tmp_path: Path, command: str = "train-vision", **options) -> Path:
    base = {"data": "imgs", "arch": "xresnet18", "epochs": 5, "lr": "auto", "mixup": 0.4, "name": "old",
            "stages": [1, 0, 0, 1]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"command": command, "options": {**base, **options}, "resolved": {"lr": 0.1}}))
    return path


def _parse_with_config(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    return apply_run_config(parser, argv, parser.parse_args(argv))


def test_config_options_and_command_line_overrides(tmp_path):
    path = _config_file(tmp_path)
    args = _parse_with_config(["train-vision", "--config", str(path)])
    assert (args.data, args.arch, args.epochs, args.lr, args.mixup) == ("imgs", "xresnet18", 5, "auto", 0.4)
    assert args.name is None and args.config is None and args.bs is None and args.seed == 0  # not in the file: defaults
    args = _parse_with_config(["train-vision", "other", "--config", str(path), "--epochs", "1", "--lr", "0.5",
                               "--name", "new"])
    assert (args.data, args.arch, args.epochs, args.lr, args.name) == ("other", "xresnet18", 1, 0.5, "new")
    args = _parse_with_config(["train-vision", "--config", str(tmp_path)])  # the run folder works too
    assert args.arch == "xresnet18"


def test_resume_takes_the_runs_options_more_epochs_and_quiet_only(tmp_path):
    _config_file(tmp_path)
    args = _parse_with_config(["train-vision", "--resume", str(tmp_path), "--quiet"])
    assert (args.epochs, args.arch, args.quiet, args.resume) == (5, "xresnet18", True, str(tmp_path))
    args = _parse_with_config(["train-vision", "--resume", str(tmp_path), "--epochs", "9"])
    assert (args.epochs, args.arch) == (9, "xresnet18")  # more epochs: the run trains longer


def test_resume_takes_machine_settings_from_the_command_line(tmp_path, capsys):
    _config_file(tmp_path, threads=2, workers=3, cache=True)
    args = _parse_with_config(["train-vision", "--resume", str(tmp_path)])
    assert (args.threads, args.workers, args.cache) == (2, 3, True)  # as the run was started
    args = _parse_with_config(["train-vision", "--resume", str(tmp_path), "--threads", "1", "--workers", "0",
                               "--no-cache"])
    assert (args.threads, args.workers, args.cache, args.arch) == (1, 0, False, "xresnet18")
    assert {"threads", "workers", "cache"} <= set(cli.RESUME_MAY_CHANGE)
    rc, _, err = run(capsys, "train-vision", "--resume", tmp_path, "--threads", "1", "--bs", "8")
    assert rc == 2 and "--bs 8 cannot change" in err and "--threads" not in err.splitlines()[0]
    assert "the machine settings --threads, --workers and --cache go with --resume" in err


@pytest.mark.parametrize("argv, code, message", [
    (["train-vision", "{tmp}/nope"], 2, "deepfit: error: DATA folder '{tmp}/nope' does not exist"),
    (["train-vision", "{tmp}/empty"], 2,
     "deepfit: error: DATA folder '{tmp}/empty' has no images (looked for .png, .jpg, .jpeg)"),
    (["train-vision", "{tmp}/empty", "--epochs", "-1"], 2, "deepfit: error: argument --epochs: must be >= 0, got -1"),
    (["train-vision", "{tmp}/empty", "--lr", "fast"], 2,
     "deepfit: error: argument --lr: expected a number or 'auto', got 'fast'"),
    (["train-vision", "{tmp}/empty", "--precision", "fp8"], 2, "deepfit: error: argument --precision: invalid choice"),
    (["train-vision", "{tmp}/empty", "--freeze-epochs", "1"], 2, "deepfit: error: --freeze-epochs needs --weights"),
    (["train-lm", "{tmp}/nope.txt"], 2, "deepfit: error: TEXT '{tmp}/nope.txt' does not exist"),
    (["predict", "{tmp}/norun", "x.png"], 2, "deepfit: error: run folder '{tmp}/norun' does not exist"),
    (["summary", "{tmp}/empty"], 1, "deepfit: error: '{tmp}/empty' is not a complete deepfit run folder"),
    (["train-vision", "--resume", "{tmp}/norun"], 2, "deepfit: error: run folder '{tmp}/norun' does not exist"),
    (["train-vision", "--config", "{tmp}/nope.json"], 2,
     "deepfit: error: config file '{tmp}/nope.json' does not exist"),
    (["train-vision", "--config", "{tmp}/c.json", "--resume", "{tmp}"], 2,
     "deepfit: error: --config and --resume exclude each other"),
    (["train-lm", "--config", "{tmp}/c.json"], 2, "deepfit: error: --config: '{tmp}/c.json' is a 'train-vision' run"),
    (["train-vision", "--config", "{tmp}/bad.json"], 2, "deepfit: error: argument --epochs: must be >= 0, got -3"),
    (["train-vision", "--config", "{tmp}/bad2.json"], 2,
     "deepfit: error: --config: precision 'fp8' in {tmp}/bad2.json is not one of auto, fp32, bf16, fp16"),
    (["frobnicate"], 2, "deepfit: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_gives_one_line_error(argv, code, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "c.json").write_text(json.dumps({"command": "train-vision", "options": {}}))
    (tmp_path / "bad.json").write_text(json.dumps({"command": "train-vision", "options": {"epochs": -3}}))
    (tmp_path / "bad2.json").write_text(json.dumps({"command": "train-vision", "options": {"precision": "fp8"}}))
    rc, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == code
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert lines[0].startswith(message.format(tmp=tmp_path))


def test_real_process_usage_error_and_help(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deepfit", "train-vision", str(tmp_path / "missing")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"deepfit: error: DATA folder '{tmp_path / 'missing'}' does not exist"
    proc = subprocess.run([sys.executable, "-m", "deepfit", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0 and "train-vision" in proc.stdout and "train-classifier" in proc.stdout
    assert main([]) == 2
