"""`--multi-label` for train-vision and train-classifier: several labels per item from a CSV file, binary
cross-entropy, accuracy_multi and F1, and `deepfit predict` giving every label above the threshold."""

from __future__ import annotations

import json

from deepfit.inference import load_learner
from tests.helpers.cli import metrics_rows, run
from tests.helpers.multilabel import BARS, write_bar_folder, write_text_csv


def test_train_vision_multi_label_from_a_csv(tmp_path, capsys):
    y = write_bar_folder(tmp_path / "bars", 200, 0, prefix="images/")
    rc, out, err = run(capsys, "train-vision", tmp_path / "bars" / "labels.csv", "--multi-label", "--epochs", "4",
                       "--lr", "1e-2", "--bs", "32", "--quiet", "--out", tmp_path, "--name", "v")
    assert rc == 0, err
    run_dir = tmp_path / "v"
    rows = metrics_rows(run_dir)
    assert "accuracy_multi" in rows[-1] and "f1_multi" in rows[-1]
    assert float(rows[-1]["accuracy_multi"]) > 0.85, rows
    config = json.loads((run_dir / "config.json").read_text())
    assert config["resolved"]["multi_label"] is True and config["resolved"]["classes"] == BARS
    inf = load_learner(run_dir / "export")
    assert inf.spec["activation"] == "sigmoid" and inf.spec["loss"] == "BCEWithLogitsFlat"
    both = next(i for i in range(200) if y[i].sum() == 2)
    rc, out, err = run(capsys, "predict", run_dir, tmp_path / "bars" / "images" / f"{both}.png", "--json")
    assert rc == 0, err
    res = json.loads(out)[0]
    assert res["prediction"] == inf.predict(tmp_path / "bars" / "images" / f"{both}.png")[0]
    assert len(res["index"]) == len(res["prediction"]) == len(res["probability"])
    rc, out, err = run(capsys, "predict", run_dir, tmp_path / "bars" / "images" / f"{both}.png")
    assert rc == 0 and out.split("\t")[1] == " ".join(res["prediction"])


def test_train_vision_multi_label_usage_errors(tmp_path, capsys):
    write_bar_folder(tmp_path / "bars", 8, 0, prefix="images/")
    rc, _, err = run(capsys, "train-vision", tmp_path / "bars", "--multi-label", "--out", tmp_path)
    assert rc == 2 and "is not a CSV file" in err
    rc, _, err = run(capsys, "train-vision", tmp_path / "bars" / "labels.csv", "--multi-label", "--mixup", "0.4",
                     "--out", tmp_path)
    assert rc == 2 and "not --multi-label" in err


def test_train_classifier_multi_label_from_a_csv(tmp_path, capsys):
    write_text_csv(tmp_path / "texts.csv", 300, 0)
    rc, out, err = run(capsys, "train-classifier", tmp_path / "texts.csv", "--multi-label", "--arch", "lstm",
                       "--emb-sz", "16", "--n-hid", "32", "--min-freq", "1", "--epochs", "8", "--lr", "2e-2",
                       "--bs", "32", "--quiet", "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    rows = metrics_rows(tmp_path / "c")
    assert float(rows[-1]["accuracy_multi"]) > 0.85, rows
    assert not (tmp_path / "c" / "confusion_matrix.png").exists()
    rc, out, err = run(capsys, "predict", tmp_path / "c", "we saw a banana and a bus today", "--json")
    assert rc == 0, err
    assert json.loads(out)[0]["prediction"] == ["fruit", "vehicle"]
    rc, _, err = run(capsys, "train-classifier", tmp_path, "--multi-label", "--out", tmp_path)
    assert rc == 2 and "is not a CSV file" in err
