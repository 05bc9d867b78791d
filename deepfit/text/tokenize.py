"""Tokenizers: spaCy words (special tokens kept whole) or characters, rules, parallel workers, a disk cache,
and `decode` back to readable text."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TextIO

from ..progress import Progress, progress
from .rules import (
    BOS,
    DEFAULT_POST_RULES,
    DEFAULT_PRE_RULES,
    EOS,
    FASTAI_POST_RULES,
    FASTAI_PRE_RULES,
    FLD,
    PAD,
    SPECIAL_TOKENS,
    TK_MAJ,
    TK_REP,
    TK_UP,
    TK_WREP,
    UNK,
    apply_rules,
)

PreRule = Callable[[str], str]
PostRule = Callable[[list[str]], list[str]]


_SPACY_CACHE: dict[tuple[str, tuple[str, ...]], Any] = {}


def _spacy_tokenizer(lang: str, special_tokens: tuple[str, ...]):
    """spaCy's tokenizer for `lang` with the special cases, built once per process (loading spaCy is slow)."""
    key = (lang, special_tokens)
    if key not in _SPACY_CACHE:
        try:
            import spacy
            from spacy.symbols import ORTH
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("SpacyTokenizer needs spaCy: pip install 'deepfit[text]'") from e
        tok = spacy.blank(lang).tokenizer
        for w in special_tokens:
            tok.add_special_case(w, [{ORTH: w}])
        _SPACY_CACHE[key] = tok
    return _SPACY_CACHE[key]


class SpacyTokenizer:
    """Splits texts into words with spaCy's rule-based tokenizer (`spacy.blank(lang)`, no model download).

    `special_tokens` are registered as special cases, so `xxmaj`, `xxrep`... always come out whole.
    Pickles as its settings only (spaCy is rebuilt lazily in each worker process).
    """

    def __init__(self, lang: str = "en", special_tokens: Sequence[str] = SPECIAL_TOKENS):
        self.lang = lang
        self.special_tokens = list(special_tokens)
        self._tok = None

    def _tokenizer(self):
        if self._tok is None:
            self._tok = _spacy_tokenizer(self.lang, tuple(self.special_tokens))
        return self._tok

    def __call__(self, texts: Sequence[str]) -> Iterator[list[str]]:
        for doc in self._tokenizer().pipe(texts):
            yield [t.text for t in doc]

    def settings(self) -> dict:
        return {"type": "spacy", "lang": self.lang, "special_tokens": self.special_tokens}

    def decode(self, tokens: Sequence[str]) -> str:
        return decode(tokens)

    def __getstate__(self) -> dict:
        return {"lang": self.lang, "special_tokens": self.special_tokens, "_tok": None}


class CharTokenizer:
    """One token per character."""

    def __call__(self, texts: Sequence[str]) -> Iterator[list[str]]:
        for t in texts:
            yield list(t)

    def settings(self) -> dict:
        return {"type": "char"}

    def decode(self, tokens: Sequence[str]) -> str:
        return decode_chars(tokens)


def _rule_id(rule: Callable) -> str:
    """A rule's name plus a hash of its code, so that editing a rule changes cache keys."""
    name = f"{getattr(rule, '__module__', '?')}.{getattr(rule, '__qualname__', type(rule).__name__)}"
    try:
        src = inspect.getsource(rule)
    except (OSError, TypeError):
        code = getattr(rule, "__code__", None)
        src = repr((code.co_code, code.co_consts)) if code is not None else repr(rule)
    return name + ":" + hashlib.sha256(src.encode()).hexdigest()[:16]


def _tokenize_chunk(args: tuple[Any, list, list, list[str]]) -> list[list[str]]:
    tok, pre_rules, post_rules, texts = args
    texts = [apply_rules(t, pre_rules) for t in texts]
    return [apply_rules(toks, post_rules) for toks in tok(texts)]


def progress_bar(it, total: int, desc: str = "", stream: TextIO | None = None, show: bool | None = None,
                 unit: str = "it") -> Iterator:
    """Yield from `it`, reporting progress on `stream` (stderr) through `deepfit.progress`: a live bar in a
    terminal, plain lines in a log; `show=False` reports nothing."""
    yield from progress(it, total, desc, unit=unit, stream=stream, show=show is not False)


class Tokenizer:
    """Tokenizes a corpus: pre-rules, a base tokenizer, post-rules; in parallel, with an optional disk cache.

    Args:
        tok: the base tokenizer (`SpacyTokenizer()` by default, or `CharTokenizer()`); any callable mapping a
            list of texts to an iterable of token lists works (give it `settings()` for a stable cache key).
        pre_rules: `str -> str` functions (default `DEFAULT_PRE_RULES`; `[]` for none).
        post_rules: `list[str] -> list[str]` functions (default `DEFAULT_POST_RULES`; `[]` for none).
        n_workers: processes used by `__call__` (1 = in this process). Rules must then be picklable.
        chunksize: texts per work unit.
        cache_dir: when set, `__call__` stores and reuses results there, keyed by texts, tokenizer and rules.
        progress: report progress on stderr (`None`/`True`: a live bar in a terminal, a line per 30 s and
            one at the end in a log, for runs over a second; `False`: nothing).
    """

    def __init__(self, tok: Callable | None = None, pre_rules: Sequence[PreRule] | None = None,
                 post_rules: Sequence[PostRule] | None = None, n_workers: int = 1, chunksize: int = 500,
                 cache_dir: str | Path | None = None, progress: bool | None = None):
        self.tok = tok if tok is not None else SpacyTokenizer()
        self.pre_rules = list(DEFAULT_PRE_RULES if pre_rules is None else pre_rules)
        self.post_rules = list(DEFAULT_POST_RULES if post_rules is None else post_rules)
        if n_workers < 1:
            raise ValueError(f"Tokenizer: n_workers must be >= 1, got {n_workers}")
        if chunksize < 1:
            raise ValueError(f"Tokenizer: chunksize must be >= 1, got {chunksize}")
        self.n_workers, self.chunksize = n_workers, chunksize
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.progress = progress

    @classmethod
    def chars(cls, **kwargs) -> Tokenizer:
        """A character tokenizer without rules."""
        kwargs.setdefault("pre_rules", [])
        kwargs.setdefault("post_rules", [])
        return cls(tok=CharTokenizer(), **kwargs)

    @classmethod
    def fastai(cls, **kwargs) -> Tokenizer:
        """A spaCy word tokenizer with fastai v2's rules (`rules.FASTAI_PRE_RULES`/`FASTAI_POST_RULES`): the same
        tokens as fastai."""
        kwargs.setdefault("pre_rules", FASTAI_PRE_RULES)
        kwargs.setdefault("post_rules", FASTAI_POST_RULES)
        return cls(**kwargs)

    def tokenize1(self, text: str) -> list[str]:
        """Tokens of one text."""
        return _tokenize_chunk((self.tok, self.pre_rules, self.post_rules, [text]))[0]

    def cache_key(self, texts: Sequence[str]) -> str:
        """Hex digest of the texts, the base tokenizer's settings and every rule (name and code)."""
        h = hashlib.sha256()
        settings = self.tok.settings() if hasattr(self.tok, "settings") else {"type": _rule_id(self.tok)}
        h.update(json.dumps(settings, sort_keys=True).encode())
        for rule in [*self.pre_rules, None, *self.post_rules]:
            h.update(b"|" + (_rule_id(rule).encode() if rule is not None else b"--"))
        for t in texts:
            b = t.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little") + b)
        return h.hexdigest()

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Token lists of all `texts` (from the cache when present)."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"Tokenizer: text {i} is a {type(t).__name__}, expected str")
        cache_file = None
        if self.cache_dir is not None:
            cache_file = self.cache_dir / f"tokens-{self.cache_key(texts)}.json"
            if cache_file.exists():
                return json.loads(cache_file.read_text(encoding="utf-8"))
        result = self._tokenize_all(texts)
        if cache_file is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
            tmp.replace(cache_file)
        return result

    def _tokenize_all(self, texts: list[str]) -> list[list[str]]:
        chunks = [texts[i:i + self.chunksize] for i in range(0, len(texts), self.chunksize)]
        jobs = [(self.tok, self.pre_rules, self.post_rules, c) for c in chunks]
        out: list[list[str]] = []
        parallel = self.n_workers > 1 and len(chunks) > 1
        if parallel:
            try:
                pickle.dumps((self.tok, self.pre_rules, self.post_rules))
            except Exception as e:
                raise TypeError(f"Tokenizer: with n_workers={self.n_workers} the base tokenizer and every rule must "
                                f"be picklable (module-level functions, not lambdas or local functions): {e}") from e
        pool = ProcessPoolExecutor(max_workers=self.n_workers) if parallel else nullcontext()
        with Progress(len(texts), "tokenizing", "texts", show=self.progress is not False) as bar, pool:
            results = pool.map(_tokenize_chunk, jobs) if parallel else map(_tokenize_chunk, jobs)
            n_tokens = 0
            for res in results:
                out += res
                n_tokens += sum(map(len, res))
                bar.update(len(res), info=f"{n_tokens} tokens")
        return out

    def decode(self, tokens: Sequence[str]) -> str:
        """Readable text from tokens (see `decode`)."""
        return self.tok.decode(tokens) if hasattr(self.tok, "decode") else decode(tokens)


# ---------------------------------------------------------------------- decoding

_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "]", "}", "%", "...", "n't", "'s", "'m", "'re", "'ve",
                    "'ll", "'d", "'S", "'M", "'RE", "'VE", "'LL", "'D", "N'T"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}
_PUNCT_RUN = set(".,!?;:")
_DROP = {BOS, EOS, PAD, FLD}
_CASE_MARKS = {TK_MAJ, TK_UP}
_REP_MARKS = {TK_REP, TK_WREP}
_SPECIAL_SET = set(SPECIAL_TOKENS)


def _expand(tokens: Sequence[str], unk: str, capitalize_i: bool, unk_token: str, drop: set[str]) -> list[str]:
    """Undo xxmaj / xxup / xxrep / xxwrep, show `unk_token` as `unk`, drop xxbos / xxeos / xxpad / xxfld, the
    tokens in `drop` and any marker left without the token it applies to (a sampled text can end in `xxmaj`)."""
    drop = _DROP | drop
    unks = {UNK, unk_token}
    out: list[str] = []
    i, n = 0, len(tokens)
    glue: set[int] = set()  # positions in `out` to join to the previous token without a space

    def word(t: str) -> str:
        if t in unks:
            return unk
        return "I" if capitalize_i and t == "i" else t.replace("▁", " ")  # fastai writes spaces as ▁

    while i < n:
        t = tokens[i]
        if t in _CASE_MARKS:
            nxt = tokens[i + 1] if i + 1 < n else None
            if nxt is None or nxt in _CASE_MARKS or nxt in _REP_MARKS or nxt in drop:
                i += 1  # a marker before a marker (or nothing): ignore it
                continue
            w = word(nxt)
            out.append(w if nxt in unks else w.capitalize() if t == TK_MAJ else w.upper())
            i += 2
        elif t in _REP_MARKS:
            if i + 2 < n and tokens[i + 1].isdigit() and tokens[i + 2] not in _SPECIAL_SET | drop:
                count, w = int(tokens[i + 1]), word(tokens[i + 2])
                if t == TK_REP:
                    if w.isalnum() and out and out[-1][-1:].isalnum():
                        glue.add(len(out))
                    out.append(w * count)
                else:
                    out.append(" ".join([w] * count))
                i += 3
            else:
                i += 1  # a repetition marker without its count and token: drop it
        elif t in drop:
            i += 1
        else:
            w = word(t)
            if w:
                out.append(w)
            i += 1
    return [("\0" + t if k in glue else t) for k, t in enumerate(out)]


def detokenize(tokens: Sequence[str], unk: str = "<unk>", capitalize_i: bool = True, unk_token: str = UNK,
               drop: Collection[str] = ()) -> str:
    """Readable text from word tokens, for people: capitalisation (`xxmaj`, `xxup`) and repetitions
    (`xxrep`, `xxwrep`) applied, `xxbos`/`xxeos`/`xxpad`/`xxfld` removed, `xxunk` shown as `unk` (`""` drops
    it), a lone `i` written `I` (the casing rules lowercase it without a marker), punctuation and contractions
    joined to the word before, spaces rebuilt. No special token is ever shown. Custom special tokens (a
    vocabulary's `<sos>`, `<pad>`...) go in `drop`, a custom unknown token in `unk_token`.

    Not an exact inverse of tokenizing (spaCy does not keep spaces here) but it round-trips ordinary prose.
    """
    words = _expand(tokens, unk, capitalize_i, unk_token, set(drop))
    parts: list[str] = []
    prev = ""
    open_quote = False
    for w in words:
        glued = w.startswith("\0")
        w = w.lstrip("\0")
        space = bool(parts) and not glued
        if w.isspace() or prev.isspace() or prev in _NO_SPACE_AFTER:
            space = False
        elif w in _NO_SPACE_BEFORE or set(w) <= _PUNCT_RUN or w.startswith("'") and w[1:].isalpha() and len(w) <= 3:
            space = False
        if w == '"':
            if open_quote:
                space = False
            open_quote = not open_quote
        elif prev == '"' and open_quote:
            space = False
        if space:
            parts.append(" ")
        parts.append(w)
        prev = w
    return "".join(parts)


decode = detokenize


def decode_chars(tokens: Sequence[str]) -> str:
    """Text from character tokens (special tokens such as `xxbos` or `xxunk` are dropped)."""
    return "".join(t for t in tokens if t not in _SPECIAL_SET)
