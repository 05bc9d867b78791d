"""Multi-label targets: several labels per item (fastai's MultiCategoryBlock).

Labels come as one column of delimited names (`"cat dog"`) or as one 0/1 column per label; each item's labels
become a multi-hot float row (`1.0` for each label it has), the target of `BCEWithLogitsLoss`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", ""}


def split_labels(value: str | Sequence[str] | None, delim: str | None = " ") -> list[str]:
    """The labels in one cell: `"cat dog"` -> `['cat', 'dog']` (`delim=None` splits on any whitespace).

    An empty cell or `None` gives `[]` (an item with no label); a list is returned as a list; repeated names
    are kept once, in order.
    """
    if value is None:
        return []
    parts = value.split(delim) if isinstance(value, str) else [str(v) for v in value]
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def labels_from_columns(row: Mapping[str, str], columns: Sequence[str], where: str = "row") -> list[str]:
    """The names of the `columns` whose cell in `row` is true (`1`, `true`, `yes`...; `0`, `false`, empty are
    false). Any other value is an error naming `where` and the column."""
    out = []
    for col in columns:
        if col not in row:
            raise KeyError(f"{where}: no column {col!r}")
        cell = (row[col] or "").strip().lower()
        if cell in _TRUE:
            out.append(col)
        elif cell not in _FALSE:
            raise ValueError(f"{where}: column {col!r} holds {row[col]!r}; a label column must hold 0/1 "
                             f"(or true/false)")
    return out


def multi_hot(label_lists: Iterable[Sequence[str]], classes: Sequence[str]) -> Tensor:
    """A float32 `(n_items, n_classes)` tensor with `1.0` where item `i` has label `classes[j]`."""
    index = {c: j for j, c in enumerate(classes)}
    rows = list(label_lists)
    out = torch.zeros(len(rows), len(index), dtype=torch.float32)
    for i, labels in enumerate(rows):
        for lbl in labels:
            try:
                out[i, index[lbl]] = 1.0
            except KeyError:
                raise KeyError(f"item {i}: label {lbl!r} is not among the classes {list(classes)}") from None
    return out


class MultiCategoryProcessor:
    """The label vocabulary of a multi-label task: label lists <-> multi-hot rows.

    `fit` collects every label seen (sorted, or in order of appearance with `sort=False`); `encode` gives
    multi-hot float rows; `decode` turns multi-hot rows or probabilities into label lists (every label whose
    value is above `thresh`).
    """

    def __init__(self, vocab: Sequence[str] | None = None, sort: bool = True):
        self.sort = sort
        self.vocab: list[str] | None = None
        if vocab is not None:
            self._set_vocab(list(vocab))

    def _set_vocab(self, vocab: list[str]) -> None:
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"MultiCategoryProcessor: duplicate classes in vocab {vocab}")
        self.vocab = vocab

    def fit(self, label_lists: Iterable[Sequence[str]]) -> MultiCategoryProcessor:
        """Build the vocabulary from every label of every item."""
        seen = [str(lbl) for labels in label_lists for lbl in labels]
        uniq = sorted(set(seen)) if self.sort else list(dict.fromkeys(seen))
        if not uniq:
            raise ValueError("MultiCategoryProcessor: no labels to build a vocabulary from")
        self._set_vocab(uniq)
        return self

    def encode(self, label_lists: Iterable[Sequence[str]]) -> Tensor:
        """Multi-hot float32 rows `(n_items, n_classes)`."""
        if self.vocab is None:
            raise RuntimeError("MultiCategoryProcessor: call fit() or give a vocab before encoding")
        return multi_hot(label_lists, self.vocab)

    def decode(self, rows: Tensor, thresh: float = 0.5) -> list[str] | list[list[str]]:
        """Labels whose value in `rows` is above `thresh`: a list for one row `(n_classes,)`, a list of lists
        for `(n_items, n_classes)`. Give probabilities (after the sigmoid), not logits."""
        if self.vocab is None:
            raise RuntimeError("MultiCategoryProcessor: call fit() or give a vocab before decoding")
        rows = torch.as_tensor(rows)
        if rows.shape[-1] != len(self.vocab):
            raise ValueError(f"MultiCategoryProcessor.decode: rows have {rows.shape[-1]} columns but there are "
                             f"{len(self.vocab)} classes")
        if rows.ndim == 1:
            return [c for c, on in zip(self.vocab, (rows > thresh).tolist(), strict=True) if on]
        return [[c for c, on in zip(self.vocab, r, strict=True) if on] for r in (rows > thresh).tolist()]

    def __len__(self) -> int:
        return len(self.vocab or ())

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (`{"vocab": [...], "multi_label": true}`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"vocab": self.vocab, "sort": self.sort, "multi_label": True}, indent=1,
                                   ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MultiCategoryProcessor:
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            vocab = data["vocab"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a vocabulary file written by MultiCategoryProcessor.save ({e})") from e
        if not isinstance(vocab, list):
            raise ValueError(f"{path}: 'vocab' must be a list, got {type(vocab).__name__}")
        return cls(vocab, sort=data.get("sort", True))

    def __repr__(self) -> str:
        return f"MultiCategoryProcessor({self.vocab})"
