"""Standard dataset archives: download into the cache folder, verify, extract safely.

    path = untar_data("imagenette_160")                      # a name from URLS
    path = untar_data("https://example.org/data.tgz", sha256="…")

Archives go to `cache_dir()/archives`, extracted folders to `cache_dir()/data` (`$DEEPFIT_DATA`, default
`~/.cache/deepfit`). Downloads resume after an interruption and are checked against the size and MD5 or
SHA-256 known for them before anything reads them (see `deepfit.data.download`). Extraction is done by
`deepfit.data.archive.extract_archive`, which writes nothing outside the folder and limits the size.
Beside each extracted folder a stamp file `.NAME.source.json` records the URL and the checksums of the
archive it came from, so that a later call asking for a checksum gets a folder verified against it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from .archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_RATIO,
    DEFAULT_MAX_SIZE,
    ArchiveTooLargeError,
    UnsafeArchiveError,
    extract_archive,
)
from .download import Expected, cache_dir, download_verified
from .external import FASHION_MNIST_FILES, FASHION_MNIST_SIZES, FASHION_MNIST_URL

__all__ = ["URLS", "ArchiveTooLargeError", "RemoteFile", "UnsafeArchiveError", "archive_stem", "download_data",
           "extract_archive", "untar_data"]


class RemoteFile(NamedTuple):
    """A file to download and what it must match (`None`: not known)."""

    url: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


_S3 = "https://s3.amazonaws.com/fast-ai-"

# Sizes and MD5s of the fast.ai archives as fastai publishes them in fastai/data/checks.txt
# (github.com/fastai/fastai, commit 29be53d7ccaf7405320e2e47db8f35182abeff0a); MD5 detects corrupt or truncated
# downloads, pass sha256= as well to guard against a server crafting collisions.
# GloVe 6B: SHA-256 from torchtext's CHECKSUMS_GLOVE (github.com/pytorch/text, torchtext/experimental/vectors.py).
# Fashion-MNIST: SHA-256 and sizes of the official files (see deepfit.data.external).
URLS: dict[str, RemoteFile] = {
    "imdb": RemoteFile(f"{_S3}nlp/imdb.tgz", 144440600, "90f9b1c4ff43a90d67553c9240dc0249"),
    "imagenette_160": RemoteFile(f"{_S3}imageclas/imagenette2-160.tgz", 99003388, "c475f8f7617a200ba35b9facc48443c3"),
    "imagenette_320": RemoteFile(f"{_S3}imageclas/imagenette2-320.tgz", 341663724, "1f1f74f133caff120e575856659b87a2"),
    "imagenette": RemoteFile(f"{_S3}imageclas/imagenette2.tgz", 1557161267, "2c774ecb40005b35d7937d50f5d42336"),
    "imagewoof": RemoteFile(f"{_S3}imageclas/imagewoof2.tgz", 1343715595, "2cc1c1e36e20cb6fd24ffb978edcb487"),
    "imagewoof_160": RemoteFile(f"{_S3}imageclas/imagewoof2-160.tgz", 92612825, "3559b194123981a540b87132dbda412f"),
    "imagewoof_320": RemoteFile(f"{_S3}imageclas/imagewoof2-320.tgz", 328387740, "7a1fd92672a559a85de76e4810a20c21"),
    "cifar10": RemoteFile(f"{_S3}sample/cifar10.tgz", 168168549, "a5f8c31371b63a406b23368042812d3c"),
    "oxford_pets": RemoteFile(f"{_S3}imageclas/oxford-iiit-pet.tgz", 811706944, "e4db5c768afd933bb91f5f594d7417a4"),
    "mnist_png": RemoteFile(f"{_S3}imageclas/mnist_png.tgz", 15683414, "03639f83c4e3d19e0a3a53a8a997c487"),
    "glove_6b": RemoteFile("https://nlp.stanford.edu/data/glove.6B.zip",
                           sha256="617afb2fe6cbd085c235baf7a465b96f4112bd7f7ccb2b2cbd649fed9cbcf2fb"),
    **{f"fashion_mnist_{name.split('-')[0]}_{name.split('-')[1]}":
       RemoteFile(FASHION_MNIST_URL + name, FASHION_MNIST_SIZES[name], sha256=digest)
       for name, digest in FASHION_MNIST_FILES.items()},
}
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")


def _resolve(name_or_url: str, sha256: str | None, md5: str | None, size: int | None) -> tuple[str, Expected]:
    """The URL and what its file must match: the arguments when any is given, else the table's entry."""
    known = URLS.get(name_or_url) or next((r for r in URLS.values() if r.url == name_or_url), None)
    if known is None and "://" not in name_or_url:
        raise KeyError(f"unknown dataset {name_or_url!r}: give a URL or one of {', '.join(sorted(URLS))}")
    url = known.url if known is not None else name_or_url
    if sha256 is not None or md5 is not None or size is not None or known is None:
        return url, Expected(size, md5, sha256)
    return url, Expected(known.size, known.md5, known.sha256)


def _file_name(url: str) -> str:
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise ValueError(f"cannot tell a file name from the URL {url!r}: pass fname=")
    return name


def archive_stem(name: str) -> str:
    """`'imagenette2-160.tgz'` -> `'imagenette2-160'`."""
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _download(url: str, expected: Expected, fname: str | Path | None, force: bool, timeout: float
              ) -> tuple[Path, dict[str, str]]:
    dest = Path(fname) if fname is not None else cache_dir() / "archives" / _file_name(url)
    if force and dest.exists():
        dest.unlink()
    return download_verified(url, dest, expected, timeout=timeout)


def download_data(url: str, sha256: str | None = None, fname: str | Path | None = None, force: bool = False,
                  timeout: float = 60.0, md5: str | None = None, size: int | None = None) -> Path:
    """Download `url` (or a name from `URLS`) to `cache_dir()/archives` (or `fname`); returns the file.

    Resumable, and verified against `size`, `md5` and `sha256` (when none is given: the table's values)
    before it is returned.
    """
    url, expected = _resolve(url, sha256, md5, size)
    return _download(url, expected, fname, force, timeout)[0]


def _stamp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.source.json")


def _stamp_matches(target: Path, expected: Expected) -> bool:
    """Whether `target` was extracted from an archive matching `expected` (always, when nothing is expected).

    Raises `FileExistsError` when a checksum is expected but `target` has no stamp: it was not made here.
    """
    if not expected.known:
        return True
    try:
        stamp = json.loads(_stamp_path(target).read_text())
    except FileNotFoundError:
        raise FileExistsError(f"{target} exists but has no record of the archive it was extracted from "
                              f"({_stamp_path(target).name}), so it cannot be verified; pass force=True to "
                              "replace it") from None
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict):
        return False
    checks = {"size": expected.size, "md5": expected.md5 and expected.md5.lower(),
              "sha256": expected.sha256 and expected.sha256.lower()}
    return all(stamp.get(k) == v for k, v in checks.items() if v is not None)


def _write_stamp(target: Path, url: str, size: int, digests: dict[str, str]) -> None:
    path = _stamp_path(target)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "size": size, **digests}))
    os.replace(tmp, path)


def untar_data(url: str, sha256: str | None = None, dest: str | Path | None = None, force: bool = False,
               timeout: float = 60.0, md5: str | None = None, size: int | None = None,
               max_size: int | None = DEFAULT_MAX_SIZE, max_ratio: float | None = DEFAULT_MAX_RATIO,
               max_members: int | None = DEFAULT_MAX_MEMBERS) -> Path:
    """Download (see `download_data`) and extract an archive; returns the extracted folder.

    The folder is `dest` or `cache_dir()/data/<archive name without suffix>`; when the archive holds a single
    top-level folder, that folder becomes it. Extraction goes to a temporary folder renamed into place, so an
    interrupted extraction is redone on the next call. An existing folder is returned only when its stamp
    shows it was extracted from an archive with the expected size and checksums (or none are expected);
    with another stamp, or with `force`, the archive is verified (downloaded again if needed) and extracted
    again; a folder without a stamp raises `FileExistsError` (pass `force=True` to replace it).
    `max_size`, `max_ratio`, `max_members`: limits on the extracted size (see `extract_archive`).
    """
    url, expected = _resolve(url, sha256, md5, size)
    target = Path(dest) if dest is not None else cache_dir() / "data" / archive_stem(_file_name(url))
    if target.exists() and not force and _stamp_matches(target, expected):
        return target
    archive, digests = _download(url, expected, None, force, timeout)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        extract_archive(archive, tmp, max_size=max_size, max_ratio=max_ratio, max_members=max_members)
        entries = list(tmp.iterdir())
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() else tmp
        _stamp_path(target).unlink(missing_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        os.replace(src, target)
        _write_stamp(target, url, archive.stat().st_size, digests)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
