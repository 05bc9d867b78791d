"""Runs trained in stages: ULMFiT's gradual unfreezing (`train-classifier --lm`) and a language model fine-tuned
from a pretrained one (`train-lm --from`: embeddings and decoder first, then everything).

Each stage is one `fit`; the stages of a run are one phase of it (one series of checkpoints):
- `ContinuousHistory`: the Recorder keeps every stage's losses and epochs (plots, metrics.json, checkpoints),
  so epochs are numbered over the whole run;
- `StageCSVLogger`: `metrics.csv` with a `stage` column (1-based) after `epoch`;
- `StageTag`: the stage in every checkpoint, so `--resume` knows which stage to continue (`checkpoint_stage`);
- `RunBestModel`: `best.pth` is the best epoch over every stage, not only the last stage's;
- `stage_lr_finder`: `--lr auto` with a suggestion that is safe for the stage (`deepfit.text.learner.suggest_lr`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..learner.callbacks.csv_logger import CSVLogger
from ..learner.callbacks.training import SaveBestModel
from ..learner.checkpoint import resume_candidates
from ..learner.events import Callback
from ..safe_io import CheckpointError, PickleRefusedError, safe_torch_load

STAGE_COLUMN = "stage"
#: the warning of `fit(resume=)` on a checkpoint taken at the end of a stage (nothing left to train in it)
NOTHING_LEFT = r".*has nothing left\s+to do"


@dataclass
class StageIndex:
    """The stage being trained (0-based), shared by the fit, the checkpoints' tag and metrics.csv's column."""

    index: int = 0


class StageCSVLogger(CSVLogger):
    """`CSVLogger` with a `stage` column after `epoch`: `stage_of(learn)` (1-based) for each epoch's row.

    Named `csv_logger` like the plain one, so a checkpoint's row count is restored into it.
    """

    def __init__(self, path: str | Path, stage_of: Callable[[Any], int], append: bool = True):
        super().__init__(path, append=append)
        self.stage_of = stage_of

    @property
    def name(self) -> str:
        return "csv_logger"

    def before_fit(self) -> None:
        path = self.full_path
        if not path.exists() or path.stat().st_size == 0:  # the header, with the stage column; CSVLogger appends
            path.parent.mkdir(parents=True, exist_ok=True)
            names = list(self.learn.recorder.metric_names)
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow([names[0], STAGE_COLUMN, *names[1:]])
        super().before_fit()

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        row = getattr(recorder, "last_row", None)
        if row is None or self._file is None:
            return
        cells = [repr(v) if isinstance(v, float) else v for v in row[1:]]
        epoch = len(recorder.values) - 1  # the row's index in the Recorder's table (over every stage)
        self._writer.writerow([epoch, int(self.stage_of(self.learn)), *cells])
        self._file.flush()
        self._rows += 1


class ContinuousHistory(Callback):
    """Keeps the Recorder's history (batch losses, rates, epoch rows, smoothing) from one `fit` to the next, so
    the stages of a run make one history; a `fit` that resumes a checkpoint takes the checkpoint's instead."""

    order = 51  # right after the Recorder's before_fit (50) cleared it

    def __init__(self) -> None:
        self._kept: dict[str, Any] | None = None

    def before_fit(self) -> None:
        if self._kept is not None and not self.learn.resuming:
            self.learn.recorder.load_state_dict(self._kept)

    def after_fit(self) -> None:
        self._kept = self.learn.recorder.state_dict()


class StageTag(Callback):
    """Puts the stage index (0-based) into every checkpoint (`callbacks/stage_tag/stage`); restores nothing."""

    def __init__(self, index_of: Callable[[Any], int]):
        self.index_of = index_of

    def state_dict(self) -> dict[str, int]:
        return {"stage": int(self.index_of(self.learn))}

    def load_state_dict(self, state: dict[str, int]) -> None:
        pass


@dataclass(frozen=True)
class StagePoint:
    """Where a checkpoint of a staged run was taken: its file, the stage (0-based), and whether it ended that
    stage (taken after the stage's last epoch)."""

    path: Path
    stage: int
    epoch: int  # the epoch of the stage to run next
    stage_done: bool


def checkpoint_stage(learn, checkpoint: str | Path, stage_epochs: list[int] | None = None) -> StagePoint:
    """The checkpoint to resume from (the newest readable of its series, as `fit(resume=)` picks) and the stage
    it was taken in (0 when it has no `StageTag`); `stage_epochs` (epochs per stage) tells whether it ended it."""
    failures = []
    for path in resume_candidates(learn, checkpoint):
        try:
            state = safe_torch_load(path)
        except PickleRefusedError:
            raise
        except CheckpointError as e:
            failures.append(e)
            continue
        if not isinstance(state, dict):
            continue
        tag = (state.get("callbacks") or {}).get("stage_tag")
        stage = int(tag["stage"]) if tag else 0
        pos = state.get("position") or {}
        epoch = int(pos.get("epoch", 0))
        done = stage_epochs is not None and not pos.get("mid_epoch") and epoch >= stage_epochs[stage]
        return StagePoint(Path(path), stage, epoch, done)
    raise failures[0] if failures else CheckpointError(f"no checkpoint to resume from at {checkpoint}")


class RunBestModel(SaveBestModel):
    """`SaveBestModel` over every `fit` it is attached to: the best epoch of all the stages of a phase.

    (`SaveBestModel` starts afresh at each `fit`, so with one fit per ULMFiT stage `best.pth` would hold the
    best epoch of the last stage only.) Named `save_best_model`, so checkpoints restore its state.
    """

    _started = False

    @property
    def name(self) -> str:
        return "save_best_model"

    def _reset(self) -> None:
        if not self._started:
            super()._reset()

    def before_fit(self) -> None:
        super().before_fit()
        self._started = True

    def _improved(self) -> bool | None:
        better = super()._improved()
        if better:  # the row's index in the Recorder's table, which `ContinuousHistory` keeps over every stage
            self.best_epoch = len(self.learn.recorder.values) - 1
        return better

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._started = True


def stage_lr_finder(stage: str, say: Callable[[str], None]) -> Callable[[Any, Path], float]:
    """`--lr auto` for `stage` ('lm', 'head' or 'all'): the lower of lr_find's two suggestions, capped for the
    stage (`suggest_lr`); the plot goes to `FOLDER/lr_find.png`."""

    def find(learn, folder: Path) -> float:
        from ..text.learner import SAFE_LR_CAPS, suggest_lr

        lr, res = suggest_lr(learn, stage, plot=Path(folder) / "lr_find.png")
        say(f"lr_find: steepest {res.steepest:.2e}, minimum/10 {res.minimum:.2e} -> using lr {lr:.2e} (the lower "
            f"suggestion, at most {SAFE_LR_CAPS[stage]:g} for {stage!r})"
            + (f" (plot: {res.plot_path})" if getattr(res, "plot_path", None) else ""))
        return lr

    return find


def describe_frozen(frozen_to: int, n_groups: int) -> str:
    """What a stage trains: 'head only', 'last 2 groups', 'all groups'."""
    if frozen_to == -1:
        return "head only"
    if frozen_to == 0 or -frozen_to >= n_groups:
        return "all groups"
    return f"last {-frozen_to} groups"


__all__ = ["NOTHING_LEFT", "STAGE_COLUMN", "ContinuousHistory", "RunBestModel", "StageCSVLogger", "StageIndex",
           "StagePoint", "StageTag", "checkpoint_stage", "describe_frozen", "stage_lr_finder"]
