"""`deepfit train-classifier`: ULMFiT on a train-lm run, and a BiLSTM on GloVe-format vectors."""

from __future__ import annotations

import json

from deepfit.learner.export import load_learner
from tests.helpers.cli import TINY, metrics_rows, run
from tests.helpers.data import requires_fortunes


@requires_fortunes
def test_ulmfit_classifier_from_lm_run(awd_lm_run, fortunes_dir, tmp_path, capsys):
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
    rc, out, err = run(capsys, "train-classifier", "--resume", run_dir)  # a finished run: nothing left to train
    assert rc == 0, err
    assert "ended ULMFiT stage 4/4" in out and len(metrics_rows(run_dir)) == 2
    rc, _, err = run(capsys, "train-classifier", "--resume", run_dir, "--epochs", "5")
    assert rc == 2 and "a ULMFiT run (--lm) trains its --stages epochs" in err


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
