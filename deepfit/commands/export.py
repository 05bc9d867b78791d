"""`deepfit export`: ONNX / TorchScript files of a run's exported model; `load_export` for every command using one."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from ..inference import load_learner
from ..learner.export import to_onnx, to_torchscript
from ..run import RunDir
from .errors import CLIError
from .training import say


def load_export(run: RunDir, resume_hint: str | None = None):
    """The run's exported model (`load_learner(run/export)`), or a one-line error if the run did not finish."""
    if not run.export_dir.is_dir():
        raise CLIError(f"'{run.path}' has no {run.export_dir.name}/ folder (the run did not finish)",
                       hint=f"resume it with `{resume_hint}`" if resume_hint else
                       f"resume it with --resume {run.path}, or train again")
    return load_learner(run.export_dir)


def example_input(inf) -> torch.Tensor:
    """A batch of two zero inputs of the shape the exported model takes."""
    if inf.spec.get("text") is not None:
        return torch.zeros(2, 16, dtype=torch.long)
    shape = (inf.spec.get("input") or {}).get("item_shape")
    if not shape:
        raise CLIError("the export does not record its input shape, so no example input can be made")
    return torch.zeros(2, *shape)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def cmd_export(args: argparse.Namespace) -> int:
    """Write ONNX and/or TorchScript files for a run's exported model."""
    run = RunDir.open(args.run_dir)
    with run.lock():
        inf = load_export(run)
        folder = run.export_dir
        say(f"export folder: {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})")
        shim = SimpleNamespace(model=inf.model, dls=None)
        example = example_input(inf)
        if args.onnx:
            try:
                path = to_onnx(shim, folder / "model.onnx", example=example)
            except ImportError as e:
                raise CLIError(f"ONNX export is not available: {e}", hint="pip install onnx onnxscript") from None
            except Exception as e:
                raise CLIError(f"ONNX export failed: {type(e).__name__}: {_first_line(e)}",
                               hint="try --torchscript instead") from None
            say(f"wrote {path}")
        if args.torchscript:
            try:
                path = to_torchscript(shim, folder / "model.torchscript.pt", example=example)
            except Exception as e:
                raise CLIError(f"TorchScript export failed: {type(e).__name__}: {_first_line(e)}",
                               hint="use the safetensors export (deepfit.load_learner) instead") from None
            say(f"wrote {path}")
    if not args.onnx and not args.torchscript:
        say("nothing else to write: add --onnx and/or --torchscript")
    return 0
