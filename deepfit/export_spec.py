"""`learner.json` of an export folder: its schema, checked before anything is built from it.

`validate_spec(spec, file)` checks every field an export folder's `learner.json` may hold (no unknown keys,
the right types, sizes that make sense) and raises `ExportError` naming the file and the field, e.g.
`export/learner.json: field 'kwargs.width': expected a whole number, got 1000000.0`. `check_weights_fit`
builds the model on PyTorch's `meta` device (no memory is allocated) and compares every parameter's shape
with the safetensors header, so a `learner.json` asking for a huge model fails before anything is allocated.

Nothing here imports the Learner.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models.registry import get_model, spec, upgrade_kwargs
from .onnx_program import ONNX_FILE

EXPORT_FORMAT = "deepfit-export"
EXPORT_VERSION = 1
ACTIVATION_NAMES = ("softmax", "sigmoid", "exp", None)
ITEM_TFMS = ("Resize", "CenterCrop", "RandomResizedCrop")
MAX_INT = 2**31  # no size, count or index in a model's arguments is larger
MAX_HEADER = 100 * 2**20  # bytes of a safetensors JSON header


class ExportError(ValueError):
    """A learner cannot be exported, or an export folder cannot be loaded; the message says why."""


class _Fields:
    """Type checks that name the file and the field."""

    def __init__(self, file: Path):
        self.file = file

    def fail(self, field: str, message: str) -> ExportError:
        return ExportError(f"{self.file}: field {field!r}: {message}")

    def keys(self, obj: Any, field: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(field, f"expected an object, got {_kind(obj)}")
        unknown = [k for k in obj if k not in allowed]
        if unknown:
            raise self.fail(f"{field}.{unknown[0]}" if field else unknown[0],
                            f"unknown field (known: {', '.join(allowed)})")
        for k in required:
            if k not in obj:
                raise self.fail(f"{field}.{k}" if field else k, "missing")
        return obj

    def string(self, v: Any, field: str, choices: tuple | None = None, optional: bool = False) -> None:
        if v is None and optional:
            return
        if not isinstance(v, str):
            raise self.fail(field, f"expected a string, got {_kind(v)}")
        if choices is not None and v not in choices:
            raise self.fail(field, f"{v!r} is not one of {', '.join(map(repr, choices))}")

    def whole(self, v: Any, field: str, minimum: int = 0, optional: bool = False) -> None:
        if v is None and optional:
            return
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(field, f"expected a whole number, got {_kind(v)}")
        if not minimum <= v <= MAX_INT:
            raise self.fail(field, f"{v} is out of range [{minimum}, {MAX_INT}]")

    def numbers(self, v: Any, field: str, optional: bool = True) -> None:
        if v is None and optional:
            return
        if not isinstance(v, list) or not v:
            raise self.fail(field, f"expected a non-empty list of numbers, got {_kind(v)}")
        for i, x in enumerate(v):
            if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
                raise self.fail(f"{field}[{i}]", f"expected a finite number, got {_kind(x)}")

    def sizes(self, v: Any, field: str, n: int | None = None, optional: bool = True) -> None:
        if v is None and optional:
            return
        if not isinstance(v, list) or (n is not None and len(v) != n) or not v:
            raise self.fail(field, f"expected a list of {n or 'some'} whole numbers, got {_kind(v)}")
        for i, x in enumerate(v):
            self.whole(x, f"{field}[{i}]", minimum=1)

    def strings(self, v: Any, field: str, optional: bool = False) -> None:
        if v is None and optional:
            return
        if not isinstance(v, list):
            raise self.fail(field, f"expected a list of strings, got {_kind(v)}")
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise self.fail(f"{field}[{i}]", f"expected a string, got {_kind(x)}")


def _kind(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__
    text = {"dict": "an object", "list": "a list"}.get(text, text)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------- the schema
TOP = ("format", "version", "arch", "kwargs", "vocab", "input", "text", "activation", "thresh", "loss", "model_file")
INPUT = ("kind", "mean", "std", "item_tfms", "item_shape", "dtype", "mode", "size", "item_channels_first")
TEXT = ("itos", "tokenizer")
TOKENIZER = ("base", "pre_rules", "post_rules")


def validate_spec(spec_: Any, file: str | Path) -> dict[str, Any]:
    """Check a parsed `learner.json` against the schema; returns it, or raises `ExportError` naming the field."""
    f = _Fields(Path(file))
    if not isinstance(spec_, dict) or spec_.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{file}: not a deepfit export (no 'format': {EXPORT_FORMAT!r})")
    f.keys(spec_, "", TOP, required=("format", "version", "arch"))
    f.whole(spec_["version"], "version", minimum=1)
    if spec_["version"] > EXPORT_VERSION:
        raise f.fail("version", f"export version {spec_['version']} is newer than this deepfit reads "
                                f"({EXPORT_VERSION})")
    onnx = spec_.get("model_file") is not None  # a model outside the registry, written as ONNX
    if onnx:
        f.string(spec_["model_file"], "model_file", choices=(ONNX_FILE,))
        if spec_["arch"] is not None or spec_.get("kwargs"):
            raise f.fail("arch", "an ONNX export (model_file) has no registered architecture or arguments")
    else:
        f.string(spec_["arch"], "arch")
        try:
            spec(spec_["arch"])
        except KeyError as e:
            raise f.fail("arch", str(e).strip("'\"")) from None
        _validate_kwargs(f, spec_["arch"], spec_.get("kwargs", {}))
    vocab = spec_.get("vocab")
    if vocab is not None:
        if not isinstance(vocab, list):
            raise f.fail("vocab", f"expected a list of class names, got {_kind(vocab)}")
        for i, v in enumerate(vocab):
            if not isinstance(v, (str, int, float, bool)):
                raise f.fail(f"vocab[{i}]", f"expected a class name (string or number), got {_kind(v)}")
    _validate_input(f, spec_.get("input"))
    _validate_text(f, spec_.get("text"))
    f.string(spec_.get("activation"), "activation", choices=ACTIVATION_NAMES[:-1], optional=True)
    thresh = spec_.get("thresh")
    if isinstance(thresh, list):
        f.numbers(thresh, "thresh")
    elif thresh is not None and (not isinstance(thresh, (int, float)) or isinstance(thresh, bool)
                                 or not math.isfinite(thresh)):
        raise f.fail("thresh", f"expected a number, got {_kind(thresh)}")
    f.string(spec_.get("loss"), "loss", optional=True)
    if not onnx:
        _check_sizes(f, spec_)
    return spec_


def _validate_kwargs(f: _Fields, arch: str, kwargs: Any) -> None:
    """Arguments the architecture's constructor takes, each of the type of its default."""
    f.keys(kwargs, "kwargs", tuple(kwargs) if isinstance(kwargs, dict) else ())
    _plain(f, kwargs, "kwargs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            kwargs = upgrade_kwargs(arch, kwargs)
        except TypeError as e:
            raise f.fail("kwargs", str(e)) from None
    try:
        params = inspect.signature(spec(arch).builder).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for k, v in kwargs.items():
        p = params.get(k)
        if p is None or p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            raise f.fail(f"kwargs.{k}", f"{arch} takes no argument {k!r} (it takes {', '.join(params)})")
        kinds = _allowed_kinds(p)
        if kinds is not None and _json_kind(v) not in kinds:
            expected = " or ".join(sorted(_KIND_WORDS[k_] for k_ in kinds))
            raise f.fail(f"kwargs.{k}", f"expected {expected}, got {_kind(v)}")


_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
               "list": "a list", "dict": "an object", "null": "null"}
_ANNOTATION_KINDS = {"int": {"int"}, "float": {"int", "float"}, "bool": {"bool"}, "str": {"str"},
                     "Sequence": {"list"}, "list": {"list"}, "tuple": {"list"}, "Iterable": {"list"},
                     "Collection": {"list"}, "dict": {"dict"}, "Mapping": {"dict"}, "None": {"null"},
                     "Optional": {"null"}}


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(v), "other")


def _allowed_kinds(p: inspect.Parameter) -> set[str] | None:
    """The JSON kinds a constructor argument accepts, from its annotation (else its default); None: unknown."""
    ann = p.annotation
    if isinstance(ann, str) and ann:
        text = ann
        while "[" in text:  # keep the outer types only: Sequence[int] -> Sequence
            inner = re.sub(r"\[[^\[\]]*\]", "", text)
            if inner == text:
                break
            text = inner
        if text.startswith("Optional"):
            text += " | None"
        kinds: set[str] = set()
        for word in (w.strip() for w in text.split("|")):
            if word not in _ANNOTATION_KINDS:
                return None  # Any, a class, a callable...: not checked here (the meta build will tell)
            kinds |= _ANNOTATION_KINDS[word]
        if p.default is None:
            kinds.add("null")
        return kinds
    d = p.default
    if d is p.empty or d is None:
        return None
    for cls, kinds_ in ((bool, {"bool"}), (int, {"int"}), (float, {"int", "float"}), (str, {"str"}),
                        ((tuple, list), {"list"}), (dict, {"dict"})):
        if isinstance(d, cls):
            return kinds_
    return None


def _plain(f: _Fields, v: Any, field: str) -> None:
    """JSON values only, with no whole number beyond `MAX_INT` and no float that is not finite."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return
    if isinstance(v, int):
        if abs(v) > MAX_INT:
            raise f.fail(field, f"{v} is out of range (at most {MAX_INT})")
    elif isinstance(v, float):
        if not math.isfinite(v) or abs(v) > MAX_INT:
            raise f.fail(field, f"{v} is out of range")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _plain(f, x, f"{field}[{i}]")
    elif isinstance(v, dict):
        for k, x in v.items():
            _plain(f, x, f"{field}.{k}")


def _validate_input(f: _Fields, inp: Any) -> None:
    if inp is None:
        return
    f.keys(inp, "input", INPUT)
    f.string(inp.get("kind"), "input.kind", choices=("tensor", "image"), optional=True)
    f.numbers(inp.get("mean"), "input.mean")
    f.numbers(inp.get("std"), "input.std")
    if inp.get("std") is not None and any(s == 0 for s in inp["std"]):
        raise f.fail("input.std", "a standard deviation of 0")
    f.sizes(inp.get("item_shape"), "input.item_shape")
    f.sizes(inp.get("size"), "input.size", n=2)
    f.string(inp.get("dtype"), "input.dtype", optional=True)
    f.string(inp.get("mode"), "input.mode", choices=("L", "RGB", "RGBA", "LA", "CMYK"), optional=True)
    if "item_channels_first" in inp and not isinstance(inp["item_channels_first"], bool):
        raise f.fail("input.item_channels_first", f"expected true or false, got {_kind(inp['item_channels_first'])}")
    tfms = inp.get("item_tfms")
    if tfms is None:
        return
    if not isinstance(tfms, list):
        raise f.fail("input.item_tfms", f"expected a list, got {_kind(tfms)}")
    for i, t in enumerate(tfms):
        field = f"input.item_tfms[{i}]"
        f.keys(t, field, ("name", "size", "method", "resample"), required=("name", "size"))
        f.string(t["name"], f"{field}.name", choices=ITEM_TFMS)
        f.sizes(t["size"], f"{field}.size", n=2, optional=False)
        f.string(t.get("method"), f"{field}.method", optional=True)
        f.whole(t.get("resample"), f"{field}.resample", optional=True)


def _validate_text(f: _Fields, text: Any) -> None:
    if text is None:
        return
    from .text import rules

    f.keys(text, "text", TEXT, required=("itos",))
    f.strings(text["itos"], "text.itos")
    if not text["itos"]:
        raise f.fail("text.itos", "an empty vocabulary")
    tok = text.get("tokenizer")
    if tok is None:
        return
    f.keys(tok, "text.tokenizer", TOKENIZER, required=TOKENIZER)
    base = f.keys(tok["base"], "text.tokenizer.base", ("type", "lang", "special_tokens"), required=("type",))
    f.string(base["type"], "text.tokenizer.base.type", choices=("char", "spacy"))
    f.string(base.get("lang"), "text.tokenizer.base.lang", optional=True)
    f.strings(base.get("special_tokens"), "text.tokenizer.base.special_tokens", optional=True)
    for key in ("pre_rules", "post_rules"):
        f.strings(tok[key], f"text.tokenizer.{key}")
        for i, name in enumerate(tok[key]):
            if name not in rule_names(rules):
                raise f.fail(f"text.tokenizer.{key}[{i}]", f"{name!r} is not a rule of deepfit.text.rules")


def rule_names(module: Any) -> set[str]:
    """The tokenizer rules an export may name: public functions defined in `deepfit.text.rules`."""
    return {n for n, obj in vars(module).items() if inspect.isfunction(obj) and obj.__module__ == module.__name__
            and not n.startswith("_") and n != "apply_rules"}


def _check_sizes(f: _Fields, spec_: dict[str, Any]) -> None:
    """Class names and token vocabulary as long as the model's outputs and embedding."""
    kwargs = spec_.get("kwargs") or {}
    task = spec(spec_["arch"]).task
    vocab, text = spec_.get("vocab"), spec_.get("text")
    out_key = "n_out" if task in ("vision", "classifier", "transfer") else "vocab_sz"
    n_out = kwargs.get(out_key, kwargs.get("n_class", kwargs.get("c_out")))
    binary = n_out == 1 and spec_.get("activation") == "sigmoid"  # one output, two class names
    if (vocab is not None and isinstance(n_out, int) and task != "encoder" and len(vocab) != n_out
            and not (binary and len(vocab) == 2)):
        raise f.fail("vocab", f"{len(vocab)} names for a model with {n_out} outputs (kwargs.{out_key})")
    n_tokens = kwargs.get("vocab_sz", kwargs.get("vocab_size"))
    if text is not None and isinstance(n_tokens, int) and len(text["itos"]) != n_tokens:
        raise f.fail("text.itos", f"{len(text['itos'])} tokens for a model whose embedding has {n_tokens} rows "
                                  "(kwargs.vocab_sz)")


# ---------------------------------------------------------------------------------------------- weights
def read_safetensors_header(path: str | Path) -> dict[str, tuple[str, list[int]]]:
    """`{name: (dtype, shape)}` of a safetensors file, from its header only (nothing else is read)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= min(size - 8, MAX_HEADER):
            raise ExportError(f"{path}: not a valid safetensors file (header length {n}, file size {size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: not a valid safetensors file (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path}: not a valid safetensors file (header is not an object)")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if (not isinstance(entry, dict) or not isinstance(entry.get("shape"), list) or not isinstance(
                entry.get("dtype"), str) or not all(isinstance(d, int) and d >= 0 for d in entry["shape"])):
            raise ExportError(f"{path}: not a valid safetensors file (bad header entry for {name!r})")
        out[name] = (entry["dtype"], list(entry["shape"]))
    return out


def meta_model(arch: str, kwargs: dict[str, Any], file: str | Path) -> nn.Module:
    """The model `get_model(arch, **kwargs)` on the meta device: its shapes, without allocating memory."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.device("meta"):
                return get_model(arch, **upgrade_kwargs(arch, kwargs))
    except Exception as e:  # a builder rejecting its arguments: TypeError, ValueError, AssertionError...
        raise ExportError(f"{file}: field 'kwargs': {arch} cannot be built from these arguments "
                          f"({type(e).__name__}: {e})") from None


def check_weights_fit(arch: str, kwargs: dict[str, Any], spec_file: str | Path, weights: str | Path) -> None:
    """Raise `ExportError` unless the weights file holds exactly the model's tensors, with the same shapes."""
    header = read_safetensors_header(weights)
    model = meta_model(arch, kwargs, spec_file)
    params = model.state_dict(keep_vars=True)
    tied: dict[int, list[str]] = {}
    for name, t in params.items():
        tied.setdefault(id(t), []).append(name)
    for name, (_, shape) in header.items():
        if name not in params:
            raise ExportError(f"{weights}: tensor {name!r} is not a parameter of {arch} built from {spec_file} "
                              f"(field 'kwargs')")
        want = list(params[name].shape)
        if shape != want:
            raise ExportError(f"{weights}: tensor {name!r} has shape {shape}, but {arch} built from {spec_file} "
                              f"has {want} (field 'kwargs' does not match the weights)")
    missing = [n for n, t in params.items() if n not in header and not any(o in header for o in tied[id(t)])]
    if missing:
        raise ExportError(f"{weights}: no tensor for {missing[:5]} of {arch} built from {spec_file} "
                          "(field 'kwargs' does not match the weights)")
