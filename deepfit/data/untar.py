"""Standard dataset archives: download into the cache folder, verify, extract safely.

    path = untar_data("imagenette_160")                      # a name from URLS
    path = untar_data("https://example.org/data.tgz", sha256="…")

Archives go to `cache_dir()/archives`, extracted folders to `cache_dir()/data` (`$DEEPFIT_DATA`, default
`~/.cache/deepfit`). Downloads resume after an interruption and are checked against their SHA-256
before anything reads them. Extraction refuses, before writing anything, members with absolute paths,
`..` components, links pointing outside the destination (or anywhere, for absolute links) and device
files or FIFOs; tar archives are then extracted with the standard library's `data` filter as a second
line of defence.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .download import cache_dir, download_file
from .external import FASHION_MNIST_FILES, FASHION_MNIST_URL

_S3 = "https://s3.amazonaws.com/fast-ai-"

# name -> (url, sha256). A checksum is given only where it is known from a trusted source; `None` means
# "not known": such archives are downloaded without verification unless you pass `sha256=`.
URLS: dict[str, tuple[str, str | None]] = {
    "imdb": (f"{_S3}nlp/imdb.tgz", None),
    "imagenette_160": (f"{_S3}imageclas/imagenette2-160.tgz", None),
    "imagenette_320": (f"{_S3}imageclas/imagenette2-320.tgz", None),
    "imagenette": (f"{_S3}imageclas/imagenette2.tgz", None),
    "imagewoof": (f"{_S3}imageclas/imagewoof2.tgz", None),
    "imagewoof_160": (f"{_S3}imageclas/imagewoof2-160.tgz", None),
    "imagewoof_320": (f"{_S3}imageclas/imagewoof2-320.tgz", None),
    "cifar10": (f"{_S3}sample/cifar10.tgz", None),
    "oxford_pets": (f"{_S3}imageclas/oxford-iiit-pet.tgz", None),
    "mnist_png": (f"{_S3}imageclas/mnist_png.tgz", None),
    "glove_6b": ("https://nlp.stanford.edu/data/glove.6B.zip", None),
    **{f"fashion_mnist_{name.split('-')[0]}_{name.split('-')[1]}": (FASHION_MNIST_URL + name, digest)
       for name, digest in FASHION_MNIST_FILES.items()},
}
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside its folder, or a device file."""


def _resolve(name_or_url: str, sha256: str | None) -> tuple[str, str | None]:
    if name_or_url in URLS:
        url, known = URLS[name_or_url]
        return url, sha256 if sha256 is not None else known
    if "://" not in name_or_url:
        raise KeyError(f"unknown dataset {name_or_url!r}: give a URL or one of {', '.join(sorted(URLS))}")
    return name_or_url, sha256


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


def download_data(url: str, sha256: str | None = None, fname: str | Path | None = None, force: bool = False,
                  timeout: float = 60.0) -> Path:
    """Download `url` (or a name from `URLS`) to `cache_dir()/archives` (or `fname`); returns the file.

    Resumable and verified against `sha256` (or the table's checksum) before it is returned.
    """
    url, sha256 = _resolve(url, sha256)
    dest = Path(fname) if fname is not None else cache_dir() / "archives" / _file_name(url)
    if force and dest.exists():
        dest.unlink()
    return download_file(url, dest, sha256=sha256, timeout=timeout)


# ---------------------------------------------------------------------------------------------- safety
def _unsafe_name(name: str) -> str | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in p.parts:
        return "a '..' component"
    return None


def _inside(root: Path, target: Path) -> bool:
    root, target = os.path.realpath(root), os.path.realpath(target)
    return target == root or target.startswith(root + os.sep)


def check_tar_members(tar: tarfile.TarFile, dest: str | Path) -> None:
    """Raise `UnsafeArchiveError` naming the first member that is not safe to extract into `dest`."""
    dest = Path(dest)
    for m in tar.getmembers():
        why = _unsafe_name(m.name)
        if why is None and not _inside(dest, dest / m.name):
            why = "a path outside the destination"
        if why is None and (m.ischr() or m.isblk() or m.isfifo() or m.isdev()):
            why = "a device file or FIFO"
        if why is None and m.issym():
            if m.linkname.startswith("/") or (len(m.linkname) > 1 and m.linkname[1] == ":"):
                why = f"a symbolic link to the absolute path {m.linkname!r}"
            elif not _inside(dest, dest / Path(m.name).parent / m.linkname):
                why = f"a symbolic link pointing outside the destination ({m.linkname!r})"
        if why is None and m.islnk():
            if _unsafe_name(m.linkname) is not None or not _inside(dest, dest / m.linkname):
                why = f"a hard link pointing outside the destination ({m.linkname!r})"
        if why is not None:
            raise UnsafeArchiveError(f"refusing to extract archive member {m.name!r}: it is {why}")


def check_zip_members(z: zipfile.ZipFile, dest: str | Path) -> None:
    """Raise `UnsafeArchiveError` naming the first zip member that is not safe to extract into `dest`."""
    dest = Path(dest)
    for info in z.infolist():
        why = _unsafe_name(info.filename)
        if why is None and not _inside(dest, dest / info.filename):
            why = "a path outside the destination"
        mode = info.external_attr >> 16
        if why is None and stat.S_ISLNK(mode):
            why = "a symbolic link"
        if why is None and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
            why = "a device file or FIFO"
        if why is not None:
            raise UnsafeArchiveError(f"refusing to extract archive member {info.filename!r}: it is {why}")


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract a tar (any compression) or zip archive into the folder `dest`, refusing unsafe members."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            check_zip_members(z, dest)
            z.extractall(dest)
        return dest
    try:
        tar = tarfile.open(archive)
    except tarfile.TarError as e:
        raise ValueError(f"{archive}: not a tar or zip archive ({e})") from None
    with tar:
        check_tar_members(tar, dest)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without extraction filters; the members were checked above
            tar.extractall(dest)
    return dest


def untar_data(url: str, sha256: str | None = None, dest: str | Path | None = None, force: bool = False,
               timeout: float = 60.0) -> Path:
    """Download (see `download_data`) and extract an archive; returns the extracted folder.

    The folder is `dest` or `cache_dir()/data/<archive name without suffix>`; when the archive holds a single
    top-level folder, that folder becomes it. Extraction goes to a temporary folder renamed into place, so an
    interrupted extraction is redone on the next call. An existing folder is returned as is unless `force`.
    """
    url, sha256 = _resolve(url, sha256)
    name = _file_name(url)
    target = Path(dest) if dest is not None else cache_dir() / "data" / archive_stem(name)
    if target.exists() and not force:
        return target
    archive = download_data(url, sha256=sha256, force=force, timeout=timeout)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        extract_archive(archive, tmp)
        entries = list(tmp.iterdir())
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() else tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(src, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
