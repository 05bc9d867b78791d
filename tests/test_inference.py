"""`load_learner` on a hostile or damaged export folder: every field of `learner.json` checked before building.

Each case edits one field of a real export's `learner.json` (or its safetensors header) the way an attacker or
a bad copy would, and expects an `ExportError` naming the file and the field, raised before the model is built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepfit import inference
from deepfit.data import DataLoaders, TensorLoader
from deepfit.export_spec import ExportError, read_safetensors_header
from deepfit.inference import SPEC_FILE, WEIGHTS_FILE, load_learner
from deepfit.learner import Learner
from deepfit.models import get_model


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """A simple_cnn export of 3 classes of 1×12×12 uint8 images."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 1, 12, 12), dtype=torch.uint8, generator=g)
    y = torch.arange(12) % 3
    dls = DataLoaders(TensorLoader(x, y, bs=4, device="cpu"), TensorLoader(x, y, bs=4, device="cpu"), device="cpu",
                      vocab=["cat", "dog", "eel"])
    torch.manual_seed(0)
    learn = Learner(get_model("simple_cnn", c_in=1, n_out=3, width=4, hidden=8), dls, path=tmp_path_factory.mktemp("l"))
    return learn.export("export")


@pytest.fixture
def folder(export_dir, tmp_path) -> Path:
    """A fresh copy of the export, to damage."""
    out = tmp_path / "export"
    out.mkdir()
    for name in (SPEC_FILE, WEIGHTS_FILE):
        (out / name).write_bytes((export_dir / name).read_bytes())
    return out


def edit(folder: Path, change) -> Path:
    spec = json.loads((folder / SPEC_FILE).read_text())
    change(spec)
    (folder / SPEC_FILE).write_text(json.dumps(spec))
    return folder / SPEC_FILE


@pytest.fixture
def no_real_build(monkeypatch):
    """Fail the test if load_learner builds the real model (the checks must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before learner.json was checked")

    monkeypatch.setattr(inference, "get_model", refuse)


def test_the_untouched_export_loads(folder):
    inf = load_learner(folder)
    assert inf.vocab == ["cat", "dog", "eel"] and inf.predict(torch.zeros(1, 12, 12, dtype=torch.uint8))[1] in (0, 1, 2)


CASES = [
    ("unknown top-level key", lambda s: s.update(evil=1), "field 'evil': unknown field"),
    ("string version", lambda s: s.update(version="1"), "field 'version': expected a whole number, got \"1\""),
    ("newer version", lambda s: s.update(version=99), "field 'version': export version 99 is newer"),
    ("arch not a string", lambda s: s.update(arch=["simple_cnn"]), "field 'arch': expected a string"),
    ("unknown arch", lambda s: s.update(arch="resnet9000"), "field 'arch': unknown architecture 'resnet9000'"),
    ("kwargs not an object", lambda s: s.update(kwargs=[1]), "field 'kwargs': expected an object"),
    ("unknown argument", lambda s: s["kwargs"].update(evil=1), "field 'kwargs.evil': simple_cnn takes no argument"),
    ("width as a string", lambda s: s["kwargs"].update(width="8"), "field 'kwargs.width': expected a whole number"),
    ("width 1e6 as a float", lambda s: s["kwargs"].update(width=1e6),
     "field 'kwargs.width': expected a whole number, got 1000000.0"),
    ("width beyond any size", lambda s: s["kwargs"].update(width=10**12), "field 'kwargs.width': 1000000000000 is out"),
    ("bn not a bool", lambda s: s["kwargs"].update(bn="yes"), "field 'kwargs.bn': expected true or false"),
    ("short vocabulary", lambda s: s.update(vocab=["cat", "dog"]),
     "field 'vocab': 2 names for a model with 3 outputs (kwargs.n_out)"),
    ("vocabulary of objects", lambda s: s.update(vocab=[{}, "dog", "eel"]), "field 'vocab[0]': expected a class name"),
    ("input not an object", lambda s: s.update(input="image"), "field 'input': expected an object"),
    ("unknown input key", lambda s: s["input"].update(path="/etc"), "field 'input.path': unknown field"),
    ("std of zero", lambda s: s["input"].update(std=[0.0]), "field 'input.std': a standard deviation of 0"),
    ("mean not numbers", lambda s: s["input"].update(mean=["a"]), "field 'input.mean[0]': expected a finite number"),
    ("negative size", lambda s: s["input"].update(size=[-1, 12]), "field 'input.size[0]': -1 is out of range"),
    ("unknown item transform", lambda s: s["input"].update(item_tfms=[{"name": "Shell", "size": [1, 1]}]),
     "field 'input.item_tfms[0].name': 'Shell' is not one of"),
    ("item transform argument", lambda s: s["input"].update(item_tfms=[{"name": "Resize", "size": [8, 8], "x": 1}]),
     "field 'input.item_tfms[0].x': unknown field"),
    ("unknown activation", lambda s: s.update(activation="eval"), "field 'activation': 'eval' is not one of"),
    ("threshold as a string", lambda s: s.update(thresh="0.5"), "field 'thresh': expected a number"),
    ("text not an object", lambda s: s.update(text=[]), "field 'text': expected an object"),
]


@pytest.mark.parametrize("label, change, message", CASES, ids=[c[0] for c in CASES])
def test_a_bad_field_is_named_before_building(folder, no_real_build, label, change, message):
    spec_file = edit(folder, change)
    with pytest.raises(ExportError) as e:
        load_learner(folder)
    assert str(e.value).startswith(f"{spec_file}: "), str(e.value)
    assert message in str(e.value)


def test_a_huge_width_fails_on_the_header_before_allocating(folder, no_real_build):
    """`width: 1000000` is a valid whole number: the shapes on the meta device disagree with the weights file."""
    edit(folder, lambda s: s["kwargs"].update(width=1_000_000))
    with pytest.raises(ExportError, match=r"model.safetensors: tensor '.*' has shape \[4, .*\], but simple_cnn built "
                                          r"from .*learner.json has \[1000000, .*\] \(field 'kwargs' does not match"):
        load_learner(folder)


def test_text_fields(folder, no_real_build):
    def text(**kw):
        return lambda s: s.update(text={"itos": ["xxunk", "xxpad", "a"], "tokenizer": None, **kw})

    edit(folder, text(itos=["xxunk", 3]))
    with pytest.raises(ExportError, match=r"field 'text.itos\[1\]': expected a string"):
        load_learner(folder)
    edit(folder, text(tokenizer={"base": {"type": "char"}, "pre_rules": ["system"], "post_rules": []}))
    with pytest.raises(ExportError, match=r"field 'text.tokenizer.pre_rules\[0\]': 'system' is not a rule"):
        load_learner(folder)
    edit(folder, text(tokenizer={"base": {"type": "char"}, "pre_rules": ["apply_rules"], "post_rules": []}))
    with pytest.raises(ExportError, match="'apply_rules' is not a rule"):
        load_learner(folder)
    edit(folder, text(tokenizer={"base": {"type": "perl"}, "pre_rules": [], "post_rules": []}))
    with pytest.raises(ExportError, match=r"field 'text.tokenizer.base.type': 'perl' is not one of"):
        load_learner(folder)


def test_short_token_vocabulary_of_a_text_export(tmp_path, no_real_build):
    itos = ["xxunk", "xxpad", *"abcd"]
    dls = DataLoaders(TensorLoader(torch.randint(2, 6, (8, 5)), torch.arange(8) % 2, bs=4, device="cpu"),
                      device="cpu", vocab=["neg", "pos"])
    learn = Learner(get_model("lstm_classifier", vocab_sz=len(itos), n_out=2, emb_sz=4, n_hid=4), dls, path=tmp_path)
    folder = learn.export("text", text_vocab=itos)
    edit(folder, lambda s: s["text"].update(itos=itos[:3]))
    with pytest.raises(ExportError, match=r"field 'text.itos': 3 tokens for a model whose embedding has 6 rows"):
        load_learner(folder)


def _rewrite_header(path: Path, change) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    change(header)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])


def test_weights_that_do_not_fit_are_refused_before_building(folder, no_real_build):
    weights = folder / WEIGHTS_FILE
    names = list(read_safetensors_header(weights))
    _rewrite_header(weights, lambda h: h.update(extra=h[names[0]]))
    with pytest.raises(ExportError, match=r"tensor 'extra' is not a parameter of simple_cnn"):
        load_learner(folder)
    _rewrite_header(weights, lambda h: (h.pop("extra"), h.pop(names[0])))
    with pytest.raises(ExportError, match=rf"no tensor for \['{names[0]}'\]"):
        load_learner(folder)


@pytest.mark.parametrize("head", [b"", b"\x00" * 8, (10**12).to_bytes(8, "little") + b"{}",
                                  (4).to_bytes(8, "little") + b"[1, ", (2).to_bytes(8, "little") + b"[]"])
def test_malformed_safetensors_header(folder, no_real_build, head):
    (folder / WEIGHTS_FILE).write_bytes(head)
    with pytest.raises(ExportError, match=r"model.safetensors: not a valid safetensors file"):
        load_learner(folder)


def test_a_binary_sigmoid_export_names_two_classes_for_one_output(export_dir):
    from deepfit.export_spec import validate_spec

    spec = json.loads((export_dir / SPEC_FILE).read_text())
    spec["kwargs"]["n_out"], spec["activation"], spec["vocab"] = 1, "sigmoid", ["no", "yes"]
    assert validate_spec(spec, "learner.json") is spec
    spec["activation"] = "softmax"
    with pytest.raises(ExportError, match="field 'vocab': 2 names for a model with 1 outputs"):
        validate_spec(spec, "learner.json")


def test_model_file_names_a_file_of_the_folder_only(export_dir):
    """An export of a model outside the registry names its ONNX file: never a path leading out of the folder."""
    from deepfit.export_spec import validate_spec

    spec = json.loads((export_dir / SPEC_FILE).read_text())
    del spec["kwargs"]
    spec.update(arch=None, model_file="model.onnx")
    assert validate_spec(spec, "learner.json") is spec
    for bad in ("../../../etc/passwd", "/tmp/model.onnx", "sub/model.onnx", 7):
        spec["model_file"] = bad
        with pytest.raises(ExportError, match=r"learner.json: field 'model_file': "):
            validate_spec(spec, "learner.json")


def test_predict_batch_decodes_each_item_as_predict_does_single_and_multi_label(export_dir):
    """predict_batch gives the argmax class of a softmax export and, with a sigmoid, every label above the
    threshold per item (it used to take the argmax of a multi-label export)."""
    x = torch.randint(0, 256, (6, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    learn = load_learner(export_dir)
    decoded, probs = learn.predict_batch(x, bs=4)
    assert probs.shape == (6, 3) and decoded == [learn.vocab[i] for i in probs.argmax(1).tolist()]
    assert decoded == [learn.predict(item)[0] for item in x]

    learn.spec["activation"], learn.activation = "sigmoid", torch.sigmoid
    with torch.no_grad():  # a threshold with some labels on and some off
        learn.spec["thresh"] = float(torch.sigmoid(learn.model(learn._convert(x))).median())
    decoded, probs = learn.predict_batch(x, bs=4)
    expected = [[learn.vocab[j] for j in range(3) if probs[i, j] > learn.spec["thresh"]] for i in range(6)]
    assert decoded == expected and decoded == [learn.predict(item)[0] for item in x]
    assert any(len(d) > 1 for d in decoded) and any(len(d) < 3 for d in decoded)
