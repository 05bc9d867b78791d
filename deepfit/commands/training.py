"""Training a built learner into a run folder: what every train-* command shares.

A command builds its data and learner, says how to train and report them in a `TrainJob`, and calls `train`,
which makes (or, with `--resume`, reopens and locks) the `RunDir`, decides `--precision auto`, resolves `--lr
auto`, writes `config.json` (with the threads and precision used, and why), trains each `Phase` with logging and
checkpoints, then keeps the best model, writes plots, reports, the export and `metrics.json`, and prints where
everything is.

The best model is the epoch of the last phase with the best first metric (highest accuracy...), or the lowest
validation loss without metrics (`SaveBestModel`); `metrics.json` reports it as `best` (with the value it was
chosen by) beside the `last` epoch, and the output says which epoch the export and models/best.pth hold.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..interpret.plots import plot_loss, plot_sched
from ..learner.callbacks.csv_logger import CSVLogger
from ..learner.callbacks.precision import MixedPrecision, decide_precision
from ..learner.callbacks.training import SaveBestModel, epoch_summary
from ..learner.checkpoint import CheckpointCallback
from ..run import BEST_NAME, LAST_NAME, METRICS_FILE, TENSORBOARD_DIR, Phase, RunDir
from ..safe_io import safe_torch_load
from ..threads import set_threads
from .errors import CLIError
from .stages import RunBestModel, StageCSVLogger

MAIN_PHASE = "checkpoint"  # the checkpoint prefix of the main phase (models/checkpoint_<n>.pt)


def say(text: str) -> None:
    print(text, flush=True)


def precision_callbacks(precision: str) -> list:
    """`[MixedPrecision]` for `--precision auto/bf16/fp16`, `[]` for fp32."""
    if precision == "fp32":
        return []
    if precision == "auto":
        return [MixedPrecision("auto")]
    return [MixedPrecision(torch.bfloat16 if precision == "bf16" else torch.float16)]


def precision_choice(learn, requested: str) -> dict[str, Any]:
    """What `learn` trains in and why (`--precision auto` decides now, from a validation batch), for config.json.

    (MixedPrecision's own line about its choice is not printed: `describe_machine` says it with the threads.)"""
    logger, learn.logger = learn.logger, lambda message: None
    try:
        record = decide_precision(learn)
    finally:
        learn.logger = logger
    if record.get("reason") in ("requested", "no MixedPrecision callback"):
        record["reason"] = f"requested (--precision {requested})"
    return record


def threads_choice(args: argparse.Namespace) -> dict[str, Any]:
    """Set torch's threads to `--threads` (default: `deepfit.threads.choose_threads()`); how many, and why."""
    return set_threads(getattr(args, "threads", None)).as_dict()


def describe_machine(precision: dict[str, Any], threads: dict[str, Any]) -> str:
    return (f"deepfit: precision {precision['precision']}: {precision['reason']}; {threads['threads']} thread(s): "
            f"{threads['reason']}")


@dataclass
class TrainJob:
    """What a train-* command hands to `train`: its learner, and how to train and report it."""

    learn: Any
    data: str  # the data, described for the first line and config.json
    title: str  # what is trained, for the first line ("simple_cnn", "bilstm classifier (3 epochs)")
    resolved: dict[str, Any] = field(default_factory=dict)  # more config.json "resolved" values
    phases: list[Phase] | None = None  # default: one phase of --epochs
    before_phase: Callable[[Phase], None] | None = None  # (un)freeze; also called before --lr auto
    fit: Callable[..., None] | None = None  # fit(learn, n_epoch, lr, cbs, **kw); default fit_one_cycle
    report: Callable[[Any, Path], Any] | None = None  # writes plots of the best model into the run folder
    export_kwargs: dict[str, Any] = field(default_factory=dict)
    export_loss: Any = None  # the loss the export records, when training used another
    save_files: Callable[[RunDir], Any] | None = None  # more files of a new run (a vocabulary)
    after: Callable[[Any, RunDir], dict[str, Any]] | None = None  # more results of the best model
    lr_finder: Callable[[Any, Path], float] | None = None  # --lr auto (default: find_lr's suggestion)
    stage_of: Callable[[Any], int] | None = None  # staged runs: metrics.csv's `stage` column (1-based)


def train(args: argparse.Namespace, command: str, job: TrainJob) -> int:
    """Train `job` into a new run folder (or continue `args.resume`) and report; returns the exit status."""
    learn = job.learn
    if args.quiet:
        learn.remove_cb(learn.progress)
    phases = job.phases or [Phase(MAIN_PHASE, args.epochs)]
    resuming = args.resume is not None
    run = RunDir.open(args.resume) if resuming else RunDir.create(args.out, args.name)
    with run.lock():
        learn.path = run.path
        say(f"deepfit: training {job.title} on {job.data}; run folder {run.path}")  # first: the data and its split
        machine = {"threads": threads_choice(args), "precision": precision_choice(learn, args.precision)}
        say(describe_machine(machine["precision"], machine["threads"]))
        if resuming:
            lr = run.read_config()["resolved"]["lr"]
            _note_resume(args, run, machine)
        else:
            lr = _start(args, command, job, run, phases, machine)
        learn.lr = lr
        start = time.perf_counter()
        try:
            best_cb = _train_phases(job, run, phases, lr, _hparams(args, lr), resuming)
        except FloatingPointError as e:  # NaN/inf loss or weights: nothing more is saved or exported
            raise diverged(e, lr, run) from None
        train_time = time.perf_counter() - start
        _finish(job, run)
        epochs = best_and_last(learn, best_cb, run)
        say(describe_epochs(epochs))
        results = {"valid_best": best_valid(learn)}
        say(f"validation (best model): {format_metrics(results['valid_best'])}  training time {train_time:.1f}s")
        if job.after is not None:
            results.update(job.after(learn, run))
        run.write_results({"history": learn.recorder.table(), "final": final_metrics(learn), **epochs,
                           "train_seconds": round(train_time, 2), **results})
        print_artefacts(run)
    return 0


def _start(args: argparse.Namespace, command: str, job: TrainJob, run: RunDir, phases: list[Phase],
           machine: dict[str, Any]) -> float:
    """A new run: resolve `--lr auto` (in the first phase's state), write config.json and the job's files."""
    learn = job.learn
    if job.before_phase is not None:
        job.before_phase(phases[0])
    if args.lr == "auto":
        lr = job.lr_finder(learn, run.path) if job.lr_finder is not None else find_lr(learn, run.path)[0]
    else:
        lr = args.lr
    options = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "config") and not callable(v)}
    resolved = {"lr": lr, **job.resolved, "data": job.data, "device": str(learn.dls.device), **machine,
                "n_params": sum(p.numel() for p in learn.model.parameters())}
    run.write_config(command, options, resolved)
    if job.save_files is not None:
        job.save_files(run)
    return lr


#: the options a resumed run may change (cli.RESUME_MAY_CHANGE less --quiet): more epochs, machine settings
RESUMED_OPTIONS = ("epochs", "threads", "workers", "cache")


def _note_resume(args: argparse.Namespace, run: RunDir, machine: dict[str, Any]) -> None:
    """A resumed run: say which options differ from the run's start (more epochs, machine settings), and record
    them and the threads and precision this session uses in config.json."""
    config = run.read_config()
    options = dict(config["options"])
    for name in RESUMED_OPTIONS:
        if name not in vars(args) or getattr(args, name) == options.get(name):
            continue
        was, now = options.get(name), getattr(args, name)
        if name == "epochs" and was is not None:
            say(f"deepfit: --epochs {now}: the run was started with --epochs {was}; it now trains to {now} epochs "
                f"(the learning-rate schedule is spread over {now} epochs from here on)")
        else:
            say(f"deepfit: --{name} {now}: this session's setting (the run was started with {was})")
        options[name] = now
    run.write_config(config["command"], options, {**config["resolved"], **machine})


def diverged(e: FloatingPointError, lr: float, run: RunDir) -> CLIError:
    """The one-line error of a run stopped by a NaN/inf loss or weights, naming the epoch and batch."""
    from ..learner.checkpoint import find_last_checkpoint

    epoch, batch, value = getattr(e, "epoch", None), getattr(e, "batch", None), getattr(e, "value", None)
    if epoch is None:
        message = str(e).strip().splitlines()[0]
    else:
        where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
        what = f"the training loss became {value}" if value is not None else "the weights became NaN/inf"
        message = f"training diverged: {what} at {where}; lower --lr (this run used --lr {lr:g})"
    try:
        kept = f"the last finite checkpoint is kept ({find_last_checkpoint(run.models_dir).name})"
    except FileNotFoundError:
        kept = "no checkpoint was written"
    return CLIError(message, hint=f"{kept}; nothing was exported. Try an --lr 10 times lower, or --lr auto")


def _hparams(args: argparse.Namespace, lr: float) -> dict[str, Any]:
    """The run's options as TensorBoard hyperparameters (plain values only)."""
    flat = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) and k != "command"}
    return {**flat, "lr": lr}


def run_callbacks(run: RunDir, hparams: dict[str, Any], checkpoint_name: str,
                  stage_of: Callable[[Any], int] | None = None) -> list:
    """Logging and checkpoint callbacks of a phase: metrics.csv (with a `stage` column when `stage_of` says each
    epoch's stage), TensorBoard, a checkpoint every epoch."""
    csv_path = run.file(METRICS_FILE)  # one file over every fit of the run
    cbs = [CSVLogger(csv_path, append=True) if stage_of is None else StageCSVLogger(csv_path, stage_of),
           CheckpointCallback(every="epoch", keep_last=2, name=checkpoint_name)]
    try:
        import tensorboard  # noqa: F401 - optional

        from ..learner.callbacks.tensorboard import TensorBoardCallback
    except ImportError:
        say("deepfit: note: tensorboard is not installed, no TensorBoard logs (pip install tensorboard)")
    else:
        cbs.append(TensorBoardCallback(log_dir=run.file(TENSORBOARD_DIR), hparams=hparams, n_misclassified=0))
    return cbs


def _train_phases(job: TrainJob, run: RunDir, phases: list[Phase], lr: float, hparams: dict[str, Any],
                  resuming: bool) -> SaveBestModel | None:
    """Train each pending phase; the best epoch of the last phase (by its first metric, else validation loss) is
    kept as best.pth. Returns that phase's `SaveBestModel` (None when it trains no epoch)."""
    learn = job.learn
    best = None
    for i, phase, checkpoint in run.pending_phases(phases, resuming):
        if job.before_phase is not None:
            job.before_phase(phase)
        cbs = run_callbacks(run, hparams, phase.name, job.stage_of)
        if i == len(phases) - 1:
            best = RunBestModel(fname=BEST_NAME, load_at_end=False)  # best over every fit (stage) of the phase
            cbs.append(best)
        kwargs = {"resume": checkpoint} if checkpoint is not None else {}
        if checkpoint is not None:
            say(f"resuming from {checkpoint}")
        if phase.epochs == 0:
            continue
        if job.fit is not None:
            job.fit(learn, phase.epochs, lr, cbs, **kwargs)
        else:
            learn.fit_one_cycle(phase.epochs, lr, cbs=cbs, **kwargs)
    return best if best is not None and best.best_epoch >= 0 else None


def best_and_last(learn, best_cb: SaveBestModel | None, run: RunDir) -> dict[str, Any]:
    """`{'best': {...}, 'last': {...}}` for metrics.json: the epochs' recorded rows; `best` also says the value it
    was chosen by (`monitor`, `mode`) and whether the export and models/best.pth hold it (`exported`)."""
    summary = epoch_summary(learn, best_cb.monitor if best_cb is not None else "auto")
    best = summary["best"]
    if best_cb is not None:  # the epoch best.pth holds (the same rule; a resumed run keeps its tracker's state)
        best = next((r for r in learn.recorder.table() if r["epoch"] == best_cb.best_epoch), best)
    exported = best_cb is not None and run.best_weights.exists()
    return {"best": {**(best or {}), "monitor": summary["monitor"], "mode": summary["mode"], "exported": exported},
            "last": dict(summary["last"] or {})}


def describe_epochs(epochs: dict[str, Any]) -> str:
    """One line: which epoch the export and models/best.pth hold, chosen by what, and the last epoch."""
    best, last = epochs["best"], epochs["last"]
    monitor, which = best["monitor"], "highest" if best["mode"] == "max" else "lowest"
    if not last:
        return "best model: no epoch was trained; the weights as they are are exported"
    if not best.get("exported") or best.get("epoch") is None:
        return f"best model: the last epoch ({last.get('epoch')}) is exported (no best epoch was saved)"
    value = best.get(monitor)
    at = f" ({monitor} {value:.4f})" if isinstance(value, (int, float)) else ""
    last_value = last.get(monitor)
    last_at = f" ({monitor} {last_value:.4f})" if isinstance(last_value, (int, float)) else ""
    return (f"best model: epoch {best['epoch']} by {which} {monitor}{at}, exported (export/, models/best.pth); "
            f"last epoch {last.get('epoch')}{last_at}")


def _finish(job: TrainJob, run: RunDir) -> None:
    """Save the last checkpoint, load the best weights, write the plots and reports, export."""
    learn = job.learn
    learn.save(LAST_NAME)
    if run.best_weights.exists():
        learn.model.load_state_dict(safe_torch_load(run.best_weights))
    if learn.recorder.values:
        plot_loss(learn, run.file("losses.png"))
        plot_sched(learn, run.file("lr_schedule.png"))
    if job.report is not None:
        job.report(learn, run.path)
    loss = learn.loss_func
    if job.export_loss is not None:
        learn.loss_func = job.export_loss
    try:
        learn.export(run.export_dir, **job.export_kwargs)
    finally:
        learn.loss_func = loss


def find_lr(learn, folder: Path | None, num_it: int = 100) -> tuple[float, Any]:
    """Run lr_find (plot saved as `lr_find.png` in `folder`) and return the suggested rate and the result."""
    plot = None if folder is None else Path(folder) / "lr_find.png"
    n_batches = len(learn.dls.train)
    res = learn.lr_find(num_it=min(num_it, max(n_batches * 4, 10)), plot=plot)
    lr = res.steepest if math.isfinite(res.steepest) else res.minimum
    if not math.isfinite(lr) or lr <= 0:
        raise CLIError("lr_find found no usable learning rate (the loss never fell)",
                       hint="give --lr explicitly, or check the data and model")
    say(f"lr_find: steepest {res.steepest:.2e}, minimum/10 {res.minimum:.2e} -> using lr {lr:.2e}"
        + (f" (plot: {res.plot_path})" if res.plot_path else ""))
    return float(lr), res


def lr_find_into(learn, out: str, what: str, num_it: int) -> int:
    """`lr-find`: the finder's plot in the folder `out`, and the suggested rate printed."""
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    learn.path = folder
    say(f"deepfit: lr_find for {what}")
    lr, _ = find_lr(learn, folder, num_it=num_it)
    print(f"suggested lr: {lr:.3g}")
    return 0


def best_valid(learn, dl=None) -> dict[str, float]:
    """Loss and metrics of the model as it is now (the best one after training) on `dl` (default: validation)."""
    values = learn.validate(dl)
    names = ["loss"] + [m.name for m in learn.metrics]
    return {n: float(v) for n, v in zip(names, values)}


def final_metrics(learn) -> dict[str, float]:
    """The last epoch's losses and metrics by name (empty before any epoch)."""
    table = learn.recorder.table()
    return {k: float(v) for k, v in table[-1].items() if k != "epoch"} if table else {}


def format_metrics(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items())


def print_artefacts(run: RunDir) -> None:
    say(f"run folder: {run.path}")
    artefacts = run.artefacts()
    width = max(len(k) for k in artefacts)
    for k, v in artefacts.items():
        say(f"  {k.ljust(width)}  {v}")
