"""`deepfit predict` on a text classifier run: files read as train-classifier reads them, names printed safely."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.cli import TINY, run
from tests.helpers.data import requires_fortunes


@pytest.fixture(scope="module")
def text_run(fortunes_dir, tmp_path_factory) -> Path:
    """A tiny LSTM classifier of the two fortunes topics (love, food)."""
    out = tmp_path_factory.mktemp("clas")
    from deepfit.cli import main

    rc = main(["train-classifier", str(fortunes_dir), "--arch", "lstm", "--emb-sz", "8", "--n-hid", "8", "--out",
               str(out), "--name", "t", *TINY])
    assert rc == 0
    return out / "t"


@requires_fortunes
def test_latin1_file_gives_train_classifiers_error(text_run, fortunes_dir, tmp_path, capsys):
    """predict read it with replacement characters and exited 0; train-classifier rejects the same file."""
    latin = tmp_path / "review.txt"
    latin.write_bytes("Le café est très bon".encode("latin-1"))
    rc, out, err = run(capsys, "predict", text_run, latin)
    assert rc == 1 and out == ""
    predicted = err.splitlines()
    assert predicted[0] == f"deepfit: error: {latin}: not valid UTF-8 at byte offset 6 (byte 0xe9: invalid " \
                           "continuation byte)"
    data = tmp_path / "data"
    shutil.copytree(fortunes_dir, data)
    (data / "food").write_bytes((data / "food").read_bytes() + b"\n%\n" + latin.read_bytes() + b"\n%\n")
    rc, _, err = run(capsys, "train-classifier", data, "--arch", "lstm", "--out", tmp_path / "runs", *TINY)
    assert rc == 1
    trained = err.splitlines()
    assert trained[0].startswith(f"deepfit: error: {data / 'food'}: not valid UTF-8 at byte offset ")
    assert trained[1] == predicted[1] == "hint: fix or remove the file named above"
    rc, out, err = run(capsys, "predict", text_run, "Le café est très bon")  # a text given as such is fine
    assert rc == 0, err


@requires_fortunes
def test_class_names_cannot_send_terminal_escapes(text_run, tmp_path, capsys):
    """A learner.json's class names (any string) were printed raw: ESC sequences reached the terminal."""
    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    spec_file = copy / "export" / "learner.json"
    spec = json.loads(spec_file.read_text())
    names = ["\x1b[2J\x1b[31mlove", "food\u202e\x9b"]
    spec["vocab"] = names
    spec_file.write_text(json.dumps(spec))
    text = "I love you\x1b]0;title\x07"
    rc, out, err = run(capsys, "predict", copy, text)
    assert rc == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out and "\x07" not in out
    shown, prediction, _ = out.rstrip("\n").split("\t")
    assert shown == "I love you\\x1b]0;title\\x07"
    assert prediction in ("\\x1b[2J\\x1b[31mlove", "food\\u202e\\x9b")
    rc, out, err = run(capsys, "predict", copy, text, "--json")
    assert rc == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out
    result = json.loads(out)[0]  # the JSON values are the names themselves
    assert result["prediction"] in names and result["input"] == text
    assert {t["class"] for t in result["top"]} == set(names)
