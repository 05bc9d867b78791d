"""Text items from disk: one file per text in class folders (the `aclImdb` layout), CSV files (one label
column, several labels in one column, or one 0/1 column per label), and the `fortune` format (entries
separated by lines holding `%`, the topic being the file name)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..data.multilabel import labels_from_columns, multi_hot, split_labels

FORTUNES_DIR = Path("/usr/share/games/fortunes")


class TextDecodeError(ValueError):
    """A text file is not valid UTF-8 (the message names the file and the byte offset)."""


@dataclass
class TextItems:
    """Texts with their labels (`None` when unlabelled) and where each came from.

    A label is one class name, or a list of names for multi-label data (`multi_label` is then `True`;
    `multi_hot()` gives the targets). `label_names`, when set (one 0/1 column per label), fixes the classes
    and their order even for labels no item has.
    """

    texts: list[str]
    labels: list[str | list[str] | None]
    sources: list[str] = field(default_factory=list)
    label_names: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"TextItems: {len(self.texts)} texts but {len(self.labels)} labels")
        if not self.sources:
            self.sources = [""] * len(self.texts)

    @property
    def multi_label(self) -> bool:
        """True when labels are lists of names."""
        return self.label_names is not None or any(isinstance(lbl, list) for lbl in self.labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, str | None]:
        return self.texts[i], self.labels[i]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels (of every item's list for multi-label data; `label_names` when set)."""
        if self.label_names is not None:
            return list(self.label_names)
        if self.multi_label:
            return sorted({n for lbl in self.labels if lbl is not None for n in lbl})
        return sorted({lbl for lbl in self.labels if lbl is not None})

    def label_ids(self, classes: Sequence[str] | None = None) -> list[int]:
        """Labels as indices into `classes` (default: `self.classes`); single-label data only."""
        if self.multi_label:
            raise ValueError("TextItems.label_ids: these items have several labels each; use multi_hot()")
        classes = list(self.classes if classes is None else classes)
        index = {c: i for i, c in enumerate(classes)}
        try:
            return [index[lbl] for lbl in self.labels]
        except KeyError as e:
            raise KeyError(f"label {e.args[0]!r} is not among the classes {classes}") from None

    def multi_hot(self, classes: Sequence[str] | None = None) -> Tensor:
        """Multi-hot float targets `(n_items, n_classes)` over `classes` (default: `self.classes`)."""
        classes = list(self.classes if classes is None else classes)
        rows = [[] if lbl is None else [lbl] if isinstance(lbl, str) else lbl for lbl in self.labels]
        return multi_hot(rows, classes)

    def __add__(self, other: TextItems) -> TextItems:
        if self.label_names != other.label_names:
            raise ValueError(f"TextItems: cannot add items with label columns {self.label_names} and "
                             f"{other.label_names}")
        return TextItems(self.texts + other.texts, self.labels + other.labels, self.sources + other.sources,
                         self.label_names)


def decode_utf8(data: bytes, name: str) -> str:
    """Decode UTF-8 bytes, raising `TextDecodeError` that names `name` and the offending byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextDecodeError(f"{name}: not valid UTF-8 at byte offset {e.start} "
                              f"(byte 0x{data[e.start]:02x}: {e.reason})") from None


def read_text(path: str | Path) -> str:
    """The content of a UTF-8 text file (a UTF-8 byte-order mark is dropped)."""
    path = Path(path)
    text = decode_utf8(path.read_bytes(), str(path))
    return text.removeprefix("\ufeff")


def split_fortunes(text: str) -> list[str]:
    """Entries of a fortune file's content: blocks separated by lines holding only `%` (empty ones dropped)."""
    entries, current = [], []
    for line in text.splitlines():
        if line.rstrip() == "%":
            entries.append("\n".join(current))
            current = []
        else:
            current.append(line)
    entries.append("\n".join(current))
    return [e for e in entries if e.strip()]


def read_fortunes(path: str | Path) -> list[str]:
    """Entries of one fortune file."""
    return split_fortunes(read_text(path))


def fortune_topics(folder: str | Path = FORTUNES_DIR) -> list[str]:
    """Topic files in a fortunes folder (index files `*.dat`, `*.u8` and hidden files are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no fortunes folder at {folder} (Debian/Ubuntu: apt-get install fortunes)")
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix not in (".dat", ".u8"))


def fortunes_texts(folder: str | Path = FORTUNES_DIR, topics: Sequence[str] | None = None) -> TextItems:
    """Every entry of the chosen topics (default: all), labelled with its topic (the file name)."""
    folder = Path(folder)
    topics = fortune_topics(folder) if topics is None else list(topics)
    texts, labels, sources = [], [], []
    for topic in topics:
        path = folder / topic
        if not path.is_file():
            raise FileNotFoundError(f"fortunes topic {topic!r}: no file {path}")
        entries = read_fortunes(path)
        texts += entries
        labels += [topic] * len(entries)
        sources += [f"{path}#{i}" for i in range(len(entries))]
    return TextItems(texts, labels, sources)


def texts_from_folder(path: str | Path, classes: Sequence[str] | None = None,
                      extensions: Sequence[str] = (".txt",)) -> TextItems:
    """One text per file under `path/<class>/`, labelled with its parent folder's name.

    `classes` picks the class folders (default: every sub-folder); files are read in sorted order.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"texts_from_folder: {path} is not a folder")
    if classes is None:
        classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    texts, labels, sources = [], [], []
    exts = {e.lower() for e in extensions}
    for c in classes:
        folder = path / c
        if not folder.is_dir():
            raise FileNotFoundError(f"texts_from_folder: class folder {folder} does not exist")
        for f in sorted(folder.rglob("*")):
            if f.is_file() and (not exts or f.suffix.lower() in exts):
                texts.append(read_text(f))
                labels.append(f.parent.name)
                sources.append(str(f))
    return TextItems(texts, labels, sources)


def imdb_texts(root: str | Path, split: str = "train") -> TextItems:
    """Reviews of an `aclImdb` folder: `split='train'` or `'test'` (labels `neg`/`pos`), or `'unsup'`
    (the unlabelled `train/unsup` reviews, labels `None`)."""
    root = Path(root)
    if split in ("train", "test"):
        return texts_from_folder(root / split, classes=["neg", "pos"])
    if split == "unsup":
        folder = root / "train" / "unsup"
        if not folder.is_dir():
            folder = root / "unsup"
        items = texts_from_folder(folder.parent, classes=[folder.name])
        return TextItems(items.texts, [None] * len(items), items.sources)
    raise ValueError(f"imdb_texts: split must be 'train', 'test' or 'unsup', got {split!r}")


def texts_from_csv(path: str | Path, text_col: str = "text", label_col: str | Sequence[str] | None = "label",
                   delimiter: str = ",", label_delim: str | None = None) -> TextItems:
    """Texts and labels from a CSV file with a header row.

    Args:
        text_col: the column holding the text.
        label_col: the label column; `None` for unlabelled texts; a list of columns for multi-label data with
            one 0/1 column per label (file 001's news CSV: `["Business", "SciTech", "Sports", "World"]`): each
            item's labels are the columns holding 1, and the columns are the classes, in that order.
        delimiter: the CSV field separator.
        label_delim: set it (e.g. `" "`) when one column holds several labels (`"cat dog"`): each label
            becomes a list of names (an empty cell: no label).
    """
    path = Path(path)
    content = decode_utf8(path.read_bytes(), str(path)).removeprefix("\ufeff")
    reader = csv.DictReader(content.splitlines(keepends=True), delimiter=delimiter)
    header = reader.fieldnames or []
    label_cols = [label_col] if isinstance(label_col, str) else list(label_col) if label_col is not None else []
    if not isinstance(label_col, str) and label_col is not None:
        if not label_cols:
            raise ValueError(f"{path}: label_col is an empty list")
        if label_delim is not None:
            raise ValueError(f"{path}: label_delim is for one label column holding several labels, not for "
                             f"a list of 0/1 columns")
    for col in [text_col, *label_cols]:
        if col not in header:
            raise KeyError(f"{path}: no column {col!r} (columns: {header})")
    texts, labels, sources = [], [], []
    for i, row in enumerate(reader):
        where = f"{path}:{i + 2}"
        texts.append(row[text_col] or "")
        if label_col is None:
            labels.append(None)
        elif not isinstance(label_col, str):
            labels.append(labels_from_columns(row, label_cols, where))
        elif label_delim is not None:
            labels.append(split_labels(row[label_col], label_delim))
        else:
            labels.append(row[label_col])
        sources.append(where)
    names = label_cols if label_col is not None and not isinstance(label_col, str) else None
    return TextItems(texts, labels, sources, label_names=names)
