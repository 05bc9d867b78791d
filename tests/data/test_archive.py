"""Safe extraction: the PATH_MAX symlink-chain escape, links resolved here, nothing written through a link,
size limits against decompression bombs, unsafe tar and zip members."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from deepfit.data.archive import (
    MIN_RATIO_ALLOWANCE,
    ArchiveTooLargeError,
    UnsafeArchiveError,
    extract_archive,
    resolve_link,
    size_limit,
)
from tests.helpers.archives import LONG_DIR, STEPS, gzip_bomb_tar, pathmax_chain, pathmax_escape_tar, tar_bytes

REG, SYM, LNK, DIR = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pathmax_symlink_chain_cannot_write_outside(tmp_path):
    dest = tmp_path / "l1" / "l2" / "l3" / "dest"  # the attack writes FILE three levels above dest
    archive = write(tmp_path, "evil.tar", pathmax_escape_tar())
    with pytest.raises(UnsafeArchiveError, match="extracted through it"):
        extract_archive(archive, dest)
    assert not (tmp_path / "l1" / "FILE").exists()
    assert not any(p.name == "FILE" for p in tmp_path.rglob("*"))
    assert not dest.exists() or list(dest.iterdir()) == []  # refused before writing anything


def test_pathmax_chain_link_is_resolved_here_not_by_realpath(tmp_path):
    members, chain = pathmax_chain(real_link_path=True)  # no member below a link: only resolution can tell
    archive = write(tmp_path, "evil.tar", tar_bytes(members + [("escape", SYM, chain + "/../../..")]))
    with pytest.raises(UnsafeArchiveError, match=r"'escape'.*symbolic link pointing outside"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").iterdir()) == []
    ok = write(tmp_path, "ok.tar", tar_bytes(members + [("back", SYM, chain + "/" + LONG_DIR)]))
    extract_archive(ok, tmp_path / "ok")  # the same chain ending inside is fine
    assert os.readlink(tmp_path / "ok" / "back") == chain + "/" + LONG_DIR


def test_resolve_link_follows_the_archive_links():
    links = {("a",): LONG_DIR}
    path = (LONG_DIR,)
    for step in STEPS[1:]:
        links[path + (step,)] = LONG_DIR
        path += (LONG_DIR,)
    links[path + ("l",)] = "../" * len(STEPS)
    chain = "/".join(STEPS) + "/l"
    assert resolve_link(("x",), chain, links) == ()
    assert resolve_link(("x",), "/".join(STEPS), links) == (LONG_DIR,) * len(STEPS)
    with pytest.raises(UnsafeArchiveError, match="pointing outside"):
        resolve_link(("x",), chain + "/..", links)
    with pytest.raises(UnsafeArchiveError, match="chain of more than 40 links"):
        resolve_link(("x",), "loop1/f", {("loop1",): "loop2", ("loop2",): "loop1"})
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        resolve_link(("x",), "a", {("a",): "/etc"})


@pytest.mark.parametrize("members,why", [
    ([("../evil.txt", REG, b"x")], "'..' component"),
    ([("ok/../../evil.txt", REG, b"x")], "'..' component"),
    ([("/tmp/deepfit-evil.txt", REG, b"x")], "absolute path"),
    ([("link", SYM, "/etc/passwd")], "symbolic link to the absolute path"),
    ([("sub/link", SYM, "../../outside")], "symbolic link pointing outside"),
    ([("top/f", REG, b"x"), ("top/up", SYM, "..")], "symbolic link pointing outside"),  # leaves the unwrapped folder
    ([("win", SYM, "..\\..\\outside")], "holding '\\\\' or NUL"),
    ([("hard", LNK, "../outside")], "hard link pointing outside"),
    ([("hard", LNK, "nothing")], "hard link to 'nothing', which is not a file"),
    ([("dev", tarfile.CHRTYPE, None)], "device file"),
    ([("fifo", tarfile.FIFOTYPE, None)], "device file or FIFO"),
    ([("sub", DIR, None), ("link", SYM, "sub"), ("link/f", REG, b"x")], "below the link 'link'"),
    ([("f", REG, b"x"), ("f", SYM, "/etc")], "second entry for the same path"),
    ([("f", REG, b"x"), ("f/g", REG, b"x")], "below the file 'f'"),
])
def test_unsafe_tar_members_are_refused(tmp_path, members, why):
    archive = write(tmp_path, "evil.tar", tar_bytes(members))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=why):
        extract_archive(archive, dest)
    assert not dest.exists() or list(dest.iterdir()) == []  # refused before writing anything
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/deepfit-evil.txt").exists()


def test_safe_links_are_kept_and_created_after_the_files(tmp_path):
    archive = write(tmp_path, "ok.tar.gz", tar_bytes([
        ("top/latest", SYM, "v1"),  # a link before the folder it points to
        ("top/v1/data.txt", REG, b"one"),
        ("top/v1/copy.txt", LNK, "top/v1/data.txt"),
        ("top/v1/same", SYM, "../v1/./data.txt"),
    ], fmt="w:gz"))
    dest = extract_archive(archive, tmp_path / "dest")
    assert (dest / "top" / "latest").is_symlink() and (dest / "top" / "latest" / "data.txt").read_bytes() == b"one"
    assert (dest / "top" / "v1" / "same").read_bytes() == b"one"
    copy = dest / "top" / "v1" / "copy.txt"
    assert copy.read_bytes() == b"one" and not copy.is_symlink()


def test_destination_must_be_empty(tmp_path):
    archive = write(tmp_path, "a.tar", tar_bytes([("f", REG, b"x")]))
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "existing").symlink_to(tmp_path)
    with pytest.raises(FileExistsError, match="needs an empty folder"):
        extract_archive(archive, tmp_path / "dest")


def test_gzip_bomb_is_refused_by_the_default_limit(tmp_path):
    archive = write(tmp_path, "bomb.tar.gz", gzip_bomb_tar())  # about 1 MB expanding to 1 GiB
    assert archive.stat().st_size < 2 << 20
    assert size_limit(archive) < 1 << 30
    with pytest.raises(ArchiveTooLargeError, match=r"bomb.tar.gz: refusing to extract: its files add up to more "
                                                    r"than \d+ bytes \(at member 'zeros.bin'\)"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_size_limit_is_configurable(tmp_path):
    archive = write(tmp_path, "two.tar", tar_bytes([("a", REG, b"1" * 600), ("b", REG, b"2" * 600)]))
    with pytest.raises(ArchiveTooLargeError, match=r"more than 1000 bytes \(at member 'b'\)"):
        extract_archive(archive, tmp_path / "small", max_size=1000)
    assert not (tmp_path / "small").exists()
    extract_archive(archive, tmp_path / "big", max_size=1200)
    assert (tmp_path / "big" / "b").read_bytes() == b"2" * 600
    assert size_limit(archive, max_size=None, max_ratio=None) is None
    assert size_limit(archive, max_size=None, max_ratio=2.0) == MIN_RATIO_ALLOWANCE
    with pytest.raises(ArchiveTooLargeError, match="more than 1 members"):
        extract_archive(archive, tmp_path / "count", max_members=1)


def test_hard_link_copies_count_towards_the_limit(tmp_path):
    members = [("a", REG, b"x" * 600)] + [(f"h{i}", LNK, "a") for i in range(3)]
    archive = write(tmp_path, "h.tar", tar_bytes(members))
    with pytest.raises(ArchiveTooLargeError, match="more than 1000 bytes written"):
        extract_archive(archive, tmp_path / "dest", max_size=1000)


def test_unsafe_zip_members_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("fine.txt", "ok")
        z.writestr("../evil.txt", "pwned")
    with pytest.raises(UnsafeArchiveError, match="'..' component"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("l")
        info.external_attr = (0o120777 << 16)
        z.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_archive(link, tmp_path / "dest2")


def test_zip_extraction_and_size_limit(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/fine.txt", "ok")
        z.writestr("d/zeros.bin", b"\0" * 5000)
    assert (extract_archive(good, tmp_path / "g") / "d" / "fine.txt").read_text() == "ok"
    with pytest.raises(ArchiveTooLargeError, match="more than 4000 bytes"):
        extract_archive(good, tmp_path / "small", max_size=4000)
    assert not (tmp_path / "small").exists()


def test_not_an_archive(tmp_path):
    with pytest.raises(ValueError, match="not a tar or zip archive"):
        extract_archive(write(tmp_path, "x.tgz", b"hello" * 100), tmp_path / "dest")
    truncated = tar_bytes([("a", REG, os.urandom(5000))], fmt="w:gz")[:2000]
    with pytest.raises(ValueError, match=r"x2.tgz: (damaged tar archive|not a tar)"):
        extract_archive(write(tmp_path, "x2.tgz", truncated), tmp_path / "dest2")


def test_tar_written_by_tarfile_round_trips(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("alpha")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        tar.add(src, arcname=".")
    dest = extract_archive(write(tmp_path, "s.tar.xz", buf.getvalue()), tmp_path / "dest")
    assert (dest / "sub" / "a.txt").read_text() == "alpha"
    assert os.stat(dest / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(dest / "sub" / "a.txt").st_mode & 0o777 == 0o644
