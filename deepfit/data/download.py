"""Downloading files into the cache folder: resumable, verified, renamed into place atomically.

A transfer goes to `DEST.part`; the server's validators (a strong `ETag` or `Last-Modified`) and the
announced size go to `DEST.part.json`. An interrupted transfer is resumed with `Range` and `If-Range`,
and the answer is checked: a `206` must start at the offset asked for (`Content-Range`), its length must
agree with `Content-Length`, its validators and total size with those the partial file came from. A
`.part` that cannot be validated (no validators, another URL, a `416` answer, a changed file) is
discarded and the download starts again. A body without `Content-Length` that is not chunked cannot be
told apart from a truncated one: it is refused unless a size or checksum is known. `DEST` appears only
once the size, MD5 or SHA-256 given match.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..progress import Progress


def cache_dir() -> Path:
    """`$DEEPFIT_DATA` if set, else `~/.cache/deepfit`."""
    return Path(os.environ.get("DEEPFIT_DATA") or Path.home() / ".cache" / "deepfit")


def file_digests(path: str | Path, algorithms: tuple[str, ...] = ("sha256",), chunk: int = 1 << 20) -> dict[str, str]:
    """Hex digests of the file `path` for each of `algorithms` (hashlib names), in one pass."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    return file_digests(path, ("sha256",), chunk)["sha256"]


class ChecksumError(ValueError):
    """A downloaded file's size or checksum differs from the expected one."""


class DownloadError(OSError):
    """A download could not be completed; a partial file that can be validated is kept for the next call."""


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must match; `None` fields are not checked."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self):
        for name, length in (("md5", 32), ("sha256", 64)):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value):
                raise ValueError(f"{name}={value!r} is not a {length}-digit hexadecimal digest")
        if self.size is not None and self.size < 0:
            raise ValueError(f"size={self.size} is negative")

    @property
    def known(self) -> bool:
        return self.size is not None or self.md5 is not None or self.sha256 is not None

    def check(self, path: Path, url: str) -> dict[str, str]:
        """Raise `ChecksumError` when the file differs; returns its digests (always SHA-256, MD5 when expected)."""
        got = path.stat().st_size
        if self.size is not None and got != self.size:
            raise ChecksumError(f"size mismatch for {url}: expected {self.size} bytes, got {got}")
        digests = file_digests(path, ("sha256", "md5") if self.md5 is not None else ("sha256",))
        for name in ("sha256", "md5"):
            want = getattr(self, name)
            if want is not None and digests[name] != want.lower():
                raise ChecksumError(f"checksum mismatch for {url}: expected {name} {want.lower()}, got {digests[name]}")
        return digests


class _Restart(Exception):
    """The partial file cannot be continued: discard it and download from the start."""


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


def _read_meta(part: Path, url: str) -> dict | None:
    """The validators of `part`, or None when it cannot be validated (then it is discarded)."""
    try:
        meta = json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("url") != url or not _validator(meta):
        _discard(part)
        return None
    return meta


def _validator(meta: dict) -> str | None:
    """The `If-Range` value: a strong ETag, else Last-Modified (a weak ETag cannot be used)."""
    etag = meta.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = meta.get("last_modified")
    return modified if isinstance(modified, str) and modified else None


def _write_meta(part: Path, meta: dict) -> None:
    path = _meta_path(part)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path)


def _int_header(response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise _Restart(f"invalid {name} header {value!r}")
    return int(value)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def _content_range(value: str | None) -> tuple[int, int, int | None]:
    m = _CONTENT_RANGE.match(value or "")
    if m is None:
        raise _Restart(f"a 206 answer with the Content-Range {value!r}")
    start, end, total = int(m[1]), int(m[2]), None if m[3] == "*" else int(m[3])
    if end < start or (total is not None and end >= total):
        raise _Restart(f"a 206 answer with the inconsistent Content-Range {value!r}")
    return start, end, total


def _open(url: str, part: Path, meta: dict | None, timeout: float):
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "deepfit", "Accept-Encoding": "identity"}
    if have and meta is not None:
        headers.update({"Range": f"bytes={have}-", "If-Range": _validator(meta)})
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout), have
    except urllib.error.HTTPError as e:
        if e.code == 416:
            raise _Restart("the server refused the range request (HTTP 416)") from None
        raise


def _plan_response(response, url: str, part: Path, have: int, meta: dict | None, expected: Expected
                   ) -> tuple[str, int | None, dict]:
    """Check the answer's headers; returns the file mode, the number of body bytes announced and the
    validators of the file being written (recorded beside it for a full answer)."""
    length = _int_header(response, "Content-Length")
    validators = {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}
    if response.status == 206:
        if not have or meta is None:
            raise _Restart("a 206 answer to a request without Range")
        start, end, total = _content_range(response.headers.get("Content-Range"))
        if start != have:
            raise _Restart(f"a 206 answer starting at byte {start}, not at byte {have} as asked")
        if length is not None and length != end - start + 1:
            raise _Restart(f"a 206 answer with Content-Length {length} for the range {start}-{end}")
        for key, value in validators.items():
            if value is not None and meta.get(key) is not None and value != meta[key]:
                raise _Restart(f"the file changed on the server ({key} {meta[key]!r} -> {value!r})")
        if total is not None and meta.get("total") is not None and total != meta["total"]:
            raise _Restart(f"the file changed on the server (size {meta['total']} -> {total})")
        return "ab", end - start + 1, meta
    if response.status != 200:
        raise DownloadError(f"cannot download {url}: unexpected HTTP {response.status}")
    if expected.size is not None and length is not None and length != expected.size:
        raise ChecksumError(f"size mismatch for {url}: expected {expected.size} bytes, the server announces {length}")
    if length is None and not getattr(response, "chunked", False) and not expected.known:
        raise DownloadError(f"cannot download {url}: the server sent no Content-Length, so a connection closed "
                            "early cannot be told from the end of the file; pass size=, md5= or sha256=")
    meta = {"url": url, "total": length if length is not None else expected.size, **validators}
    _write_meta(part, meta)
    return "wb", length, meta


def _fetch_into(url: str, part: Path, expected: Expected, timeout: float, chunk: int) -> bool:
    """Append the rest of `url` to `part`; returns True when the file is complete as far as the answer tells."""
    meta = _read_meta(part, url) if part.exists() else None
    if meta is not None and meta.get("total") is not None and part.stat().st_size == meta["total"]:
        return True  # complete already (killed before the rename): the checks decide
    response, have = _open(url, part, meta, timeout)
    with response:
        mode, announced, meta = _plan_response(response, url, part, have, meta, expected)
        if mode == "wb":
            have = 0
        total = meta.get("total")
        received = 0
        to_receive = announced if announced is not None else (total - have if total is not None else None)
        with open(part, mode) as f, Progress(to_receive, f"downloading {part.name.removesuffix('.part')}", "B",
                                             unit_scale=True) as bar:
            while block := response.read(chunk):
                received += len(block)
                if (announced is not None and received > announced) or (total is not None and have + received > total):
                    raise _Restart(f"the server sent more than the {total if total is not None else announced} "
                                   "bytes it announced")
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    have += received
    if announced is not None and received < announced:
        return False
    return total is None or have >= total


def download_file(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60.0,
                  chunk: int = 1 << 16, retries: int = 3, md5: str | None = None, size: int | None = None) -> Path:
    """Download `url` to `dest` unless a file matching the given size and checksums is already there.

    See the module docstring for how transfers are resumed and checked. `dest` appears (by an atomic
    rename) only once its size and checksums match `size`, `md5`, `sha256`; a mismatch deletes the file
    and raises `ChecksumError` naming the URL and both values. With none of them given, only the
    transfer itself is checked.
    """
    return download_verified(url, dest, Expected(size, md5, sha256), timeout, chunk, retries)[0]


def download_verified(url: str, dest: str | Path, expected: Expected, timeout: float = 60.0, chunk: int = 1 << 16,
                      retries: int = 3) -> tuple[Path, dict[str, str]]:
    """`download_file`, also returning the file's digests (SHA-256 always, MD5 when expected)."""
    dest = Path(dest)
    if dest.exists():
        try:
            return dest, expected.check(dest, url)
        except ChecksumError:
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    error: Exception | None = None
    for _ in range(retries + 1):
        try:
            if _fetch_into(url, part, expected, timeout, chunk):
                break
            error = None
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
            error = e
        except _Restart as e:
            _discard(part)
            error = e
        except (ChecksumError, DownloadError):
            _discard(part)
            raise
        except (OSError, http.client.HTTPException) as e:
            error = e
    else:
        size = part.stat().st_size if part.exists() else 0
        reason = f" ({type(error).__name__}: {error})" if error is not None else " (the connection closed early)"
        kept = (f"{size} bytes are kept in {part} and the next call resumes from there" if size
                else "nothing was kept")
        raise DownloadError(f"download of {url} incomplete after {retries + 1} attempts{reason}; {kept}")
    try:
        digests = expected.check(part, url)
    except ChecksumError as e:
        _discard(part)
        raise ChecksumError(f"{e} (the file was deleted)") from None
    os.replace(part, dest)
    _meta_path(part).unlink(missing_ok=True)
    return dest, digests
