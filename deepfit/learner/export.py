"""Export for inference without pickle, and ONNX / TorchScript.

`learn.export(folder)` writes:

- `model.safetensors`: the weights (the safetensors format holds tensors only, it cannot carry code);
- `learner.json`: the architecture's name in `deepfit.models.MODELS` and its constructor arguments
  (`model.config`), the class names, the text vocabulary and tokenizer settings, the input layout
  and normalization statistics, the item transforms, and the activation that decodes outputs.

`load_learner(folder)` rebuilds the model from the registry and loads the weights: nothing is
unpickled. A file that needs pickle (a `torch.save` of whole objects, a fastai `export.pkl`) is refused
with `PickleRefusedError`, unless `allow_pickle=True` is passed for a file you trust.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..data.core import TensorLoader, to_model_input
from ..distributed import is_main_process, unwrap_model
from .checkpoint import PickleRefusedError, safe_torch_load
from .learner import resolve_activation

if TYPE_CHECKING:
    from .learner import Learner

EXPORT_FORMAT = "deepfit-export"
EXPORT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "learner.json"
ACTIVATIONS = {"softmax": lambda x: torch.softmax(x.float(), dim=-1), "sigmoid": torch.sigmoid, None: None}


class ExportError(ValueError):
    """A learner cannot be exported, or an export folder cannot be loaded; the message says why."""


# ---------------------------------------------------------------------------------------------- helpers
def arch_name(model: nn.Module) -> str:
    """The name under which `model`'s class (else `model.arch_name`) is registered in `deepfit.models.MODELS`."""
    from ..models import MODELS

    for n, builder in MODELS.items():  # the class itself: `model.config` holds its constructor's arguments
        if builder is type(model):
            return n
    name = getattr(model, "arch_name", None)  # set by `get_model` for factory functions
    if isinstance(name, str) and name in MODELS:
        return name
    raise ExportError(f"cannot export a {type(model).__name__}: its class is not registered in deepfit.models.MODELS "
                      "(register it, or pass arch=<registered name>)")


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
    if isinstance(loss_func, nn.BCEWithLogitsLoss):
        return "sigmoid"
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


def _input_spec(learn: Learner, item_tfms: Sequence | None) -> dict:
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


def _text_spec(learn: Learner, text_vocab: Any, tokenizer: Any) -> dict | None:
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
def export_learner(learn: Learner, path: str | Path, arch: str | None = None, text_vocab: Any = None,
                   tokenizer: Any = None, item_tfms: Sequence | None = None) -> Path:
    """Write the inference folder `path` (relative paths are under `learn.path`); returns it.

    `item_tfms`: the per-image transforms applied before batching (default `dls.item_tfms`, or the image
    dataset's own); `text_vocab`/`tokenizer`: for text models (default `dls.text_vocab`/`dls.tokenizer`).
    """
    from safetensors.torch import save_model

    from ..models import get_model

    folder = Path(path)
    if not folder.is_absolute():
        folder = Path(learn.path) / folder
    if not is_main_process():  # in a distributed run only rank 0 writes
        return folder
    model = unwrap_model(learn.model)
    name = arch if arch is not None else arch_name(model)
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ExportError(f"cannot export {type(model).__name__}: it has no `config` dict of constructor arguments")
    kwargs = _json_ready(config, "model.config")
    try:
        rebuilt = get_model(name, **kwargs)
    except Exception as e:
        raise ExportError(f"get_model({name!r}, **model.config) fails, so the export could not be loaded: {e}") from e
    missing = set(model.state_dict()) ^ set(rebuilt.state_dict())
    if missing:
        raise ExportError(f"get_model({name!r}, **model.config) does not rebuild this model: parameters differ "
                          f"({sorted(missing)[:5]})")
    vocab = getattr(learn.dls, "vocab", None)
    spec = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "arch": name,
        "kwargs": kwargs,
        "vocab": _json_ready(list(vocab), "dls.vocab") if vocab is not None else None,
        "input": _input_spec(learn, item_tfms),
        "text": _text_spec(learn, text_vocab, tokenizer),
        "activation": _activation_name(learn.loss_func),
        "loss": type(learn.loss_func).__name__,
    }
    folder.mkdir(parents=True, exist_ok=True)
    tmp_weights = folder / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    save_model(model, str(tmp_weights))
    os.replace(tmp_weights, folder / WEIGHTS_FILE)
    tmp_spec = folder / f".{SPEC_FILE}.tmp-{os.getpid()}"
    tmp_spec.write_text(json.dumps(spec, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp_spec, folder / SPEC_FILE)
    return folder


# ---------------------------------------------------------------------------------------------- pickle detection
def _is_safetensors_header(head: bytes, size: int) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length, then the JSON header `{...`."""
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < header_len <= size - 8


def needs_pickle(path: str | Path) -> str | None:
    """Why the file `path` would need pickle to load (`None` when it looks pickle-free)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if _is_safetensors_header(head, path.stat().st_size):
        return None
    if head[:1] == b"\x80":
        return "it is a raw Python pickle"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                if any(n.endswith(".pkl") or n.endswith("/data.pkl") for n in z.namelist()):
                    return "it is a torch.save archive whose data.pkl is a Python pickle"
        except zipfile.BadZipFile:
            return None
    return None


# ---------------------------------------------------------------------------------------------- inference
class InferenceLearner:
    """A model rebuilt from an export folder, with the preprocessing needed to predict raw items.

    Attributes: `model` (in eval mode), `vocab` (class names or `None`), `spec` (the JSON), `device`.
    """

    def __init__(self, model: nn.Module, spec: dict, device: torch.device | str = "cpu"):
        self.model, self.spec, self.device = model.to(device).eval(), spec, torch.device(device)
        self.vocab: list | None = spec.get("vocab")
        self.activation = ACTIVATIONS.get(spec.get("activation"))
        inp = spec.get("input") or {}
        self._mean = None if inp.get("mean") is None else torch.tensor(inp["mean"], dtype=torch.float32)
        self._std = None if inp.get("std") is None else torch.tensor(inp["std"], dtype=torch.float32)
        self._item_tfms = self._build_item_tfms(inp.get("item_tfms") or [])
        self._tokenizer = None
        text = spec.get("text")
        self._stoi = {t: i for i, t in enumerate(text["itos"])} if text else None

    @staticmethod
    def _build_item_tfms(specs: list[dict]) -> list:
        if not specs:
            return []
        from ..data import transforms as T

        known = {"Resize": T.Resize, "CenterCrop": T.CenterCrop, "RandomResizedCrop": T.RandomResizedCrop}
        out = []
        for s in specs:
            s = dict(s)
            cls = known.get(s.pop("name", None))
            if cls is None:
                raise ExportError(f"unknown item transform in export: {s}")
            out.append(cls(**s))
        return out

    # ------------------------------------------------------------------ preprocessing
    def _image(self, path: str | Path) -> Tensor:
        from PIL import Image

        from ..data.files import read_image_file

        inp = self.spec["input"]
        img = read_image_file(path, mode=inp.get("mode"))
        for tfm in self._item_tfms:
            img = tfm(img, train=False)
        size = inp.get("size")
        if size is not None and img.size != (size[1], size[0]):
            if self._item_tfms:
                raise ExportError(f"{path}: image is {img.size[0]}×{img.size[1]} after the item transforms, the model "
                                  f"was trained on {size[1]}×{size[0]}")
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        import numpy as np

        t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
        shape = inp.get("item_shape")
        if shape is not None and len(shape) == 2:
            t = t[0]
        return t

    def _text(self, text: str) -> Tensor:
        spec = self.spec["text"]
        if self._tokenizer is None:
            tok_spec = spec.get("tokenizer")
            if tok_spec is None:
                raise ExportError("this export has a text vocabulary but no tokenizer settings: pass token ids")
            from ..text import rules
            from ..text.tokenize import CharTokenizer, SpacyTokenizer, Tokenizer

            base = tok_spec["base"]
            tok = CharTokenizer() if base.get("type") == "char" else SpacyTokenizer(
                lang=base.get("lang", "en"), special_tokens=base.get("special_tokens", rules.SPECIAL_TOKENS))
            self._tokenizer = Tokenizer(tok, [getattr(rules, n) for n in tok_spec["pre_rules"]],
                                        [getattr(rules, n) for n in tok_spec["post_rules"]], progress=False)
        from ..text.rules import UNK

        tokens = self._tokenizer.tokenize1(text)
        unk = self._stoi.get(UNK)
        ids = [self._stoi.get(t, unk) for t in tokens]
        if any(i is None for i in ids):
            raise ExportError(f"text has tokens outside the vocabulary, which has no unknown token: {tokens[:10]}")
        return torch.tensor(ids, dtype=torch.long)

    def encode(self, item: Any) -> Tensor:
        """One raw item as a model input of batch size one: the item's values, converted like validation batches."""
        if isinstance(item, str) and self.spec.get("text") is not None:
            x = self._text(item)
        elif isinstance(item, (str, Path)):
            x = self._image(item)
        elif isinstance(item, Tensor):
            x = item
            shape = (self.spec.get("input") or {}).get("item_shape")
            if shape and x.ndim == len(shape) - 1 and shape[0] == 1:  # H×W for a one-channel model
                x = x.unsqueeze(0)
        else:
            raise TypeError(f"predict: expected an image path, a text or a tensor, got {type(item).__name__}")
        return self._convert(x.unsqueeze(0))

    def _convert(self, xb: Tensor) -> Tensor:
        shape = (self.spec.get("input") or {}).get("item_shape")
        if shape is not None and list(xb.shape[1:]) != list(shape) and self.spec.get("text") is None:
            raise ValueError(f"predict: expected items of shape {list(shape)}, got {list(xb.shape[1:])}")
        return to_model_input(xb, self._mean, self._std, self.device)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def _forward(self, xb: Tensor) -> Tensor:
        out = self.model(xb)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return self.activation(out) if self.activation is not None else out

    def predict(self, item: Any) -> tuple[Any, int | Tensor, Tensor]:
        """`(decoded, index, probabilities)` for one image path, text or raw tensor item."""
        probs = self._forward(self.encode(item))[0].cpu()
        if probs.ndim == 1:
            idx = int(probs.argmax())
            return (self.vocab[idx] if self.vocab is not None else idx), idx, probs
        idx = probs.argmax(-1)
        return idx, idx, probs

    def predict_batch(self, items: Sequence[Any] | Tensor, bs: int = 64) -> tuple[list, Tensor]:
        """Decoded predictions and probabilities for many items (paths, texts of equal token length, or a tensor)."""
        outs = []
        for i in range(0, len(items), bs):
            chunk = items[i:i + bs]
            if isinstance(chunk, Tensor):
                xb = self._convert(chunk)
            else:
                xb = torch.cat([self.encode(it) for it in chunk])
            outs.append(self._forward(xb).cpu())
        probs = torch.cat(outs) if outs else torch.empty(0)
        idx = probs.argmax(-1).tolist() if probs.ndim == 2 else []
        decoded = [self.vocab[i] for i in idx] if self.vocab is not None else idx
        return decoded, probs


def load_learner(path: str | Path, device: torch.device | str = "cpu", allow_pickle: bool = False) -> Any:
    """Rebuild an exported learner for inference, without unpickling anything.

    `path` is a folder written by `learn.export`. A single file that needs pickle to load (a whole object
    saved with `torch.save`, a fastai `export.pkl`) raises `PickleRefusedError`: unpickling runs whatever
    code the file names. `allow_pickle=True` loads such a file with `torch.load(weights_only=False)` and
    returns the unpickled object; it CAN RUN ARBITRARY CODE, so use it only for files you trust.
    """
    from safetensors.torch import load_model

    from ..models import get_model

    path = Path(path)
    if path.is_file():
        reason = needs_pickle(path)
        if reason is not None and not allow_pickle:
            raise PickleRefusedError(
                f"refusing to load {path}: {reason}, and unpickling can run arbitrary code. deepfit exports are "
                f"folders holding {WEIGHTS_FILE} and {SPEC_FILE}; pass allow_pickle=True only if you trust this file")
        return safe_torch_load(path, allow_pickle=allow_pickle)
    spec_file, weights = path / SPEC_FILE, path / WEIGHTS_FILE
    if not spec_file.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{path} is not a deepfit export folder: expected {SPEC_FILE} and {WEIGHTS_FILE}")
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{spec_file}: not valid JSON ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{spec_file}: not a deepfit export (no 'format': {EXPORT_FORMAT!r})")
    if spec.get("version", 0) > EXPORT_VERSION:
        raise ExportError(f"{spec_file}: export version {spec['version']} is newer than this deepfit reads "
                          f"({EXPORT_VERSION})")
    model = get_model(spec["arch"], **spec.get("kwargs", {}))
    reason = needs_pickle(weights)
    if reason is not None:
        raise PickleRefusedError(f"refusing to load {weights}: {reason}, not safetensors; unpickling can run "
                                 "arbitrary code")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise ExportError(f"{weights}: not a valid safetensors file ({type(e).__name__}: {e})") from None
    if missing or unexpected:
        raise ExportError(f"{weights}: weights do not fit {spec['arch']}: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    return InferenceLearner(model, spec, device)


# ---------------------------------------------------------------------------------------------- ONNX, TorchScript
def example_input(learn: Learner, example: Tensor | None = None) -> Tensor:
    """`example` on the model's device, or the first item of the first validation batch."""
    if example is None:
        dl = learn.dls.valid if getattr(learn.dls, "valid", None) is not None else learn.dls.train
        xb, _ = next(iter(dl))
        if isinstance(xb, (tuple, list)):
            raise ExportError("the model takes several inputs: pass example=")
        example = xb[:2]
    param = next(learn.model.parameters(), None)
    return example.to(param.device if param is not None else "cpu")


def to_onnx(learn: Learner, path: str | Path, example: Tensor | None = None, opset: int | None = None,
            dynamic_batch: bool = True) -> Path:
    """Export `learn.model` to an ONNX file (input `input`, output `output`, batch size dynamic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(learn, example)
    model = unwrap_model(learn.model).eval()
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"]}
    if opset is not None:
        kwargs["opset_version"] = opset
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # raised inside torch's exporter, not actionable here
            prog = torch.onnx.export(model, (x,), dynamo=True, verbose=False, **kwargs)
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx and onnxscript packages ({e}): pip install onnx onnxscript"
                          ) from e
    prog.save(str(path))
    return path


def to_torchscript(learn: Learner, path: str | Path, example: Tensor | None = None) -> Path:
    """Trace `learn.model` on `example` (default: one validation batch) and save it as TorchScript."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(learn, example)
    model = unwrap_model(learn.model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, (x,))
        torch.jit.save(traced, str(path))
    return path
