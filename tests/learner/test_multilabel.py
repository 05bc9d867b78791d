"""Multi-label learning through the public API: images and texts with several labels each (BCEWithLogitsFlat by
default, accuracy_multi/f1_multi, predict giving every label above the threshold), and a single-output binary
classifier with BCEWithLogitsLoss on the usual integer labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Learner, vision_learner
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.losses import BCEWithLogitsFlat
from deepfit.learner.metrics import accuracy_multi, f1_multi
from deepfit.models.registry import get_model
from tests.helpers.data import make_linear_data
from tests.helpers.multilabel import BARS, bar_images, write_bar_folder, write_text_csv
from tests.helpers.vision import tiny_cnn


def bar_dls() -> DataLoaders:
    (xt, yt), (xv, yv) = bar_images(256, 0), bar_images(64, 1)
    stats = dict(mean=[0.2], std=[0.3], device="cpu")
    dls = DataLoaders(TensorLoader(xt, yt, bs=32, shuffle=True, seed=0, **stats), TensorLoader(xv, yv, bs=64, **stats),
                      device="cpu", vocab=BARS)
    dls.multi_label = True
    return dls


def test_multi_label_images_vision_learner_and_predict():
    torch.manual_seed(0)
    dls = bar_dls()
    learn = vision_learner(tiny_cnn, dls, arch_kwargs=dict(width=8), metrics=[accuracy_multi, f1_multi])
    learn.remove_cb(ProgressCallback)
    assert isinstance(learn.loss_func, BCEWithLogitsFlat)  # chosen from dls.multi_label
    learn.fit_one_cycle(5, 2e-2)
    loss, acc, f1 = learn.recorder.values[-1][1:4]
    no_label = float((dls.valid.y.sum(1) == 0).float().mean())  # these items score f1's zero_division=0
    assert acc > 0.9 and f1 > (1 - no_label) - 0.1, learn.recorder.values
    probs, targets = learn.get_preds()
    assert probs.shape == targets.shape == (64, 2) and 0 <= float(probs.min()) and float(probs.max()) <= 1
    assert not torch.allclose(probs.sum(1), torch.ones(64))  # per-label probabilities, not a softmax
    x, y = dls.valid.x, dls.valid.y
    right = 0
    for i in range(len(x)):
        labels, mask, p = learn.predict(x[i])
        assert labels == [BARS[j] for j in range(2) if mask[j]] and torch.equal(mask, p > 0.5)
        right += labels == [BARS[j] for j in range(2) if y[i, j]]
    assert right / len(x) > 0.8
    both = (y.sum(1) == 2).nonzero()[0, 0]
    assert learn.predict(x[both], thresh=0.0)[0] == BARS  # the threshold decides which labels are kept
    assert learn.predict(x[both], thresh=1.0)[0] == []


def test_multi_label_texts_from_csv_train_and_predict_a_string(tmp_path):
    from deepfit.text import Tokenizer, Vocab, classifier_loaders, texts_from_csv

    csv = tmp_path / "texts.csv"
    write_text_csv(csv, 360, 0)
    items = texts_from_csv(csv, label_delim=" ")
    assert items.multi_label and items.classes == ["fruit", "vehicle"]
    y = items.multi_hot()
    tok = Tokenizer(progress=False)
    ids_all = tok(items.texts)
    vocab = Vocab.build(ids_all[:300], min_freq=1, progress=False)
    ids = [vocab.numericalize(t) for t in ids_all]
    dls = classifier_loaders(ids[:300], y[:300], ids[300:], y[300:], bs=32, pad_idx=vocab.pad_idx,
                             classes=items.classes, device="cpu")
    dls.tokenizer, dls.text_vocab = tok, vocab
    torch.manual_seed(0)
    model = get_model("lstm_classifier", vocab_sz=len(vocab), n_out=2, emb_sz=16, n_hid=32, dropout=0.0,
                      pad_idx=vocab.pad_idx)
    learn = Learner(model, dls, metrics=[accuracy_multi])
    learn.remove_cb(ProgressCallback)
    assert isinstance(learn.loss_func, BCEWithLogitsFlat)
    learn.fit_one_cycle(10, 3e-2)
    assert learn.recorder.values[-1][2] > 0.95, learn.recorder.values
    assert learn.predict("we saw a banana and a bus today")[0] == ["fruit", "vehicle"]
    assert learn.predict("a nice car")[0] == ["vehicle"]
    assert learn.predict("we saw a nice day")[0] == []


def test_text_classifier_learner_defaults_to_accuracy_multi_on_multi_label_data():
    from deepfit.text import classifier_loaders
    from deepfit.text.learner import text_classifier_learner

    ids = [torch.tensor([2, 5, 6, 7]), torch.tensor([2, 8, 9])] * 4
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]] * 4)
    dls = classifier_loaders(ids, y, ids, y, bs=4, classes=["a", "b"], device="cpu")
    learn = text_classifier_learner(dls, vocab=[f"t{i}" for i in range(10)],
                                    config=dict(emb_sz=8, n_hid=8, n_layers=1))
    assert isinstance(learn.loss_func, BCEWithLogitsFlat) and [m.name for m in learn.metrics] == ["accuracy_multi"]


@pytest.mark.parametrize("loss_func", [nn.BCEWithLogitsLoss(), BCEWithLogitsFlat()], ids=["nn", "flat"])
def test_single_output_binary_classifier_trains_on_integer_labels(loss_func):
    torch.manual_seed(0)
    dls = make_linear_data(n=128, n_out=2)
    dls.vocab = ["no", "yes"]
    learn = Learner(nn.Linear(4, 1), dls, loss_func=loss_func)
    learn.remove_cb(ProgressCallback)
    assert isinstance(learn.loss_func, BCEWithLogitsFlat) and learn.loss_func.reduction == "mean"
    before = learn.validate()[0]
    learn.fit(4, lr=5e-2)
    assert learn.validate()[0] < before - 0.1
    probs, targets = learn.get_preds()
    assert probs.shape == (128, 1) and ((probs[:, 0] > 0.5).long() == targets).float().mean() > 0.9
    label, idx, p = learn.predict(dls.valid.x[0])
    assert idx == int(p.item() > 0.5) and label == ["no", "yes"][idx]


def test_multi_label_export_predicts_the_same_labels(tmp_path):
    from deepfit.inference import load_learner

    torch.manual_seed(0)
    dls = bar_dls()
    learn = vision_learner("xresnet18", dls, arch_kwargs=dict(widths=(8, 8, 16, 16)), loss_func=BCEWithLogitsFlat(0.3))
    learn.remove_cb(ProgressCallback)
    learn.fit(1, lr=1e-2)
    inf = load_learner(learn.export(tmp_path / "bars"))
    assert inf.spec["activation"] == "sigmoid" and inf.spec["thresh"] == 0.3
    for i in range(8):
        labels, mask, probs = inf.predict(dls.valid.x[i])
        ref_labels, ref_mask, ref_probs = learn.predict(dls.valid.x[i])
        assert labels == ref_labels and torch.equal(mask, ref_mask) and torch.allclose(probs, ref_probs, atol=1e-5)
        assert torch.equal(mask, probs > 0.3)


def test_multi_label_images_from_csv(tmp_path):
    from deepfit.data.vision import ImageDataLoaders

    y = write_bar_folder(tmp_path, 240, 0)
    dls = ImageDataLoaders.from_csv(tmp_path, "labels.csv", folder="images", label_delim=" ", valid_pct=0.25, bs=32,
                                    device="cpu", num_workers=0)
    assert dls.multi_label and dls.vocab == BARS and dls.c == 2
    xb, yb = next(iter(dls.train))
    assert yb.dtype == torch.float32 and yb.shape == (32, 2)
    torch.manual_seed(0)
    learn = vision_learner(tiny_cnn, dls, arch_kwargs=dict(width=8), metrics=[accuracy_multi])
    learn.remove_cb(ProgressCallback)
    learn.fit_one_cycle(5, 2e-2)
    assert learn.recorder.values[-1][2] > 0.9, learn.recorder.values
    i = int(dls.items[1][0].stem)
    assert learn.predict(dls.items[1][0])[0] == [BARS[j] for j in range(2) if y[i, j]]
