"""Data block pieces: item lists from folders or CSV files, splitters, labellers and the category vocabulary.

Everything here is plain data (paths, strings, index lists); reading images, batching them and the
`ImageList` item list are in `vision.py`.

    items = get_image_files(path)                             # every image file under path, sorted
    train_idx, valid_idx = GrandparentSplitter()(items)       # by the train/ valid/ folder names
    labels = [parent_label(o) for o in items]                 # the class folder
    cats = CategoryProcessor().fit([labels[i] for i in train_idx])
    cats.save('vocab.json'); CategoryProcessor.load('vocab.json').encode(labels)
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch

from .files import get_files

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


# --------------------------------------------------------------------------- item lists


def get_image_files(path: str | Path, recurse: bool = True, folders: Sequence[str] | None = None,
                    extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under `path` (by extension), sorted."""
    return get_files(path, extensions, recurse, folders)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, as dicts."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty CSV file (no header row)")
        return list(reader)


def _cell(row, col: str | int, i: int):
    try:
        if isinstance(row, Mapping) and isinstance(col, int):
            return list(row.values())[col]
        return row[col]
    except (KeyError, IndexError):
        raise KeyError(f"row {i} has no column {col!r} (columns: {list(row) if isinstance(row, Mapping) else len(row)})"
                       ) from None


# --------------------------------------------------------------------------- splitters


def _check_split(train: list[int], valid: list[int], n: int, name: str) -> tuple[list[int], list[int]]:
    if set(train) & set(valid):
        raise ValueError(f"{name}: train and valid share {len(set(train) & set(valid))} items")
    bad = [i for i in (*train, *valid) if not 0 <= i < n]
    if bad:
        raise IndexError(f"{name}: indices {bad[:5]} out of range for {n} items")
    if not train:
        raise ValueError(f"{name}: the training split is empty ({n} items)")
    return train, valid


class GrandparentSplitter:
    """Split by the name of the grandparent folder: `train/<class>/x.png` vs `valid/<class>/x.png`.

    Items under neither folder are left out of both splits.
    """

    def __init__(self, train_name: str = "train", valid_name: str = "valid"):
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[Path]) -> tuple[list[int], list[int]]:
        gp = [Path(o).parent.parent.name for o in items]
        train = [i for i, g in enumerate(gp) if g == self.train_name]
        valid = [i for i, g in enumerate(gp) if g == self.valid_name]
        if not valid:
            raise ValueError(f"GrandparentSplitter: no items in a folder named {self.valid_name!r} "
                             f"(grandparent folders found: {sorted(set(gp))[:10]})")
        return _check_split(train, valid, len(items), "GrandparentSplitter")


class RandomSplitter:
    """Hold out a random `valid_pct` of the items, drawn with `seed` (same seed, same split)."""

    def __init__(self, valid_pct: float = 0.2, seed: int = 0):
        if not 0 < valid_pct < 1:
            raise ValueError(f"RandomSplitter: valid_pct must be in (0, 1), got {valid_pct}")
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: Sequence) -> tuple[list[int], list[int]]:
        n = len(items)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_valid = int(round(n * self.valid_pct))
        return _check_split(sorted(perm[n_valid:]), sorted(perm[:n_valid]), n, "RandomSplitter")


class FuncSplitter:
    """Items for which `fn(item)` is true go to validation."""

    def __init__(self, fn: Callable[[Path], bool]):
        self.fn = fn

    def __call__(self, items: Sequence) -> tuple[list[int], list[int]]:
        flags = [bool(self.fn(o)) for o in items]
        return _check_split([i for i, f in enumerate(flags) if not f], [i for i, f in enumerate(flags) if f],
                            len(items), "FuncSplitter")


class IndexSplitter:
    """The items at `valid_idx` go to validation, the rest to training."""

    def __init__(self, valid_idx: Iterable[int]):
        self.valid_idx = sorted({int(i) for i in valid_idx})

    def __call__(self, items: Sequence) -> tuple[list[int], list[int]]:
        valid = set(self.valid_idx)
        train = [i for i in range(len(items)) if i not in valid]
        return _check_split(train, list(self.valid_idx), len(items), "IndexSplitter")


# --------------------------------------------------------------------------- labellers


def parent_label(item: str | Path) -> str:
    """The name of the folder holding the file."""
    return Path(item).parent.name


class RegexLabeller:
    """The first group of `pattern` searched in the file name (or the whole path with `on='path'`)."""

    def __init__(self, pattern: str, on: str = "name"):
        if on not in ("name", "path"):
            raise ValueError(f"RegexLabeller: on must be 'name' or 'path', got {on!r}")
        self.pattern, self.on = re.compile(pattern), on

    def __call__(self, item: str | Path) -> str:
        text = Path(item).name if self.on == "name" else Path(item).as_posix()
        m = self.pattern.search(text)
        if m is None:
            raise ValueError(f"RegexLabeller: pattern {self.pattern.pattern!r} does not match {item}")
        return m.group(1) if m.groups() else m.group(0)


class ColumnLabeller:
    """Label from a column of a table (CSV file path, or rows as dicts), looked up by file name.

    The key of an item is its path relative to the table's image folder `root` when given (so
    `train/x.png` style names work), else its file name.
    """

    def __init__(self, table: str | Path | Sequence[Mapping[str, str]], fn_col: str | int = 0,
                 label_col: str | int = 1, root: str | Path | None = None, suffix: str = ""):
        rows = read_csv(table) if isinstance(table, (str, Path)) else list(table)
        self.root, self.suffix = (Path(root) if root is not None else None), suffix
        self.mapping: dict[str, str] = {}
        for i, row in enumerate(rows):
            self.mapping[f"{_cell(row, fn_col, i)}{suffix}".replace("\\", "/")] = str(_cell(row, label_col, i))
        self.source = str(table) if isinstance(table, (str, Path)) else "rows"

    def __call__(self, item: str | Path) -> str:
        item = Path(item)
        keys = []
        if self.root is not None and item.is_relative_to(self.root):
            keys.append(item.relative_to(self.root).as_posix())
        keys.append(item.name)
        for key in keys:
            if key in self.mapping:
                return self.mapping[key]
        raise KeyError(f"ColumnLabeller: {item} has no row in {self.source} (looked up {keys})")


# --------------------------------------------------------------------------- category vocabulary


class CategoryProcessor:
    """Builds the class vocabulary from the training labels and maps labels to indices and back.

    The same processor (or one `load`ed from its JSON file) encodes validation, test and inference
    labels, so index `i` always means `vocab[i]`.
    """

    def __init__(self, vocab: Sequence[str] | None = None, sort: bool = True):
        self.sort = sort
        self.vocab: list[str] | None = None
        if vocab is not None:
            self._set_vocab(list(vocab))

    def _set_vocab(self, vocab: list[str]) -> None:
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"CategoryProcessor: duplicate classes in vocab {vocab}")
        self.vocab = vocab
        self.o2i = {o: i for i, o in enumerate(vocab)}

    def fit(self, labels: Iterable) -> CategoryProcessor:
        """Build the vocabulary from `labels` (sorted unique values, or in order of appearance)."""
        labels = [str(o) for o in labels]
        uniq = sorted(set(labels)) if self.sort else list(dict.fromkeys(labels))
        if not uniq:
            raise ValueError("CategoryProcessor: no labels to build a vocabulary from")
        self._set_vocab(uniq)
        return self

    def encode(self, labels: Iterable, items: Sequence | None = None) -> torch.Tensor:
        """Indices of `labels` (int64); an unknown label is an error naming it (and its item when given)."""
        if self.vocab is None:
            raise RuntimeError("CategoryProcessor: call fit() or give a vocab before encoding")
        out = []
        for i, o in enumerate(labels):
            try:
                out.append(self.o2i[str(o)])
            except KeyError:
                where = f" (item {items[i]})" if items is not None else ""
                raise KeyError(f"label {o!r}{where} is not in the vocabulary {self.vocab}") from None
        return torch.tensor(out, dtype=torch.long)

    def decode(self, idxs) -> list[str] | str:
        """Class names of indices (a single name for a single index)."""
        if isinstance(idxs, int) or (isinstance(idxs, torch.Tensor) and idxs.ndim == 0):
            return self.vocab[int(idxs)]
        return [self.vocab[int(i)] for i in idxs]

    def __len__(self) -> int:
        return len(self.vocab or ())

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"vocab": self.vocab, "sort": self.sort}, indent=1, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> CategoryProcessor:
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            vocab = data["vocab"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a vocabulary file written by CategoryProcessor.save ({e})") from e
        if not isinstance(vocab, list):
            raise ValueError(f"{path}: 'vocab' must be a list, got {type(vocab).__name__}")
        return cls(vocab, sort=data.get("sort", True))

    def __repr__(self) -> str:
        return f"CategoryProcessor({self.vocab})"
