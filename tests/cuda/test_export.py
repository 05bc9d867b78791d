"""Export from a model trained on the GPU, loaded for inference on the CPU (registry and ONNX formats)."""

from __future__ import annotations

import pytest
import torch

from deepfit.inference import load_learner
from deepfit.learner import Learner, accuracy
from deepfit.models import SimpleCNN
from tests.helpers.cuda_tasks import image_task, small_cnn

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("kind", ["registry", "onnx"])
def test_export_on_gpu_loads_on_cpu(device, tmp_path, kind):
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = SimpleCNN(c_in=3, n_out=4, width=8, hidden=32) if kind == "registry" else small_cnn()
    dls = image_task(device)
    learn = Learner(model.to(device), dls, metrics=[accuracy], lr=3e-3, path=tmp_path)
    learn.remove_cb(learn.progress)
    learn.to_bf16()
    learn.fit_one_cycle(2, 3e-3)
    folder = learn.export("exp")
    assert (folder / ("model.safetensors" if kind == "registry" else "model.onnx")).is_file()
    inf = load_learner(folder, device="cpu")
    items = dls.valid.x[:16]  # raw uint8 images
    _, probs = inf.predict_batch(items)
    learn.model.eval()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # a float32 reference
    try:
        with torch.no_grad():
            x = dls.valid.x[:16].to(device).float().div(255).sub(0.3).div(0.25)
            ref = torch.softmax(learn.model(x).float(), -1)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert probs.device.type == "cpu"
    assert torch.allclose(probs, ref.cpu(), atol=1e-3), (probs - ref.cpu()).abs().max()
