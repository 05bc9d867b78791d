"""The text data of `train-lm` and `train-classifier`: text files, folders and fortunes files, labelled texts,
tokenizers and vocabularies, and the loaders built from them."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ..data.multilabel import multi_hot
from ..text.datasets import fortunes_texts, read_text, split_fortunes, texts_from_csv, texts_from_folder
from ..text.loaders import classifier_loaders, lm_loaders
from ..text.tokenize import Tokenizer
from ..text.vocab import Vocab
from .errors import CLIError, UsageError

SKIPPED_SUFFIXES = (".dat", ".u8", ".pt", ".pth", ".json", ".safetensors", ".png", ".jpg", ".jpeg", ".gz", ".zip")
VOCAB_FILE = "vocab.json"


def _is_fortunes(content: str) -> bool:
    return any(line.strip() == "%" for line in content.splitlines())


def texts_of_file(path: Path) -> list[str]:
    """A file's texts: fortune entries when it has `%` separator lines, else its paragraphs (or lines)."""
    content = read_text(path)
    if _is_fortunes(content):
        return split_fortunes(content)
    paras = [p.strip() for p in content.split("\n\n") if p.strip()]
    if len(paras) <= 1:
        paras = [line.strip() for line in content.splitlines() if line.strip()]
    return paras


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() not in SKIPPED_SUFFIXES)


def read_corpus(path_text: str | None) -> list[str]:
    """Every text of TEXT (a file or a folder of files)."""
    if path_text is None:
        raise UsageError("missing TEXT", hint="give a text file, a folder of text files or a fortunes folder "
                         "(or --resume RUN_DIR)")
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"TEXT '{path}' does not exist", hint="give a text file, a folder of text files or a "
                         "fortunes folder such as /usr/share/games/fortunes")
    files = [path] if path.is_file() else _text_files(path)
    texts = [t for f in files for t in texts_of_file(f)]
    if not texts:
        raise UsageError(f"TEXT '{path}' holds no text", hint="give non-empty UTF-8 text files")
    return texts


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


def read_labelled(data: str | None, multi_label: bool = False):
    """`TextItems` of DATA: class subfolders of .txt files, a fortunes folder (a file per class), or a CSV;
    with `multi_label`, a CSV whose label column holds several labels separated by spaces."""
    if data is None:
        raise UsageError("missing DATA", hint="give a folder of class subfolders, a fortunes folder or a CSV file")
    path = Path(data)
    if not path.exists():
        raise UsageError(f"DATA '{path}' does not exist",
                         hint="give a folder with one subfolder of .txt files per class, a fortunes folder, or a CSV")
    if multi_label and not (path.is_file() and path.suffix.lower() == ".csv"):
        raise UsageError(f"--multi-label: DATA '{path}' is not a CSV file",
                         hint="give a CSV file with 'text' and 'label' columns, the labels separated by spaces")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UsageError(f"DATA file '{path}' is not a CSV file",
                             hint="a CSV needs 'text' and 'label' columns; or give a folder")
        items = texts_from_csv(path, label_delim=" " if multi_label else None)
        if multi_label:
            if not items.classes:
                raise UsageError(f"DATA '{path}' has no labels", hint="put labels, separated by spaces, in 'label'")
            return items
    elif any(p.is_dir() for p in path.iterdir()):
        items = texts_from_folder(path)
    else:
        items = fortunes_texts(path)
    if len(set(items.labels)) < 2:
        raise UsageError(f"DATA '{path}' has {len(set(items.labels))} class(es); a classifier needs at least 2",
                         hint="one subfolder (or fortunes file) per class")
    return items


def lm_data(args: argparse.Namespace, text: str | None, char_model: bool):
    """Language-model loaders of TEXT; returns `(dls, vocab, tokenizer kind, description)`."""
    texts = sample(read_corpus(text), args.max_texts, args.seed)
    if len(texts) < 2:
        raise UsageError(f"TEXT '{text}' holds a single text: nothing to hold out for validation",
                         hint="give more texts (paragraphs, files or fortune entries)")
    kind = args.tokenizer or ("char" if char_model else "word")
    tokenizer = make_tokenizer(kind)
    tokens = tokenizer(texts)
    train_idx, valid_idx = split(len(tokens), args.valid_pct, args.seed)
    vocab = build_vocab([tokens[i] for i in train_idx], kind, args.max_vocab, args.min_freq)
    ids = [vocab.numericalize(t) for t in tokens]
    n_train_tok = sum(len(ids[i]) for i in train_idx)
    if n_train_tok < args.bs * 3:
        raise UsageError(f"TEXT '{text}' is too short: {n_train_tok} training tokens for --bs {args.bs}",
                         hint="give more text or a smaller --bs")
    dls = lm_loaders([ids[i] for i in train_idx], [ids[i] for i in valid_idx], bs=args.bs, bptt=args.bptt,
                     seed=args.seed, vocab=vocab)
    dls.tokenizer = tokenizer
    desc = f"{text} ({len(texts)} texts, {n_train_tok} training tokens, {kind} vocabulary of {len(vocab)})"
    return dls, vocab, kind, desc


def classifier_data(args: argparse.Namespace, lm_vocab=None, lm_kind: str | None = None):
    """Classifier loaders of DATA (with a language model's vocabulary and tokenizer when given);
    returns `(dls, vocab, tokenizer kind, description, validation texts)`."""
    multi = bool(getattr(args, "multi_label", False))
    items = read_labelled(args.data, multi_label=multi)
    texts, labels = items.texts, items.labels
    if args.max_texts is not None and len(texts) > args.max_texts:
        keep = sample(list(range(len(texts))), args.max_texts, args.seed)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    classes = sorted({n for lbl in labels for n in lbl}) if multi else sorted(set(labels))
    kind = lm_kind or args.tokenizer or "word"
    tokenizer = make_tokenizer(kind)
    tokens = tokenizer(texts)
    train_idx, valid_idx = split(len(texts), args.valid_pct, args.seed)
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
    desc = (f"{args.data} ({len(train_idx)} training, {len(valid_idx)} validation texts, classes: "
            f"{', '.join(classes)})")
    return dls, vocab, kind, desc, [texts[i] for i in valid_idx]


def pad_index(vocab) -> int:
    return vocab.pad_idx if vocab.pad_idx is not None else 1
