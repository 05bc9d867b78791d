"""Reading texts for the CLI: text files, folders and fortunes files; labelled texts; tokenizers and vocabularies."""

from __future__ import annotations

import json
import random
from pathlib import Path

from .common import CLIError, UsageError

SKIPPED_SUFFIXES = (".dat", ".u8", ".pt", ".pth", ".json", ".safetensors", ".png", ".jpg", ".jpeg", ".gz", ".zip")
VOCAB_FILE = "vocab.json"


def _is_fortunes(content: str) -> bool:
    return any(line.strip() == "%" for line in content.splitlines())


def texts_of_file(path: Path) -> list[str]:
    """A file's texts: fortune entries when it has `%` separator lines, else its paragraphs (or lines)."""
    from ..text.datasets import read_text, split_fortunes

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
    from ..text.tokenize import Tokenizer

    return Tokenizer.chars(progress=False) if kind == "char" else Tokenizer(progress=False)


def build_vocab(tokens: list[list[str]], kind: str, max_vocab: int, min_freq: int):
    from ..text.vocab import Vocab

    return Vocab.build(tokens, max_vocab=max_vocab, min_freq=1 if kind == "char" else min_freq)


def save_vocab(run_dir: Path, vocab, tokenizer_kind: str) -> Path:
    path = run_dir / VOCAB_FILE
    path.write_text(json.dumps({"tokenizer": tokenizer_kind, "itos": list(vocab.itos),
                                "specials": list(getattr(vocab, "specials", []))}, ensure_ascii=False))
    return path


def load_vocab(run_dir: Path):
    from ..text.vocab import Vocab

    path = run_dir / VOCAB_FILE
    if not path.exists():
        raise CLIError(f"'{run_dir}' has no {VOCAB_FILE}", hint="give a run folder written by deepfit train-lm")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Vocab(data["itos"], specials=data.get("specials") or []), data["tokenizer"]


def read_labelled(data: str | None):
    """`TextItems` of DATA: class subfolders of .txt files, a fortunes folder (a file per class), or a CSV."""
    from ..text.datasets import fortunes_texts, texts_from_csv, texts_from_folder

    if data is None:
        raise UsageError("missing DATA", hint="give a folder of class subfolders, a fortunes folder or a CSV file")
    path = Path(data)
    if not path.exists():
        raise UsageError(f"DATA '{path}' does not exist",
                         hint="give a folder with one subfolder of .txt files per class, a fortunes folder, or a CSV")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UsageError(f"DATA file '{path}' is not a CSV file",
                             hint="a CSV needs 'text' and 'label' columns; or give a folder")
        items = texts_from_csv(path)
    elif any(p.is_dir() for p in path.iterdir()):
        items = texts_from_folder(path)
    else:
        items = fortunes_texts(path)
    if len(set(items.labels)) < 2:
        raise UsageError(f"DATA '{path}' has {len(set(items.labels))} class(es); a classifier needs at least 2",
                         hint="one subfolder (or fortunes file) per class")
    return items
