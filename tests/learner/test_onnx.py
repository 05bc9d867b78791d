"""ONNX export: outputs of onnxruntime match PyTorch's within 1e-4 (skipped without onnx/onnxruntime)."""

from __future__ import annotations

import pytest
import torch

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import Learner
from deepfit.models import MLP, SimpleCNN

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("model,shape", [(SimpleCNN(c_in=3, width=8, hidden=16, n_out=5), (3, 20, 20)),
                                         (MLP(c_in=12, img_size=1, hidden=(16,), n_out=4), (12,))])
def test_onnx_matches_pytorch(tmp_path, model, shape):
    torch.manual_seed(0)
    x = torch.randn(24, *shape)
    y = torch.zeros(24, dtype=torch.long)
    dls = DataLoaders(TensorLoader(x, y, bs=8, device="cpu"), TensorLoader(x, y, bs=8, device="cpu"), device="cpu")
    learn = Learner(model, dls, path=tmp_path)
    path = learn.to_onnx(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    for n in (1, 7):  # the batch dimension is dynamic
        xb = torch.randn(n, *shape)
        (out,) = session.run(None, {"input": xb.numpy()})
        with torch.no_grad():
            ref = model(xb)
        assert out.shape == tuple(ref.shape)
        assert torch.allclose(torch.from_numpy(out), ref, atol=1e-4), (torch.from_numpy(out) - ref).abs().max()


# ---------------------------------------------------------------------------------------------- recurrent models
def lm_learner(tmp_path, model, bs: int = 2, seq_len: int = 6, vocab: int = 20, batch_first: bool = True):
    torch.manual_seed(0)
    x = torch.randint(0, vocab, (8, seq_len))
    if not batch_first:
        x = x.t().contiguous()  # the loaders give (bs, seq_len); a sequence-first model is fed (seq_len, bs)
        dl = TensorLoader(x.t(), x.t(), bs=bs, device="cpu")
        return Learner(model, DataLoaders(dl, dl, device="cpu"), path=tmp_path), x[:, :bs]
    dl = TensorLoader(x, x, bs=bs, device="cpu")
    return Learner(model, DataLoaders(dl, dl, device="cpu"), path=tmp_path), x[:bs]


def run_onnx(session, names, x, state):
    outs = session.run(None, {"input": x.numpy(), **{n: s.numpy() for n, s in zip(names, state)}})
    return [torch.from_numpy(o) for o in outs]


RECURRENT = [
    ("awd_lstm_lm", dict(emb_sz=12, n_hid=16, n_layers=2)),
    ("char_seq_lstm", dict(emb_sz=8, n_hid=10, n_layers=2, batch_first=False)),
    ("char_seq_gru", dict(emb_sz=8, n_hid=10, n_layers=2)),
    ("char_seq_grucell", dict(emb_sz=8, n_hid=10)),
]


@pytest.mark.parametrize("arch,kwargs", RECURRENT, ids=[a for a, _ in RECURRENT])
def test_recurrent_onnx_round_trip_carries_the_state_like_pytorch(tmp_path, arch, kwargs):
    from deepfit.models import get_model
    from deepfit.models.explicit_state import ExplicitState

    model = get_model(arch, vocab_sz=20, **kwargs)
    batch_first = kwargs.get("batch_first", True)
    learn, example = lm_learner(tmp_path, model, batch_first=batch_first)
    path = learn.to_onnx(tmp_path / "lm.onnx", example=example)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = ExplicitState(model)
    assert [i.name for i in session.get_inputs()] == ["input", *wrapper.state_names]
    assert [o.name for o in session.get_outputs()] == ["output", *[f"{n}_out" for n in wrapper.state_names]]
    for bs in (1, 3):  # the batch size is dynamic; the sequence length is the example's (6)
        shape = (bs, 6) if batch_first else (6, bs)
        x1, x2 = torch.randint(0, 20, shape), torch.randint(0, 20, shape)
        model.eval().reset()
        with torch.no_grad():
            ref1, ref2 = model(x1), model(x2)  # the stateful model carries its hidden state from x1 to x2
        out1, *state = run_onnx(session, wrapper.state_names, x1, wrapper.initial_state(bs))
        out2, *state = run_onnx(session, wrapper.state_names, x2, state)
        assert out1.shape == ref1.shape
        assert torch.allclose(out1, ref1, atol=1e-5), (out1 - ref1).abs().max()
        assert torch.allclose(out2, ref2, atol=1e-5), (out2 - ref2).abs().max()
        assert not torch.allclose(out2, run_onnx(session, wrapper.state_names, x2, wrapper.initial_state(bs))[0])


@pytest.mark.parametrize("arch,kwargs", RECURRENT[:2], ids=[a for a, _ in RECURRENT[:2]])
def test_dynamic_seq_export_takes_any_length(tmp_path, arch, kwargs):
    from deepfit.models import get_model
    from deepfit.models.explicit_state import ExplicitState

    model = get_model(arch, vocab_sz=20, **kwargs)
    batch_first = kwargs.get("batch_first", True)
    learn, example = lm_learner(tmp_path, model, batch_first=batch_first)
    path = learn.to_onnx(tmp_path / "lm.onnx", example=example, dynamic_seq=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = ExplicitState(model)
    for bs, seq_len in ((1, 1), (4, 11)):
        x = torch.randint(0, 20, (bs, seq_len) if batch_first else (seq_len, bs))
        state = [torch.randn_like(s) for s in wrapper.initial_state(bs)]
        got = run_onnx(session, wrapper.state_names, x, state)
        with torch.no_grad():
            ref = wrapper(x, *state)
        for g, r in zip(got, ref):
            assert g.shape == r.shape and torch.allclose(g, r, atol=1e-5), (g - r).abs().max()


def test_dynamic_seq_is_refused_where_it_cannot_hold(tmp_path):
    from deepfit.learner.export import ExportError
    from deepfit.models import get_model

    learn, example = lm_learner(tmp_path, get_model("char_seq_rnncell", vocab_sz=20, emb_sz=4, n_hid=6))
    with pytest.raises(ExportError, match="loops over time steps in Python"):
        learn.to_onnx(tmp_path / "a.onnx", example=example, dynamic_seq=True)
    learn, example = lm_learner(tmp_path, get_model("char_rnn", vocab_sz=20, emb_sz=4, n_hid=6))
    with pytest.raises(ExportError, match="dynamic_seq=True is for the recurrent language models"):
        learn.to_onnx(tmp_path / "b.onnx", example=example, dynamic_seq=True)
