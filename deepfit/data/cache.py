"""A decoded-image cache: every item of an image dataset as uint8 at the training size, in one `.npy` file.

An image folder that does not fit in memory is decoded (JPEG → pixels → resized) every epoch; this cache
does that once. The first pass over the data fills a temporary file row by row (`write`), `finish` renames it
into place, and later epochs read the rows from a read-only `numpy` memory map, at the speed of memory
(or of the disk, when the file is larger than the page cache).

- **Key**: the file name is `<ident>-<stamp>.npy`. `ident` hashes the item list (paths in order), the
  items' shape and the item-transform spec (mode and transforms); `stamp` hashes every file's size and
  modification time. A changed, replaced or touched file changes `stamp`: the old cache is no longer
  used, and it is deleted when its replacement is written. Another item list or size gets another file.
- **Atomic**: rows go to `.<name>.tmp-<pid>` beside the final name, which appears only once every row is
  written (flushed, fsynced, renamed). A process killed during the first epoch leaves no half cache; its
  temporary file is removed by the next process that builds the same cache.
- **Where**: `location=True` puts it in `<root>/.deepfit-cache/` beside the data when that folder can be
  written, else in `$DEEPFIT_DATA/image-cache/` (default `~/.cache/deepfit/image-cache`); a path puts it
  in that folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..safe_io import fsync_dir
from .download import cache_dir

CACHE_FOLDER = ".deepfit-cache"


class CacheError(OSError):
    """The decoded cache cannot be written or read; the message names the file."""


def _digest(parts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_key(items: Sequence[str | Path], shape: Sequence[int], spec: str) -> tuple[str, str]:
    """`(ident, stamp)`: `ident` from the item list, item shape and transform spec; `stamp` from each file's
    size and modification time (nanoseconds). A missing file raises `FileNotFoundError` naming it."""
    ident = _digest([str(Path(p)) for p in items] + ["shape", "x".join(map(str, shape)), "spec", spec])
    stats = []
    for p in items:
        st = os.stat(p)
        stats.append(f"{st.st_size}:{st.st_mtime_ns}")
    return ident, _digest(stats)


def _writable(folder: Path) -> bool:
    """True when `folder` exists or can be made, and a file can be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def cache_folder(root: str | Path | None, location: bool | str | Path = True) -> Path:
    """The folder of the cache files: `location` when it is a path, else `root/.deepfit-cache` when it can be
    written, else `$DEEPFIT_DATA/image-cache`."""
    if not isinstance(location, bool):
        return Path(location)
    if root is not None:
        beside = Path(root) / CACHE_FOLDER
        if _writable(beside):
            return beside
    return cache_dir() / "image-cache"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DecodedCache:
    """The uint8 rows `len(items) × shape` of one dataset, built once and then memory-mapped.

    `complete` says whether a valid cache file exists; `array()` is then its read-only memory map.
    Otherwise `write(rows, values)` fills rows of a temporary file (started on the first write), `missing()`
    lists the rows not written yet and `finish()` moves the file into place once all are.
    """

    def __init__(self, items: Sequence[str | Path], shape: Sequence[int], spec: str, folder: str | Path):
        self.n, self.shape = len(items), tuple(int(s) for s in shape)
        self.ident, self.stamp = cache_key(items, self.shape, spec)
        self.folder = Path(folder)
        self.path = self.folder / f"{self.ident}-{self.stamp}.npy"
        self._array: np.memmap | None = None
        self._tmp: Path | None = None
        self._rows: np.memmap | None = None
        self._filled: np.ndarray | None = None

    @property
    def full_shape(self) -> tuple[int, ...]:
        return (self.n, *self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.full_shape))

    # ------------------------------------------------------------------ reading
    def _open(self) -> np.memmap | None:
        if not self.path.is_file():
            return None
        try:
            arr = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if arr.dtype != np.uint8 or tuple(arr.shape) != self.full_shape:
            return None
        return arr

    @property
    def complete(self) -> bool:
        """True when the cache file exists and has the expected shape (it is then opened for reading)."""
        if self._array is None:
            self._array = self._open()
        return self._array is not None

    def array(self) -> np.memmap:
        """The cached rows, memory-mapped read-only."""
        if not self.complete:
            raise CacheError(f"{self.path}: the decoded cache is not complete")
        return self._array  # type: ignore[return-value]

    # ------------------------------------------------------------------ writing
    def _begin(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_dead_temporaries()
        self._tmp = self.folder / f".{self.path.name}.tmp-{os.getpid()}"
        try:
            self._rows = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=np.uint8, shape=self.full_shape)
        except OSError as e:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
            raise CacheError(f"{self.folder}: cannot write the decoded cache ({e.strerror or e}); "
                             f"{self.nbytes / 2**20:.0f} MiB are needed") from None
        self._filled = np.zeros(self.n, dtype=bool)

    def _remove_dead_temporaries(self) -> None:
        for tmp in self.folder.glob(f".{self.ident}-*.npy.tmp-*"):
            try:
                pid = int(tmp.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                tmp.unlink(missing_ok=True)

    @property
    def building(self) -> bool:
        """True while a temporary file is being filled."""
        return self._rows is not None

    def write(self, rows: Sequence[int] | np.ndarray, values: np.ndarray) -> None:
        """Store `values[k]` (uint8, `shape`) as row `rows[k]`."""
        if self._array is not None:
            return
        if self._rows is None:
            self._begin()
        rows = np.asarray(rows, dtype=np.int64)
        if values.shape != (len(rows), *self.shape) or values.dtype != np.uint8:
            raise ValueError(f"DecodedCache.write: expected uint8 values of shape {(len(rows), *self.shape)}, "
                             f"got {values.dtype} {tuple(values.shape)}")
        self._rows[rows] = values
        self._filled[rows] = True  # type: ignore[index]

    def missing(self) -> np.ndarray:
        """The rows not written yet (all of them before the first write)."""
        if self.complete:
            return np.zeros(0, dtype=np.int64)
        if self._filled is None:
            return np.arange(self.n)
        return np.flatnonzero(~self._filled)

    def finish(self, decode: Callable[[int], np.ndarray] | None = None) -> bool:
        """Write the missing rows with `decode(row)` (when given), then move the file into place.

        Returns True when the cache is complete. Older versions of this cache (same `ident`, another
        `stamp`: files that changed since) are deleted.
        """
        if self.complete:
            return True
        if self._rows is None:
            if decode is None or self.n == 0:
                return False
            self._begin()
        missing = self.missing()
        if len(missing) and decode is None:
            return False
        for i in missing:
            self.write([int(i)], np.asarray(decode(int(i)))[None])  # type: ignore[misc]
        self._rows.flush()  # type: ignore[union-attr]
        self._rows = None  # closes the map
        tmp, self._tmp = self._tmp, None
        fd = os.open(tmp, os.O_RDONLY)  # type: ignore[arg-type]
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)  # type: ignore[arg-type]
        fsync_dir(self.folder)
        for old in self.folder.glob(f"{self.ident}-*.npy"):
            if old != self.path:
                old.unlink(missing_ok=True)
        self._filled = None
        return self.complete

    def abort(self) -> None:
        """Drop the temporary file of an unfinished cache."""
        self._rows = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self._filled = None

    def __del__(self) -> None:
        try:
            self.abort()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "complete" if self._array is not None else ("building" if self.building else "absent")
        return f"DecodedCache({self.path}, {self.n} items of {'×'.join(map(str, self.shape))}, {state})"


__all__ = ["CACHE_FOLDER", "CacheError", "DecodedCache", "cache_folder", "cache_key"]
