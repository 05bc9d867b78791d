"""`deepfit predict`, `summary`, `export` and `download`: using a finished run folder."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from .common import (
    CONFIG_FILE,
    EXPORT_DIR,
    METRICS_FILE,
    RESULTS_FILE,
    CLIError,
    UsageError,
    existing_run_dir,
    read_config,
    say,
)


def load_export(run_dir: Path):
    """The run's exported model (`load_learner(run_dir/export)`)."""
    from ..learner.export import load_learner

    folder = run_dir / EXPORT_DIR
    if not folder.is_dir():
        raise CLIError(f"'{run_dir}' has no {EXPORT_DIR}/ folder (the run did not finish)",
                       hint=f"resume it with --resume {run_dir}, or train again")
    return load_learner(folder)


def predict_items(inf, items: list[str]) -> list[dict[str, Any]]:
    """One result dict per item: the input, the predicted class, its probability and the top 3."""
    is_text = inf.spec.get("text") is not None
    results = []
    for item in items:
        path = Path(item)
        if is_text:
            source = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else item
        else:
            if not path.is_file():
                raise UsageError(f"image file '{item}' does not exist", hint="give paths of image files")
            source = path
        label, idx, probs = inf.predict(source)
        top = probs.float().topk(min(3, len(probs)))
        results.append({"input": item, "prediction": label, "index": idx, "probability": float(probs[idx]),
                        "top": [{"class": inf.vocab[int(i)] if inf.vocab else int(i), "probability": float(v)}
                                for v, i in zip(top.values, top.indices)]})
    return results


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict the class of image files or texts with a run's exported model."""
    run_dir = existing_run_dir(args.run_dir)
    if read_config(run_dir).get("command") == "train-lm":
        raise UsageError(f"'{run_dir}' is a language model: it predicts text, not classes",
                         hint=f"use `deepfit generate {run_dir} --prompt ...`")
    inf = load_export(run_dir)
    results = predict_items(inf, args.items)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            shown = r["input"] if len(r["input"]) <= 60 else r["input"][:57] + "..."
            print(f"{shown}\t{r['prediction']}\t{r['probability']:.4f}")
    return 0


def _read_metrics(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a run's configuration, results per epoch, model size and files."""
    run_dir = existing_run_dir(args.run_dir)
    config = read_config(run_dir)
    say(f"run folder: {run_dir}")
    say(f"command:    {config.get('rerun', config.get('command'))}")
    for k, v in (config.get("resolved") or {}).items():
        if isinstance(v, list) and len(v) > 12:
            v = v[:12] + ["..."]
        say(f"  {k}: {v}")
    rows = _read_metrics(run_dir)
    if rows:
        names = list(rows[0])
        widths = [max(len(n), 9) for n in names]
        say("  ".join(n.ljust(w) for n, w in zip(names, widths)))
        for r in rows:
            cells = []
            for n, w in zip(names, widths):
                v = r[n]
                try:
                    v = f"{float(v):.4f}" if n != "epoch" else v
                except ValueError:
                    pass
                cells.append(str(v).ljust(w))
            say("  ".join(cells).rstrip())
        if "valid_loss" in names:
            best = min(rows, key=lambda r: float(r["valid_loss"]))
            say(f"best epoch by valid_loss: {best['epoch']} ({float(best['valid_loss']):.4f})")
    else:
        say("no epochs recorded yet")
    results_file = run_dir / RESULTS_FILE
    if results_file.exists():
        results = json.loads(results_file.read_text(encoding="utf-8"))
        for key, label in (("valid_best", "validation (best model)"), ("test", "test")):
            if results.get(key):
                say(f"{label}: " + "  ".join(f"{k} {v:.4f}" for k, v in results[key].items()))
        if results.get("valid_tta_accuracy") is not None:
            say(f"validation with TTA: accuracy {results['valid_tta_accuracy']:.4f}")
        say(f"training time: {results.get('train_seconds', float('nan')):.1f}s")
    if (run_dir / EXPORT_DIR).is_dir():
        inf = load_export(run_dir)
        n = sum(p.numel() for p in inf.model.parameters())
        say(f"model: {inf.spec['arch']} ({n:,} parameters)"
            + (f", {len(inf.vocab)} {'tokens' if config.get('command') == 'train-lm' else 'classes'}"
               if inf.vocab else ""))
    files = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file())
    say(f"files ({len(files)}):")
    for f in files:
        if f.parts[0] != "tensorboard":
            say(f"  {f}")
    if any(f.parts[0] == "tensorboard" for f in files):
        say(f"  tensorboard/ (view with: tensorboard --logdir {run_dir / 'tensorboard'})")
    return 0


def _example(inf):
    import torch

    inp = inf.spec.get("input") or {}
    if inf.spec.get("text") is not None:
        return torch.zeros(2, 16, dtype=torch.long)
    shape = inp.get("item_shape")
    if not shape:
        raise CLIError("the export does not record its input shape, so no example input can be made")
    return torch.zeros(2, *shape)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def cmd_export(args: argparse.Namespace) -> int:
    """Write ONNX and/or TorchScript files for a run's exported model."""
    from types import SimpleNamespace

    from ..learner.export import to_onnx, to_torchscript

    run_dir = existing_run_dir(args.run_dir, need=(CONFIG_FILE,))
    inf = load_export(run_dir)
    folder = run_dir / EXPORT_DIR
    say(f"export folder: {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    shim = SimpleNamespace(model=inf.model, dls=None)
    example = _example(inf)
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


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch a built-in dataset into the cache folder."""
    from ..data import fashion_mnist

    if args.name != "fashion-mnist":
        raise UsageError(f"unknown dataset {args.name!r}", hint="available: fashion-mnist")
    train, test = fashion_mnist(download=True)
    say(f"Fashion-MNIST ready: {len(train)} training and {len(test)} test images")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered architectures (`--arch` values)."""
    from ..models import MODELS

    for name in sorted(MODELS):
        print(name)
    return 0
