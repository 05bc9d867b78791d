"""Pretrained word vectors from a GloVe-format text file (`word v1 v2 ... vd` per line).

`load_embeddings(path, vocab)` returns a `(len(vocab), d)` matrix whose rows are the file's vectors
for the vocabulary's tokens (exact match first, then the lower-cased token), random vectors for
tokens the file lacks, and zeros for the padding token. It reports how many tokens were found.
`pretrained_embedding(...)` wraps the matrix into an `nn.Embedding`, optionally frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

PAD_TOKEN = "xxpad"


class PretrainedVectors(NamedTuple):
    """The result of `load_embeddings`."""

    weight: Tensor  #: (len(vocab), dim) float32
    n_found: int  #: vocabulary tokens that got a vector from the file
    missing: list[str]  #: vocabulary tokens that got a random vector (padding excluded)


def _itos(vocab: Sequence[str] | object) -> list[str]:
    itos = getattr(vocab, "itos", vocab)
    if isinstance(itos, str) or not isinstance(itos, Sequence):
        raise TypeError(f"vocab must be a Vocab or a sequence of tokens, got {type(vocab).__name__}")
    return list(itos)


def _parse_line(line: str, path: Path, lineno: int, dim: int | None) -> tuple[str, list[str]]:
    parts = line.rstrip("\n\r").rstrip(" ").split(" ")
    if dim is None:
        return parts[0], parts[1:]
    if len(parts) < dim + 1:
        raise ValueError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
    # words may contain spaces (some GloVe files): the last `dim` fields are the vector
    return " ".join(parts[:-dim]), parts[-dim:]


def load_embeddings(path: str | Path, vocab: Sequence[str] | object, pad_token: str = PAD_TOKEN,
                    seed: int = 0, std: float | None = None, lowercase_fallback: bool = True,
                    logger: Callable[[str], None] | None = print) -> PretrainedVectors:
    """Read a GloVe-format file and build the embedding matrix of `vocab` (a `Vocab` or a list of tokens).

    Tokens absent from the file get `Normal(0, std)` vectors (default `std`: the standard deviation
    of the vectors found; drawn with `seed`); the padding token gets zeros. An optional first line
    `n_words dim` (word2vec text header) is skipped. The report (`found 8/10 vocabulary tokens
    (80.0%) in glove.txt, dim 50`) goes to `logger` (`None`: silent).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    itos = _itos(vocab)
    if not itos:
        raise ValueError("load_embeddings: empty vocabulary")
    wanted: dict[str, list[int]] = {}
    for i, tok in enumerate(itos):
        wanted.setdefault(tok, []).append(i)
    lower: dict[str, list[int]] = {}
    if lowercase_fallback:
        for i, tok in enumerate(itos):
            lower.setdefault(tok.lower(), []).append(i)

    dim: int | None = None
    exact: dict[int, list[str]] = {}
    by_lower: dict[int, list[str]] = {}
    with path.open(encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            word, values = _parse_line(line, path, lineno, dim)
            if dim is None:
                if lineno == 1 and len(values) == 1 and word.isdigit() and values[0].isdigit():
                    continue  # word2vec header
                dim = len(values)
                if dim == 0:
                    raise ValueError(f"{path}:{lineno}: a word without a vector")
            for i in wanted.get(word, ()):
                exact[i] = values
            if lowercase_fallback:
                for i in lower.get(word.lower(), ()):
                    by_lower.setdefault(i, values)
    if dim is None:
        raise ValueError(f"{path}: no vectors in the file")

    rows: dict[int, Tensor] = {}
    for source in (by_lower, exact):  # exact matches win
        for i, values in source.items():
            try:
                rows[i] = torch.tensor([float(v) for v in values], dtype=torch.float32)
            except ValueError:
                raise ValueError(f"{path}: the vector of {itos[i]!r} holds a non-number") from None
    pad_ids = set(wanted.get(pad_token, ()))
    found_vecs = torch.stack(list(rows.values())) if rows else torch.zeros(0, dim)
    if std is None:
        std = float(found_vecs.std()) if found_vecs.numel() > 1 else 1.0
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(itos), dim, generator=g) * std
    for i, v in rows.items():
        weight[i] = v
    for i in pad_ids:
        weight[i] = 0
    missing = [itos[i] for i in range(len(itos)) if i not in rows and i not in pad_ids]
    n_found = sum(1 for i in rows if i not in pad_ids)
    if logger is not None:
        n_total = len(itos) - len(pad_ids)
        logger(f"found {n_found}/{n_total} vocabulary tokens ({100 * n_found / max(n_total, 1):.1f}%) "
               f"in {path.name}, dim {dim}")
    return PretrainedVectors(weight, n_found, missing)


def pretrained_embedding(path: str | Path, vocab: Sequence[str] | object, freeze: bool = False,
                         pad_token: str = PAD_TOKEN, **kwargs) -> nn.Embedding:
    """An `nn.Embedding` initialised from `load_embeddings(path, vocab, ...)`; `freeze` stops its training."""
    vectors = load_embeddings(path, vocab, pad_token=pad_token, **kwargs)
    itos = _itos(vocab)
    pad_idx = itos.index(pad_token) if pad_token in itos else None
    return nn.Embedding.from_pretrained(vectors.weight, freeze=freeze, padding_idx=pad_idx)
