"""Atomic checkpoints and exact resume.

A checkpoint is one `torch.save`d dict holding only tensors and plain containers (so it loads with
`torch.load(weights_only=True)`, which never runs code from the file):

- `model`: the model's `state_dict`; `opt`: the optimizer's `state_dict`;
- `position`: epoch, training batches done in that epoch, `train_iter`;
- `loaders`: each loader's shuffling seed and epoch (a `TensorLoader`'s order is a pure function of both);
- `rng`: Python, NumPy, torch CPU (and CUDA/MPS when present) generator states;
- `callbacks`: `state_dict()` of every callback defining one (the Recorder's history, the loss scaler of
  `MixedPrecision`, MixUp's generator, early-stopping counters...), read and restored through those methods only.

Writes go to a temporary file in the target's folder, are flushed and `fsync`ed, then renamed over the
target (and the folder is `fsync`ed): a crash leaves either the old checkpoint or the new one, never half
of one. A checkpoint whose weights hold a NaN or an infinity is never written (`NonFiniteWeightsError`),
and `CheckpointCallback` first asks the `NaNLossCheck` whether a training loss became non-finite, so a
diverged run keeps its last finite checkpoints (the rotation deletes old files only after a good save).

Resuming (`learn.fit(n, resume=path_or_'last')`) restores all of this and skips the training batches
already done in the interrupted epoch without loading them (for `TensorLoader`s), so that on the CPU a
resumed run ends with weights bit-identical to an uninterrupted one. When the checkpoint to resume from is
unreadable (truncated, corrupt) and it is `'last'` or one of a `CheckpointCallback` series
(`<name>_<NNNNNN>.pt`), resume falls back to the newest older readable one of the series and says so.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..data.core import TensorLoader
from ..distributed import is_main_process, unwrap_model
from ..rng import get_rng_state, set_rng_state
from ..safe_io import CheckpointError, atomic_torch_save, safe_torch_load
from ..safe_io import PickleRefusedError as PickleRefusedError  # old import path
from .events import Callback

if TYPE_CHECKING:
    from .events import LearnerLike

FORMAT = "deepfit-checkpoint"
VERSION = 1


# ---------------------------------------------------------------------------------------------- paths
def checkpoint_dir(learn: LearnerLike) -> Path:
    """Where `learn.save(name)` writes: `learn.path / 'models'`."""
    return Path(learn.path) / "models"


def checkpoint_path(learn: LearnerLike, name: str | Path) -> Path:
    """`name` as a path: an existing path or one with a folder is used as is, else `models/<name>.pt`."""
    p = Path(name)
    if p.suffix or p.parent != Path(".") or p.exists():
        return p
    return checkpoint_dir(learn) / f"{p.name}.pt"


# ---------------------------------------------------------------------------------------------- plain data
def to_plain(obj: Any, where: str = "state") -> Any:
    """Convert `obj` to tensors and plain containers that `torch.load(weights_only=True)` accepts.

    NumPy arrays become tensors, NumPy scalars Python numbers, tuples lists; anything else that is
    not a tensor, str, number, bool, None, list or dict raises `CheckpointError` naming `where`.
    """
    if obj is None or isinstance(obj, (bool, int, float, str, Tensor)):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.device | torch.dtype):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_plain(o, f"{where}[{i}]") for i, o in enumerate(obj)]
    if isinstance(obj, dict):
        return {k: to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    raise CheckpointError(f"cannot store {where} in a checkpoint: {type(obj).__name__} is not a tensor or a "
                          "plain container (convert it in the callback's state_dict())")


def _loader_state(dl: Any, in_use: bool) -> dict[str, Any] | None:
    """Seed and epoch of a loader; `in_use` means its current epoch's iterator is running (mid-epoch)."""
    if dl is None:
        return None
    if hasattr(dl, "state_dict") and hasattr(dl, "load_state_dict"):
        return {"custom": to_plain(dl.state_dict(), "loader state")}
    if hasattr(dl, "seed") and hasattr(dl, "epoch"):
        return {"seed": int(dl.seed), "epoch": int(dl.epoch) - (1 if in_use else 0)}
    sampler = getattr(getattr(dl, "source", None), "sampler", None)
    gen = getattr(sampler, "generator", None)
    if isinstance(gen, torch.Generator):
        return {"sampler_generator": gen.get_state()}
    return {}


def _load_loader_state(dl: Any, state: dict[str, Any] | None) -> None:
    if dl is None or not state:
        return
    if "custom" in state:
        dl.load_state_dict(state["custom"])
    elif "seed" in state:
        dl.seed = state["seed"]
        if hasattr(dl, "set_epoch"):
            dl.set_epoch(state["epoch"])
        else:
            dl.epoch = state["epoch"]
    elif "sampler_generator" in state:
        dl.source.sampler.generator.set_state(state["sampler_generator"])


def _tfm_generators(dl: Any) -> list[torch.Generator | None]:
    """The private `torch.Generator` of each of a loader's batch transforms (`None` where it has none)."""
    return [g if isinstance(g := getattr(t, "generator", None), torch.Generator) else None
            for t in getattr(dl, "tfms", None) or []]


def _generator_states(dls: Any) -> dict[str, list]:
    out = {}
    for split in ("train", "valid"):
        gens = _tfm_generators(getattr(dls, split, None))
        out[split] = [g.get_state() if g is not None else None for g in gens]
    return out


def _set_generator_states(dls: Any, states: dict[str, list] | None) -> None:
    for split, saved in (states or {}).items():
        gens = _tfm_generators(getattr(dls, split, None))
        if len(gens) != len(saved):
            warnings.warn(f"checkpoint has {len(saved)} {split} batch transforms, the loader has {len(gens)}: "
                          "their generators are not restored", stacklevel=3)
            continue
        for g, st in zip(gens, saved):
            if g is not None and st is not None:
                g.set_state(st)


def iter_from(dl: Any, start: int):
    """Iterate `dl`'s current epoch from batch `start`, consuming the epoch like a full iteration.

    `TensorLoader`s (and loaders with an `iter_from(start)` method) skip the first batches without
    producing them; other loaders produce and discard them.
    """
    if start <= 0:
        return iter(dl)
    if hasattr(dl, "iter_from"):
        return dl.iter_from(start)
    if isinstance(dl, TensorLoader):
        order = dl.order()
        dl.epoch += 1
        rest = dl.new(indices=order[start * dl.bs:], shuffle=False)
        return iter(rest)
    it = iter(dl)
    for _ in range(start):
        next(it, None)
    return it


# ---------------------------------------------------------------------------------------------- position
def _current_position(learn: LearnerLike) -> dict[str, int]:
    """Where training stands: `epoch` to run next (or in progress), training batches done in it, `train_iter`.

    During `fit`, in the training phase, the current batch counts as done (save at `after_batch`);
    in any other phase the epoch counts as done (save at `after_epoch`). Outside `fit` the last fit
    counts as complete.
    """
    train_iter = int(getattr(learn, "train_iter", 0))
    if getattr(learn, "_fitting", False) and learn.training:
        return {"epoch": learn.epoch, "batches_done": learn.iter + 1, "train_iter": train_iter, "mid_epoch": 1}
    if getattr(learn, "_fitting", False):
        return {"epoch": learn.epoch + 1, "batches_done": 0, "train_iter": train_iter, "mid_epoch": 0}
    epoch = learn.epoch + 1 if train_iter > 0 else 0
    return {"epoch": epoch, "batches_done": 0, "train_iter": train_iter, "mid_epoch": 0}


# ---------------------------------------------------------------------------------------------- finite
class NonFiniteWeightsError(FloatingPointError):
    """The model's weights hold NaN or infinite values, so no checkpoint of them is written."""

    def __init__(self, message: str, epoch: int, batch: int | None, names: list[str]):
        super().__init__(message)
        self.epoch, self.batch, self.names = epoch, batch, names


def non_finite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of `state` holding a NaN or an infinity (one host sync)."""
    items = [(k, v) for k, v in state.items() if isinstance(v, Tensor) and v.is_floating_point() and v.numel()]
    if not items:
        return []
    by_device: dict[torch.device, list[tuple[str, Tensor]]] = {}
    for k, v in items:
        by_device.setdefault(v.device, []).append((k, v))
    bad = []
    for group in by_device.values():
        flags = torch.stack([torch.isfinite(v).all() for _, v in group]).cpu().tolist()
        bad += [k for (k, _), ok in zip(group, flags) if not ok]
    return bad


def _check_finite(learn: LearnerLike, state: dict[str, Any], path: Path) -> None:
    bad = non_finite_tensors(state["model"])
    if not bad:
        return
    pos = state["position"]
    epoch, batch = pos["epoch"], pos["batches_done"] - 1 if pos["mid_epoch"] else None
    if not pos["mid_epoch"]:  # saved after that epoch: the step of its last training batch made them non-finite
        epoch = max(epoch - 1, 0)  # (non-finite weights give a non-finite loss on the next batch)
        train = getattr(learn.dls, "train", None)
        batch = len(train) - 1 if hasattr(train, "__len__") and len(train) else None
    where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
    raise NonFiniteWeightsError(
        f"the model's weights became NaN/inf by {where} ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}): "
        f"{path.name} was not written, the previous checkpoints are kept; lower the learning rate or clip "
        "gradients", epoch, batch, bad)


# ---------------------------------------------------------------------------------------------- save
def checkpoint_state(learn: LearnerLike, with_opt: bool = True) -> dict[str, Any]:
    """Everything a checkpoint holds, as tensors and plain containers."""
    pos = _current_position(learn)
    mid = bool(pos["mid_epoch"])
    dls = learn.dls
    state: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": unwrap_model(learn.model).state_dict(),
        "opt": to_plain(learn.opt.state_dict(), "optimizer state") if with_opt and learn.opt is not None else None,
        "position": pos,
        "loaders": {"train": _loader_state(getattr(dls, "train", None), in_use=mid),
                    "valid": _loader_state(getattr(dls, "valid", None), in_use=False)},
        "rng": get_rng_state(),
        "tfm_generators": _generator_states(dls),
        "callbacks": {},
    }
    for cb in learn.cbs:
        if callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None)):
            state["callbacks"][cb.name] = to_plain(cb.state_dict(), f"{type(cb).__name__}.state_dict()")
    return state


def save_checkpoint(learn: LearnerLike, name: str | Path, with_opt: bool = True, check_finite: bool = True) -> Path:
    """Write a checkpoint of `learn` atomically; returns its path (`models/<name>.pt` for a bare name).

    With `check_finite` (the default) weights holding NaN/inf raise `NonFiniteWeightsError` and nothing is
    written. In a distributed run only rank 0 writes (the state is the same on every rank).
    """
    path = checkpoint_path(learn, name)
    if not is_main_process():
        return path
    state = checkpoint_state(learn, with_opt=with_opt)
    if check_finite:
        _check_finite(learn, state, path)
    return atomic_torch_save(state, path)


# ---------------------------------------------------------------------------------------------- load
def load_checkpoint(learn: LearnerLike, name: str | Path, with_opt: bool = True, strict: bool = True,
                    allow_pickle: bool = False) -> dict[str, Any]:
    """Load the model (and optimizer and callback states) saved by `save_checkpoint`.

    A plain `state_dict` saved with `torch.save(model.state_dict())` also loads (model only).
    RNG states, loader positions and the training position are applied only when resuming
    (`fit(..., resume=...)`). Returns the checkpoint dict.
    """
    path = checkpoint_path(learn, name)
    return _apply_checkpoint(learn, path, safe_torch_load(path, allow_pickle=allow_pickle), with_opt, strict)


def _apply_checkpoint(learn: LearnerLike, path: Path, state: Any, with_opt: bool = True,
                      strict: bool = True) -> dict[str, Any]:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        if isinstance(state, dict) and all(isinstance(v, Tensor) for v in state.values()):
            _load_model(learn, state, strict, path)
            return {"format": "state_dict", "model": state}
        raise CheckpointError(f"{path} is not a deepfit checkpoint (no 'format': {FORMAT!r} entry)")
    _load_model(learn, state["model"], strict, path)
    if with_opt and state.get("opt") is not None:
        if learn.opt is None:
            learn.create_opt()
        try:
            learn.opt.load_state_dict(state["opt"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: optimizer state does not fit this learner's optimizer ({e}); "
                                  "load with with_opt=False to restore the weights only") from None
    by_name = {cb.name: cb for cb in learn.cbs}
    for cb_name, cb_state in (state.get("callbacks") or {}).items():
        cb = by_name.get(cb_name)
        if cb is not None and callable(getattr(cb, "load_state_dict", None)):
            cb.load_state_dict(cb_state)
    pos = state["position"]
    learn.train_iter = pos["train_iter"]
    return state


def _load_model(learn: LearnerLike, sd: dict[str, Tensor], strict: bool, path: Path) -> None:
    try:
        unwrap_model(learn.model).load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit this model: {e}") from None


# ---------------------------------------------------------------------------------------------- resume
@dataclass
class ResumePoint:
    """What `fit(resume=...)` still has to apply once the loop starts."""

    epoch: int
    batches_done: int
    train_iter: int
    rng: dict[str, Any]
    generators: dict[str, list] | None
    recorder_epoch_sums: list | None
    path: Path
    pending: bool = True

    def start(self, learn: LearnerLike) -> int:
        """Called at the start of the epoch loop (after `before_fit`): returns the first epoch to run."""
        learn.train_iter = self.train_iter
        if self.epoch >= learn.n_epoch and self.epoch > 0:
            warnings.warn(f"{self.path} was taken at epoch {self.epoch}: fit({learn.n_epoch}) has nothing left "
                          "to do", stacklevel=3)
        if self.batches_done == 0:
            self._restore_rng(learn)
            self.pending = False
        return self.epoch

    def take_batches(self, learn: LearnerLike, dl: Any) -> tuple[int, Any]:
        """Called by the training phase: the first batch index and the batches still to run."""
        if not self.pending:
            return 0, dl
        self.pending = False
        it = iter_from(dl, self.batches_done)
        rec = getattr(learn, "recorder", None)
        if rec is not None and self.recorder_epoch_sums is not None:
            rec.train_loss_sums = self.recorder_epoch_sums
        self._restore_rng(learn)
        return self.batches_done, it

    def _restore_rng(self, learn: LearnerLike) -> None:
        set_rng_state(self.rng)
        _set_generator_states(learn.dls, self.generators)


def find_last_checkpoint(folder: str | Path, prefix: str | None = None) -> Path:
    """The newest complete checkpoint in `folder` (the highest sequence number, then the newest file)."""
    folder = Path(folder)
    files = [p for p in folder.glob("*.pt") if not p.name.startswith(".")] if folder.is_dir() else []
    if prefix is not None:
        files = [p for p in files if p.name.startswith(prefix)]
    if not files:
        raise FileNotFoundError(f"resume='last': no checkpoint (*.pt) in {folder}")

    def key(p: Path):
        m = re.search(r"_(\d+)\.pt$", p.name)
        return (int(m.group(1)) if m else -1, p.stat().st_mtime_ns)

    return max(files, key=key)


_SERIES = re.compile(r"^(?P<prefix>.+)_(?P<n>\d+)\.pt$")


def resume_candidates(learn: LearnerLike, resume: str | Path) -> list[Path]:
    """The checkpoint `resume` names, then the ones to fall back to when it is unreadable, newest first.

    `'last'`: every checkpoint in `models/`, newest first. A file of a `CheckpointCallback` series
    (`<name>_<NNNNNN>.pt`): it, then the older files of its series. Any other path: just it.
    """
    if str(resume) == "last":
        first = find_last_checkpoint(checkpoint_dir(learn))
        folder, prefix = first.parent, None
    else:
        first = checkpoint_path(learn, resume)
        m = _SERIES.match(first.name)
        if m is None:
            return [first]
        folder, prefix = first.parent, m.group("prefix")
    older = [p for p in folder.glob("*.pt") if not p.name.startswith(".") and p != first
             and (prefix is None or ((m := _SERIES.match(p.name)) is not None and m.group("prefix") == prefix))]
    n_first = _series_number(first)
    older = [p for p in older if _series_number(p) < n_first or (prefix is None and n_first < 0)]
    older.sort(key=lambda p: (_series_number(p), p.stat().st_mtime_ns), reverse=True)
    return [first, *older]


def _series_number(p: Path) -> int:
    m = re.search(r"_(\d+)\.pt$", p.name)
    return int(m.group(1)) if m else -1


def _read_resumable(learn: LearnerLike, resume: str | Path, allow_pickle: bool) -> tuple[Path, dict[str, Any]]:
    """The first readable checkpoint of `resume_candidates` and its contents; says when it falls back."""
    candidates = resume_candidates(learn, resume)
    failures = []
    for path in candidates:
        try:
            state = safe_torch_load(path, allow_pickle=allow_pickle)
        except PickleRefusedError:
            raise
        except CheckpointError as e:
            failures.append((path, e))
            continue
        if not (isinstance(state, dict) and state.get("format") == FORMAT and "position" in state):
            if path == candidates[0]:
                return path, state  # reported below as "holds only model weights" or "not a checkpoint"
            failures.append((path, CheckpointError(f"{path} is not a deepfit checkpoint")))
            continue
        if failures:
            bad = ", ".join(f"{p.name} ({_reason(e)})" for p, e in failures)
            logger = getattr(learn, "logger", None) or print
            logger(f"resume: cannot read {bad}; resuming from {path} instead (the newest readable checkpoint)")
        return path, state
    raise failures[0][1] if len(failures) == 1 else CheckpointError(
        f"no readable checkpoint to resume from: {'; '.join(str(e) for _, e in failures)}")


def _reason(e: Exception) -> str:
    text = str(e)
    inner = re.search(r"cannot read .*?: (.*)$", text)
    return (inner.group(1) if inner else text)[:120]


def prepare_resume(learn: LearnerLike, resume: str | Path, allow_pickle: bool = False) -> ResumePoint:
    """Load the checkpoint named by `resume` (a path, a name, or `'last'`) into `learn` for `fit`.

    An unreadable checkpoint of a series is skipped for the newest older readable one (see the module doc).
    """
    path, state = _read_resumable(learn, resume, allow_pickle)
    state = _apply_checkpoint(learn, path, state)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} holds only model weights: it cannot be resumed from")
    loaders = state.get("loaders") or {}
    _load_loader_state(getattr(learn.dls, "train", None), loaders.get("train"))
    _load_loader_state(getattr(learn.dls, "valid", None), loaders.get("valid"))
    pos = state["position"]
    rec = (state.get("callbacks") or {}).get("recorder")
    sums = rec.get("epoch_sums") if rec and pos["batches_done"] > 0 else None
    return ResumePoint(pos["epoch"], pos["batches_done"], pos["train_iter"], state["rng"],
                       state.get("tfm_generators"), sums, path)


# ---------------------------------------------------------------------------------------------- callback
class CheckpointCallback(Callback):
    """Save a checkpoint every epoch or every `every` training batches, keeping the last `keep_last`.

    Files are `learn.path/models/<name>_<NNNNNN>.pt` with an increasing sequence number; resume with
    `learn.fit(n_epoch, resume='last')`. Saving reads the recorder's pending losses from the device, so
    it is a synchronisation point: choose `every` accordingly.
    """

    order = 90
    run_valid = False
    main_process_only = True

    def __init__(self, every: int | str = "epoch", keep_last: int | None = 3, name: str = "checkpoint"):
        if every != "epoch" and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ValueError(f"every must be 'epoch' or a positive number of batches, got {every!r}")
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.every, self.keep_last, self.prefix = every, keep_last, name
        self.saved: list[Path] = []

    def _existing(self) -> list[Path]:
        folder = checkpoint_dir(self.learn)
        pat = re.compile(re.escape(self.prefix) + r"_(\d+)\.pt$")
        found = [(int(m.group(1)), p) for p in folder.glob(f"{self.prefix}_*.pt") if (m := pat.match(p.name))]
        return [p for _, p in sorted(found)]

    def before_fit(self) -> None:
        folder = checkpoint_dir(self.learn)
        for stale in folder.glob(f".{self.prefix}_*.pt.tmp-*"):
            if not _writer_alive(stale):  # another live process may be writing it
                stale.unlink(missing_ok=True)
        existing = self._existing()
        m = re.search(r"_(\d+)\.pt$", existing[-1].name) if existing else None
        self._seq = int(m.group(1)) + 1 if m else 0

    def _save(self) -> None:
        path = checkpoint_dir(self.learn) / f"{self.prefix}_{self._seq:06d}.pt"
        nan_check = getattr(getattr(self.learn, "nan_loss_check", None), "check", None)
        if callable(nan_check):
            nan_check()  # raises on a non-finite training loss: no checkpoint after it
        save_checkpoint(self.learn, path)  # raises on non-finite weights, before writing or rotating
        self._seq += 1
        self.saved.append(path)
        if self.keep_last is not None:
            for old in self._existing()[:-self.keep_last]:
                old.unlink(missing_ok=True)

    def after_batch(self) -> None:
        if self.every != "epoch" and self.learn.training and self.learn.train_iter % self.every == 0:
            self._save()

    def after_epoch(self) -> None:
        if self.every == "epoch":
            self._save()


def _writer_alive(tmp: Path) -> bool:
    """Whether the process whose pid ends the temporary file's name (`.<name>.tmp-<pid>`) is alive."""
    m = re.search(r"\.tmp-(\d+)$", tmp.name)
    if m is None:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
