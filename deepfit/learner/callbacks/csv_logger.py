"""`CSVLogger`: the results table written to a CSV file, one row per epoch, flushed as it goes."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

from ...safe_io import atomic_write_text
from ..events import Callback


class CSVLogger(Callback):
    """Writes the `Recorder`'s results table (`epoch, train_loss, valid_loss, metrics..., time`) to
    `path` (relative paths are under `learn.path`). The header is written at the start of `fit` and
    each epoch's row as soon as the epoch ends, then flushed, so a killed run keeps its rows.
    With `append=True` rows are added to an existing file (its header is kept).
    Floats are written in full precision (`repr`), so reading the file back gives the same values.

    The file and the checkpoints agree: a checkpoint records how many rows the file had (`state_dict`),
    and a resumed `fit` cuts the file back to that many rows before going on. A run killed after an
    epoch's row was written but before that epoch's checkpoint was renamed into place redoes the epoch
    and writes its row once.
    """

    order = 65  # after the Recorder has computed the epoch's row
    main_process_only = True

    def __init__(self, path: str | Path = "history.csv", append: bool = False):
        self.path, self.append = Path(path), append
        self._file = None
        self._rows = 0  # data rows in the file
        self._resume_rows: int | None = None  # from a checkpoint, applied by the next resumed fit

    @property
    def full_path(self) -> Path:
        learn = getattr(self, "learn", None)
        return self.path if self.path.is_absolute() or learn is None else Path(learn.path) / self.path

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """How many data rows the file holds (a checkpoint's row count)."""
        return {"rows": self._rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_rows = int(state["rows"]) if state and "rows" in state else None

    # ---------------------------------------------------------------- events
    def before_fit(self) -> None:
        recorder = getattr(self.learn, "recorder", None)
        if recorder is None:
            raise RuntimeError("CSVLogger needs the Learner's Recorder (default callbacks)")
        path = self.full_path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._close()
        resume_rows, self._resume_rows = self._resume_rows, None
        if not self.learn.resuming:
            resume_rows = None
        rows = _read_rows(path) if (self.append or resume_rows is not None) and path.exists() else None
        if rows is not None and resume_rows is not None:
            rows = self._cut_to(path, rows, resume_rows)
        keep = rows is not None and len(rows) > 0  # a header at least
        self._file = open(path, "a" if keep else "w", newline="")
        self._writer = csv.writer(self._file)
        self._rows = len(rows) - 1 if keep else 0
        if not keep:
            self._writer.writerow(recorder.metric_names)
            self._file.flush()

    def _cut_to(self, path: Path, rows: list[list[str]], n: int) -> list[list[str]]:
        """Keep the header and the first `n` data rows of the file (rows written after the checkpoint go)."""
        have = max(len(rows) - 1, 0)
        if have < n:
            warnings.warn(f"{path} holds {have} rows but the checkpoint was taken after {n}: the file was changed "
                          "since; it is kept as it is", stacklevel=3)
            return rows
        if have > n:
            out = io.StringIO()
            csv.writer(out).writerows(rows[:n + 1])
            atomic_write_text(out.getvalue(), path)
            rows = rows[:n + 1]
        return rows

    def after_epoch(self) -> None:
        row = getattr(self.learn.recorder, "last_row", None)
        if row is None or self._file is None:
            return
        self._writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
        self._file.flush()
        self._rows += 1

    def after_fit(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> list[dict[str, str]]:
        """The logged rows as dicts of strings (column name → value)."""
        with open(self.full_path, newline="") as f:
            return list(csv.DictReader(f))


def _read_rows(path: Path) -> list[list[str]]:
    """The file's rows (header first), without blank lines; `[]` for an empty file."""
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.reader(f) if r]
