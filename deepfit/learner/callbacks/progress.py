"""Progress display: the results table, with a live bar per phase in a terminal and a few lines in a log.

The bars and log lines come from `deepfit.progress.Progress` (tqdm in a terminal).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ...progress import LOG_EVERY, Progress, is_terminal
from ...progress import format_time as format_time  # the table's time column; old import path
from ..events import Callback
from ..metrics import batch_size_of


def format_row(values: list, widths: list[int]) -> str:
    cells = []
    for v, w in zip(values, widths):
        if isinstance(v, float):
            text = "nan" if math.isnan(v) else f"{v:.6f}"
        else:
            text = str(v)
        cells.append(text.ljust(w))
    return "  ".join(cells).rstrip()


class ProgressCallback(Callback):
    """Prints the results table (a header, then one row per epoch) and shows progress within each phase.

    In a terminal: a live bar for the training batches (with the smoothed loss and items/s, read from the
    device at most every `refresh` seconds) and one for validation, both erased when the phase ends.
    In a log (CI, `nohup`, a pipe): never a carriage return; within a phase longer than `log_every` seconds,
    one line at most every `log_every` seconds (batch i/n, smoothed loss, throughput, time left), and the
    table's rows. `live` forces one or the other; `clock` is the time source (tests pass a fake one).
    """

    order = 60
    main_process_only = True

    def __init__(self, live: bool | None = None, refresh: float = 0.25, stream: TextIO | None = None,
                 log_every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self.live = live
        self.refresh = refresh
        self.stream = stream
        self.log_every = log_every
        self.clock = clock
        self._bar: Progress | None = None

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def _is_live(self) -> bool:
        return self.live if self.live is not None else is_terminal(self._out())

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()

    # ------------------------------------------------------------------ table
    def before_fit(self) -> None:
        recorder = getattr(self.learn, "recorder", None)
        self._names = recorder.metric_names if recorder is not None else ["epoch"]
        self._widths = [max(len(n), 9) for n in self._names]
        self._write(format_row(self._names, self._widths) + "\n")

    def after_epoch(self) -> None:
        self._close()
        recorder = getattr(self.learn, "recorder", None)
        if recorder is None or not hasattr(recorder, "last_row"):
            self._write(f"epoch {self.learn.epoch} done\n")
            return
        row = list(recorder.last_row)
        if recorder.add_time:
            row[-1] = format_time(row[-1])
        self._write(format_row(row, getattr(self, "_widths", [9] * len(row))) + "\n")

    def after_fit(self) -> None:
        self._close()

    # ------------------------------------------------------------------ bars
    def _open(self, phase: str) -> None:
        self._close()
        learn = self.learn
        dl = getattr(learn, "dl", None)
        total = len(dl) if hasattr(dl, "__len__") else None  # learn.n_iter is set only after before_train
        fitting = getattr(learn, "_fitting", False)
        desc = f"epoch {learn.epoch + 1}/{learn.n_epoch}" if fitting else "predict"
        if phase == "valid" and fitting:
            desc += " valid"
        self._items = 0
        self._bar = Progress(total, desc, "batch", stream=self._out(), live=self._is_live(),
                             log_every=self.log_every, final_line=False, refresh=self.refresh, clock=self.clock)
        self._bar.set_info(self._info)

    def _info(self) -> str:
        bar = self._bar
        rate = self._items / max(bar.elapsed(), 1e-9) if bar is not None else 0.0
        parts = []
        recorder = getattr(self.learn, "recorder", None)
        if self.learn.training and recorder is not None and hasattr(recorder, "smooth_loss"):
            parts.append(f"loss {recorder.smooth_loss:.4f}")
        parts.append(f"{rate:.0f} items/s")
        return ", ".join(parts)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def before_train(self) -> None:
        self._open("train")

    def before_validate(self) -> None:
        self._open("valid")

    def after_batch(self) -> None:
        if self._bar is None:
            return
        self._items += batch_size_of(self.learn.yb)
        self._bar.update(1)

    def after_train(self) -> None:
        self._close()

    def after_validate(self) -> None:
        self._close()
