"""Downloading files into the cache folder, with SHA-256 verification and atomic renames."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path


def cache_dir() -> Path:
    """`$DEEPFIT_DATA` if set, else `~/.cache/deepfit`."""
    return Path(os.environ.get("DEEPFIT_DATA") or Path.home() / ".cache" / "deepfit")


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 differs from the expected one."""


def download_file(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60.0,
                  chunk: int = 1 << 16) -> Path:
    """Download `url` to `dest` unless a file with the right checksum is already there.

    The bytes go to `dest.part` and are renamed over `dest` only after the checksum matches; a
    mismatch deletes the partial file and raises `ChecksumError` naming the URL and both digests.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
        while block := response.read(chunk):
            h.update(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    digest = h.hexdigest()
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}")
    os.replace(part, dest)
    return dest
