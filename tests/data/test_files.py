"""The one folder walk (`get_files`) and the single-file readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfit.data.blocks import get_image_files
from deepfit.data.files import EmptyDataError, get_files, list_files


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ["train/a/1.PNG", "train/a/2.jpg", "train/b/3.png", "valid/a/4.png", "train/.hidden/5.png",
                "train/a/.6.png", "notes.txt", "train/a/sub/7.png"]:
        touch(tmp_path / rel)
    return tmp_path


def test_get_files_walks_sorted_skipping_hidden_and_matching_extensions_case_insensitively(tree: Path):
    files = get_files(tree, extensions=["png"])
    rel = [p.relative_to(tree).as_posix() for p in files]
    assert rel == ["train/a/1.PNG", "train/a/sub/7.png", "train/b/3.png", "valid/a/4.png"]
    assert get_files(tree, ".txt") == [tree / "notes.txt"]  # one extension as a string
    assert len(get_files(tree)) == 6


def test_get_files_folders_and_no_recursion(tree: Path):
    assert [p.name for p in get_files(tree, [".png"], folders=["valid"])] == ["4.png"]
    assert [p.name for p in get_files(tree / "train" / "a", [".png", ".jpg"], recurse=False)] == ["1.PNG", "2.jpg"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        get_files(tree, folders=["nowhere"])


def test_image_files_and_list_files_are_the_same_walk(tree: Path):
    assert get_image_files(tree) == get_files(tree, [".png", ".jpg"])
    assert list_files(tree, [".png"]) == get_files(tree, [".png"])


def test_empty_folder_is_a_list_for_get_files_and_an_error_for_list_files(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    assert get_files(tmp_path / "empty") == []
    with pytest.raises(EmptyDataError, match="empty.*no files with extensions"):
        list_files(tmp_path / "empty", [".png"])
    with pytest.raises(EmptyDataError):
        get_files(tmp_path / "empty", allow_empty=False)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        get_files(tmp_path / "missing")


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width`×`height` pixels (PIL checks the size when opening, before decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def test_decompression_bomb_names_the_file(tmp_path: Path):
    """PIL's DecompressionBombError is not an OSError: it escaped without the file's name."""
    from deepfit.data.external import DataFormatError
    from deepfit.data.files import read_image_file

    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(DataFormatError, match=rf"^{bomb}: image too large to open safely .*MAX_IMAGE_PIXELS"):
        read_image_file(bomb)
