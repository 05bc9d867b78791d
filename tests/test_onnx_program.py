"""deepfit.onnx_program: ONNX files run through onnxruntime; external data only from files beside the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from deepfit.export_spec import ExportError  # noqa: E402
from deepfit.inference import load_learner  # noqa: E402
from deepfit.onnx_program import ONNX_FILE, OnnxFileError, OnnxModule, check_onnx_file  # noqa: E402


def add_model(folder, location: str | None = None) -> None:
    """`output = input + w` (w = [1, 2, 3]); with `location`, w is stored as external data there."""
    w = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], dtype=np.float32), name="w")
    if location is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "12")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["input", "w"], ["output"])], "add",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ONNX_FILE).write_bytes(model.SerializeToString())


def test_module_runs_the_graph(tmp_path):
    add_model(tmp_path)
    m = OnnxModule(tmp_path / ONNX_FILE)
    x = torch.zeros(2, 3)
    assert torch.equal(m(x), torch.tensor([[1.0, 2.0, 3.0]] * 2))
    with pytest.raises(ValueError, match="expected 1 inputs"):
        m(x, x)
    with pytest.raises(ValueError, match=r"onnxruntime rejected the inputs \(input \(2, 4\)"):
        m(torch.zeros(2, 4))


def test_external_data_beside_the_model_is_read(tmp_path):
    add_model(tmp_path, "w.bin")
    (tmp_path / "w.bin").write_bytes(np.array([1.0, 2.0, 3.0], dtype=np.float32).tobytes())
    check_onnx_file(tmp_path / ONNX_FILE)
    assert torch.equal(OnnxModule(tmp_path / ONNX_FILE)(torch.ones(1, 3)), torch.tensor([[2.0, 3.0, 4.0]]))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "sub/w.bin", "missing.bin"])
def test_external_data_elsewhere_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 12)
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "sub" / "w.bin").write_bytes(b"\0" * 12)
    add_model(tmp_path / "m", location)
    with pytest.raises(OnnxFileError, match="only files beside the model"):
        check_onnx_file(tmp_path / "m" / ONNX_FILE)


def test_load_learner_refuses_bad_onnx_exports(tmp_path):
    spec = {"format": "deepfit-export", "version": 1, "arch": None, "model_file": ONNX_FILE,
            "input": {"kind": "tensor", "mean": None, "std": None, "item_tfms": []}}
    (tmp_path / "learner.json").write_text(json.dumps(spec))
    with pytest.raises(FileNotFoundError, match="names model.onnx, which is missing"):
        load_learner(tmp_path)
    (tmp_path / ONNX_FILE).write_bytes(b"\x80\x04not onnx")
    with pytest.raises(ExportError, match="not a valid ONNX file"):
        load_learner(tmp_path)
    add_model(tmp_path, "../secret.bin")
    with pytest.raises(ExportError, match="only files beside the model"):
        load_learner(tmp_path)
    add_model(tmp_path)
    inf = load_learner(tmp_path)
    assert torch.equal(inf.model(torch.zeros(1, 3)), torch.tensor([[1.0, 2.0, 3.0]]))
    (tmp_path / "learner.json").write_text(json.dumps({**spec, "model_file": "../model.onnx"}))
    with pytest.raises(ExportError, match="model_file"):
        load_learner(tmp_path)
