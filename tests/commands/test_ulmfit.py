"""ULMFiT's three stages through the command line, on real fortunes text: a general language model
(`train-lm`), the target language model fine-tuned from it (`train-lm TARGET --from RUN`), the classifier
(`train-classifier DATA --lm RUN`); stage labels, the `stage` column, `summary`, resume mid-stage; given splits
(`is_valid`, `--valid-col`, train/ and valid/ folders); detokenized samples; `deepfit corpus`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepfit.cli import main
from tests.helpers.cli import metrics_rows, run
from tests.helpers.data import FORTUNES_DIR, requires_fortunes

pytestmark = requires_fortunes

LM_SIZES = ["--emb-sz", "16", "--n-hid", "32", "--n-layers", "2", "--bptt", "20", "--bs", "16"]
STAGES = "1,0,0,2"  # the head, then all groups for two epochs: a stage to interrupt half-way


def _fortunes(topic: str, n: int) -> list[str]:
    from deepfit.text.datasets import read_fortunes

    return [" ".join(t.split()) for t in read_fortunes(FORTUNES_DIR / topic)[:n]]


def _write_task(path: Path, valid_col: str = "is_valid") -> Path:
    """A CSV of 2 fortunes topics (60 texts each), every 4th text marked for validation."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", valid_col])
        for topic in ("love", "food"):
            for i, text in enumerate(_fortunes(topic, 60)):
                w.writerow([text, topic, "True" if i % 4 == 0 else "False"])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ulmfit_data")
    general = _fortunes("science", 150) + _fortunes("computers", 150)
    (folder / "general.txt").write_text("\n\n".join(general) + "\n", encoding="utf-8")
    _write_task(folder / "task.csv")
    return folder


@pytest.fixture(scope="module")
def general_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("general")
    assert main(["train-lm", str(data / "general.txt"), *LM_SIZES, "--epochs", "1", "--sample", "0", "--quiet",
                 "--out", str(out), "--name", "g"]) == 0
    return out / "g"


@pytest.fixture(scope="module")
def target(data, general_run, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("target")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["train-lm", str(data / "task.csv"), "--from", str(general_run), "--bs", "16", "--bptt", "20",
                   "--epochs", "1", "--sample", "12", "--quiet", "--out", str(out), "--name", "t"])
    assert rc == 0, buf.getvalue()
    return out / "t", buf.getvalue()


# ---------------------------------------------------------------------------------------------- stages 1-2
def test_general_lm_writes_the_pretrained_model_and_its_encoder(general_run):
    assert (general_run / "models" / "lm.pth").is_file()
    assert (general_run / "models" / "encoder.pth").is_file()


def test_target_lm_is_fine_tuned_from_the_general_one_with_its_own_vocabulary(target, general_run):
    run_dir, out = target
    lines = out.splitlines()
    assert lines[0].startswith("deepfit: training awd_lstm fine-tuned from")
    assert "split: the is_valid column; 90 training, 30 validation texts" in lines[0]
    assert "tokens of the new vocabulary were in the old one" in out  # transfer_vocab's report
    assert "stage 1/2: embeddings and decoder only" in out and "stage 2/2: all groups" in out
    rows = metrics_rows(run_dir)
    assert [(r["epoch"], r["stage"]) for r in rows] == [("0", "1"), ("1", "2")]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"]["emb_sz"] == 16 and config["options"]["n_hid"] == 32  # the pretrained model's sizes
    assert config["resolved"]["stages"] == ["embeddings and decoder only", "all groups"]
    general_vocab = json.loads((general_run / "vocab.json").read_text())["itos"]
    target_vocab = json.loads((run_dir / "vocab.json").read_text())["itos"]
    assert target_vocab != general_vocab  # the target text's own vocabulary
    # fine-tuning started from the general model: its first validation loss is far below a fresh model's
    assert float(rows[0]["valid_loss"]) < 0.9 * torch.log(torch.tensor(float(len(target_vocab)))).item()


def test_train_lm_sample_and_generate_print_detokenized_text(target, capsys):
    run_dir, out = target
    sample = next(line for line in out.splitlines() if line.startswith("sample: "))
    assert not any(w.startswith("xx") for w in sample.split()), sample
    rc, out, err = run(capsys, "generate", run_dir, "--prompt", "I love", "--n", "30", "--seed", "3")
    assert rc == 0, err
    assert out.startswith("I love")
    assert not any(w.startswith("xx") for w in out.split()), out  # no xxmaj, xxunk, xxbos...


def test_target_lm_resumed_after_its_first_stage_ends_bit_identical(data, general_run, target, tmp_path, capsys,
                                                                    monkeypatch):
    from deepfit.learner.checkpoint import CheckpointCallback

    original = CheckpointCallback.after_epoch

    def killed(self):
        original(self)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(CheckpointCallback, "after_epoch", killed)
        assert main(["train-lm", str(data / "task.csv"), "--from", str(general_run), "--bs", "16", "--bptt", "20",
                     "--epochs", "1", "--sample", "0", "--quiet", "--out", str(tmp_path), "--name", "t"]) == 130
    capsys.readouterr()
    rc, out, err = run(capsys, "train-lm", "--resume", tmp_path / "t")
    assert rc == 0, err
    assert "resuming stage 1/2" in out and "stage 2/2: all groups" in out
    assert "tokens of the new vocabulary" not in out  # the weights come from the checkpoint
    a = load_file(target[0] / "export" / "model.safetensors")
    b = load_file(tmp_path / "t" / "export" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["stage"] for r in metrics_rows(tmp_path / "t")] == ["1", "2"]


def test_from_a_pretrained_file_and_refusals(data, general_run, tmp_path, capsys):
    rc, out, err = run(capsys, "train-lm", data / "task.csv", "--from", general_run / "models" / "lm.pth",
                       "--freeze-epochs", "0", "--bs", "16", "--bptt", "20", "--epochs", "1", "--sample", "0",
                       "--quiet", "--out", tmp_path, "--name", "f")
    assert rc == 0, err
    assert "tokens of the new vocabulary were in the old one" in out
    assert "stage" not in metrics_rows(tmp_path / "f")[0]  # one stage: no stage column
    rc, _, err = run(capsys, "train-lm", data / "task.csv", "--from", general_run / "models" / "encoder.pth",
                     "--out", tmp_path)
    assert rc == 2 and "is an encoder" in err
    rc, _, err = run(capsys, "train-lm", data / "task.csv", "--freeze-epochs", "1", "--out", tmp_path)
    assert rc == 2 and "needs --from" in err
    rc, _, err = run(capsys, "train-lm", data / "task.csv", "--from", general_run, "--arch", "char_gru",
                     "--out", tmp_path)
    assert rc == 2 and "--from fine-tunes an AWD-LSTM" in err


# ---------------------------------------------------------------------------------------------- stage 3
def _classifier(data: Path, lm: Path, out: Path, name: str, *more: str) -> list[str]:
    return ["train-classifier", str(data / "task.csv"), "--lm", str(lm), "--stages", STAGES, "--bs", "16",
            "--lr", "1e-2", "--quiet", "--out", str(out), "--name", name, *more]


def test_ulmfit_classifier_labels_its_stages_and_summary_names_the_best_stage(data, target, tmp_path, capsys):
    rc, out, err = run(capsys, *_classifier(data, target[0], tmp_path, "c"))
    assert rc == 0, err
    assert "split: the is_valid column; 90 training, 30 validation texts" in out.splitlines()[0]
    for label in ("stage 1/4: head only, lr 0.01", "stage 2/4: last 2 groups", "stage 4/4: all groups"):
        assert label in out
    assert "stage 3/4" in out  # announced, with no epoch to train
    rows = metrics_rows(tmp_path / "c")
    assert [(r["epoch"], r["stage"]) for r in rows] == [("0", "1"), ("1", "4"), ("2", "4")]
    results = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert [s["stage"] for s in results["ulmfit_stages"]] == [0, 1, 2, 3]
    assert len(results["history"]) == 3  # every stage's epochs, not only the last stage's
    rc, out, err = run(capsys, "summary", tmp_path / "c")
    assert rc == 0, err
    best_line = next(line for line in out.splitlines() if line.startswith("best epoch"))
    best = results["best_stage"]
    assert f"in stage {best}/4 (" in best_line


@pytest.fixture(scope="module")
def full_classifier(data, target, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    assert main(_classifier(data, target[0], out, "full")) == 0
    return out / "full"


@pytest.mark.parametrize("kill_after, said", [
    (2, "resuming ULMFiT stage 4/4 at its epoch 1"),  # mid-stage: after the first of stage 4's two epochs
    (1, "ended ULMFiT stage 1/4"),  # at a stage's end: the next stage starts from the checkpoint's state
])
def test_ulmfit_run_resumed_ends_bit_identical(kill_after, said, data, target, full_classifier, tmp_path, capsys,
                                               monkeypatch):
    from deepfit.learner.checkpoint import CheckpointCallback

    original, saved = CheckpointCallback.after_epoch, []

    def killed(self):
        original(self)
        saved.append(1)
        if len(saved) == kill_after:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(CheckpointCallback, "after_epoch", killed)
        assert main(_classifier(data, target[0], tmp_path, "cut")) == 130
    capsys.readouterr()
    assert len(metrics_rows(tmp_path / "cut")) == kill_after
    rc, out, err = run(capsys, "train-classifier", "--resume", tmp_path / "cut", "--quiet")
    assert rc == 0, err
    assert said in out and "stage 4/4: all groups" in out
    assert "stage 1/4: head only, lr" not in out  # the stages before the checkpoint are not trained again
    full = full_classifier
    drop_time = [{k: v for k, v in r.items() if k != "time"} for r in metrics_rows(full)]
    assert [{k: v for k, v in r.items() if k != "time"} for r in metrics_rows(tmp_path / "cut")] == drop_time
    a = load_file(full / "export" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "export" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a = torch.load(full / "models" / "last.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "cut" / "models" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)


def test_ulmfit_lr_auto_is_safe_for_the_head(data, target, tmp_path, capsys):
    from deepfit.text.learner import SAFE_LR_CAPS

    args = [a for a in _classifier(data, target[0], tmp_path, "auto") if a not in ("1e-2",)]
    args[args.index("--lr") + 1:args.index("--lr") + 1] = ["auto"]
    args[args.index("--stages") + 1] = "1,0,0,0"
    rc, out, err = run(capsys, *args)
    assert rc == 0, err
    lr = json.loads((tmp_path / "auto" / "config.json").read_text())["resolved"]["lr"]
    assert 0 < lr <= SAFE_LR_CAPS["head"]
    assert f"at most {SAFE_LR_CAPS['head']:g} for 'head'" in out


# ---------------------------------------------------------------------------------------------- given splits
BILSTM = ["--arch", "bilstm", "--emb-sz", "8", "--n-hid", "8", "--epochs", "1", "--bs", "16", "--quiet"]


def test_classifier_honours_the_is_valid_column_and_valid_col(data, tmp_path, capsys):
    rc, out, err = run(capsys, "train-classifier", data / "task.csv", *BILSTM, "--out", tmp_path, "--name", "a")
    assert rc == 0, err
    assert "split: the is_valid column; 90 training, 30 validation texts" in out.splitlines()[0]
    other = _write_task(tmp_path / "other.csv", valid_col="held_out")
    rc, out, err = run(capsys, "train-classifier", other, "--valid-col", "held_out", *BILSTM, "--out", tmp_path)
    assert rc == 0, err
    assert "split: the held_out column; 90 training, 30 validation texts" in out.splitlines()[0]
    rc, out, err = run(capsys, "train-classifier", other, *BILSTM, "--out", tmp_path)  # no is_valid: at random
    assert rc == 0, err
    assert "split: 20% held out at random (--valid-pct 0.2, --seed 0); 96 training, 24 validation" in out
    rc, out, err = run(capsys, "train-classifier", data / "task.csv", "--n-train", "9", *BILSTM, "--out", tmp_path)
    assert rc == 0, err  # the low-label regime: fewer training texts, the same validation texts
    assert "split: the is_valid column; 9 of 90 (--n-train) training, 30 validation texts" in out.splitlines()[0]
    rc, _, err = run(capsys, "train-classifier", data / "task.csv", "--valid-pct", "0.3", *BILSTM, "--out", tmp_path)
    assert rc == 2 and "gives its own split (the is_valid column)" in err
    rc, _, err = run(capsys, "train-classifier", data / "task.csv", "--valid-col", "nope", *BILSTM, "--out", tmp_path)
    assert rc == 2 and "has no column 'nope'" in err


def test_classifier_and_lm_honour_train_and_valid_folders(tmp_path, capsys):
    root = tmp_path / "folders"
    for split, n in (("train", 12), ("valid", 5)):
        for topic in ("love", "food"):
            folder = root / split / topic
            folder.mkdir(parents=True)
            for i, text in enumerate(_fortunes(topic, 40)[:n] if split == "train" else _fortunes(topic, 40)[-n:]):
                (folder / f"{i}.txt").write_text(text, encoding="utf-8")
    rc, out, err = run(capsys, "train-classifier", root, *BILSTM, "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    assert "split: the train/ and valid/ folders; 24 training, 10 validation texts" in out.splitlines()[0]
    rc, out, err = run(capsys, "train-lm", root, "--arch", "char_rnn", "--emb-sz", "4", "--n-hid", "8",
                       "--bptt", "20", "--bs", "4", "--epochs", "1", "--sample", "0", "--quiet", "--out", tmp_path,
                       "--name", "l")
    assert rc == 0, err
    assert "split: the train/ and valid/ folders; 24 training, 10 validation texts" in out.splitlines()[0]


def test_train_lm_honours_the_is_valid_column_and_unlabelled_text(data, tmp_path, capsys):
    rc, out, err = run(capsys, "train-lm", data / "task.csv", "--unlabelled", data / "general.txt",
                       "--arch", "char_rnn", "--emb-sz", "4", "--n-hid", "8", "--bptt", "20", "--bs", "16",
                       "--epochs", "1", "--sample", "0", "--quiet", "--out", tmp_path)
    assert rc == 0, err
    assert "split: the is_valid column; 90 training + 300 unlabelled from" in out.splitlines()[0]
    assert "30 validation texts" in out.splitlines()[0]


# ---------------------------------------------------------------------------------------------- corpus
def test_corpus_command_writes_the_fortunes_task(tmp_path, capsys):
    rc, out, err = run(capsys, "corpus", "fortunes", tmp_path)
    assert rc == 0, err
    manifest = json.loads((tmp_path / "manifest_fortunes.json").read_text())["fortunes"]
    with (tmp_path / "fortunes4.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == manifest["texts"] and sum(r["is_valid"] == "True" for r in rows) == manifest["valid"]
    assert {r["label"] for r in rows} == set(manifest["classes"])
    assert f"fortunes4.csv: {manifest['texts']:,} labelled texts" in out


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(), reason="wordnet-base not installed")
def test_corpus_command_writes_the_general_corpus(tmp_path, capsys):
    rc, out, err = run(capsys, "corpus", "general", tmp_path)
    assert rc == 0, err
    manifest = json.loads((tmp_path / "manifest_general.json").read_text())["general"]
    assert manifest["sources"]["wordnet"] > 10_000 and manifest["sources"]["fortunes"] > 1000
    texts = (tmp_path / "general.txt").read_text(encoding="utf-8").split("\n\n")
    assert len(texts) == manifest["texts"]
    assert "general.txt:" in out and "words" in out
