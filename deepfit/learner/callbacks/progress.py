"""Progress display: a live bar in a terminal, one clean line per epoch in a log."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from ..events import Callback


def format_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


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
    """Prints the results table; shows a live bar while training when writing to a terminal.

    In a terminal the bar is redrawn at most every `refresh` seconds (each redraw reads the
    smoothed loss from the device once). In a log (CI, `nohup`, a pipe) it prints only the header
    and one line per epoch, never carriage returns.
    """

    order = 60
    run_valid = False
    main_process_only = True

    def __init__(self, live: bool | None = None, refresh: float = 0.25, stream: TextIO | None = None,
                 bar_width: int = 30):
        self.live = live
        self.refresh = refresh
        self.stream = stream
        self.bar_width = bar_width
        self._live = False

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def before_fit(self) -> None:
        out = self._out()
        self._live = self.live if self.live is not None else bool(getattr(out, "isatty", lambda: False)())
        recorder = getattr(self.learn, "recorder", None)
        self._names = recorder.metric_names if recorder is not None else ["epoch"]
        self._widths = [max(len(n), 9) for n in self._names]
        self._write(format_row(self._names, self._widths) + "\n")

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()

    def before_train(self) -> None:
        self._start = self._last = time.perf_counter()
        self._drawn = False

    def after_batch(self) -> None:
        if not self._live or not self.learn.training:
            return
        now = time.perf_counter()
        if now - self._last < self.refresh:
            return
        self._last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        learn = self.learn
        done, total = learn.iter + 1, max(learn.n_iter, 1)
        filled = int(self.bar_width * done / total)
        bar = "█" * filled + "·" * (self.bar_width - filled)
        elapsed = now - self._start
        eta = elapsed / done * (total - done)
        recorder = getattr(learn, "recorder", None)
        loss = f" loss {recorder.smooth_loss:.4f}" if recorder is not None else ""
        text = (f"epoch {learn.epoch + 1}/{learn.n_epoch} |{bar}| {done}/{total}{loss} "
                f"[{format_time(elapsed)}<{format_time(eta)}]")
        self._write("\r" + text.ljust(100)[:100])
        self._drawn = True

    def _clear(self) -> None:
        if self._live and getattr(self, "_drawn", False):
            self._write("\r" + " " * 100 + "\r")
            self._drawn = False

    def after_train(self) -> None:
        self._clear()

    def after_epoch(self) -> None:
        self._clear()
        recorder = getattr(self.learn, "recorder", None)
        if recorder is None or not hasattr(recorder, "last_row"):
            self._write(f"epoch {self.learn.epoch} done\n")
            return
        row = list(recorder.last_row)
        if recorder.add_time:
            row[-1] = format_time(row[-1])
        self._write(format_row(row, self._widths) + "\n")

    def after_fit(self) -> None:
        self._clear()
