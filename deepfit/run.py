"""A run folder: the files one training run writes, and the one object that owns them.

`RunDir.create(out, name)` makes `out/<name or a timestamp>/`; `RunDir.open(path)` reopens one (to resume it or
read it). The run folder holds:

    config.json      the command, its options as given, the values resolved from them, a `rerun` line
    metrics.csv      one row per epoch (written by `CSVLogger` as training goes)
    metrics.json     the results: per-epoch history, the best model's validation results, timing, extras
    models/          per-epoch checkpoints `<phase>_<n>.pt`, `best.pth`, `last.pt` (and `encoder.pth`)
    export/          the exported model (`deepfit.load_learner`)
    tensorboard/, *.png, vocab.json ...

A run trains in `Phase`s (an optional frozen phase, then the main one); each phase checkpoints under its own name,
so a resumed run skips the phases that are done and continues the interrupted one from its last checkpoint.

One process writes to a run folder at a time: `with run.lock():` holds an exclusive lock (`.lock`, holding the
writer's pid) and refuses a second writer with one line. The lock is an `flock`, so the kernel drops it when its
process dies: a lock left by a killed run is stale and is taken over.

Nothing here imports torch (the CLI reads run folders before it knows whether it needs torch).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: run folders are not locked
    fcntl = None  # type: ignore[assignment]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
RESULTS_FILE = "metrics.json"
EXPORT_DIR = "export"
MODELS_DIR = "models"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
BEST_NAME, LAST_NAME = "best", "last"

# What `artefacts()` lists, in this order, when it exists: (description, path in the run folder).
KNOWN_FILES = (
    ("config", CONFIG_FILE),
    ("metrics", METRICS_FILE),
    ("results", RESULTS_FILE),
    ("best checkpoint", f"{MODELS_DIR}/{BEST_NAME}.pth"),
    ("last checkpoint", f"{MODELS_DIR}/{LAST_NAME}.pt"),
    ("encoder", f"{MODELS_DIR}/encoder.pth"),
    ("export", EXPORT_DIR),
    ("vocabulary", "vocab.json"),
    ("losses plot", "losses.png"),
    ("lr schedule plot", "lr_schedule.png"),
    ("lr_find plot", "lr_find.png"),
    ("confusion matrix plot", "confusion_matrix.png"),
    ("top losses", "top_losses.png"),
    ("top losses", "top_losses.txt"),
    ("tensorboard logs", TENSORBOARD_DIR),
)


class RunDirError(Exception):
    """A run folder that cannot be made, found, read or locked. `usage`: the caller named a wrong folder."""

    def __init__(self, message: str, hint: str | None = None, usage: bool = False):
        super().__init__(message)
        self.hint, self.usage = hint, usage


@dataclass(frozen=True)
class Phase:
    """A stretch of training with its own checkpoints (`models/<name>_<n>.pt`)."""

    name: str
    epochs: int


class RunDir:
    """The folder of one training run (an absolute path: the Learner resolves relative paths against it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    def __repr__(self) -> str:
        return f"RunDir('{self.path}')"

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------------------------------ create, open
    @classmethod
    def create(cls, out: str | Path, name: str | None = None) -> RunDir:
        """A new folder `out/<name or a timestamp>` (with a numbered suffix when that exists)."""
        stem = name or time.strftime("%Y%m%d-%H%M%S")
        if not is_plain_name(stem):
            raise RunDirError(f"run name {stem!r} is not a plain folder name", usage=True,
                              hint="give a --name without '/', '\\' or '..': the run folder is made inside --out")
        base = Path(out).resolve()
        try:
            base.mkdir(parents=True, exist_ok=True)
            for n in range(1, 10_000):
                path = base / (stem if n == 1 else f"{stem}-{n}")
                try:
                    path.mkdir()
                    return cls(path)
                except FileExistsError:
                    continue
        except OSError as e:
            raise RunDirError(f"cannot create a run folder in {base}: {e.strerror}", hint="choose another --out",
                              usage=True) from None
        raise RunDirError(f"too many runs named {stem!r} in {base}", hint="choose another --name", usage=True)

    @classmethod
    def open(cls, path: str | Path, need: Sequence[str] = (CONFIG_FILE,)) -> RunDir:
        """An existing run folder holding the files `need`."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"run folder '{run.path}' does not exist", usage=True,
                              hint="give a folder written by a deepfit train-* command (they print it at the end)")
        for name in need:
            if not (run.path / name).exists():
                raise RunDirError(f"'{run.path}' is not a complete deepfit run folder: it has no {name}",
                                  hint="give a folder written by a deepfit train-* command")
        return run

    # ------------------------------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def models_dir(self) -> Path:
        return self.path / MODELS_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    @property
    def best_weights(self) -> Path:
        """`models/best.pth`: the state dict of the epoch with the lowest validation loss."""
        return self.models_dir / f"{BEST_NAME}.pth"

    @property
    def last_checkpoint(self) -> Path:
        """`models/last.pt`: the full checkpoint at the end of training."""
        return self.models_dir / f"{LAST_NAME}.pt"

    def files(self) -> list[Path]:
        """Every file of the run, relative to its folder, sorted (the lock file left out)."""
        return sorted(p.relative_to(self.path) for p in self.path.rglob("*") if p.is_file() and p.name != LOCK_FILE)

    def artefacts(self) -> dict[str, Path]:
        """The run's files by description (`KNOWN_FILES` first, then any other top-level file)."""
        out: dict[str, Path] = {}
        known = set()
        for description, name in KNOWN_FILES:
            known.add(name.split("/")[0])
            if (self.path / name).exists():
                out[description] = self.path / name
        for p in sorted(self.path.iterdir()):
            if p.name not in known and p.name != LOCK_FILE and not p.name.startswith("."):
                out[p.stem.replace("_", " ")] = p
        return out

    # ------------------------------------------------------------------------------------------ config
    def write_config(self, command: str, options: dict[str, Any], resolved: dict[str, Any]) -> Path:
        """`config.json`: the command, every option as given (enough to re-run), and the values resolved."""
        config = {"command": command, "options": options, "resolved": resolved, "rerun": rerun_line(command, options),
                  "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path = self.path / CONFIG_FILE
        path.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def read_config(self) -> dict[str, Any]:
        return read_config_file(self.path / CONFIG_FILE)

    # ------------------------------------------------------------------------------------------ phases
    def phase_checkpoint(self, phase: Phase) -> Path | None:
        """The newest checkpoint of `phase`, if it wrote any."""
        from .learner.checkpoint import find_last_checkpoint  # torch: only when training

        try:
            return find_last_checkpoint(self.models_dir, prefix=phase.name + "_")
        except FileNotFoundError:
            return None

    def pending_phases(self, plan: Sequence[Phase], resuming: bool) -> list[tuple[int, Phase, Path | None]]:
        """`(index, phase, checkpoint to resume from)` for each phase still to train.

        A fresh run trains every phase from scratch. A resumed run skips the phases followed by a phase that has
        checkpoints (they are done) and continues each remaining one from its newest checkpoint, if it has one.
        """
        out = []
        for i, phase in enumerate(plan):
            if resuming and any(self.phase_checkpoint(p) for p in plan[i + 1:]):
                continue
            out.append((i, phase, self.phase_checkpoint(phase) if resuming else None))
        return out

    # ------------------------------------------------------------------------------------------ results
    def write_results(self, results: dict[str, Any]) -> Path:
        """`metrics.json`: the history, the best model's results, timing and extras (test, TTA)."""
        path = self.path / RESULTS_FILE
        path.write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
        return path

    def read_results(self) -> dict[str, Any] | None:
        path = self.path / RESULTS_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def read_metrics(self) -> list[dict[str, str]]:
        """The rows of `metrics.csv` (empty before the first epoch)."""
        import csv

        path = self.path / METRICS_FILE
        if not path.exists():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    # ------------------------------------------------------------------------------------------ lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder's exclusive writer lock for the `with` block (refuse if another process holds it)."""
        handle = self._acquire()
        try:
            yield
        finally:
            self._release(handle)

    def _acquire(self):
        if fcntl is None:
            return None
        path = self.path / LOCK_FILE
        for _ in range(10):
            f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the lock is held
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise RunDirError(f"run folder '{self.path}' is in use by {holder}",
                                  hint="wait for that run to finish (one process writes to a run folder at a time)"
                                  ) from None
            # the holder before us may have removed the file between our open and our lock: lock the current one
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                import socket

                f.seek(0)
                f.truncate()
                f.write(f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n")
                f.flush()
                return f
            f.close()
        raise RunDirError(f"cannot lock run folder '{self.path}'", hint="another process keeps replacing its lock")

    def _release(self, f) -> None:
        if f is None:
            return
        try:
            (self.path / LOCK_FILE).unlink(missing_ok=True)  # while still locked: the next writer makes a new one
        finally:
            f.close()


# ---------------------------------------------------------------------------------------------- helpers
def is_plain_name(name: str) -> bool:
    """Whether `name` is one folder name (no separators, not `.` or `..`), so `out/name` stays inside `out`."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A run's `config.json` (`path` may also be the run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"config file '{path}' does not exist", usage=True,
                          hint="give the config.json of a run folder (or the folder)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"cannot read {path}: {e}", hint="the run folder is damaged; start a new run") from None
    if not isinstance(config, dict) or not isinstance(config.get("options"), dict) or "command" not in config:
        raise RunDirError(f"{path} is not a deepfit run configuration (no 'command' and 'options')",
                          hint="give the config.json written by a deepfit train-* command")
    return config


#: options with a `--no-NAME` form whose default is None ("decide for me": argparse.BooleanOptionalAction with
#: default None in `deepfit.cli.OPTIONS`; a test checks that the two agree): False differs from leaving the option
#: out, so it is written as `--no-NAME`
NEGATABLE_OPTIONS = frozenset({"channels_last"})


def rerun_line(command: str, options: dict[str, Any]) -> str:
    """A `deepfit ...` command line that repeats a run with these options."""
    parts = ["deepfit", command]
    for positional in ("data", "text"):
        if options.get(positional) is not None:
            parts.append(str(options[positional]))
    for k, v in options.items():
        if k in ("data", "text", "name") or v is None:
            continue
        if v is False:
            if k in NEGATABLE_OPTIONS:
                parts.append("--no-" + k.replace("_", "-"))
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, (list, tuple)):
            v = ",".join(str(o) for o in v)
        parts.extend([flag] if v is True else [flag, str(v)])
    return " ".join(parts)


def _versions() -> dict[str, str]:
    from importlib import metadata  # not at the top: the parser imports this module, and this is slow to import

    from . import __version__

    out = {"deepfit": __version__}
    try:
        out["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    return out


__all__ = ["CONFIG_FILE", "EXPORT_DIR", "METRICS_FILE", "NEGATABLE_OPTIONS", "RESULTS_FILE", "Phase", "RunDir",
           "RunDirError", "is_plain_name", "read_config_file", "rerun_line"]
