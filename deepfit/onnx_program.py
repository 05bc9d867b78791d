"""An ONNX file run by onnxruntime as a PyTorch module: how `load_learner` serves models outside the registry.

`learn.export` writes a model whose architecture is not registered (any `nn.Sequential`, any user module) as
`model.onnx`, and `load_learner` runs it with onnxruntime through `OnnxModule`. Why ONNX and not
`torch.export`'s `.pt2` archive: `torch.export.load` unpickles parts of the archive (weights and constants
flagged `use_pickle` go through `torch.load(weights_only=False)` or `pickle.loads`), parses symbolic shape
expressions with sympy (which evaluates Python), and resolves graph calls as any attribute path under
`torch`. A crafted `.pt2` therefore runs arbitrary code when loaded; an ONNX file is a protobuf message of
operators from a fixed set, which onnxruntime executes with its own kernels and never with code from the
file. The one way an ONNX file reaches outside itself is tensors stored as external data: `check_onnx_file`
refuses any whose location is not a plain file inside the model's folder.

The module is a leaf of deepfit: it imports onnx and onnxruntime lazily, and nothing from deepfit.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import torch
from torch import Tensor, nn

ONNX_FILE = "model.onnx"
INSTALL_HINT = "pip install onnx onnxscript onnxruntime (deepfit's `onnx` extra)"


class OnnxFileError(ValueError):
    """An ONNX file that cannot be loaded safely or at all; the message names the file and the reason."""


def _import(name: str):
    try:
        return __import__(name)
    except ImportError as e:
        raise ImportError(f"this export holds an ONNX model, which needs {name} ({e}): {INSTALL_HINT}") from e


def check_onnx_file(path: str | Path) -> None:
    """Raise `OnnxFileError` unless `path` parses as ONNX and every external-data tensor lies in its folder."""
    onnx = _import("onnx")
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and onnx's own errors
        raise OnnxFileError(f"{path}: not a valid ONNX file ({type(e).__name__}: {e})") from None
    folder = path.parent.resolve()
    for tensor in _all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        parts = PurePosixPath(location.replace("\\", "/")).parts
        target = (folder / location).resolve()
        if not location or PurePosixPath(location).is_absolute() or ".." in parts or ":" in location \
                or target.parent != folder or not target.is_file():
            raise OnnxFileError(f"{path}: tensor {tensor.name!r} reads external data from {location!r}; only files "
                                "beside the model are allowed")


def _all_tensors(model) -> list:
    """Every tensor of an ONNX model: initializers and attribute tensors, in subgraphs and functions too."""
    tensors: list = []

    def graph(g) -> None:
        tensors.extend(g.initializer)
        tensors.extend(s.values for s in g.sparse_initializer)
        nodes(g.node)

    def nodes(ns) -> None:
        for node in ns:
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensors.append(attr.t)
                tensors.extend(attr.tensors)
                if attr.HasField("g"):
                    graph(attr.g)
                for g in attr.graphs:
                    graph(g)

    graph(model.graph)
    for f in model.functions:
        nodes(f.node)
    return tensors


class OnnxModule(nn.Module):
    """Runs an ONNX file with onnxruntime: `module(x, ...)` takes and returns tensors, like the exported model.

    Inputs go to the graph's inputs in order; outputs come back on the first input's device (one tensor, or a
    tuple when the graph has several outputs). On a CUDA device onnxruntime's CUDA provider is used when this
    onnxruntime build has it. Inference only: nothing here has gradients.
    """

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        super().__init__()
        ort = _import("onnxruntime")
        check_onnx_file(path)
        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as e:  # onnxruntime's own error types
            raise OnnxFileError(f"{self.path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(xs) != len(self.input_names):
            raise ValueError(f"{self.path.name}: expected {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}), got {len(xs)}")
        feeds = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names, xs)}
        try:
            outs = self.session.run(None, feeds)
        except Exception as e:  # shapes or types the graph does not take
            shapes = ", ".join(f"{n} {tuple(x.shape)} {x.dtype}" for n, x in zip(self.input_names, xs))
            raise ValueError(f"{self.path.name}: onnxruntime rejected the inputs ({shapes}): {e}") from None
        device = xs[0].device if xs else torch.device("cpu")
        tensors = tuple(torch.from_numpy(o).to(device) for o in outs)
        return tensors[0] if len(tensors) == 1 else tensors

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, inputs={self.input_names}, outputs={self.output_names}"


__all__ = ["ONNX_FILE", "OnnxFileError", "OnnxModule", "check_onnx_file"]
