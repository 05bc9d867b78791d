"""The text data of `train-lm` and `train-classifier`: text files, folders and fortunes files, labelled texts,
the training/validation split, tokenizers and vocabularies, and the loaders built from them.

The split is the data's when it gives one, else a seeded random `--valid-pct`:
- a CSV file with an `is_valid` column (fastai's convention; `--valid-col NAME` names another): True/False
  (or 1/0) per row;
- a folder holding `train/` and `valid/` (each laid out as DATA would be: class subfolders or fortunes files
  for a classifier, text files for a language model).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..data.multilabel import multi_hot
from ..text.datasets import (
    TextItems,
    decode_utf8,
    fortunes_texts,
    read_text,
    split_fortunes,
    texts_from_csv,
    texts_from_folder,
)
from ..text.loaders import classifier_loaders, lm_loaders
from ..text.tokenize import Tokenizer
from ..text.vocab import Vocab
from .errors import CLIError, UsageError

SKIPPED_SUFFIXES = (".dat", ".u8", ".pt", ".pth", ".json", ".safetensors", ".png", ".jpg", ".jpeg", ".gz", ".zip")
VOCAB_FILE = "vocab.json"
VALID_COL = "is_valid"  # fastai's name for the column that marks a CSV's validation rows
TEXT_COL = "text"
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "t", "y"), ("false", "0", "no", "f", "n", "")
LM_VALID_PCT, CLASSIFIER_VALID_PCT = 0.1, 0.2  # --valid-pct when the data gives no split


# ---------------------------------------------------------------------------------------------- the split
@dataclass
class Split:
    """Which texts are held out for validation: given by the data, or drawn at random."""

    is_valid: list[bool] | None  # one flag per text when the data gives the split, else None
    source: str = ""  # the given split, for the first line: "the is_valid column", "the train/ and valid/ folders"

    @property
    def given(self) -> bool:
        return self.is_valid is not None

    def indices(self, n: int, valid_pct: float, seed: int) -> tuple[list[int], list[int]]:
        """`(training, validation)` indices of the `n` texts."""
        if self.is_valid is None:
            return split(n, valid_pct, seed)
        return [i for i in range(n) if not self.is_valid[i]], [i for i in range(n) if self.is_valid[i]]

    def describe(self, valid_pct: float, seed: int) -> str:
        if self.is_valid is not None:
            return f"split: {self.source}"
        return f"split: {valid_pct:.0%} held out at random (--valid-pct {valid_pct:g}, --seed {seed})"

    def subset(self, keep: list[int]) -> Split:
        return Split(None if self.is_valid is None else [self.is_valid[i] for i in keep], self.source)


def _flag(value: str, where: str, column: str) -> bool:
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise UsageError(f"{where}: {column} {value!r} is neither true nor false",
                     hint=f"write True or False (or 1 or 0) in the {column} column")


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    content = decode_utf8(path.read_bytes(), str(path)).removeprefix("\ufeff")
    reader = csv.DictReader(content.splitlines(keepends=True))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def csv_split(path: Path, valid_col: str | None) -> Split:
    """The split a CSV gives: its `valid_col` column (default `is_valid`, when it has one), one flag per row."""
    header, rows = _csv_rows(path)
    column = valid_col or VALID_COL
    if column not in header:
        if valid_col is not None:
            raise UsageError(f"--valid-col: '{path}' has no column {valid_col!r} (columns: {', '.join(header)})",
                             hint="name the column that marks the validation rows with True/False")
        return Split(None)
    return Split([_flag(r[column] or "", f"{path}:{i + 2}", column) for i, r in enumerate(rows)],
                 f"the {column} column")


def folder_split(path: Path) -> tuple[Path, Path] | None:
    """`(DATA/train, DATA/valid)` when DATA is a folder split into those two, else None."""
    train, valid = path / "train", path / "valid"
    return (train, valid) if path.is_dir() and train.is_dir() and valid.is_dir() else None


def resolve_valid_pct(args: argparse.Namespace, split_: Split, what: str, default: float) -> float:
    """`--valid-pct` holds out texts at random only when the data gives no split; returns the fraction."""
    valid_pct, valid_col = getattr(args, "valid_pct", None), getattr(args, "valid_col", None)
    if split_.given:
        if valid_pct is not None:
            raise UsageError(f"--valid-pct {valid_pct:g}: {what} gives its own split ({split_.source})",
                             hint="drop --valid-pct to use the given split")
        if valid_col is not None and "column" not in split_.source:
            raise UsageError(f"--valid-col is for a CSV file; {what} is split by {split_.source}",
                             hint="drop --valid-col")
        return 0.0
    if valid_col is not None:
        raise UsageError(f"--valid-col {valid_col}: {what} is not a CSV file", hint="drop --valid-col")
    return valid_pct if valid_pct is not None else default


def sample(items: list, n: int | None, seed: int) -> list:
    if n is None or len(items) <= n:
        return items
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in idx]


def split(n: int, valid_pct: float, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_valid = max(1, round(n * valid_pct)) if n > 1 else 0
    return sorted(idx[n_valid:]), sorted(idx[:n_valid])


def fewer_labels(train_idx: list[int], n: int | None, seed: int) -> list[int]:
    """`--n-train N`: a seeded random N of the training texts (the low-label regime); validation is unchanged."""
    if n is None or n >= len(train_idx):
        return train_idx
    order = list(range(len(train_idx)))
    random.Random(seed).shuffle(order)
    return [train_idx[i] for i in sorted(order[:n])]


# ---------------------------------------------------------------------------------------------- unlabelled text
def _is_fortunes(content: str) -> bool:
    return any(line.strip() == "%" for line in content.splitlines())


def texts_of_file(path: Path) -> list[str]:
    """A file's texts: the `text` column of a CSV, fortune entries when it has `%` separator lines, else its
    paragraphs (or lines)."""
    if path.suffix.lower() == ".csv":
        return texts_of_csv(path)
    content = read_text(path)
    if _is_fortunes(content):
        return split_fortunes(content)
    paras = [p.strip() for p in content.split("\n\n") if p.strip()]
    if len(paras) <= 1:
        paras = [line.strip() for line in content.splitlines() if line.strip()]
    return paras


def texts_of_csv(path: Path) -> list[str]:
    header, rows = _csv_rows(path)
    if TEXT_COL not in header:
        raise UsageError(f"'{path}' has no {TEXT_COL!r} column (columns: {', '.join(header)})",
                         hint=f"a CSV of texts needs a header row with a '{TEXT_COL}' column")
    return [r[TEXT_COL] or "" for r in rows]


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() not in SKIPPED_SUFFIXES)


def _texts_of(path: Path) -> list[str]:
    files = [path] if path.is_file() else _text_files(path)
    return [t for f in files for t in texts_of_file(f)]


def read_corpus(path_text: str | None, valid_col: str | None = None) -> tuple[list[str], Split]:
    """Every text of TEXT (a file, a CSV's `text` column, or a folder of files) and the split it gives."""
    if path_text is None:
        raise UsageError("missing TEXT", hint="give a text file, a folder of text files or a fortunes folder "
                         "(or --resume RUN_DIR)")
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"TEXT '{path}' does not exist", hint="give a text file, a folder of text files or a "
                         "fortunes folder such as /usr/share/games/fortunes")
    folders = folder_split(path)
    if folders is not None:
        train, valid = _texts_of(folders[0]), _texts_of(folders[1])
        texts, given = train + valid, Split([False] * len(train) + [True] * len(valid), "the train/ and valid/ folders")
    elif path.is_file() and path.suffix.lower() == ".csv":
        texts, given = texts_of_csv(path), csv_split(path, valid_col)
    else:
        texts, given = _texts_of(path), Split(None)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    texts, given = [texts[i] for i in keep], given.subset(keep)
    if not texts:
        raise UsageError(f"TEXT '{path}' holds no text", hint="give non-empty UTF-8 text files")
    return texts, given


def read_more_text(path_text: str) -> list[str]:
    """`--unlabelled PATH`: more training texts (a file, a CSV's `text` column or a folder of files)."""
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"--unlabelled '{path}' does not exist", hint="give a text file or a folder of text files")
    texts = [t for t in _texts_of(path) if t.strip()]
    if not texts:
        raise UsageError(f"--unlabelled '{path}' holds no text", hint="give non-empty UTF-8 text files")
    return texts


# ---------------------------------------------------------------------------------------------- labelled text
def _labelled_items(path: Path, multi_label: bool) -> TextItems:
    if path.is_file():
        return texts_from_csv(path, label_delim=" " if multi_label else None)
    if any(p.is_dir() for p in path.iterdir()):
        return texts_from_folder(path)
    return fortunes_texts(path)


def read_labelled(data: str | None, multi_label: bool = False, valid_col: str | None = None
                  ) -> tuple[TextItems, Split]:
    """`TextItems` of DATA (class subfolders of .txt files, a fortunes folder with a file per class, or a CSV;
    with `multi_label`, a CSV whose label column holds several labels separated by spaces) and its split."""
    if data is None:
        raise UsageError("missing DATA", hint="give a folder of class subfolders, a fortunes folder or a CSV file")
    path = Path(data)
    if not path.exists():
        raise UsageError(f"DATA '{path}' does not exist",
                         hint="give a folder with one subfolder of .txt files per class, a fortunes folder, or a CSV")
    if multi_label and not (path.is_file() and path.suffix.lower() == ".csv"):
        raise UsageError(f"--multi-label: DATA '{path}' is not a CSV file",
                         hint="give a CSV file with 'text' and 'label' columns, the labels separated by spaces")
    if path.is_file() and path.suffix.lower() != ".csv":
        raise UsageError(f"DATA file '{path}' is not a CSV file",
                         hint="a CSV needs 'text' and 'label' columns; or give a folder")
    folders = folder_split(path)
    if folders is not None:
        train, valid = _labelled_items(folders[0], multi_label), _labelled_items(folders[1], multi_label)
        items, given = train + valid, Split([False] * len(train) + [True] * len(valid), "the train/ and valid/ folders")
    else:
        items = _labelled_items(path, multi_label)
        given = csv_split(path, valid_col) if path.is_file() else Split(None)
    if multi_label:
        if not items.classes:
            raise UsageError(f"DATA '{path}' has no labels", hint="put labels, separated by spaces, in 'label'")
        return items, given
    if len(set(items.labels)) < 2:
        raise UsageError(f"DATA '{path}' has {len(set(items.labels))} class(es); a classifier needs at least 2",
                         hint="one subfolder (or fortunes file) per class")
    return items, given


# ---------------------------------------------------------------------------------------------- tokens
def make_tokenizer(kind: str):
    return Tokenizer.chars(progress=False) if kind == "char" else Tokenizer(progress=False)


def build_vocab(tokens: list[list[str]], kind: str, max_vocab: int, min_freq: int):
    return Vocab.build(tokens, max_vocab=max_vocab, min_freq=1 if kind == "char" else min_freq)


def save_vocab(run_dir: Path, vocab, tokenizer_kind: str) -> Path:
    path = run_dir / VOCAB_FILE
    path.write_text(json.dumps({"tokenizer": tokenizer_kind, "itos": list(vocab.itos),
                                "specials": list(getattr(vocab, "specials", []))}, ensure_ascii=False))
    return path


def load_vocab(run_dir: Path):
    path = run_dir / VOCAB_FILE
    if not path.exists():
        raise CLIError(f"'{run_dir}' has no {VOCAB_FILE}", hint="give a run folder written by deepfit train-lm")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Vocab(data["itos"], specials=data.get("specials") or []), data["tokenizer"]


def pad_index(vocab) -> int:
    return vocab.pad_idx if vocab.pad_idx is not None else 1


# ---------------------------------------------------------------------------------------------- loaders
def lm_data(args: argparse.Namespace, text: str | None, char_model: bool, kind: str | None = None):
    """Language-model loaders of TEXT (and `--unlabelled` training text); returns `(dls, vocab, tokenizer kind,
    description)`. `kind` forces the tokenizer (a pretrained model's)."""
    texts, given = read_corpus(text, getattr(args, "valid_col", None))
    if args.max_texts is not None and len(texts) > args.max_texts:
        keep = sample(list(range(len(texts))), args.max_texts, args.seed)
        texts, given = [texts[i] for i in keep], given.subset(keep)
    if len(texts) < 2:
        raise UsageError(f"TEXT '{text}' holds a single text: nothing to hold out for validation",
                         hint="give more texts (paragraphs, files or fortune entries)")
    valid_pct = resolve_valid_pct(args, given, f"TEXT '{text}'", LM_VALID_PCT)
    train_idx, valid_idx = given.indices(len(texts), valid_pct, args.seed)
    if not valid_idx or not train_idx:
        raise UsageError(f"TEXT '{text}' gives {len(train_idx)} training and {len(valid_idx)} validation texts",
                         hint="each side of the split needs at least one text")
    more = read_more_text(args.unlabelled) if getattr(args, "unlabelled", None) else []
    kind = kind or args.tokenizer or ("char" if char_model else "word")
    tokenizer = make_tokenizer(kind)
    tokens = tokenizer(texts + more)
    train_tokens = [tokens[i] for i in train_idx] + tokens[len(texts):]
    valid_tokens = [tokens[i] for i in valid_idx]
    vocab = build_vocab(train_tokens, kind, args.max_vocab, args.min_freq)
    train_ids = [vocab.numericalize(t) for t in train_tokens]
    n_train_tok = sum(len(t) for t in train_ids)
    if n_train_tok < args.bs * 3:
        raise UsageError(f"TEXT '{text}' is too short: {n_train_tok} training tokens for --bs {args.bs}",
                         hint="give more text or a smaller --bs")
    dls = lm_loaders(train_ids, [vocab.numericalize(t) for t in valid_tokens], bs=args.bs, bptt=args.bptt,
                     seed=args.seed, vocab=vocab)
    dls.tokenizer = tokenizer
    extra = f" + {len(more)} unlabelled from {args.unlabelled}" if more else ""
    desc = (f"{text} ({given.describe(valid_pct, args.seed)}; {len(train_idx)} training{extra}, {len(valid_idx)} "
            f"validation texts, {n_train_tok} training tokens, {kind} vocabulary of {len(vocab)})")
    return dls, vocab, kind, desc


def classifier_data(args: argparse.Namespace, lm_vocab=None, lm_kind: str | None = None):
    """Classifier loaders of DATA (with a language model's vocabulary and tokenizer when given);
    returns `(dls, vocab, tokenizer kind, description, validation texts)`."""
    multi = bool(getattr(args, "multi_label", False))
    items, given = read_labelled(args.data, multi_label=multi, valid_col=getattr(args, "valid_col", None))
    texts, labels = items.texts, items.labels
    if args.max_texts is not None and len(texts) > args.max_texts:
        keep = sample(list(range(len(texts))), args.max_texts, args.seed)
        texts, labels, given = [texts[i] for i in keep], [labels[i] for i in keep], given.subset(keep)
    valid_pct = resolve_valid_pct(args, given, f"DATA '{args.data}'", CLASSIFIER_VALID_PCT)
    train_idx, valid_idx = given.indices(len(texts), valid_pct, args.seed)
    if not valid_idx or not train_idx:
        raise UsageError(f"DATA '{args.data}' gives {len(train_idx)} training and {len(valid_idx)} validation texts",
                         hint="each side of the split needs at least one text")
    n_labelled = len(train_idx)
    train_idx = fewer_labels(train_idx, getattr(args, "n_train", None), args.seed)
    classes = sorted({n for lbl in labels for n in lbl}) if multi else sorted(set(labels))
    kind = lm_kind or args.tokenizer or "word"
    tokenizer = make_tokenizer(kind)
    tokens = tokenizer(texts)
    vocab = lm_vocab if lm_vocab is not None else build_vocab([tokens[i] for i in train_idx], kind, args.max_vocab,
                                                              args.min_freq)
    ids = [vocab.numericalize(t) for t in tokens]
    if multi:
        y = multi_hot(labels, classes)
        y_train, y_valid = y[train_idx], y[valid_idx]
    else:
        y = [classes.index(lbl) for lbl in labels]
        y_train, y_valid = [y[i] for i in train_idx], [y[i] for i in valid_idx]
    dls = classifier_loaders([ids[i] for i in train_idx], y_train, [ids[i] for i in valid_idx], y_valid,
                             bs=args.bs, pad_idx=pad_index(vocab), seed=args.seed, classes=classes)
    dls.text_vocab, dls.tokenizer = vocab, tokenizer
    n_train = f"{len(train_idx)}" if len(train_idx) == n_labelled else f"{len(train_idx)} of {n_labelled} (--n-train)"
    desc = (f"{args.data} ({given.describe(valid_pct, args.seed)}; {n_train} training, {len(valid_idx)} "
            f"validation texts, classes: {', '.join(classes)})")
    return dls, vocab, kind, desc, [texts[i] for i in valid_idx]
