"""What every CLI command shares: errors, run folders, config files, training callbacks and the run's artefacts."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
RESULTS_FILE = "metrics.json"
EXPORT_DIR = "export"
TENSORBOARD_DIR = "tensorboard"
PRECISIONS = ("fp32", "bf16", "fp16")


class CLIError(Exception):
    """A failure reported as one line `deepfit: error: ...`, with an optional hint line; `code` is the exit status."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.hint, self.code = hint, code


class UsageError(CLIError):
    """A bad argument or option (exit status 2)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, EXIT_USAGE)


# ---------------------------------------------------------------------------------------------- argument types
def _whole_number(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
    return v


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _number(text: str, expected: str = "a number") -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def lr_value(text: str) -> float | str:
    """`--lr`: a positive float or `auto` (run lr_find and take its suggestion)."""
    if text == "auto":
        return "auto"
    _number(text, "a number or 'auto'")
    return positive_float(text)


def positive_float(text: str) -> float:
    v = _number(text)
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def probability(text: str) -> float:
    v = _number(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v}")
    return v


def non_negative_float(text: str) -> float:
    v = _number(text)
    if v < 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def add_training_options(p: argparse.ArgumentParser, epochs: int, lr: str, bs: int) -> None:
    """Options shared by the training commands."""
    p.add_argument("--epochs", type=non_negative_int, default=epochs, help="number of epochs (one-cycle schedule)")
    p.add_argument("--lr", type=lr_value, default=lr,
                   help="peak learning rate, or 'auto' to run lr_find and use its suggestion")
    p.add_argument("--bs", type=positive_int, default=bs, help="batch size")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="training precision")
    p.add_argument("--seed", type=int, default=0, help="random seed (data split, shuffling, initialisation)")
    p.add_argument("--out", default="runs", help="parent folder of the run folder")
    p.add_argument("--name", default=None, help="run folder name (default: a timestamp)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the interrupted run in RUN_DIR from its last checkpoint (its config.json is used)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch table")


# ---------------------------------------------------------------------------------------------- run folders
def new_run_dir(out: str | Path, name: str | None = None) -> Path:
    """A new folder `out/<name or timestamp>` (a numbered suffix when it exists), as an absolute path
    (the Learner resolves relative paths against `learn.path`, which is this folder)."""
    base = Path(out).resolve()
    stem = name or time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base / stem, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stem}-{n}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise CLIError(f"cannot create the run folder {run_dir}: {e.strerror}", hint="choose another --out") from None
    return run_dir


def existing_run_dir(path: str | Path, need: Sequence[str] = (CONFIG_FILE,)) -> Path:
    """`path` (made absolute) as a run folder written by a training command, or a one-line error."""
    run_dir = Path(path).resolve()
    if not run_dir.is_dir():
        raise UsageError(f"run folder '{run_dir}' does not exist", hint="give a folder written by a deepfit train-* "
                         "command (they print it at the end)")
    for f in need:
        if not (run_dir / f).exists():
            raise CLIError(f"'{run_dir}' is not a complete deepfit run folder: it has no {f}",
                           hint="give a folder written by a deepfit train-* command")
    return run_dir


def write_config(run_dir: Path, command: str, args: argparse.Namespace, resolved: dict[str, Any]) -> Path:
    """`config.json`: the command, every option as given (enough to re-run), and the values resolved from them."""
    import torch

    from .. import __version__

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "resume") and not callable(v)}
    config = {"command": command, "options": options, "resolved": resolved,
              "rerun": rerun_line(command, options), "versions": {"deepfit": __version__, "torch": torch.__version__},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = run_dir / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CLIError(f"cannot read {path}: {e}", hint="the run folder is damaged; start a new run") from None


def rerun_line(command: str, options: dict[str, Any]) -> str:
    """A `deepfit ...` command line that repeats a run with these options."""
    parts = ["deepfit", command]
    for positional in ("data", "text"):
        if options.get(positional) is not None:
            parts.append(str(options[positional]))
    for k, v in options.items():
        if k in ("data", "text", "name") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, (list, tuple)):
            v = ",".join(str(o) for o in v)
        parts.extend([flag] if v is True else [flag, str(v)])
    return " ".join(parts)


def options_from_config(config: dict[str, Any], command: str, args: argparse.Namespace) -> argparse.Namespace:
    """The options of the run being resumed (from its config.json), keeping this call's `--resume`/`--quiet`."""
    if config.get("command") != command:
        raise UsageError(f"--resume: {args.resume!r} is a {config.get('command')!r} run, not {command!r}",
                         hint=f"resume it with `deepfit {config.get('command')} --resume {args.resume}`")
    merged = argparse.Namespace(**{**config["options"], "resume": args.resume, "quiet": args.quiet,
                                   "func": getattr(args, "func", None)})
    return merged


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------- training
def precision_cb(precision: str):
    """The `MixedPrecision` callback for `--precision`, or None for fp32."""
    if precision == "fp32":
        return None
    import torch

    from ..learner.callbacks.precision import MixedPrecision

    return MixedPrecision(torch.bfloat16 if precision == "bf16" else torch.float16)


def run_callbacks(learn, run_dir: Path, hparams: dict[str, Any], checkpoint_name: str):
    """Logging and checkpoint callbacks of a run: metrics.csv, TensorBoard, a checkpoint every epoch."""
    from ..learner.callbacks.csv_logger import CSVLogger
    from ..learner.checkpoint import CheckpointCallback

    cbs = [CSVLogger(run_dir / METRICS_FILE, append=True),  # one file over every fit of the run
           CheckpointCallback(every="epoch", keep_last=2, name=checkpoint_name)]
    try:
        import tensorboard  # noqa: F401

        from ..learner.callbacks.tensorboard import TensorBoardCallback

        flat = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}
        cbs.append(TensorBoardCallback(log_dir=run_dir / TENSORBOARD_DIR, hparams=flat, n_misclassified=0))
    except ImportError:
        say("deepfit: note: tensorboard is not installed, no TensorBoard logs (pip install tensorboard)")
    return cbs


def find_lr(learn, run_dir: Path | None, num_it: int = 100) -> tuple[float, Any]:
    """Run lr_find (plot saved as `lr_find.png` in `run_dir`) and return the suggested rate and the result."""
    plot = None if run_dir is None else run_dir / "lr_find.png"
    n_batches = len(learn.dls.train)
    res = learn.lr_find(num_it=min(num_it, max(n_batches * 4, 10)), plot=plot)
    lr = res.steepest if math.isfinite(res.steepest) else res.minimum
    if not math.isfinite(lr) or lr <= 0:
        raise CLIError("lr_find found no usable learning rate (the loss never fell)",
                       hint="give --lr explicitly, or check the data and model")
    say(f"lr_find: steepest {res.steepest:.2e}, minimum/10 {res.minimum:.2e} -> using lr {lr:.2e}"
        + (f" (plot: {res.plot_path})" if res.plot_path else ""))
    return float(lr), res


def phases_plan(freeze_epochs: int, epochs: int) -> list[tuple[str, int]]:
    """`[(checkpoint prefix, epochs)]`: an optional frozen phase, then the main one."""
    plan = [("frozen", freeze_epochs)] if freeze_epochs > 0 else []
    return plan + [("checkpoint", epochs)]


def resume_target(run_dir: Path, prefix: str) -> Path | None:
    """The newest `models/<prefix>_*.pt` checkpoint of a run, if any."""
    from ..learner.checkpoint import find_last_checkpoint

    try:
        return find_last_checkpoint(run_dir / "models", prefix=prefix + "_")
    except FileNotFoundError:
        return None


def train_phases(learn, run_dir: Path, plan: list[tuple[str, int]], lr: float, hparams: dict[str, Any],
                 resuming: bool, before_phase: Callable[[int, str], None] | None = None,
                 fit: Callable[..., None] | None = None) -> None:
    """Train each phase with `fit_one_cycle` (or `fit(learn, n_epoch, lr, cbs, **kw)`), logging and checkpointing.

    When `resuming`, completed phases are skipped and the interrupted one continues from its last checkpoint.
    The best model of the last phase (by validation loss) is kept as `models/best.pth`.
    """
    from ..learner.callbacks.training import SaveBestModel

    for i, (prefix, n_epoch) in enumerate(plan):
        later_started = any(resume_target(run_dir, p) for p, _ in plan[i + 1:]) if resuming else False
        if later_started:
            continue
        if before_phase is not None:
            before_phase(i, prefix)
        target = resume_target(run_dir, prefix) if resuming else None
        cbs = run_callbacks(learn, run_dir, hparams, prefix)
        if i == len(plan) - 1:
            cbs.append(SaveBestModel(monitor="valid_loss", fname="best", load_at_end=False))
        kwargs = {"resume": target} if target is not None else {}
        if target is not None:
            say(f"resuming from {target}")
        if n_epoch > 0:
            if fit is not None:
                fit(learn, n_epoch, lr, cbs, **kwargs)
            else:
                learn.fit_one_cycle(n_epoch, lr, cbs=cbs, **kwargs)


def finish_run(learn, run_dir: Path, report: Callable[[Any, Path], dict[str, Path]] | None = None,
               export_kwargs: dict[str, Any] | None = None, export_loss: Any = None) -> dict[str, Path]:
    """Save the last checkpoint, load the best weights, write the plots and `report`'s files, export.

    `export_loss` replaces the loss while exporting (e.g. plain cross-entropy for label smoothing: the
    activation that decodes predictions is the same softmax). Returns the artefacts by description.
    """
    import torch

    from ..interpret.plots import plot_loss, plot_sched

    out: dict[str, Path] = {}
    out["last checkpoint"] = learn.save("last")
    best = run_dir / "models" / "best.pth"
    if best.exists():
        learn.model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
        out["best checkpoint"] = best
    if learn.recorder.values:
        out["losses plot"] = plot_loss(learn, run_dir / "losses.png")
        out["lr schedule plot"] = plot_sched(learn, run_dir / "lr_schedule.png")
    if report is not None:
        for k, v in report(learn, run_dir).items():
            out[k.replace("_", " ")] = v
    loss = learn.loss_func
    if export_loss is not None:
        learn.loss_func = export_loss
    try:
        out["export"] = learn.export(run_dir / EXPORT_DIR, **(export_kwargs or {}))
    finally:
        learn.loss_func = loss
    if (run_dir / METRICS_FILE).exists():
        out["metrics"] = run_dir / METRICS_FILE
    out["config"] = run_dir / CONFIG_FILE
    if (run_dir / TENSORBOARD_DIR).exists():
        out["tensorboard logs"] = run_dir / TENSORBOARD_DIR
    if (run_dir / "lr_find.png").exists():
        out["lr_find plot"] = run_dir / "lr_find.png"
    return out


def best_valid(learn, dl=None) -> dict[str, float]:
    """Loss and metrics of the model as it is now (the best one after `finish_run`) on `dl` (default: validation)."""
    values = learn.validate(dl)
    names = ["loss"] + [m.name for m in learn.metrics]
    return {n: float(v) for n, v in zip(names, values)}


def format_metrics(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items())


def write_results(run_dir: Path, learn, train_seconds: float, extra: dict[str, Any] | None = None) -> Path:
    """`metrics.json`: the per-epoch history, the best model's validation results, timing and extras (test, TTA)."""
    results = {"history": learn.recorder.table(), "final": final_metrics(learn),
               "train_seconds": round(train_seconds, 2), **(extra or {})}
    path = run_dir / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return path


def print_artifacts(run_dir: Path, artifacts: dict[str, Path]) -> None:
    say(f"run folder: {run_dir}")
    width = max(len(k) for k in artifacts)
    for k, v in artifacts.items():
        say(f"  {k.ljust(width)}  {v}")


def final_metrics(learn) -> dict[str, float]:
    """The last epoch's losses and metrics by name (empty before any epoch)."""
    table = learn.recorder.table()
    return {k: float(v) for k, v in table[-1].items() if k != "epoch"} if table else {}


def eprint(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
