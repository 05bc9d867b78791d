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
