"""`deepfit.safe_io`: atomic writes (a full disk named as such, permissions as `open()` gives), safe loads."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch

from deepfit import safe_io
from deepfit.safe_io import (
    CheckpointError,
    DiskFullError,
    PickleRefusedError,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_with,
    default_file_mode,
    safe_torch_load,
)

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")


def _open_on_full_disk(monkeypatch) -> None:
    """Every file safe_io opens for writing is /dev/full: each write fails with ENOSPC, as on a full disk."""
    real_open = open

    def full(path, mode="r", *args, **kwargs):
        return real_open("/dev/full", mode, *args, **kwargs) if "w" in mode else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(safe_io, "open", full, raising=False)


@needs_dev_full
def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "ck.pt"
    atomic_torch_save({"w": torch.ones(3)}, target)
    _open_on_full_disk(monkeypatch)
    for write in (lambda: atomic_torch_save({"w": torch.zeros(100_000)}, target),
                  lambda: atomic_write_bytes(b"x" * 100_000, target)):
        with pytest.raises(DiskFullError) as e:
            write()
        assert str(e.value) == f"no space left on device while writing {target}"
        assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
        assert "enforce fail" not in str(e.value)
    monkeypatch.undo()
    assert torch.equal(safe_torch_load(target)["w"], torch.ones(3))  # the previous file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temporary file left


@pytest.mark.parametrize("free, expected", [(0, DiskFullError), (1 << 30, CheckpointError)])
def test_torch_zip_writer_failure_is_explained(tmp_path, monkeypatch, free, expected):
    """torch's own message when its writes fail: 'no space left' when the disk is full, else a named failure."""

    def failing_save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    class Stat:
        f_bavail, f_frsize = free, 1

    monkeypatch.setattr(safe_io.torch, "save", failing_save)
    monkeypatch.setattr(safe_io.os, "statvfs", lambda _: Stat())
    target = tmp_path / "models" / "best.pth"
    with pytest.raises(expected) as e:
        atomic_torch_save({"w": torch.ones(1)}, target)
    if expected is DiskFullError:
        assert str(e.value) == f"no space left on device while writing {target}"
    else:
        assert str(e.value).startswith(f"writing {target} failed ([enforce fail")
        assert not isinstance(e.value, DiskFullError)
    assert list(target.parent.iterdir()) == []


def test_torch_error_raised_while_handling_enospc_is_a_full_disk(tmp_path, monkeypatch):
    """torch raises its enforce-fail RuntimeError while handling the OSError(ENOSPC) of the file's write()."""

    def save(obj, f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 40704 vs 598") from None

    monkeypatch.setattr(safe_io.torch, "save", save)
    with pytest.raises(DiskFullError, match="no space left on device while writing"):
        atomic_torch_save({}, tmp_path / "x.pt")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_get_the_umask_permissions_even_from_private_writers(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert default_file_mode() == 0o666 & ~umask
        plain = atomic_write_bytes(b"x", tmp_path / "plain.bin")

        def private_writer(tmp: Path) -> None:  # like safetensors, which creates its files 0600
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, b"data")
            os.close(fd)

        private = atomic_write_with(tmp_path / "w.safetensors", private_writer)
    finally:
        os.umask(old)
    assert private.read_bytes() == b"data"
    for p in (plain, private):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p


def test_a_failing_writer_leaves_nothing(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        atomic_write_with(target, broken)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_are_refused_with_their_path_and_garbage_is_called_corrupt(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(PickleRefusedError) as e:
        safe_torch_load(evil)
    assert e.value.path == evil and "pickled Python objects" in e.value.reason and not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage, not a pickle")
    with pytest.raises(CheckpointError, match="not a torch.save file") as e:
        safe_torch_load(garbage)
    assert not isinstance(e.value, PickleRefusedError)
