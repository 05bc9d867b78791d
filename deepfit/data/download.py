"""Downloading files into the cache folder: resumable, SHA-256 verified, renamed into place atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
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


class DownloadError(OSError):
    """A download could not be completed; the partial file is kept so that the next call resumes it."""


def _content_range_total(value: str | None) -> int | None:
    """The total size in a `Content-Range: bytes a-b/total` header."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _fetch_into(url: str, part: Path, timeout: float, chunk: int) -> bool:
    """Append the rest of `url` to `part` (asking for a byte range when part of it is there).

    Returns True when the server's announced size was reached (or no size was announced).
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "deepfit", "Range": f"bytes={have}-"} if have else {"User-Agent": "deepfit"}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is complete (the checksum decides)
            return True
        raise
    with response:
        if have and response.status == 206:
            mode, total = "ab", _content_range_total(response.headers.get("Content-Range"))
        else:  # the server ignored the range: start again
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, mode) as f:
            while block := response.read(chunk):
                f.write(block)
                have += len(block)
            f.flush()
            os.fsync(f.fileno())
    return total is None or have >= total


def download_file(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60.0,
                  chunk: int = 1 << 16, retries: int = 3) -> Path:
    """Download `url` to `dest` unless a file with the right checksum is already there.

    The bytes go to `dest.part`; an interrupted transfer (a dropped connection, a killed process) is
    resumed from where it stopped with an HTTP `Range` request, up to `retries` times within this call and
    again on the next call. `dest` appears (by an atomic rename) only once the SHA-256 matches `sha256`;
    a mismatch deletes the partial file and raises `ChecksumError` naming the URL and both digests.
    With `sha256=None` nothing is verified.
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_of(dest) == sha256:
            return dest
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    error: Exception | None = None
    for _ in range(retries + 1):
        try:
            if _fetch_into(url, part, timeout, chunk):
                break
            error = None
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
            error = e
        except (OSError, http.client.HTTPException) as e:
            error = e
    else:
        size = part.stat().st_size if part.exists() else 0
        reason = f" ({type(error).__name__}: {error})" if error is not None else " (the connection closed early)"
        raise DownloadError(f"download of {url} incomplete after {retries + 1} attempts{reason}; {size} bytes are "
                            f"kept in {part} and the next call resumes from there")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest} "
                            "(the file was deleted)")
    os.replace(part, dest)
    return dest
