"""`CSVLogger`: the results table written to a CSV file, one row per epoch, flushed as it goes."""

from __future__ import annotations

import csv
from pathlib import Path

from ..events import Callback


class CSVLogger(Callback):
    """Writes the `Recorder`'s results table (`epoch, train_loss, valid_loss, metrics..., time`) to
    `path` (relative paths are under `learn.path`). The header is written at the start of `fit` and
    each epoch's row as soon as the epoch ends, then flushed, so a killed run keeps its rows.
    With `append=True` rows are added to an existing file (its header is kept).
    Floats are written in full precision (`repr`), so reading the file back gives the same values.
    """

    order = 65  # after the Recorder has computed the epoch's row
    main_process_only = True

    def __init__(self, path: str | Path = "history.csv", append: bool = False):
        self.path, self.append = Path(path), append
        self._file = None

    @property
    def full_path(self) -> Path:
        learn = getattr(self, "learn", None)
        return self.path if self.path.is_absolute() or learn is None else Path(learn.path) / self.path

    def before_fit(self) -> None:
        recorder = getattr(self.learn, "recorder", None)
        if recorder is None:
            raise RuntimeError("CSVLogger needs the Learner's Recorder (default callbacks)")
        path = self.full_path
        path.parent.mkdir(parents=True, exist_ok=True)
        keep_header = self.append and path.exists() and path.stat().st_size > 0
        self._close()
        self._file = open(path, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file)
        if not keep_header:
            self._writer.writerow(recorder.metric_names)
            self._file.flush()

    def after_epoch(self) -> None:
        row = getattr(self.learn.recorder, "last_row", None)
        if row is None or self._file is None:
            return
        self._writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
        self._file.flush()

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
