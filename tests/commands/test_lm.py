"""`deepfit train-lm` and `generate` on fortunes files."""

from __future__ import annotations

import json

import torch

from tests.helpers.cli import TINY, kill_after_first_epoch, metrics_rows, run
from tests.helpers.data import requires_fortunes


@requires_fortunes
def test_char_lm_and_generate(fortunes_dir, tmp_path, capsys):
    rc, out, err = run(capsys, "train-lm", fortunes_dir, "--arch", "char_gru", "--bptt", "30", "--emb-sz", "8",
                       "--n-hid", "16", "--n-layers", "1", "--sample", "0", "--out", tmp_path, "--name", "c", *TINY)
    assert rc == 0, err
    run_dir = tmp_path / "c"
    for name in ("config.json", "metrics.csv", "models/best.pth", "models/last.pt", "export/learner.json",
                 "losses.png", "lr_schedule.png", "vocab.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["resolved"]["tokenizer"] == "char"
    rc, out, err = run(capsys, "generate", run_dir, "--prompt", "Love", "--n", "20", "--seed", "1")
    assert rc == 0, err
    assert out.startswith("Love") and len(out.rstrip("\n")) >= 20
    rc, out2, _ = run(capsys, "generate", run_dir, "--prompt", "Love", "--n", "20", "--seed", "1")
    assert out2 == out


@requires_fortunes
def test_train_lm_resume(fortunes_dir, tmp_path, capsys, monkeypatch):
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        rc, _, _ = run(capsys, "train-lm", fortunes_dir, "--arch", "char_rnn", "--emb-sz", "8", "--n-hid", "16",
                       "--bptt", "30", "--epochs", "2", "--bs", "16", "--sample", "0", "--quiet", "--out", tmp_path,
                       "--name", "k")
    assert rc == 130
    rc, out, err = run(capsys, "train-lm", "--resume", tmp_path / "k")
    assert rc == 0, err
    assert [r["epoch"] for r in metrics_rows(tmp_path / "k")] == ["0", "1"]
    assert (tmp_path / "k" / "export" / "model.safetensors").is_file()
    rc, _, err = run(capsys, "train-vision", "--resume", tmp_path / "k")
    assert rc == 2 and "is a 'train-lm' run" in err
    rc, _, err = run(capsys, "train-vision", "--config", tmp_path / "k" / "config.json")
    assert rc == 2 and "is a 'train-lm' run" in err


@requires_fortunes
def test_awd_lstm_lm_saves_its_encoder(awd_lm_run):
    assert (awd_lm_run / "models" / "encoder.pth").is_file()
    data = torch.load(awd_lm_run / "models" / "lm.pth", weights_only=True)  # what train-lm --from starts from
    assert data["kind"] == "language_model" and data["itos"] == json.loads((awd_lm_run / "vocab.json").read_text())[
        "itos"]
    assert json.loads((awd_lm_run / "config.json").read_text())["resolved"]["tokenizer"] == "word"
