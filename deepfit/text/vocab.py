"""`Vocab`: token <-> id mapping built from token counts, saved as JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence, Sized
from pathlib import Path

import torch
from torch import Tensor

from ..progress import Progress
from .rules import PAD, SPECIAL_TOKENS, UNK

# Spellings recognised as the unknown / padding token when they are among a vocabulary's specials
# (deepfit/fastai, torchtext, BERT-style).
UNK_NAMES = (UNK, "<unk>", "[UNK]", "<UNK>")
PAD_NAMES = (PAD, "<pad>", "[PAD]", "<PAD>")


def _pick(role: str, given: str | None, names: Sequence[str], specials: list[str], stoi: dict) -> str | None:
    if given is not None:
        if given not in stoi:
            raise ValueError(f"Vocab: {role}_token {given!r} is not in the vocabulary")
        return given
    return next((s for s in names if s in specials), None)


class Vocab:
    """A list of tokens (`itos`) and its inverse (`stoi`).

    Unknown tokens map to the unknown token (`unk_token`) when there is one (`numericalize` raises `KeyError`
    otherwise). `unk_token`/`pad_token` default to the special among `specials` spelled like one (`xxunk`,
    `<unk>`, `[UNK]`...; `xxpad`, `<pad>`...), so torchtext-style specials such as `['<unk>', '<pad>', '<sos>',
    '<eos>']` work as they are; name them explicitly for any other spelling.
    """

    def __init__(self, itos: Sequence[str], specials: Sequence[str] = SPECIAL_TOKENS, unk_token: str | None = None,
                 pad_token: str | None = None):
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {}
        for i, t in enumerate(self.itos):
            if t in self.stoi:
                raise ValueError(f"Vocab: token {t!r} appears twice (ids {self.stoi[t]} and {i})")
            self.stoi[t] = i
        self.specials: list[str] = [s for s in specials if s in self.stoi]
        self.unk_token = _pick("unk", unk_token, UNK_NAMES, self.specials, self.stoi)
        self.pad_token = _pick("pad", pad_token, PAD_NAMES, self.specials, self.stoi)
        for t in (self.unk_token, self.pad_token):
            if t is not None and t not in self.specials:
                self.specials.append(t)
        self.unk_idx: int | None = self.stoi[self.unk_token] if self.unk_token is not None else None
        self.pad_idx: int | None = self.stoi[self.pad_token] if self.pad_token is not None else None

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_vocab: int = 60000, min_freq: int = 2,
              specials: Sequence[str] = SPECIAL_TOKENS, unk_token: str | None = None,
              pad_token: str | None = None, progress: bool = True) -> Vocab:
        """Specials first (in their order), then tokens seen >= `min_freq` times, most frequent first (ties
        alphabetical), at most `max_vocab` entries in total. `unk_token`/`pad_token`: see the class.
        `progress`: report the counting on stderr (a bar in a terminal, a line in a log when it takes over a
        second; see `deepfit.progress`)."""
        if max_vocab < len(specials):
            raise ValueError(f"Vocab.build: max_vocab={max_vocab} is smaller than the {len(specials)} special tokens")
        counts: Counter[str] = Counter()
        total = len(token_lists) if isinstance(token_lists, Sized) else None
        with Progress(total, "building vocabulary", "texts", show=progress) as bar:
            pending = 0
            for toks in token_lists:
                counts.update(toks)
                pending += 1
                if pending == 256:  # one report per 256 texts keeps the bar's cost negligible
                    bar.update(pending)
                    pending = 0
            bar.update(pending, info=f"{len(counts)} distinct tokens")
        special_set = set(specials)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in special_set),
                      key=lambda t: (-counts[t], t))
        itos = list(dict.fromkeys(specials)) + kept
        vocab = cls(itos[:max_vocab], specials=specials, unk_token=unk_token, pad_token=pad_token)
        vocab.counts = counts
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __getitem__(self, i: int) -> str:
        return self.itos[i]

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __iter__(self):
        return iter(self.itos)

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.itos[:12])
        return f"Vocab({len(self)} tokens: {head}{', ...' if len(self) > 12 else ''})"

    def index(self, token: str) -> int:
        """The id of `token` (`unk_idx` when unknown)."""
        i = self.stoi.get(token, self.unk_idx)
        if i is None:
            raise KeyError(f"token {token!r} is not in the vocabulary, which has no unknown token "
                           f"(add {UNK!r} or '<unk>' to the specials, or pass unk_token=)")
        return i

    def numericalize(self, tokens: Sequence[str]) -> Tensor:
        """Ids of `tokens` as an int64 tensor; unknown tokens become `unk_idx`."""
        stoi, unk = self.stoi, self.unk_idx
        if unk is None:
            return torch.tensor([self.index(t) for t in tokens], dtype=torch.long)
        return torch.tensor([stoi.get(t, unk) for t in tokens], dtype=torch.long)

    def textify(self, ids: Tensor | Sequence[int]) -> list[str]:
        """Tokens of `ids`."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return [self.itos[i] for i in ids]

    def save(self, path: str | Path) -> Path:
        """Write `{"itos": [...], "specials": [...], "unk_token": ..., "pad_token": ...}` as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"itos": self.itos, "specials": self.specials, "unk_token": self.unk_token,
                "pad_token": self.pad_token}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON vocabulary ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError(f"{path}: expected a JSON object with an 'itos' list")
        return cls(data["itos"], specials=data.get("specials", SPECIAL_TOKENS), unk_token=data.get("unk_token"),
                   pad_token=data.get("pad_token"))
