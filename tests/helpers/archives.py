"""Builders of (malicious) archives for the extraction tests."""

from __future__ import annotations

import gzip
import io
import tarfile

STEPS = "abcdefghijklmnop"
LONG_DIR = "d" * 247


def tar_bytes(members: list[tuple], fmt: str = "w") -> bytes:
    """A tar from `(name, kind, linkname_or_data)` triples; kind is a `tarfile` type constant."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=fmt) as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            data = b""
            if kind == tarfile.REGTYPE:
                data = extra
            elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = extra
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def pathmax_chain(real_link_path: bool = False) -> tuple[list[tuple], str]:
    """The members of the PATH_MAX symlink chain of CVE-2025-4517 and the chain's path.

    16 nested 247-character folders, links `a`..`p` to them (each inside the previous folder), and a
    254-character link `a/b/.../p/lll...` to `../` x 16, which leads back to the top. Resolved by
    `os.path.realpath`, the chain exceeds PATH_MAX and stops being followed, so a link to
    `<chain>/../../..` looks as if it stayed inside. With `real_link_path`, the long link is stored under
    its real folder path instead of through the links.
    """
    members, path = [], ""
    for step in STEPS:
        members.append((f"{path}{LONG_DIR}", tarfile.DIRTYPE, None))
        members.append((f"{path}{step}", tarfile.SYMTYPE, LONG_DIR))
        path += LONG_DIR + "/"
    chain = "/".join(STEPS) + "/" + "l" * 254
    stored = path + "l" * 254 if real_link_path else chain
    members.append((stored, tarfile.SYMTYPE, "../" * len(STEPS)))
    return members, chain


def pathmax_escape_tar(payload: bytes = b"written outside") -> bytes:
    """The attack of issue 17: `escape -> <chain>/../../..` and a member `escape/FILE`."""
    members, chain = pathmax_chain()
    members += [("escape", tarfile.SYMTYPE, chain + "/../../.."), ("escape/FILE", tarfile.REGTYPE, payload)]
    return tar_bytes(members)


def gzip_bomb_tar(size: int = 1 << 30, block: int = 8 << 20) -> bytes:
    """A .tar.gz of about 1 MB holding one file of `size` zero bytes (gzip members of zeros, concatenated)."""
    assert size % block == 0
    info = tarfile.TarInfo("zeros.bin")
    info.size = size
    zeros = gzip.compress(b"\0" * block, compresslevel=9)
    return (gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)) + zeros * (size // block)
            + gzip.compress(b"\0" * 1024))
