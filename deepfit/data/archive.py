"""Safe extraction of tar (any compression) and zip archives: nothing is written outside the destination.

Python's own `tarfile` filters are not relied on (on some 3.11/3.12 releases `filter="data"` follows
`os.path.realpath`, which stops resolving links past PATH_MAX: CVE-2025-4517). Instead every member is
checked, before anything is written, against a model of the folder the archive would create:

- names must be relative, without `..`, and unique unless both entries are folders or both files;
- no member may lie below a link or a file of the archive (nothing is ever written *through* a link);
- symbolic links are resolved here, component by component through the archive's own links, with at most
  `MAX_LINK_DEPTH` links followed; a link whose target leaves the folder (or the archive's single
  top-level folder, which `untar_data` makes the dataset folder) is refused, as is an absolute one;
- hard links must name a regular file of the archive (they are extracted as copies);
- device files and FIFOs are refused;
- the total size of the files is limited (`max_size`, and `max_ratio` times the archive's size, never
  less than `MIN_RATIO_ALLOWANCE`); the headers are checked before the data is written and the bytes
  actually written are counted too.

Folders are then opened one component at a time relative to their parent and files created in them, all
with `O_NOFOLLOW` (so no write passes through a link even if one appeared, and paths longer than PATH_MAX
work), and symbolic links are created last, after every file. The destination must be a missing or
empty folder.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from ..progress import Progress

DEFAULT_MAX_SIZE = 8 << 30  # bytes; the largest archive in URLS (GloVe 6B) expands to about 2.3 GB
DEFAULT_MAX_RATIO = 200.0  # dataset archives expand 1-10x; a gzip bomb about 1000x
MIN_RATIO_ALLOWANCE = 64 << 20  # the ratio limit never goes below this, so small archives are not refused
DEFAULT_MAX_MEMBERS = 2_000_000
MAX_LINK_DEPTH = 40  # like the Linux kernel's limit on links followed while resolving one path

Parts = tuple[str, ...]


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside its folder, or a device file."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """An archive expands to more than the size (or member-count) limit."""


@dataclass
class _Entry:
    kind: str  # "dir", "file", "symlink", "hardlink"
    member: object  # tarfile.TarInfo or zipfile.ZipInfo
    link: str = ""  # symlink target as written in the archive, or the hard link's target path
    size: int = 0


@dataclass
class _Plan:
    entries: dict[Parts, _Entry] = field(default_factory=dict)
    order: list[Parts] = field(default_factory=list)  # first appearance of each path
    total: int = 0


def size_limit(archive: str | Path, max_size: int | None = DEFAULT_MAX_SIZE,
               max_ratio: float | None = DEFAULT_MAX_RATIO) -> int | None:
    """The number of bytes `archive` may expand to: `max_size`, lowered to `max_ratio` times the archive's
    size (but not below `MIN_RATIO_ALLOWANCE`); `None` for both means no limit."""
    limits = []
    if max_size is not None:
        limits.append(int(max_size))
    if max_ratio is not None:
        limits.append(max(MIN_RATIO_ALLOWANCE, int(max_ratio * os.path.getsize(archive))))
    return min(limits) if limits else None


def _refuse(name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"refusing to extract archive member {name!r}: it is {why}")


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")


def clean_name(name: str) -> Parts:
    """The components of a member name, with `.` and empty ones dropped; raises for absolute names or `..`."""
    if _is_absolute(name):
        raise _refuse(name, "an absolute path")
    parts = tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", "."))
    if ".." in parts:
        raise _refuse(name, "a path with a '..' component")
    if any("\0" in p for p in parts):
        raise _refuse(name, "a name with a NUL character")
    return parts


def _add(plan: _Plan, parts: Parts, entry: _Entry, name: str, limit: int | None, max_members: int | None,
         archive: Path) -> None:
    if max_members is not None and len(plan.order) >= max_members:
        raise ArchiveTooLargeError(f"{archive}: more than {max_members} members; pass max_members= (or None) to "
                                   "extract it anyway")
    old = plan.entries.get(parts)
    if old is not None and not (old.kind == entry.kind and entry.kind in ("dir", "file")):
        raise _refuse(name, f"a second entry for the same path (a {old.kind}, then a {entry.kind})")
    if old is None:
        plan.order.append(parts)
    plan.entries[parts] = entry
    plan.total += entry.size
    if limit is not None and plan.total > limit:
        raise ArchiveTooLargeError(f"{archive}: refusing to extract: its files add up to more than {limit} bytes "
                                   f"(at member {name!r}); pass a larger max_size= / max_ratio= (or None) if you "
                                   "trust it")


def _plan_tar(tar: tarfile.TarFile, archive: Path, limit: int | None, max_members: int | None) -> _Plan:
    plan = _Plan()
    for m in tar:  # lazily: a member over the limit is refused before the data after it is read
        parts = clean_name(m.name)
        if m.isdir():
            entry = _Entry("dir", m)
        elif m.isreg():
            entry = _Entry("file", m, size=m.size)
        elif m.issym():
            entry = _Entry("symlink", m, link=m.linkname)
        elif m.islnk():
            entry = _Entry("hardlink", m, link=m.linkname)
        else:
            raise _refuse(m.name, "a device file or FIFO")
        if not parts:
            if entry.kind == "dir":
                continue  # the archive's own root, "./"
            raise _refuse(m.name, "a non-folder entry for the destination folder itself")
        _add(plan, parts, entry, m.name, limit, max_members, archive)
    return plan


def _plan_zip(z: zipfile.ZipFile, archive: Path, limit: int | None, max_members: int | None) -> _Plan:
    plan = _Plan()
    for info in z.infolist():
        parts = clean_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _refuse(info.filename, "a symbolic link (not supported in zip archives)")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise _refuse(info.filename, "a device file or FIFO")
        entry = _Entry("dir", info) if info.is_dir() else _Entry("file", info, size=info.file_size)
        if not parts:
            if entry.kind == "dir":
                continue
            raise _refuse(info.filename, "a non-folder entry for the destination folder itself")
        _add(plan, parts, entry, info.filename, limit, max_members, archive)
    return plan


def single_top_folder(plan: _Plan) -> Parts:
    """`(name,)` when every member lies in one top-level folder (which `untar_data` unwraps), else `()`."""
    tops = {parts[0] for parts in plan.order}
    if len(tops) != 1:
        return ()
    top = next(iter(tops))
    entry = plan.entries.get((top,))
    return (top,) if entry is None or entry.kind == "dir" else ()


def resolve_link(link_path: Parts, target: str, symlinks: dict[Parts, str], root: Parts = (),
                 max_depth: int = MAX_LINK_DEPTH) -> Parts:
    """Where the symbolic link at `link_path` (pointing at `target`) leads, following the `symlinks` of the
    archive component by component as the kernel would; raises `UnsafeArchiveError` when the path leaves
    `root` at any step, is absolute, or follows more than `max_depth` links."""
    name = "/".join(link_path)
    parts = list(link_path[:-1])
    todo = target.split("/")
    if _is_absolute(target):
        raise _refuse(name, f"a symbolic link to the absolute path {target!r}")
    if not target or "\\" in target or "\0" in target:
        raise _refuse(name, f"a symbolic link with an empty target or one holding '\\' or NUL ({target!r})")
    followed = 0
    while todo:
        c = todo.pop(0)
        if c in ("", "."):
            continue
        if c == "..":
            if len(parts) <= len(root):
                raise _refuse(name, f"a symbolic link pointing outside the destination ({target!r})")
            parts.pop()
            continue
        parts.append(c)
        inner = symlinks.get(tuple(parts))
        if inner is not None:
            followed += 1
            if followed > max_depth:
                raise _refuse(name, f"a symbolic link through a chain of more than {max_depth} links ({target!r})")
            if _is_absolute(inner):
                raise _refuse(name, f"a symbolic link through a link to the absolute path {inner!r}")
            parts.pop()
            todo = inner.split("/") + todo
    if tuple(parts[: len(root)]) != root:
        raise _refuse(name, f"a symbolic link pointing outside the destination ({target!r})")
    return tuple(parts)


def check_plan(plan: _Plan) -> None:
    """Refuse members below a link or a file, links leaving the folder, and hard links to non-files."""
    not_folders = {p: e.kind for p, e in plan.entries.items() if e.kind != "dir"}
    for parts in plan.order:
        for i in range(1, len(parts)):
            kind = not_folders.get(parts[:i])
            if kind is not None:
                what = "link" if kind in ("symlink", "hardlink") else kind
                raise _refuse("/".join(parts), f"below the {what} {'/'.join(parts[:i])!r} of the same archive "
                              "(it would be extracted through it)")
    root = single_top_folder(plan)
    symlinks = {p: e.link for p, e in plan.entries.items() if e.kind == "symlink"}
    for parts, target in symlinks.items():
        resolve_link(parts, target, symlinks, root)
    for parts, entry in plan.entries.items():
        if entry.kind != "hardlink":
            continue
        name = "/".join(parts)
        try:
            target = clean_name(entry.link)
        except UnsafeArchiveError:
            raise _refuse(name, f"a hard link pointing outside the destination ({entry.link!r})") from None
        if plan.entries.get(target) is None or plan.entries[target].kind != "file":
            raise _refuse(name, f"a hard link to {entry.link!r}, which is not a file of the archive")
        entry.size = plan.entries[target].size


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FDS = os.open in os.supports_dir_fd and os.symlink in os.supports_dir_fd and os.mkdir in os.supports_dir_fd


class _Writer:
    """Writes below `dest`, counting bytes against `limit`.

    Where the platform allows, every folder is opened relative to its parent with `O_NOFOLLOW`, so that no
    write can pass through a symbolic link even if one appeared, and paths longer than PATH_MAX work.
    """

    def __init__(self, dest: Path, limit: int | None, archive: Path):
        self.dest, self.limit, self.archive, self.written = dest, limit, archive, 0
        self._cached: tuple[Parts, int] | None = None  # the last folder opened: files come grouped by folder

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _folder_fd(self, parts: Parts) -> int:
        """An open descriptor of the folder `dest/parts`, created as needed (do not close it)."""
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        self.close()
        fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        try:
            for c in parts:
                try:
                    os.mkdir(c, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                inner = os.open(c, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
        except OSError as e:
            os.close(fd)
            raise UnsafeArchiveError(f"{self.archive}: cannot create the folder {'/'.join(parts)!r} ({e})") from None
        self._cached = (parts, fd)
        return fd

    def folder(self, parts: Parts) -> None:
        if _DIR_FDS:
            self._folder_fd(parts)
        else:  # pragma: no cover - platforms without dir_fd (Windows)
            path = self.dest.joinpath(*parts)
            if path.is_symlink():
                raise UnsafeArchiveError(f"{path} became a symbolic link during extraction")
            path.mkdir(parents=True, exist_ok=True)

    def _open(self, parts: Parts, flags: int, mode: int = 0o600) -> int:
        if _DIR_FDS:
            return os.open(parts[-1], flags | _NOFOLLOW, mode, dir_fd=self._folder_fd(parts[:-1]))
        self.folder(parts[:-1])  # pragma: no cover
        return os.open(self.dest.joinpath(*parts), flags | _NOFOLLOW, mode)  # pragma: no cover

    def file(self, parts: Parts, src: IO[bytes], executable: bool, mtime: float | None = None) -> None:
        fd = self._open(parts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "wb") as out:
            while block := src.read(1 << 20):
                self.written += len(block)
                if self.limit is not None and self.written > self.limit:
                    raise ArchiveTooLargeError(f"{self.archive}: refusing to extract: more than {self.limit} bytes "
                                               "written (the headers understated the sizes)")
                out.write(block)
            out.flush()
            os.chmod(out.fileno(), 0o755 if executable else 0o644)
            if mtime is not None:
                os.utime(out.fileno(), (mtime, mtime))

    def read(self, parts: Parts) -> IO[bytes]:
        return os.fdopen(self._open(parts, os.O_RDONLY), "rb")

    def symlink(self, parts: Parts, target: str) -> None:
        if _DIR_FDS:
            os.symlink(target, parts[-1], dir_fd=self._folder_fd(parts[:-1]))
        else:  # pragma: no cover
            self.folder(parts[:-1])
            os.symlink(target, self.dest.joinpath(*parts))


def _prepare_dest(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise NotADirectoryError(f"{dest}: not a folder to extract into")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest}: extraction needs an empty folder (the archive's links are checked "
                              "against its own contents only)")


def _extract_tar(archive: Path, dest: Path, limit: int | None, max_members: int | None) -> None:
    try:
        tar = tarfile.open(archive)
    except tarfile.TarError as e:
        raise ValueError(f"{archive}: not a tar or zip archive ({e})") from None
    with tar:
        try:
            _extract_open_tar(tar, archive, dest, limit, max_members)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise ValueError(f"{archive}: damaged tar archive ({type(e).__name__}: {e})") from None


def _extract_open_tar(tar: tarfile.TarFile, archive: Path, dest: Path, limit: int | None, max_members: int | None
                      ) -> None:
    plan = _plan_tar(tar, archive, limit, max_members)
    check_plan(plan)
    _prepare_dest(dest)
    w = _Writer(dest, limit, archive)
    try:
        with _progress(plan, archive) as bar:
            for parts in plan.order:  # folders and files first, in archive order
                entry = plan.entries[parts]
                if entry.kind == "dir":
                    w.folder(parts)
                elif entry.kind == "file":
                    m = entry.member
                    src = tar.extractfile(m)
                    assert src is not None
                    with src:
                        w.file(parts, src, executable=bool(m.mode & 0o100), mtime=m.mtime)
                    bar.update(1)
        _links_last(plan, w)
    finally:
        w.close()


def _progress(plan: _Plan, archive: Path) -> Progress:
    """Progress over the regular files of `plan` (a bar in a terminal, lines in a log; see `deepfit.progress`)."""
    n_files = sum(1 for e in plan.entries.values() if e.kind == "file")
    return Progress(n_files, f"extracting {archive.name}", "files")


def _links_last(plan: _Plan, w: _Writer) -> None:
    for parts in plan.order:  # hard links as copies of files extracted above
        entry = plan.entries[parts]
        if entry.kind == "hardlink":
            with w.read(clean_name(entry.link)) as src:
                w.file(parts, src, executable=False)
    for parts in plan.order:  # symbolic links last: nothing is written after them
        entry = plan.entries[parts]
        if entry.kind == "symlink":
            w.symlink(parts, entry.link)


def _extract_zip(archive: Path, dest: Path, limit: int | None, max_members: int | None) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            _extract_open_zip(z, archive, dest, limit, max_members)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{archive}: damaged zip archive ({type(e).__name__}: {e})") from None


def _extract_open_zip(z: zipfile.ZipFile, archive: Path, dest: Path, limit: int | None, max_members: int | None
                      ) -> None:
    plan = _plan_zip(z, archive, limit, max_members)
    check_plan(plan)
    _prepare_dest(dest)
    w = _Writer(dest, limit, archive)
    try:
        with _progress(plan, archive) as bar:
            for parts in plan.order:
                entry = plan.entries[parts]
                if entry.kind == "dir":
                    w.folder(parts)
                else:
                    info = entry.member
                    with z.open(info) as src:
                        w.file(parts, src, executable=bool((info.external_attr >> 16) & 0o100))
                    bar.update(1)
    finally:
        w.close()


def extract_archive(archive: str | Path, dest: str | Path, max_size: int | None = DEFAULT_MAX_SIZE,
                    max_ratio: float | None = DEFAULT_MAX_RATIO, max_members: int | None = DEFAULT_MAX_MEMBERS
                    ) -> Path:
    """Extract a tar (any compression) or zip archive into the missing or empty folder `dest`.

    Unsafe members raise `UnsafeArchiveError` before anything is written (see the module docstring);
    an archive that expands to more than `size_limit(archive, max_size, max_ratio)` bytes or holds more
    than `max_members` entries raises `ArchiveTooLargeError`. After an error during writing `dest` may
    hold part of the archive, never anything outside it.
    """
    archive, dest = Path(archive), Path(dest)
    limit = size_limit(archive, max_size, max_ratio)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, limit, max_members)
    else:
        _extract_tar(archive, dest, limit, max_members)
    return dest
