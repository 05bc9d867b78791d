"""Progress of long steps: a live bar in a terminal, a few plain lines in a log.

`Progress` (and `progress(iterable)`) is what every long step of deepfit reports through: batches of an
epoch, `lr_find`, tokenizing, vocabulary building, downloads and extraction.

- In a terminal (the stream is a tty) it draws a live bar with `tqdm`, redrawn in place, and replaces it
  with the step's summary line when it ends.
- In a log (CI, `nohup`, a pipe, a file) it never writes a carriage return: at most one line every
  `log_every` seconds (30 by default) while the step runs, with the count, rate, elapsed time and
  estimate of the time left, then one line when the step ends. Steps shorter than `min_seconds` (1 s)
  write no summary line, so quick calls do not fill logs or terminals.
- In a distributed run only rank 0 reports (the `RANK` environment variable), and `show=False` turns it off.

This module is a leaf: it imports nothing from deepfit.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

try:
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; without it a terminal gets log lines
    _tqdm = None

LOG_EVERY = 30.0
MIN_SECONDS = 1.0

T = TypeVar("T")
Info = str | Callable[[], str] | None


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (where a bar redrawn in place is readable)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


def other_rank() -> bool:
    """True in a process of a distributed run that is not rank 0 (such processes report nothing)."""
    rank = os.environ.get("RANK")
    return rank is not None and rank.strip() not in ("", "0")


def format_time(seconds: float) -> str:
    """`mm:ss`, or `h:mm:ss` from one hour on."""
    seconds = int(round(max(seconds, 0.0)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_amount(n: float, unit: str, scale: bool) -> str:
    """`n` with its unit; with `scale`, in k/M/G/T steps of 1000 (`12.3 MB`)."""
    if not scale:
        if isinstance(n, float) and not n.is_integer():
            return f"{n:.1f} {unit}" if abs(n) < 100 else f"{n:.0f} {unit}"
        return f"{int(n)} {unit}"
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000 or prefix == "T":
            return f"{n:.0f} {prefix}{unit}" if prefix == "" else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Reports the progress of one step (see the module docstring for what is shown where).

    Args:
        total: the amount of work (`None` when unknown).
        desc: what the step is, e.g. `"tokenizing"`.
        unit: the unit of `total` (`"batch"`, `"B"`...); `unit_scale=True` writes large amounts as k/M/G.
        stream: where to write (default: stderr).
        show: `False` reports nothing.
        live: `True` draws a bar, `False` writes log lines; `None` (default) decides by `is_terminal(stream)`.
        log_every: seconds between two log lines while the step runs.
        min_seconds: a step that ends sooner writes no summary line.
        final_line: `False` writes no summary line at all (the caller prints its own summary).
        refresh: seconds between two evaluations of a callable `info` while a bar is shown.
        clock: the time source (tests pass a fake one).
    """

    def __init__(self, total: int | float | None = None, desc: str = "", unit: str = "it", *,
                 stream: TextIO | None = None, show: bool = True, live: bool | None = None,
                 unit_scale: bool = False, log_every: float = LOG_EVERY, min_seconds: float = MIN_SECONDS,
                 final_line: bool = True, refresh: float = 0.25, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.stream = stream if stream is not None else sys.stderr
        self.log_every, self.min_seconds, self.final_line = log_every, min_seconds, final_line
        self.refresh, self.clock = refresh, clock
        self.n: float = 0
        self.lines = 0  # log lines written so far
        self._info: Info = None
        self._start = self._last_line = self._last_info = clock()
        self._bar = None
        self._closed = False
        if not show or other_rank():
            self.mode = "off"
        elif (is_terminal(self.stream) if live is None else live) and _tqdm is not None:
            self.mode = "bar"
            self._bar = _tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, file=self.stream,
                              leave=False, dynamic_ncols=True, mininterval=refresh)
        else:
            self.mode = "log"

    # ------------------------------------------------------------------ reporting
    def update(self, n: float = 1, info: Info = None) -> None:
        """Count `n` more units done; `info` (text, or a function giving it, called only when shown) is appended."""
        self.n += n
        if info is not None:
            self._info = info
        if self.mode == "bar":
            if self._info is not None and self.clock() - self._last_info >= self.refresh:
                self._last_info = self.clock()
                self._bar.set_postfix_str(self._info_text(), refresh=False)
            self._bar.update(n)
        elif self.mode == "log":
            now = self.clock()
            if now - self._last_line >= self.log_every:
                self._last_line = now
                self._write(self.status_line(now))

    def elapsed(self) -> float:
        """Seconds since the step began (by `clock`)."""
        return self.clock() - self._start

    def set_info(self, info: Info) -> None:
        """Replace the text shown after the counts (a string or a function returning one)."""
        self._info = info

    def close(self, summary: str | None = None) -> None:
        """End the step: remove the bar, then write the step's summary line (`summary` replaces its details)."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self._bar.close()
        if self.mode != "off" and self.final_line:
            elapsed = self.clock() - self._start
            if elapsed >= self.min_seconds:
                info = summary if summary is not None else self._info_text()
                line = f"{self.desc}: {self._amount(self.n)} in {format_time(elapsed)}"
                self._write(line + (f", {info}" if info else ""))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self.mode == "bar":
            self._closed = True
            self._bar.close()
            return
        self.close()

    # ------------------------------------------------------------------ text
    def _info_text(self) -> str:
        info = self._info() if callable(self._info) else self._info
        return info or ""

    def _amount(self, n: float) -> str:
        return format_amount(n, self.unit, self.unit_scale)

    def status_line(self, now: float | None = None) -> str:
        """The log line for the current state: counts, percentage, info, rate, elapsed time and time left."""
        now = self.clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.n / elapsed
        if self.unit_scale:
            count = self._amount(self.n) + (f"/{self._amount(self.total)}" if self.total else "")
        else:
            count = f"{self.unit} {self.n:g}" + (f"/{self.total:g}" if self.total else "")
        parts = [count + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        info = self._info_text()
        if info:
            parts.append(info)
        parts.append(f"{format_amount(rate, self.unit, self.unit_scale)}/s")
        parts.append(f"{format_time(elapsed)} elapsed")
        if self.total and rate > 0:
            parts.append(f"eta {format_time((self.total - self.n) / rate)}")
        return f"{self.desc}: " + ", ".join(parts)

    def _write(self, line: str) -> None:
        self.lines += 1
        self.stream.write(line + "\n")
        self.stream.flush()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", **kwargs: Any) -> Iterator[T]:
    """Yield from `iterable`, reporting one unit per item (`total` defaults to `len(iterable)`); see `Progress`."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = Progress(total, desc, **kwargs)
    with bar:
        for item in iterable:
            yield item
            bar.update(1)
