"""`summary(learn)`: a table of the model's layers for one real batch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .hooks import Hooks


def one_batch(learn, dl=None) -> tuple[Any, Any]:
    """The first `(xb, yb)` of `dl` (default: validation, else training) without advancing its epoch."""
    if dl is None:
        dl = learn.dls.valid if getattr(learn.dls, "valid", None) is not None else learn.dls.train
    if dl is None:
        raise ValueError("summary: the Learner's DataLoaders have neither a validation nor a training loader")
    epoch = getattr(dl, "epoch", None)
    try:
        batch = next(iter(dl))
    except StopIteration:
        raise ValueError("summary: the loader yielded no batch") from None
    finally:
        if epoch is not None:
            dl.epoch = epoch
    return batch[0], batch[1]


def shape_of(o: Any) -> str:
    """`'64×32×14×14'` for a tensor, a list of shapes for tuples/lists, `'-'` otherwise."""
    if isinstance(o, Tensor):
        return "×".join(str(s) for s in o.shape) if o.ndim else "scalar"
    if isinstance(o, (tuple, list)):
        inner = [shape_of(x) for x in o]
        inner = [s for s in inner if s != "-"]
        return "(" + ", ".join(inner) + ")" if inner else "-"
    return "-"


def _own_params(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters(recurse=False))


def _trainable_flag(params: list[nn.Parameter]) -> str:
    if not params:
        return ""
    flags = {p.requires_grad for p in params}
    return "partial" if len(flags) == 2 else str(flags.pop())


def summary_rows(learn, xb: Any = None) -> list[dict[str, Any]]:
    """One dict per layer (leaf modules, and containers holding parameters of their own), in
    execution order: `name, type, output_shape, params, trainable`. Layers not run by the forward
    pass come last with output shape `'-'`."""
    model: nn.Module = learn.model
    if xb is None:
        xb, _ = one_batch(learn)
    named = [(n, m) for n, m in model.named_modules() if n and (not list(m.children()) or _own_params(m))]
    if not named and _own_params(model):
        named = [("(model)", model)]
    order: list[int] = []
    shapes: dict[int, str] = {}
    calls: dict[int, int] = {}

    def record(hook, module, inp, out):
        key = id(module)
        if key not in shapes:
            order.append(key)
        shapes[key] = shape_of(out)
        calls[key] = calls.get(key, 0) + 1

    was_training = model.training
    device = next(iter(model.parameters()), torch.empty(0, device=getattr(learn.dls, "device", "cpu"))).device
    from ..data.core import to_device

    xb = to_device(xb, device)
    model.eval()
    try:
        with Hooks([m for _, m in named], record), torch.no_grad():
            model(*xb) if isinstance(xb, (tuple, list)) else model(xb)
    finally:
        model.train(was_training)

    by_id = {id(m): (n, m) for n, m in named}
    ordered = [by_id[k] for k in order if k in by_id] + [(n, m) for n, m in named if id(m) not in shapes]
    rows = []
    for name, module in ordered:
        params = _own_params(module)
        n_calls = calls.get(id(module), 0)
        rows.append(dict(name=name, type=type(module).__name__, output_shape=shapes.get(id(module), "-"),
                         params=sum(p.numel() for p in params), trainable=_trainable_flag(params),
                         calls=n_calls))
    return rows


def summary(learn, xb: Any = None, print_it: bool = True) -> str:
    """A text table of each layer's name, type, output shape, parameter count and trainable flag for
    one real batch (the first validation batch unless `xb` is given), with the parameter totals and
    the trainable/frozen split. Printed (unless `print_it=False`) and returned."""
    model: nn.Module = learn.model
    if xb is None:
        xb, _ = one_batch(learn)
    rows = summary_rows(learn, xb)
    header = ["Layer", "Type", "Output shape", "Params", "Trainable"]
    table = [[r["name"] + (f" (×{r['calls']})" if r["calls"] > 1 else ""), r["type"], r["output_shape"],
              f"{r['params']:,}", r["trainable"]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
    align = [str.ljust, str.ljust, str.ljust, str.rjust, str.ljust]

    def line(cells):
        return "  ".join(a(c, w) for a, c, w in zip(align, cells, widths)).rstrip()

    # Totals from the model's own parameter list (shared parameters counted once).
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    rule = "=" * max(len(line(header)), 40)
    in_shape = shape_of(xb)
    lines = [f"{type(model).__name__} summary (input {in_shape})", rule, line(header), "-" * len(rule)]
    lines += [line(row) for row in table]
    lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Frozen params: {total - trainable:,}"]
    opt = getattr(learn, "opt", None)
    if opt is not None:
        lines.append(f"Optimizer: {type(opt).__name__}")
    loss = learn.loss_func
    lines.append(f"Loss: {getattr(loss, '__name__', type(loss).__name__)}")
    text = "\n".join(lines)
    if print_it:
        print(text)
    return text
