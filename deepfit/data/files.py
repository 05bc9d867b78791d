"""Reading single data files with errors that name the file and what is wrong.

Data readers call these so that a bad file fails with the same kind of message everywhere:

- `read_text_file(path)`: UTF-8 text; invalid bytes raise `DataFormatError` with the byte offset;
- `read_image_file(path, mode)`: a fully decoded PIL image; undecodable files raise `DataFormatError`;
- `require_columns(path, header, columns)`: a CSV header holding the columns a task needs;
- `get_files(folder, extensions)`: the one folder walk (sorted, hidden entries skipped); `list_files` is
  the same walk raising when the folder holds no matching file;
- `check_not_empty(n, what)`: a dataset or split with at least one item.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .external import DataFormatError


class EmptyDataError(ValueError):
    """A dataset, split or folder holds no items."""


def read_text_file(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of `path` (a leading UTF-8 byte-order mark removed).

    Raises `DataFormatError` naming the file and the byte offset of the first invalid byte.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not valid {e.encoding.upper()} at byte offset {e.start} "
                              f"(byte 0x{data[e.start]:02x}: {e.reason}); re-encode the file as UTF-8") from None
    return text.removeprefix("\ufeff")


_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def to_8bit(img):
    """A grayscale PIL image with more than 8 bits per pixel as an 8-bit 'L' image, scaled, not clipped.

    16-bit modes ('I;16'...) map 0..65535 to 0..255. 32-bit integer images ('I', which is how some
    16-bit PNGs open) are taken as 16-bit when a value exceeds 255, else as 8-bit. Float images ('F')
    with values in [0, 1] are scaled by 255, others clipped to [0, 255]. Other modes are returned as they are.
    """
    from PIL import Image

    if img.mode not in _SIXTEEN_BIT_MODES and img.mode not in ("I", "F"):
        return img
    a = np.asarray(img).astype(np.float64)
    if img.mode in _SIXTEEN_BIT_MODES or (img.mode == "I" and a.size and a.max() > 255):
        a = a * (255.0 / 65535.0)
    elif img.mode == "F" and a.size and a.min() >= 0 and a.max() <= 1:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def read_image_file(path: str | Path, mode: str | None = None):
    """Open and fully decode the image `path` (converted to `mode`, e.g. 'L' or 'RGB', when given).

    Grayscale images deeper than 8 bits (16-bit PNGs...) are scaled to 8 bits first (`to_8bit`).
    Raises `FileNotFoundError` for a missing file and `DataFormatError` naming the file when it cannot be
    decoded (not an image, truncated, unsupported format, or over PIL's decompression-bomb limit).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            img = to_8bit(img)
            return img.convert(mode) if mode is not None and img.mode != mode else img.copy()
    except Image.DecompressionBombError as e:  # an Exception, not an OSError
        raise DataFormatError(f"{path}: image too large to open safely ({e}); if you trust it, raise "
                              "PIL.Image.MAX_IMAGE_PIXELS") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataFormatError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None


def require_columns(path: str | Path, header: Sequence[str] | None, columns: Iterable[str | None]) -> None:
    """Raise `DataFormatError` when a CSV `header` lacks one of `columns` (`None` entries are ignored)."""
    header = list(header or [])
    missing = [c for c in columns if c is not None and c not in header]
    if missing:
        raise DataFormatError(f"{path}: no column {missing[0]!r} (columns are: {', '.join(map(repr, header))})")


def _normalize_extensions(extensions: Iterable[str] | None) -> set[str] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = [extensions]
    return {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}


def get_files(path: str | Path, extensions: Iterable[str] | None = None, recurse: bool = True,
              folders: Sequence[str] | None = None, allow_empty: bool = True) -> list[Path]:
    """Sorted non-hidden files under `path` whose suffix is in `extensions` (case-insensitive; `None`: any).

    `folders` restricts the walk to these sub-folders of `path`; hidden files and folders are skipped.
    A missing folder raises `FileNotFoundError`; with `allow_empty=False` finding no file raises `EmptyDataError`.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    exts = _normalize_extensions(extensions)
    roots = [path / f for f in folders] if folders else [path]
    out: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recurse else []
            out += [Path(dirpath) / f for f in filenames
                    if not f.startswith(".") and (exts is None or os.path.splitext(f)[1].lower() in exts)]
    if not out and not allow_empty:
        kinds = f" with extensions {sorted(exts)}" if exts else ""
        raise EmptyDataError(f"{path}: folder holds no files{kinds}")
    return sorted(out)


def list_files(folder: str | Path, extensions: Iterable[str] | None = None, recurse: bool = True) -> list[Path]:
    """`get_files(folder, extensions, recurse, allow_empty=False)` (the older name, kept as an alias)."""
    return get_files(folder, extensions, recurse, allow_empty=False)


def check_not_empty(n: int, what: str) -> None:
    """Raise `EmptyDataError` when `what` (e.g. 'training set of images in data/train') has `n == 0` items."""
    if n == 0:
        raise EmptyDataError(f"{what} is empty (0 items)")
