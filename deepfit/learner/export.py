"""Export for inference without pickle, and ONNX / TorchScript (the reading side is `deepfit.inference`).

`learn.export(folder)` writes, for a model the registry can rebuild (`deepfit.models.MODELS`):

- `model.safetensors`: the weights (the safetensors format holds tensors only, it cannot carry code);
- `learner.json`: the architecture's name in the model registry and its constructor arguments
  (`model.config`, rebuilt by `get_model`), the class names, the text vocabulary and tokenizer settings, the
  input layout and normalization statistics, the item transforms, and the activation that decodes outputs.

Any other model (an `nn.Sequential`, a user module, a registered model whose layers were changed) is written
as `model.onnx` (graph and weights, checked against PyTorch's outputs when written) beside the same
`learner.json`, which names it in `model_file`; `load_learner` runs it with onnxruntime. ONNX rather than a
`torch.export` `.pt2` archive because loading a `.pt2` can unpickle and evaluate code from the file (see
`deepfit.onnx_program`).

`load_learner(folder)` rebuilds the model from the registry and loads the weights, or opens the ONNX file:
nothing is unpickled. A file that needs pickle (a `torch.save` of whole objects, a fastai `export.pkl`) is
refused with `PickleRefusedError`, unless `allow_pickle=True` is passed for a file you trust.

Recurrent language models go to ONNX and TorchScript with their hidden state as explicit inputs and outputs
(`to_onnx`, `to_torchscript`, `deepfit.models.explicit_state`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..data.core import TensorLoader
from ..distributed import is_main_process, unwrap_model
from ..inference import EXPORT_FORMAT, EXPORT_VERSION, SPEC_FILE, WEIGHTS_FILE, ExportError
from ..inference import InferenceLearner as InferenceLearner  # old import path
from ..inference import load_learner as load_learner  # old import path
from ..models.explicit_state import ExplicitState, has_hidden_state
from ..models.registry import model_config, rebuild
from ..onnx_program import ONNX_FILE
from ..safe_io import atomic_write_text, atomic_write_with
from .losses import BCEWithLogitsFlat, resolve_activation

if TYPE_CHECKING:
    from .events import LearnerLike

# ---------------------------------------------------------------------------------------------- helpers
def export_config(model: nn.Module, arch: str | None = None) -> dict[str, Any]:
    """`model`'s registry config (`{"arch": name, **arguments}`, see `deepfit.models.model_config`), JSON-ready.

    `arch` names the registered architecture of a model whose config does not say it.
    """
    try:
        config = model_config(model) if arch is None else {**getattr(model, "config", None), "arch": arch}
    except (TypeError, ValueError) as e:  # TypeError: `arch` given for a model without a config dict
        raise ExportError(f"cannot export a {type(model).__name__}: {e}") from None
    return _json_ready(config, "model.config")


def _json_ready(obj: Any, where: str) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_json_ready(o, where) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _json_ready(v, where) for k, v in obj.items()}
    if isinstance(obj, Tensor) and obj.numel() < 10_000:
        return obj.tolist()
    raise ExportError(f"cannot write {where} as JSON: {type(obj).__name__} {obj!r} is not a plain value")


def _activation_name(loss_func: Any) -> str | None:
    if isinstance(loss_func, (nn.BCEWithLogitsLoss, BCEWithLogitsFlat)):
        return "sigmoid"
    if isinstance(loss_func, nn.NLLLoss) or loss_func is torch.nn.functional.nll_loss:
        return "exp"
    if resolve_activation(loss_func) is None:
        return None
    if isinstance(loss_func, nn.CrossEntropyLoss) or getattr(loss_func, "is_cross_entropy", False):
        return "softmax"
    raise ExportError(f"the loss {type(loss_func).__name__} has a custom activation that cannot be written to JSON")


def _stats(dl: Any) -> tuple[list | None, list | None]:
    mean, std = getattr(dl, "mean", None), getattr(dl, "std", None)
    as_list = lambda v: None if v is None else torch.as_tensor(v, dtype=torch.float32).flatten().tolist()
    return as_list(mean), as_list(std)


def _item_tfm_spec(tfm: Any) -> dict:
    from ..data import transforms as T

    kinds = {T.Resize: "Resize", T.CenterCrop: "CenterCrop", T.RandomResizedCrop: "RandomResizedCrop"}
    kind = kinds.get(type(tfm))
    if kind is None:
        raise ExportError(f"cannot export the item transform {tfm!r}: only Resize, CenterCrop and RandomResizedCrop "
                          "are known to load_learner")
    args = {"size": list(tfm.size)}
    if kind == "Resize":
        args["method"] = tfm.method
    if kind in ("Resize", "RandomResizedCrop"):
        args["resample"] = int(tfm.resample)
    return {"name": kind, **args}


def _input_spec(learn: LearnerLike, item_tfms: Sequence | None) -> dict:
    dl = learn.dls.valid if getattr(learn.dls, "valid", None) is not None else learn.dls.train
    mean, std = _stats(dl)
    item_tfms = item_tfms if item_tfms is not None else getattr(learn.dls, "item_tfms", None) or []
    spec: dict[str, Any] = {"kind": "tensor", "mean": mean, "std": std,
                            "item_tfms": [_item_tfm_spec(t) for t in item_tfms]}
    if isinstance(dl, TensorLoader):
        x = dl.x
        spec["item_shape"] = list(x.shape[1:])
        spec["dtype"] = str(x.dtype).removeprefix("torch.")
        if x.dtype == torch.uint8 and x.ndim in (3, 4):
            spec["kind"] = "image"
            spec["mode"] = "L" if x.ndim == 3 or x.shape[1] == 1 else "RGB"
            spec["size"] = list(x.shape[-2:])
    elif hasattr(dl, "dataset") and hasattr(dl.dataset, "item_tfms"):
        ds = dl.dataset
        spec.update(kind="image", mode=ds.mode, dtype="uint8", item_channels_first=True,
                    size=list(ds.size) if getattr(ds, "size", None) else None,
                    item_tfms=spec["item_tfms"] or [_item_tfm_spec(t) for t in ds.item_tfms])
        spec["item_shape"] = [1 if ds.mode == "L" else 3, *spec["size"]] if spec["size"] else None
    return spec


def _text_spec(learn: LearnerLike, text_vocab: Any, tokenizer: Any) -> dict | None:
    text_vocab = text_vocab if text_vocab is not None else getattr(learn.dls, "text_vocab", None)
    if text_vocab is None:
        return None
    itos = list(getattr(text_vocab, "itos", text_vocab))
    tokenizer = tokenizer if tokenizer is not None else getattr(learn.dls, "tokenizer", None)
    spec: dict[str, Any] = {"itos": itos, "tokenizer": None}
    if tokenizer is not None:
        from ..text import rules

        def rule_names(rs):
            names = []
            for r in rs:
                name = getattr(r, "__name__", "")
                if getattr(rules, name, None) is not r:
                    raise ExportError(f"cannot export the tokenizer rule {r!r}: only functions from deepfit.text.rules "
                                      "can be rebuilt by load_learner")
                names.append(name)
            return names

        base = tokenizer.tok.settings() if hasattr(tokenizer.tok, "settings") else None
        if base is None:
            raise ExportError(f"cannot export the base tokenizer {tokenizer.tok!r}: it has no settings()")
        spec["tokenizer"] = {"base": base, "pre_rules": rule_names(tokenizer.pre_rules),
                             "post_rules": rule_names(tokenizer.post_rules)}
    return spec


# ---------------------------------------------------------------------------------------------- export
def export_learner(learn: LearnerLike, path: str | Path, arch: str | None = None, text_vocab: Any = None,
                   tokenizer: Any = None, item_tfms: Sequence | None = None, format: str = "auto",
                   example: Tensor | None = None) -> Path:
    """Write the inference folder `path` (relative paths are under `learn.path`); returns it.

    `item_tfms`: the per-image transforms applied before batching (default `dls.item_tfms`, or the image
    dataset's own); `text_vocab`/`tokenizer`: for text models (default `dls.text_vocab`/`dls.tokenizer`).

    `format`: `"registry"` writes `model.safetensors` and the registered architecture's name and arguments,
    rebuilt by `get_model` when loaded; `"onnx"` writes the model itself as `model.onnx` (weights included),
    run by onnxruntime when loaded (see `deepfit.onnx_program`: an ONNX file holds no code); `"auto"` (default)
    takes the registry when it rebuilds this model with the same parameters, else ONNX, so any model exports
    (an `nn.Sequential`, a user module, a registered model whose layers were changed). For ONNX, `example` is
    the input traced (default: two items of the first validation batch); the batch size stays dynamic, and
    the sequence length too for token ids where the model allows it. Both write `learner.json` last.
    """
    if format not in ("auto", "registry", "onnx"):
        raise ValueError(f"export: format must be 'auto', 'registry' or 'onnx', got {format!r}")
    folder = Path(path)
    if not folder.is_absolute():
        folder = Path(learn.path) / folder
    if not is_main_process():  # in a distributed run only rank 0 writes
        return folder
    model = unwrap_model(learn.model)
    config = _registry_config(model, arch, strict=format == "registry" or arch is not None) \
        if format != "onnx" else None
    vocab = getattr(learn.dls, "vocab", None)
    spec = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "arch": config.pop("arch") if config is not None else None,
        "kwargs": config if config is not None else {},
        "vocab": _json_ready(list(vocab), "dls.vocab") if vocab is not None else None,
        "input": _input_spec(learn, item_tfms),
        "text": _text_spec(learn, text_vocab, tokenizer),
        "activation": _activation_name(learn.loss_func),
        "thresh": getattr(learn.loss_func, "thresh", 0.5),  # per-label decisions of a sigmoid activation
        "loss": type(learn.loss_func).__name__,
    }
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        from safetensors.torch import save_model

        # safetensors creates its files 0600: atomic_write_with gives them the umask's permissions like every other
        atomic_write_with(folder / WEIGHTS_FILE, lambda tmp: save_model(model, str(tmp)))
    else:
        del spec["kwargs"]
        spec["model_file"] = ONNX_FILE
        _write_onnx_program(learn, model, folder / ONNX_FILE, example)
    # learner.json says which file holds the model; another left by an earlier export (or `deepfit export --onnx`,
    # which writes the same ONNX layout beside the safetensors) is not read
    atomic_write_text(json.dumps(spec, indent=1, ensure_ascii=False), folder / SPEC_FILE)
    return folder


def _registry_config(model: nn.Module, arch: str | None, strict: bool) -> dict[str, Any] | None:
    """The registry config that rebuilds `model` (same parameter names and shapes); `None` when there is none,
    or `ExportError` saying why when `strict`."""
    try:
        config = export_config(model, arch)
    except ExportError:
        if strict:
            raise
        return None
    try:
        rebuilt = rebuild(config)
    except Exception as e:
        if not strict:
            return None
        raise ExportError(f"get_model(**model.config) fails for {config['arch']!r}, so the export could not be "
                          f"loaded: {e}") from e
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if ours != theirs:
        if not strict:
            return None
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise ExportError(f"get_model(**model.config) does not rebuild this {config['arch']!r} model: parameters "
                          f"differ ({differ[:5]})")
    return config


def _write_onnx_program(learn: LearnerLike, model: nn.Module, dest: Path, example: Tensor | None) -> None:
    """Export `model` to ONNX at `dest` (atomically), after checking onnxruntime's outputs against PyTorch's."""
    x = example_input(learn, example)
    if has_hidden_state(model):
        raise ExportError(f"{type(model).__name__} carries a hidden state between calls: export it with the "
                          "registry (format='registry') or to_onnx")
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    shapes = {0: batch, **({1: torch.export.Dim.AUTO} if x.ndim == 2 and not x.is_floating_point() else {})}
    program = _dynamo_onnx(model, (x,), {"input_names": ["input"], "output_names": ["output"],
                                         "dynamic_shapes": (shapes,)})

    def write(tmp: Path) -> None:
        program.save(str(tmp), external_data=False)
        _check_onnx_matches(tmp, model, x, dest.name)

    atomic_write_with(dest, write)


def _check_onnx_matches(path: Path, model: nn.Module, x: Tensor, name: str) -> None:
    from ..onnx_program import OnnxModule

    onnx_model = OnnxModule(path)
    for xb in (x, x[:1]):  # the example and one item: the batch size is dynamic
        with torch.no_grad():
            want = model(xb)
        got = onnx_model(xb)
        want = want if isinstance(want, (tuple, list)) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for w, g in zip(want, got):
            w = w.detach().float().cpu()
            if w.shape != g.shape or not torch.allclose(g.float(), w, atol=1e-4, rtol=1e-3):
                diff = (g.float() - w).abs().max().item() if w.shape == g.shape else f"shape {tuple(g.shape)}"
                raise ExportError(f"the ONNX export of {type(model).__name__} ({name}) does not reproduce the model "
                                  f"on the example (onnxruntime vs PyTorch: {diff}); the model may use operations "
                                  "ONNX cannot express")


# ---------------------------------------------------------------------------------------------- ONNX, TorchScript
def example_input(learn: LearnerLike, example: Tensor | None = None) -> Tensor:
    """`example` on the model's device, or the first item of the first validation batch."""
    if example is None:
        dl = learn.dls.valid if getattr(learn.dls, "valid", None) is not None else learn.dls.train
        xb, _ = next(iter(dl))
        if isinstance(xb, (tuple, list)):
            raise ExportError("the model takes several inputs: pass example=")
        example = xb[:2]
    param = next(learn.model.parameters(), None)
    return example.to(param.device if param is not None else "cpu")


def _exportable(model: nn.Module, x: Tensor) -> tuple[nn.Module, tuple[Tensor, ...], ExplicitState | None]:
    """The module to trace and its example arguments: a stateful language model is wrapped in `ExplicitState`
    (arguments: the token ids and a zero state), any other model is itself (arguments: `x`)."""
    if not has_hidden_state(model):
        return model.eval(), (x,), None
    wrapper = ExplicitState(model)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    state = wrapper.initial_state(x.shape[wrapper.batch_dim], x.device, dtype)
    return wrapper, (x, *state), wrapper


def io_names(wrapper: ExplicitState | None) -> tuple[list[str], list[str]]:
    """Input and output names of an exported graph: `input` -> `output`, plus the state of a recurrent model
    (`h0, c0, ...` in, `h0_out, c0_out, ...` out)."""
    if wrapper is None:
        return ["input"], ["output"]
    return ["input", *wrapper.state_names], ["output", *[f"{n}_out" for n in wrapper.state_names]]


def _dynamo_onnx(module: nn.Module, args: tuple[Tensor, ...], kwargs: dict[str, Any]) -> Any:
    onnx_log = logging.getLogger("torch.onnx")  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)  # raised inside torch's exporter, not actionable here
            warnings.filterwarnings("ignore", "The tensor attributes .* were assigned during export", UserWarning)
            warnings.filterwarnings("ignore", "# The axis name", UserWarning)
            return torch.onnx.export(module, args, dynamo=True, verbose=False, **kwargs)
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx and onnxscript packages ({e}): pip install onnx onnxscript"
                          ) from e
    finally:
        onnx_log.setLevel(level)


def _torchscript_onnx(module: nn.Module, args: tuple[Tensor, ...], path: Path, wrapper: ExplicitState,
                      dynamic_batch: bool, opset: int | None) -> None:
    """PyTorch's TorchScript-based ONNX exporter: ONNX's own LSTM/GRU/RNN operators, any sequence length."""
    inputs, outputs = io_names(wrapper)
    seq = {wrapper.seq_dim: "seq", **({wrapper.batch_dim: "batch"} if dynamic_batch else {})}
    axes: dict[str, dict[int, str]] = {"input": seq, "output": seq}
    if dynamic_batch:
        axes.update({name: {1: "batch"} for name in inputs[1:] + outputs[1:]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer warnings: the round trip is what is checked
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, **({"opset_version": opset} if opset is not None else {}))
    except TypeError as e:  # a PyTorch without the TorchScript-based exporter
        raise ExportError(f"this PyTorch cannot export with dynamic_seq=True ({e}); export with dynamic_seq=False "
                          "(the sequence length is then the example's)") from None


def to_onnx(learn: LearnerLike, path: str | Path, example: Tensor | None = None, opset: int | None = None,
            dynamic_batch: bool = True, dynamic_seq: bool = False) -> Path:
    """Export `learn.model` to an ONNX file: input `input`, output `output`, the batch size dynamic.

    A recurrent language model (the AWD-LSTM LM, the stateful char models) is exported with its hidden state
    as explicit inputs and outputs (see `deepfit.models.ExplicitState`): inputs `input, h0, c0, h1, c1...`
    (`h`, `c` for the char models), outputs `output, h0_out, c0_out...`; start from zeros of shape
    `(n_layers or 1, bs, size)` and feed each call's state outputs to the next call. PyTorch's exporter
    unrolls recurrent layers over time, so the sequence length is the example's (default: the validation
    batch's; export a one-token example for generation). `dynamic_seq=True` uses PyTorch's older
    TorchScript-based exporter instead (deprecated by PyTorch but still shipped), which writes ONNX's own
    LSTM/GRU/RNN operators and accepts any sequence length; not for the cell-loop models, which loop over
    time in Python.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(learn, example)
    model = unwrap_model(learn.model)
    module, args, wrapper = _exportable(model, x)
    if dynamic_seq:
        if wrapper is None:
            raise ExportError(f"dynamic_seq=True is for the recurrent language models; {type(model).__name__} "
                              "is exported with dynamic_seq=False")
        if wrapper.fixed_length:
            raise ExportError(f"{type(model).__name__} loops over time steps in Python, so its graph has the "
                              "example's sequence length: export it with dynamic_seq=False")
        _torchscript_onnx(module, args, path, wrapper, dynamic_batch, opset)
        return path
    inputs, outputs = io_names(wrapper)
    kwargs: dict[str, Any] = {"input_names": inputs, "output_names": outputs}
    if opset is not None:
        kwargs["opset_version"] = opset
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1)
        kwargs["dynamic_shapes"] = (({0: batch},) if wrapper is None else
                                    ({wrapper.batch_dim: batch}, tuple({1: batch} for _ in wrapper.state_names)))
    _dynamo_onnx(module, args, kwargs).save(str(path))
    return path


def to_torchscript(learn: LearnerLike, path: str | Path, example: Tensor | None = None) -> Path:
    """Trace `learn.model` on `example` (default: one validation batch) and save it as TorchScript.

    A recurrent language model is traced as `ExplicitState(model)`: the saved module takes `(ids, *state)` and
    returns `(output, *new_state)` (see `to_onnx`); any batch size and sequence length, except for the
    cell-loop models, whose trace has the example's sequence length.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(learn, example)
    module, args, _ = _exportable(unwrap_model(learn.model), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks inside nn.LSTM and F.embedding
        with torch.no_grad():
            traced = torch.jit.trace(module, args)
        torch.jit.save(traced, str(path))
    return path
