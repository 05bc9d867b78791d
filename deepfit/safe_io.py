"""Files that are never half-written and never run code when read.

- `atomic_torch_save` / `atomic_write_bytes`: write to a temporary file beside the target, flush and `fsync`,
  rename over the target, `fsync` the folder. A crash leaves the old file or the new one, never half of one.
- `safe_torch_load`: `torch.load(weights_only=True)` (tensors and plain containers only); a file that needs
  pickle raises `PickleRefusedError` unless the caller passes `allow_pickle=True`.
- `atomic_write_with(path, write)`: the same for a writer that only takes a file name (safetensors).
- `needs_pickle`: why a file would need pickle to load (`None` for safetensors and the like).

Every file is created with the permissions of a plain `open()` (0666 minus the umask, usually 0644), also
when the library that writes it makes its files private. A full disk raises `DiskFullError` ("no space left
on device while writing FILE") instead of torch's `[enforce fail at inline_container.cc]`; the target is left
as it was and the temporary file is removed.

This module imports nothing from deepfit.
"""

from __future__ import annotations

import errno
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or applied; the message says which file and why."""


class PickleRefusedError(CheckpointError):
    """A file needs pickle (arbitrary Python objects) to load, and `allow_pickle` was not given.

    `path` is the file and `reason` what in it needs pickle (both may be `None` when raised by other code).
    """

    def __init__(self, message: str, path: str | Path | None = None, reason: str | None = None):
        super().__init__(message)
        self.path, self.reason = path, reason


class DiskFullError(OSError):
    """No space left on the device (or over quota) while writing `filename`."""

    def __init__(self, path: str | Path):
        super().__init__(errno.ENOSPC, "no space left on device", str(path))

    def __str__(self) -> str:
        return f"no space left on device while writing {self.filename}"


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# what torch's zip writer says when a write it made failed (the OSError, if any, is in __context__)
_TORCH_WRITE_FAILED = ("enforce fail at inline_container", "PytorchStreamWriter failed", "unexpected pos")


def _disk_full_cause(e: BaseException) -> bool:
    """Whether `e`, or an error it was raised while handling, is a full disk or an exceeded quota."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(e) or f"os error {errno.ENOSPC}" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _no_space_left(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < 1 << 20  # under 1 MiB free for this user


def _write_failure(e: BaseException, path: Path) -> BaseException | None:
    """The error to raise instead of `e` (raised while writing `path`), or `None` to re-raise `e` itself."""
    if _disk_full_cause(e):
        return DiskFullError(path)
    text = str(e)
    if isinstance(e, RuntimeError) and any(t in text for t in _TORCH_WRITE_FAILED):
        if _no_space_left(path.parent):
            return DiskFullError(path)
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        return CheckpointError(f"writing {path} failed ({first}): is the disk full or the file system read-only?")
    return None


def default_file_mode() -> int:
    """The permissions `open()` gives a new file: 0o666 minus the process's umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no portable way to read it without setting it
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entry table to disk (so a rename in it survives a crash); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """`write(tmp)` writes the file `tmp` (beside `path`); it is then fsynced, given the default permissions
    (`default_file_mode`) and renamed over `path`. A failure removes `tmp` and leaves `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if (os.stat(tmp).st_mode & 0o777) != default_file_mode():
            os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        replacement = _write_failure(e, path) if isinstance(e, Exception) else None
        if replacement is not None:
            raise replacement from None
        raise
    fsync_dir(path.parent)
    return path


def _opened(fill: Callable[[Any], Any]) -> Callable[[Path], None]:
    """A writer for `atomic_write_with` that opens the file like `open()` and hands it to `fill`."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            fill(f)
    return write


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` to a temporary file beside `path`, flush, fsync, then rename it over `path`."""
    return atomic_write_with(path, _opened(lambda f: torch.save(obj, f)))


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    return atomic_write_with(path, _opened(lambda f: f.write(data)))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def safe_torch_load(path: str | Path, allow_pickle: bool = False) -> Any:
    """`torch.load` that refuses files needing pickle unless `allow_pickle=True`.

    With the default, only tensors and plain containers load (`weights_only=True`), so nothing in the
    file can run code. `allow_pickle=True` unpickles arbitrary objects and CAN RUN ANY CODE the file
    contains: use it only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if allow_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if needs_pickle(path) is None:  # not a pickle nor a torch archive: garbage that torch tried to unpickle
            raise CheckpointError(f"cannot read {path}: not a torch.save file (a truncated or corrupt file?)"
                                  ) from None
        first = str(e).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise PickleRefusedError(
            f"refusing to load {path}: it contains pickled Python objects, and unpickling can run arbitrary "
            f"code ({detail.strip()}). deepfit checkpoints hold only tensors and plain containers. If you trust "
            "this file, pass allow_pickle=True.", path=path,
            reason=f"it contains pickled Python objects ({detail.strip()})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e} (a truncated or corrupt file?)") from None


def _is_safetensors_header(head: bytes, size: int) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length, then the JSON header `{...`."""
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < header_len <= size - 8


def needs_pickle(path: str | Path) -> str | None:
    """Why the file `path` would need pickle to load (`None` when it looks pickle-free)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if _is_safetensors_header(head, path.stat().st_size):
        return None
    if head[:1] == b"\x80":
        return "it is a raw Python pickle"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                if any(n.endswith(".pkl") or n.endswith("/data.pkl") for n in z.namelist()):
                    return "it is a torch.save archive whose data.pkl is a Python pickle"
        except zipfile.BadZipFile:
            return None
    return None
