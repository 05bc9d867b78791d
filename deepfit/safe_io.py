"""Files that are never half-written and never run code when read.

- `atomic_torch_save` / `atomic_write_bytes`: write to a temporary file beside the target, flush and `fsync`,
  rename over the target, `fsync` the folder. A crash leaves the old file or the new one, never half of one.
- `safe_torch_load`: `torch.load(weights_only=True)` (tensors and plain containers only); a file that needs
  pickle raises `PickleRefusedError` unless the caller passes `allow_pickle=True`.
- `needs_pickle`: why a file would need pickle to load (`None` for safetensors and the like).

This module imports nothing from deepfit.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or applied; the message says which file and why."""


class PickleRefusedError(CheckpointError):
    """A file needs pickle (arbitrary Python objects) to load, and `allow_pickle` was not given."""


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


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` to a temporary file beside `path`, flush, fsync, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


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
        first = str(e).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise PickleRefusedError(
            f"refusing to load {path}: it contains pickled Python objects, and unpickling can run arbitrary "
            f"code ({detail.strip()}). deepfit checkpoints hold only tensors and plain containers. If you trust "
            "this file, pass allow_pickle=True.") from None
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
