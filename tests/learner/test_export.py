"""Export -> load_learner -> identical predictions (also in a fresh process); pickles refused; TorchScript."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deepfit.data import DataLoaders, TensorLoader, fashion_mnist_loaders
from deepfit.learner import Learner, load_learner
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.checkpoint import PickleRefusedError
from deepfit.learner.export import SPEC_FILE, WEIGHTS_FILE, ExportError
from deepfit.models import SimpleCNN, get_model
from deepfit.onnx_program import ONNX_FILE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    dls = fashion_mnist_loaders(bs=64, n_train=640, n_valid=128, device="cpu", seed=0)
    learn = Learner(SimpleCNN(c_in=1, n_out=10, width=8, hidden=32), dls, lr=3e-3,
                    path=tmp_path_factory.mktemp("learn"))
    learn.remove_cb(ProgressCallback)
    learn.fit(1)
    return learn


def raw_items(learn: Learner, n: int = 6) -> torch.Tensor:
    """Raw uint8 28×28 validation images, as stored in the dataset."""
    dl = learn.dls.valid
    return dl.x[dl.indices[:n]]


def test_export_folder_contents(trained):
    folder = trained.export("export")
    assert sorted(p.name for p in folder.iterdir()) == sorted([SPEC_FILE, WEIGHTS_FILE])
    spec = json.loads((folder / SPEC_FILE).read_text())
    assert spec["arch"] == "simple_cnn" and spec["kwargs"]["width"] == 8
    assert spec["vocab"][0] == "T-shirt/top" and spec["activation"] == "softmax"
    assert spec["input"]["kind"] == "image" and spec["input"]["size"] == [28, 28]
    assert spec["input"]["mean"] == pytest.approx([0.286]) and spec["input"]["std"] == pytest.approx([0.353])
    assert (folder / WEIGHTS_FILE).read_bytes()[:8] != b"PK\x03\x04"  # safetensors, not a zip of pickles


def test_load_learner_predicts_like_learner(trained, tmp_path):
    folder = trained.export(tmp_path / "exp")
    inf = load_learner(folder)
    items = raw_items(trained)
    for item in items:
        dec, idx, probs = inf.predict(item)
        dec2, idx2, probs2 = trained.predict(item)
        assert (dec, idx) == (dec2, idx2)
        assert torch.equal(probs, probs2)
    # an image file gives the same as its tensor
    png = tmp_path / "item.png"
    Image.fromarray(items[0][0].numpy()).save(png)
    assert torch.equal(inf.predict(png)[2], inf.predict(items[0])[2])
    # batch prediction
    decoded, probs = inf.predict_batch(items, bs=4)
    ref, _ = trained.get_preds(dl=TensorLoader(items, torch.zeros(len(items), dtype=torch.long), bs=4, device="cpu",
                                               mean=trained.dls.valid.mean, std=trained.dls.valid.std))
    assert torch.allclose(probs, ref, atol=1e-6)
    assert decoded == [trained.dls.vocab[i] for i in ref.argmax(1).tolist()]
    paths_decoded, _ = inf.predict_batch([png, png])
    assert paths_decoded == [decoded[0], decoded[0]]


FRESH = textwrap.dedent("""
    import sys, json, torch
    sys.path.insert(0, {root!r})
    from safetensors.torch import load_file
    from deepfit import load_learner
    inf = load_learner({folder!r})
    items = load_file({items!r})["items"]
    out = [inf.predict(x) for x in items]
    from safetensors.torch import save_file
    save_file({{"probs": torch.stack([o[2] for o in out])}}, {out!r})
    print(json.dumps([o[0] for o in out]))
""")


def test_identical_predictions_in_fresh_process(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = trained.export(tmp_path / "exp")
    items = raw_items(trained).contiguous()
    save_file({"items": items}, str(tmp_path / "items.safetensors"))
    code = FRESH.format(root=str(ROOT), folder=str(folder), items=str(tmp_path / "items.safetensors"),
                        out=str(tmp_path / "probs.safetensors"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-3000:]
    decoded = json.loads(res.stdout.strip().splitlines()[-1])
    probs = load_file(str(tmp_path / "probs.safetensors"))["probs"]
    expected = [trained.predict(x) for x in items]
    assert decoded == [e[0] for e in expected]
    assert torch.equal(probs, torch.stack([e[2] for e in expected]))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_files_are_refused(trained, tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "export.pkl"
    torch.save({"learner": _Payload(marker)}, evil)  # how a pickled "export" carries code
    with pytest.raises(PickleRefusedError, match=r"pickle.*arbitrary code.*allow_pickle=True"):
        load_learner(evil)
    assert not marker.exists()
    # a folder whose weights file was swapped for a pickle is refused too, without running it
    folder = trained.export(tmp_path / "exp")
    torch.save({"w": _Payload(marker)}, folder / WEIGHTS_FILE)
    with pytest.raises(PickleRefusedError, match="not safetensors"):
        load_learner(folder)
    assert not marker.exists()


def test_allow_pickle_loads_trusted_file(tmp_path):
    model = SimpleCNN(width=4, hidden=8)
    torch.save(model, tmp_path / "model.pt")
    with pytest.raises(PickleRefusedError):
        load_learner(tmp_path / "model.pt")
    loaded = load_learner(tmp_path / "model.pt", allow_pickle=True)
    assert isinstance(loaded, SimpleCNN)


class TwoPaths(nn.Module):
    """A user module outside the registry: two branches, an elementwise gate, a residual sum."""

    def __init__(self, n_in: int = 144, n_out: int = 3):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(n_in, 16), nn.Linear(n_in, 16), nn.Linear(16, n_out)

    def forward(self, x):
        x = x.flatten(1)
        h = torch.relu(self.a(x)) * torch.sigmoid(self.b(x))
        return self.head(h + torch.where(h > 0.1, h, torch.zeros_like(h)))


def image_learner(tmp_path, model) -> Learner:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 12, 12), dtype=torch.uint8)
    y = torch.randint(0, 3, (40,))
    dl = lambda: TensorLoader(x, y, bs=8, device="cpu", mean=[0.5], std=[0.25])
    dls = DataLoaders(dl(), dl(), device="cpu")
    dls.vocab = ["a", "b", "c"]
    learn = Learner(model, dls, path=tmp_path)
    learn.remove_cb(ProgressCallback)
    learn.fit(1, lr=1e-3)
    return learn


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)),
    TwoPaths,
], ids=["sequential", "user_module"])
def test_unregistered_models_export_as_onnx_and_predict_like_the_learner(tmp_path, make):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    learn = image_learner(tmp_path, make())
    folder = learn.export("exp")
    assert sorted(p.name for p in folder.iterdir()) == sorted([SPEC_FILE, ONNX_FILE])
    spec = json.loads((folder / SPEC_FILE).read_text())
    assert spec["arch"] is None and spec["model_file"] == ONNX_FILE and "kwargs" not in spec
    assert (folder / ONNX_FILE).read_bytes()[:2] != b"\x80\x04"  # protobuf, not a pickle
    inf = load_learner(folder)
    items = learn.dls.valid.x[:5]
    for item in items:
        decoded, idx, probs = learn.predict(item)
        got = inf.predict(item)
        assert got[0] == decoded and got[1] == idx and torch.allclose(got[2], probs, atol=1e-5)
    _, probs = inf.predict_batch(items, bs=5)  # a batch size the export was not traced with
    assert probs.shape == (5, 3) and torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)


def test_token_model_outside_the_registry_keeps_the_sequence_length_dynamic(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    class MeanEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = nn.Embedding(20, 6), nn.Linear(6, 2)

        def forward(self, ids):
            return self.out(self.emb(ids).mean(1))

    torch.manual_seed(0)
    x, y = torch.randint(0, 20, (16, 7)), torch.randint(0, 2, (16,))
    dl = TensorLoader(x, y, bs=4, device="cpu")
    learn = Learner(MeanEmbedding(), DataLoaders(dl, dl, device="cpu"), path=tmp_path)
    inf = load_learner(learn.export("exp"))
    ids = torch.randint(0, 20, (3, 11))  # longer than the traced example
    learn.model.eval()
    with torch.no_grad():
        assert torch.allclose(inf.model(ids), learn.model(ids), atol=1e-5)


def test_formats_registry_and_onnx(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    dls = DataLoaders(TensorLoader(torch.randn(8, 3), torch.zeros(8, dtype=torch.long), bs=4, device="cpu"),
                      device="cpu")
    learn = Learner(nn.Linear(3, 2), dls, path=tmp_path)
    with pytest.raises(ExportError, match="not registered in deepfit.models.MODELS"):
        learn.export("x", format="registry")
    # a registered model whose head was changed: the registry cannot rebuild it, ONNX can
    model = SimpleCNN(c_in=1, n_out=10, width=8, hidden=32)
    model.load_state_dict(trained.model.state_dict())
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(last.rpartition(".")[0]) if "." in last else model
    setattr(parent, last.rpartition(".")[2], nn.Linear(32, 4))
    changed = Learner(model, trained.dls, path=tmp_path)
    with pytest.raises(ExportError, match="parameters differ"):
        changed.export("y", format="registry")
    folder = changed.export("y")
    assert (folder / ONNX_FILE).is_file() and not (folder / WEIGHTS_FILE).exists()
    assert load_learner(folder).model(torch.zeros(1, 1, 28, 28)).shape == (1, 4)
    # exporting a registered model to the same folder switches back: learner.json says which file to read
    trained.export(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([SPEC_FILE, WEIGHTS_FILE, ONNX_FILE])
    assert load_learner(folder).model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    onnx_folder = trained.export(tmp_path / "z", format="onnx")
    inf = load_learner(onnx_folder)
    xb, _ = next(iter(trained.dls.valid))
    trained.model.eval()
    with torch.no_grad():
        assert torch.allclose(inf.model(xb), trained.model(xb), atol=1e-4)


def test_bad_export_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a deepfit export folder"):
        load_learner(tmp_path)
    (tmp_path / SPEC_FILE).write_text("{not json")
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_learner(tmp_path)


def test_text_export_predicts_from_text(tmp_path):
    from deepfit.text.tokenize import Tokenizer

    tok = Tokenizer.chars()
    itos = ["xxunk", "xxpad", *"abcdefgh "]
    stoi = {t: i for i, t in enumerate(itos)}
    texts = ["abc", "bad", "fed", "hag"]
    ids = torch.tensor([[stoi[c] for c in tok.tokenize1(t)] for t in texts])
    dls = DataLoaders(TensorLoader(ids, torch.tensor([0, 1, 0, 1]), bs=2, device="cpu"), device="cpu",
                      vocab=["neg", "pos"])
    torch.manual_seed(0)
    model = get_model("lstm_classifier", vocab_sz=len(itos), n_out=2, emb_sz=4, n_hid=4)
    learn = Learner(model, dls, path=tmp_path)
    folder = learn.export("text", text_vocab=itos, tokenizer=tok)
    inf = load_learner(folder)
    model.eval()
    for t, x in zip(texts, ids):
        dec, idx, probs = inf.predict(t)
        with torch.no_grad():
            ref = torch.softmax(model(x[None]), -1)[0]
        assert torch.allclose(probs, ref, atol=1e-6) and dec == ["neg", "pos"][int(ref.argmax())]
    assert inf.predict("zzz")[2].shape == (2,)  # unknown characters map to xxunk


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_recurrent_lm_torchscript_takes_and_returns_the_state(tmp_path):
    from deepfit.models.explicit_state import ExplicitState

    torch.manual_seed(0)
    model = get_model("awd_lstm_lm", vocab_sz=30, emb_sz=12, n_hid=16, n_layers=2)
    x = torch.randint(0, 30, (8, 5))
    dl = TensorLoader(x, x, bs=2, device="cpu")
    learn = Learner(model, DataLoaders(dl, dl, device="cpu"), path=tmp_path)
    ts = torch.jit.load(str(learn.to_torchscript(tmp_path / "lm.ts")))
    wrapper = ExplicitState(model)
    model.eval().reset()
    x1, x2 = torch.randint(0, 30, (3, 9)), torch.randint(0, 30, (3, 9))  # another batch size and length
    with torch.no_grad():
        ref1, ref2 = model(x1), model(x2)
        out1, *state = ts(x1, *wrapper.initial_state(3))
        out2, *state = ts(x2, *state)
    assert len(state) == 4 and state[0].shape == (1, 3, 16) and state[3].shape == (1, 3, 12)
    assert torch.allclose(out1, ref1, atol=1e-5) and torch.allclose(out2, ref2, atol=1e-5)


def test_torchscript_matches(trained, tmp_path):
    path = trained.to_torchscript(tmp_path / "model.ts")
    ts = torch.jit.load(str(path))
    xb, _ = next(iter(trained.dls.valid))
    trained.model.eval()
    with torch.no_grad():
        assert torch.allclose(ts(xb), trained.model(xb), atol=1e-5)


def test_predict_wrong_item_shape(trained, tmp_path):
    inf = load_learner(trained.export(tmp_path / "exp"))
    with pytest.raises(ValueError, match=r"expected items of shape \[1, 28, 28\], got \[3, 28, 28\]"):
        inf.predict(torch.zeros(3, 28, 28, dtype=torch.uint8))
    assert inf.predict(torch.zeros(28, 28, dtype=torch.uint8))[1] == inf.predict(torch.zeros(1, 28, 28,
                                                                                           dtype=torch.uint8))[1]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png: cannot decode image"):
        inf.predict(bad)
    assert np.isfinite(inf.predict(torch.zeros(28, 28, dtype=torch.uint8))[2].numpy()).all()


@pytest.mark.parametrize("in_memory", [True, False])
def test_image_folder_export_predicts_from_files(tmp_path, in_memory):
    """Images of varied sizes read from class folders: the export replays the item transforms."""
    from deepfit.data import ImageDataLoaders, Resize

    rng = np.random.default_rng(0)
    for cls, (w, h) in (("cat", (20, 14)), ("dog", (13, 19))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    tfms = [Resize(12, method="crop")]
    dls = ImageDataLoaders.from_folder(tmp_path / "imgs", valid_pct=0.25, item_tfms=tfms, bs=4, device="cpu",
                                       in_memory=in_memory)
    learn = Learner(SimpleCNN(c_in=3, n_out=2, width=4, hidden=8), dls, path=tmp_path)
    inf = load_learner(learn.export("exp", item_tfms=tfms))
    assert inf.spec["input"]["item_tfms"] == [{"name": "Resize", "size": [12, 12], "method": "crop",
                                               "resample": int(Image.BILINEAR)}]
    from deepfit.data.transforms import apply_item_tfms
    from deepfit.data.vision import image_to_tensor, open_image

    learn.model.eval()
    for path in sorted((tmp_path / "imgs").rglob("*.png")):
        dec, idx, probs = inf.predict(path)
        # the training pipeline's own preprocessing of the same file
        item = image_to_tensor(apply_item_tfms(open_image(path, "RGB"), tfms, train=False))
        with torch.no_grad():
            ref = torch.softmax(learn.model(learn.dls.valid.encode(item)), -1)[0]
        assert torch.allclose(ref, probs, atol=1e-6) and dec == dls.vocab[int(ref.argmax())]


def test_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    from safetensors.torch import load_file

    from deepfit.safe_io import needs_pickle

    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    header = header.ljust(0x80, b" ")  # the 8-byte length then begins with byte 0x80, like a pickle
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + torch.tensor([1.5]).numpy().tobytes())
    assert path.read_bytes()[:1] == b"\x80"
    assert needs_pickle(path) is None
    assert load_file(str(path))["w"].item() == 1.5
    pickled = tmp_path / "x.pt"
    torch.save({"w": object()}, pickled, _use_new_zipfile_serialization=False)
    assert needs_pickle(pickled) is not None


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_export_files_get_the_usual_permissions(trained, tmp_path, umask):
    """model.safetensors was created 0600 (safetensors makes its files private) while every other file is 0644."""
    old = os.umask(umask)
    try:
        folder = trained.export(tmp_path / "exp")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == {SPEC_FILE: 0o666 & ~umask, WEIGHTS_FILE: 0o666 & ~umask}
