"""Rules that reproduce today's fastai (v2) tokenizing, for vocabularies and models shared with fastai.

deepfit's defaults (`rules.DEFAULT_PRE_RULES`/`DEFAULT_POST_RULES`) follow the course notes (fastai v1): casing
is decided per spaCy token, so `"Saturday` gives `" xxmaj saturday`, as the notes print. fastai v2 decides it
per whitespace-separated word before spaCy runs (`"Saturday` is not capitalised there: `" saturday`), marks
repetitions of 3 characters or words (not 4), turns `...` into `…`, strips the text and writes spaces inside
tokens as `▁`. These rules do the same:

    Tokenizer(pre_rules=FASTAI_PRE_RULES, post_rules=FASTAI_POST_RULES)   # or Tokenizer.fastai()

With them `benchmarks/tokenizer_throughput.py` measures how many fortunes texts come out identical to fastai's.
Like fastai, they add `xxbos` but no `xxeos`.
"""

from __future__ import annotations

import html
import re

from .rules import BOS, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, rm_useless_spaces

# fastai's literal fixes, in its order (later ones see the result of earlier ones).
_FASTAI_LITERALS = [
    ("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"), ("quot;", "'"),
    ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"), ("...", " …"),
]
_RE_REP3 = re.compile(r"(\S)(\1{2,})")
# a word, then 2 or more whitespace-separated copies of it, then a non-word character or the end
_RE_WREP3 = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_RE_SPEC = re.compile(r"([/#\\])")
# whole whitespace-separated words: ALL CAPS (no lower-case letter) / Capitalised (one upper-case letter first)
_RE_CAPS_WORD = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=\s|$)")
_RE_MAJ_WORD = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=\s|$)")


def fastai_fix_html(t: str) -> str:
    """HTML artefacts as fastai fixes them (`quot;` -> `'`, `...` -> ` …`), then HTML entities."""
    for old, new in _FASTAI_LITERALS:
        t = t.replace(old, new)
    return html.unescape(t)


def fastai_replace_rep(t: str) -> str:
    """A character repeated 3 or more times: `'ccc'` -> `' xxrep 3 c '`."""
    return _RE_REP3.sub(lambda m: f" {TK_REP} {len(m.group(2)) + 1} {m.group(1)} ", t)


def fastai_replace_wrep(t: str) -> str:
    """A word repeated 3 or more times: `'go go go '` -> `' xxwrep 3 go  '`."""
    return _RE_WREP3.sub(lambda m: f" {TK_WREP} {len(m.group(2).split()) + 2} {m.group(1)} {m.group(3)}", t)


def fastai_spec_add_spaces(t: str) -> str:
    """Spaces around `/`, `#` and `\\`."""
    return _RE_SPEC.sub(r" \1 ", t)


def _mark(tag: str):
    def sub(m: re.Match) -> str:
        word = m.group(2)
        return m.group(1) + (f"{tag} " if len(word) > 1 else "") + word.lower()

    return sub


def replace_all_caps_words(t: str) -> str:
    """Whitespace-separated ALL-CAPS words (2+ characters) lowered with `xxup` before them."""
    return _RE_CAPS_WORD.sub(_mark(TK_UP), t)


def replace_maj_words(t: str) -> str:
    """Whitespace-separated Capitalised words (2+ characters) lowered with `xxmaj` before them."""
    return _RE_MAJ_WORD.sub(_mark(TK_MAJ), t)


def lowercase_with_bos(t: str) -> str:
    """`xxbos`, then the whole text lowercased and stripped."""
    return f"{BOS} " + t.lower().strip()


def replace_space(tokens: list[str]) -> list[str]:
    """Spaces inside tokens (spaCy's whitespace tokens such as `'\\n '`) written as `▁`."""
    return [t.replace(" ", "▁") for t in tokens]


FASTAI_PRE_RULES = [fastai_fix_html, fastai_replace_rep, fastai_replace_wrep, fastai_spec_add_spaces,
                    rm_useless_spaces, replace_all_caps_words, replace_maj_words, lowercase_with_bos]
FASTAI_POST_RULES = [replace_space]
