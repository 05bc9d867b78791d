"""The `deepfit` command line end to end, on small real data (Fashion-MNIST PNGs, fortunes files) in tmp folders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepfit.cli import main
from deepfit.learner.export import load_learner

from .conftest import FORTUNES_DIR, requires_fmnist, requires_fortunes

ROOT = Path(__file__).resolve().parents[1]
VISION_FILES = ["config.json", "metrics.csv", "metrics.json", "models/best.pth", "models/last.pt",
                "export/learner.json", "export/model.safetensors", "losses.png", "lr_schedule.png",
                "confusion_matrix.png", "top_losses.png", "lr_find.png"]
TINY = ["--epochs", "1", "--bs", "16", "--quiet"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def png_dir(tmp_path_factory) -> Path:
    from .conftest import fashion_mnist_available
    from .vision_utils import write_fmnist_folder

    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    return write_fmnist_folder(tmp_path_factory.mktemp("fmnist_png"), n_train=8, n_valid=4)


@pytest.fixture(scope="module")
def vision_run(png_dir, tmp_path_factory) -> Path:
    """One train-vision run with --lr auto, augmentation, label smoothing, MixUp and TTA."""
    out = tmp_path_factory.mktemp("runs")
    rc = main(["train-vision", str(png_dir), "--lr", "auto", "--augment", "standard", "--label-smoothing", "0.1",
               "--mixup", "0.4", "--tta", "--out", str(out), "--name", "v", *TINY])
    assert rc == 0
    return out / "v"


@pytest.fixture(scope="module")
def fortunes_dir(tmp_path_factory) -> Path:
    """Two fortunes topics, cut to their first 40 entries each."""
    if not (FORTUNES_DIR / "love").exists() or not (FORTUNES_DIR / "food").exists():
        pytest.skip("fortunes not installed; run `make data`")
    from deepfit.text.datasets import read_fortunes

    folder = tmp_path_factory.mktemp("fortunes")
    for topic in ("love", "food"):
        entries = read_fortunes(FORTUNES_DIR / topic)[:40]
        (folder / topic).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def awd_lm_run(fortunes_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm")
    rc = main(["train-lm", str(fortunes_dir), "--arch", "awd_lstm", "--bptt", "20", "--emb-sz", "16", "--n-hid", "32",
               "--n-layers", "2", "--sample", "5", "--out", str(out), "--name", "awd", *TINY])
    assert rc == 0
    return out / "awd"


# ---------------------------------------------------------------------------------------------- vision
@requires_fmnist
def test_train_vision_writes_every_file(vision_run, capsys):
    for name in VISION_FILES:
        assert (vision_run / name).is_file(), name
    assert any((vision_run / "tensorboard").iterdir())
    config = json.loads((vision_run / "config.json").read_text())
    assert config["command"] == "train-vision"
    assert config["options"]["mixup"] == 0.4 and config["options"]["lr"] == "auto"
    assert config["resolved"]["lr"] > 0 and len(config["resolved"]["classes"]) == 10
    assert config["rerun"].startswith("deepfit train-vision ")
    assert [r["epoch"] for r in metrics_rows(vision_run)] == ["0"]
    results = json.loads((vision_run / "metrics.json").read_text())
    assert 0 <= results["valid_best"]["accuracy"] <= 1 and 0 <= results["valid_tta_accuracy"] <= 1


@requires_fmnist
def test_predict_matches_python_api(vision_run, png_dir, capsys):
    images = sorted((png_dir / "valid").rglob("*.png"))[:3]
    rc, out, err = run(capsys, "predict", vision_run, *images, "--json")
    assert rc == 0, err
    results = json.loads(out)
    learn = load_learner(vision_run / "export")
    for img, res in zip(images, results):
        label, idx, probs = learn.predict(img)
        assert res["prediction"] == label and res["index"] == idx
        assert res["probability"] == pytest.approx(float(probs[idx]), abs=1e-6)
    rc, out, _ = run(capsys, "predict", vision_run, images[0])
    assert rc == 0 and out.split("\t")[1] == results[0]["prediction"]


@requires_fmnist
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_summary_and_export(vision_run, capsys):
    rc, out, _ = run(capsys, "summary", vision_run)
    assert rc == 0
    assert "valid_loss" in out and "simple_cnn" in out and "models/best.pth" in out
    assert "validation with TTA: accuracy" in out and "--lr auto" in out  # metrics.json and the rerun line
    rc, out, err = run(capsys, "export", vision_run, "--torchscript")
    assert rc == 0, err
    ts = torch.jit.load(str(vision_run / "export" / "model.torchscript.pt"))
    assert ts(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@requires_fmnist
def test_export_onnx_gives_the_same_outputs(vision_run, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    rc, out, err = run(capsys, "export", vision_run, "--onnx")
    assert rc == 0, err
    path = vision_run / "export" / "model.onnx"
    assert f"wrote {path}" in out
    x = torch.randn(3, 1, 28, 28)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = load_learner(vision_run / "export").model(x)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)


@requires_fmnist
def test_resume_continues_a_killed_run(png_dir, tmp_path, capsys, monkeypatch):
    from deepfit.learner.checkpoint import CheckpointCallback

    args = ["train-vision", str(png_dir), "--epochs", "2", "--bs", "16", "--lr", "1e-2", "--quiet", "--out",
            str(tmp_path)]
    assert main([*args, "--name", "whole"]) == 0
    original = CheckpointCallback.after_epoch

    def killed_after_first_epoch(self):
        original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointCallback, "after_epoch", killed_after_first_epoch)
    rc, _, err = run(capsys, *args, "--name", "killed")
    assert rc == 130 and "--resume" in err
    killed = tmp_path / "killed"
    assert [r["epoch"] for r in metrics_rows(killed)] == ["0"] and not (killed / "export").exists()
    monkeypatch.setattr(CheckpointCallback, "after_epoch", original)
    rc, out, err = run(capsys, "train-vision", "--resume", killed)
    assert rc == 0, err
    assert "resuming from" in out
    assert [r["epoch"] for r in metrics_rows(killed)] == ["0", "1"]
    a = torch.load(tmp_path / "whole" / "models" / "last.pt", weights_only=True)["model"]
    b = torch.load(killed / "models" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@requires_fmnist
def test_transfer_from_local_weights(png_dir, tmp_path, capsys, monkeypatch):
    from deepfit.models import get_model

    weights = tmp_path / "pretrained.pth"
    torch.save(get_model("simple_cnn", c_in=1, n_out=5).state_dict(), weights)
    monkeypatch.chdir(tmp_path)  # a relative --out, as `make demo` uses
    rc, out, err = run(capsys, "train-vision", png_dir, "--weights", weights, "--freeze-epochs", "1", "--out",
                       "runs", "--name", "t", *TINY)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["t"]
    learn = load_learner(tmp_path / "runs" / "t" / "export")
    assert learn.spec["arch"] == "vision_model" and len(learn.vocab) == 10
    assert [r["epoch"] for r in metrics_rows(tmp_path / "runs" / "t")] == ["0", "0"]  # frozen phase, then unfrozen


@requires_fmnist
def test_lr_find_command(png_dir, tmp_path, capsys):
    rc, out, err = run(capsys, "lr-find", png_dir, "--bs", "16", "--num-it", "20", "--out", tmp_path)
    assert rc == 0, err
    assert "suggested lr:" in out and (tmp_path / "lr_find.png").is_file()


# ---------------------------------------------------------------------------------------------- text
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
    from deepfit.learner.checkpoint import CheckpointCallback

    original = CheckpointCallback.after_epoch

    def killed_after_first_epoch(self):
        original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointCallback, "after_epoch", killed_after_first_epoch)
    rc, _, _ = run(capsys, "train-lm", fortunes_dir, "--arch", "char_rnn", "--emb-sz", "8", "--n-hid", "16",
                   "--bptt", "30", "--epochs", "2", "--bs", "16", "--sample", "0", "--quiet", "--out", tmp_path,
                   "--name", "k")
    assert rc == 130
    monkeypatch.setattr(CheckpointCallback, "after_epoch", original)
    rc, out, err = run(capsys, "train-lm", "--resume", tmp_path / "k")
    assert rc == 0, err
    assert [r["epoch"] for r in metrics_rows(tmp_path / "k")] == ["0", "1"]
    assert (tmp_path / "k" / "export" / "model.safetensors").is_file()
    rc, _, err = run(capsys, "train-vision", "--resume", tmp_path / "k")
    assert rc == 2 and "is a 'train-lm' run" in err


@requires_fortunes
def test_ulmfit_classifier_from_lm_run(awd_lm_run, fortunes_dir, tmp_path, capsys):
    assert (awd_lm_run / "models" / "encoder.pth").is_file()
    rc, out, err = run(capsys, "train-classifier", fortunes_dir, "--lm", awd_lm_run, "--stages", "1,0,0,1",
                       "--bs", "16", "--quiet", "--out", tmp_path, "--name", "u")
    assert rc == 0, err
    run_dir = tmp_path / "u"
    for name in ("config.json", "metrics.csv", "models/best.pth", "models/last.pt", "export/model.safetensors",
                 "confusion_matrix.png", "top_losses.txt", "losses.png"):
        assert (run_dir / name).is_file(), name
    assert len(metrics_rows(run_dir)) == 2  # two one-cycle stages
    text = "Food is what I love to eat at dinner"
    rc, out, err = run(capsys, "predict", run_dir, text, "--json")
    assert rc == 0, err
    res = json.loads(out)[0]
    assert res["prediction"] == load_learner(run_dir / "export").predict(text)[0]
    assert res["prediction"] in ("food", "love")


@requires_fortunes
def test_bilstm_classifier_with_glove_embeddings(fortunes_dir, tmp_path, capsys):
    glove = tmp_path / "glove.txt"
    glove.write_text("love 0.1 0.2 0.3 0.4\nfood 0.5 -0.1 0.0 0.2\nthe 0.0 0.1 0.0 0.1\n", encoding="utf-8")
    rc, out, err = run(capsys, "train-classifier", fortunes_dir, "--arch", "bilstm", "--embeddings", glove,
                       "--n-hid", "16", "--out", tmp_path, "--name", "b", *TINY)
    assert rc == 0, err
    assert "found" in out  # load_embeddings' coverage report
    learn = load_learner(tmp_path / "b" / "export")
    assert learn.spec["kwargs"]["emb_sz"] == 4 and learn.spec["kwargs"]["bidirectional"] is True


# ---------------------------------------------------------------------------------------------- errors
def test_help_lists_every_option_with_its_default(capsys):
    from deepfit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        rc, out, _ = run(capsys, name, "--help")
        assert rc == 0
        flat = " ".join(out.split())
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.option_strings[0] in out, (name, action.dest)
        assert flat.count("default") >= len([a for a in p._actions if a.option_strings and a.dest != "help"]), name


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
    (["frobnicate"], 2, "deepfit: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_gives_one_line_error(argv, code, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    rc, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == code
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert lines[0].startswith(message.format(tmp=tmp_path))


def test_images_of_different_sizes_need_size(tmp_path, capsys):
    from PIL import Image

    for cls, size in (("a", (20, 24)), ("b", (30, 18))):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", size, (40 * i, 90, 200)).save(tmp_path / "data" / cls / f"{i}.png")
    rc, _, err = run(capsys, "train-vision", tmp_path / "data", "--out", tmp_path / "runs", *TINY)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"deepfit: error: images in '{tmp_path / 'data'}' differ in size")
    assert lines[1] == "hint: add --size N to resize (and centre-crop) every image to N×N"
    rc, out, err = run(capsys, "train-vision", tmp_path / "data", "--size", "16", "--valid-pct", "0.34",
                       "--out", tmp_path / "runs", "--name", "s", *TINY)
    assert rc == 0, err
    assert load_learner(tmp_path / "runs" / "s" / "export").spec["input"]["size"] == [16, 16]


@requires_fmnist
def test_unknown_arch_lists_the_registered_ones(png_dir, tmp_path, capsys):
    rc, _, err = run(capsys, "train-vision", png_dir, "--arch", "resnet9000", "--out", tmp_path)
    assert rc == 2
    assert "unknown --arch 'resnet9000'" in err and "xresnet18" in err and "simple_cnn" in err
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_real_process_usage_error_and_help(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deepfit", "train-vision", str(tmp_path / "missing")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"deepfit: error: DATA folder '{tmp_path / 'missing'}' does not exist"
    proc = subprocess.run([sys.executable, "-m", "deepfit", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0 and "train-vision" in proc.stdout and "train-classifier" in proc.stdout
