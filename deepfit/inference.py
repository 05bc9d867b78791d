"""Inference from an export folder, without the training loop and without unpickling anything.

`learn.export(folder)` (see `deepfit.learner.export`) writes `model.safetensors` (tensors only) and
`learner.json` (the registered architecture and its arguments, class names, text vocabulary and tokenizer
settings, input statistics and transforms, the output activation). `load_learner(folder)` checks
`learner.json` against its schema (`deepfit.export_spec`), checks the model's shapes against the safetensors
header on the `meta` device (nothing allocated), then rebuilds the model through the `deepfit.models` registry,
loads the weights and returns an `InferenceLearner` that predicts raw items (image paths, texts, tensors).
Every error names the file and the field. A file that needs pickle is refused with `PickleRefusedError`
unless `allow_pickle=True` is passed for a file you trust.

This module imports the data, model and text layers, never the Learner.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .data import transforms as T
from .data.core import to_model_input
from .data.files import read_image_file
from .export_spec import EXPORT_FORMAT as EXPORT_FORMAT  # learner/export.py imports them from here
from .export_spec import EXPORT_VERSION as EXPORT_VERSION
from .export_spec import ExportError, check_weights_fit, validate_spec
from .models.registry import get_model, upgrade_kwargs
from .onnx_program import ONNX_FILE
from .probabilities import as_distribution
from .safe_io import PickleRefusedError, needs_pickle, safe_torch_load
from .text import rules
from .text.rules import UNK
from .text.tokenize import CharTokenizer, SpacyTokenizer, Tokenizer

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "learner.json"
ACTIVATIONS = {"softmax": lambda x: torch.softmax(x.float(), dim=-1), "sigmoid": torch.sigmoid,
               "exp": lambda x: torch.exp(x.float()), None: None}


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

            base = tok_spec["base"]
            tok = CharTokenizer() if base.get("type") == "char" else SpacyTokenizer(
                lang=base.get("lang", "en"), special_tokens=base.get("special_tokens", rules.SPECIAL_TOKENS))
            self._tokenizer = Tokenizer(tok, [getattr(rules, n) for n in tok_spec["pre_rules"]],
                                        [getattr(rules, n) for n in tok_spec["post_rules"]], progress=False)

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
        if self.spec.get("activation") != "sigmoid":  # a model ending in softmax/log_softmax: no second softmax
            dist = as_distribution(out)
            if dist is not None:
                return dist
        return self.activation(out) if self.activation is not None else out

    def predict(self, item: Any) -> tuple[Any, int | Tensor, Tensor]:
        """`(decoded, index, probabilities)` for one image path, text or raw tensor item.

        With a sigmoid activation (a binary or multi-label loss): every label above the exported threshold
        (a list, and the boolean mask), or for a single output class 1 above it, else 0.
        """
        probs = self._forward(self.encode(item))[0].cpu()
        decoded, idx = self._decode(probs)
        return decoded, idx, probs

    def _decode(self, probs: Tensor) -> tuple[Any, int | Tensor]:
        """`(decoded, index)` of one item's probabilities (see `predict`)."""
        if self.spec.get("activation") == "sigmoid" and probs.ndim <= 1:
            thresh = float(self.spec.get("thresh", 0.5))
            if probs.numel() == 1:
                idx = int(float(probs.reshape(())) > thresh)
                return (self.vocab[idx] if self.vocab is not None and len(self.vocab) == 2 else idx), idx
            mask = probs > thresh
            hits = mask.nonzero().flatten().tolist()
            return ([self.vocab[i] for i in hits] if self.vocab is not None else hits), mask
        if probs.ndim == 1:
            idx = int(probs.argmax())
            return (self.vocab[idx] if self.vocab is not None else idx), idx
        idx = probs.argmax(-1)
        return idx, idx

    def predict_batch(self, items: Sequence[Any] | Tensor, bs: int = 64) -> tuple[list, Tensor]:
        """Decoded predictions and probabilities for many items (paths, texts of equal token length, or a tensor).

        Each item is decoded as `predict` decodes it: the most likely class, or with a sigmoid activation every
        label above the exported threshold (a list per item).
        """
        outs = []
        for i in range(0, len(items), bs):
            chunk = items[i:i + bs]
            if isinstance(chunk, Tensor):
                xb = self._convert(chunk)
            else:
                xb = torch.cat([self.encode(it) for it in chunk])
            outs.append(self._forward(xb).cpu())
        probs = torch.cat(outs) if outs else torch.empty(0)
        decoded = [self._decode(row)[0] for row in probs] if probs.ndim == 2 else []
        return decoded, probs


def _onnx_model(file: Path, device: torch.device | str) -> nn.Module:
    """The ONNX model of an export folder, run by onnxruntime (see `deepfit.onnx_program`)."""
    from .onnx_program import OnnxFileError, OnnxModule

    if not file.is_file():
        raise FileNotFoundError(f"{file.parent} is not a complete deepfit export folder: {SPEC_FILE} names "
                                f"{file.name}, which is missing")
    try:
        return OnnxModule(file, device)
    except OnnxFileError as e:
        raise ExportError(str(e)) from None


def load_learner(path: str | Path, device: torch.device | str = "cpu", allow_pickle: bool = False) -> Any:
    """Rebuild an exported learner for inference, without unpickling anything.

    `path` is a folder written by `learn.export`: a registered architecture is rebuilt and its safetensors
    weights loaded; any other model was written as ONNX and runs with onnxruntime.

    A single file that needs pickle to load (a whole object
    saved with `torch.save`, a fastai `export.pkl`) raises `PickleRefusedError`: unpickling runs whatever
    code the file names. `allow_pickle=True` loads such a file with `torch.load(weights_only=False)` and
    returns the unpickled object; it CAN RUN ARBITRARY CODE, so use it only for files you trust.
    """
    from safetensors.torch import load_model


    path = Path(path)
    if path.is_file():
        reason = needs_pickle(path)
        if reason is not None and not allow_pickle:
            raise PickleRefusedError(
                f"refusing to load {path}: {reason}, and unpickling can run arbitrary code. deepfit exports are "
                f"folders holding {WEIGHTS_FILE} and {SPEC_FILE}; pass allow_pickle=True only if you trust this file",
                path=path, reason=reason)
        return safe_torch_load(path, allow_pickle=allow_pickle)
    spec_file, weights = path / SPEC_FILE, path / WEIGHTS_FILE
    if not spec_file.is_file():
        raise FileNotFoundError(f"{path} is not a deepfit export folder: expected {SPEC_FILE} and {WEIGHTS_FILE} "
                                f"(or {ONNX_FILE})")
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{spec_file}: not valid JSON ({e})") from None
    spec = validate_spec(spec, spec_file)
    if spec.get("model_file") is not None:  # a model outside the registry, exported as ONNX
        return InferenceLearner(_onnx_model(path / spec["model_file"], device), spec, device)
    if not weights.is_file():
        raise FileNotFoundError(f"{path} is not a deepfit export folder: expected {SPEC_FILE} and {WEIGHTS_FILE}")
    reason = needs_pickle(weights)
    if reason is not None:
        raise PickleRefusedError(f"refusing to load {weights}: {reason}, not safetensors; unpickling can run "
                                 "arbitrary code", path=weights, reason=reason)
    kwargs = spec.get("kwargs") or {}
    check_weights_fit(spec["arch"], kwargs, spec_file, weights)  # on the meta device: nothing allocated yet
    model = get_model(spec["arch"], **upgrade_kwargs(spec["arch"], kwargs))
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise ExportError(f"{weights}: not a valid safetensors file ({type(e).__name__}: {e})") from None
    if missing or unexpected:
        raise ExportError(f"{weights}: weights do not fit {spec['arch']}: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    return InferenceLearner(model, spec, device)
