"""Special tokens and the tokenizer's rules.

Pre-rules are `str -> str` functions applied to a raw text before it is split into tokens; post-rules are
`list[str] -> list[str]` functions applied to its tokens. Both are plain functions kept in plain lists
(`DEFAULT_PRE_RULES`, `DEFAULT_POST_RULES`): copy a list and add, remove or reorder functions to change them.

Three sets: the defaults follow the course notes (file 004: `xxup`/`xxmaj` per spaCy token, every token
lowercased); `CASED_POST_RULES` is deepfit's earlier post-processing (markers, case kept otherwise);
`FASTAI_PRE_RULES`/`FASTAI_POST_RULES` reproduce today's fastai (v2) token for token.
"""

from __future__ import annotations

import html
import re

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_REP, TK_WREP, TK_UP, TK_MAJ = "xxrep", "xxwrep", "xxup", "xxmaj"

SPECIAL_TOKENS: list[str] = [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ]

# ---------------------------------------------------------------------- pre-rules (str -> str)

# Entities whose leading '&' was stripped by an earlier scraper (IMDB has many: "#39;", "quot;").
_RE_BARE_ENTITY = re.compile(r"(?<!&)(#\d{2,4};)|(?<![&\w])(quot;|amp;|nbsp;|lt;|gt;)")
_RE_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_RE_REP = re.compile(r"(\S)(\1{3,})")
_RE_WREP = re.compile(r"(?<!\w)(\w+)((?:\s+\1\b){3,}) ?")
_RE_SPEC = re.compile(r"([/#])")
_RE_SPACES = re.compile(r" {2,}")

_LITERAL_FIXES = [
    ("\\n", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"), (" @,@ ", ","),
    ("\xa0", " "),
]


def fix_html(t: str) -> str:
    """Repair HTML artefacts: entities (also ones that lost their `&`), escaped newlines and quotes, `<unk>`."""
    for _ in range(2):  # "&amp;quot;" needs two passes
        t = html.unescape(t)
    t = _RE_BARE_ENTITY.sub(lambda m: html.unescape("&" + m.group(m.lastindex)), t)
    for old, new in _LITERAL_FIXES:
        t = t.replace(old, new)
    return t


def sub_br(t: str) -> str:
    """Replace `<br />` (any spelling: `<br>`, `<BR/>`...) by a newline."""
    return _RE_BR.sub("\n", t)


def replace_rep(t: str) -> str:
    """Replace a character repeated 4 or more times: `'cccc'` -> `' xxrep 4 c '`."""
    return _RE_REP.sub(lambda m: f" {TK_REP} {len(m.group(2)) + 1} {m.group(1)} ", t)


def replace_wrep(t: str) -> str:
    """Replace a word repeated 4 or more times: `'word word word word '` -> `' xxwrep 4 word '`."""

    def _sub(m: re.Match) -> str:
        n = len(m.group(2).split()) + 1
        return f" {TK_WREP} {n} {m.group(1)} "

    return _RE_WREP.sub(_sub, t)


def spec_add_spaces(t: str) -> str:
    """Put spaces around `/` and `#`."""
    return _RE_SPEC.sub(r" \1 ", t)


def rm_useless_spaces(t: str) -> str:
    """Collapse runs of spaces into one space (newlines are kept)."""
    return _RE_SPACES.sub(" ", t)


# ---------------------------------------------------------------------- post-rules (list[str] -> list[str])

def replace_all_caps(tokens: list[str]) -> list[str]:
    """Lower an ALL-CAPS token (2+ characters) and put `xxup` before it."""
    out: list[str] = []
    for t in tokens:
        if len(t) > 1 and t.isupper():
            out += [TK_UP, t.lower()]
        else:
            out.append(t)
    return out


def deal_caps(tokens: list[str]) -> list[str]:
    """Put `xxmaj` before a Capitalised token (upper first letter, lower rest), lowercase **every** token and
    drop empty ones (the notes' `deal_caps`, fastai's default): `I` and `i` become one vocabulary entry."""
    out: list[str] = []
    for t in tokens:
        if not t:
            continue
        if len(t) > 1 and t[0].isupper() and t[1:].islower():
            out.append(TK_MAJ)
        out.append(t.lower())
    return out


def mark_maj(tokens: list[str]) -> list[str]:
    """Lower a Capitalised token and put `xxmaj` before it; every other token keeps its case (deepfit's
    rule before it followed the notes: use `CASED_POST_RULES` for it)."""
    out: list[str] = []
    for t in tokens:
        if len(t) > 1 and t[0].isupper() and t[1:].islower():
            out += [TK_MAJ, t.lower()]
        else:
            out.append(t)
    return out


def add_bos_eos(tokens: list[str]) -> list[str]:
    """Surround a text's tokens with `xxbos` and `xxeos`."""
    return [BOS, *tokens, EOS]


DEFAULT_PRE_RULES = [fix_html, sub_br, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces]
# `replace_all_caps` must run first: `deal_caps` lowercases every token.
DEFAULT_POST_RULES = [replace_all_caps, deal_caps, add_bos_eos]
# The earlier default: markers added, but tokens such as `I`, `A`, `McDonald`, `iPhone` keep their case.
CASED_POST_RULES = [replace_all_caps, mark_maj, add_bos_eos]


def apply_rules(x, rules):
    """Apply `rules` in order."""
    for rule in rules:
        x = rule(x)
    return x


# ---------------------------------------------------------------------- fastai v2 compatible rules
#
# deepfit's defaults above follow the course notes (fastai v1): casing is decided per spaCy token, so
# `"Saturday` gives `" xxmaj saturday`, as the notes print. fastai v2 decides it per whitespace-separated word
# before spaCy runs (`"Saturday` is not capitalised there: `" saturday`), marks repetitions of 3 characters or
# words (not 4), turns `...` into `…`, strips the text and writes spaces inside tokens as `▁`. The rules below
# do the same (`Tokenizer.fastai()` or `Tokenizer(pre_rules=FASTAI_PRE_RULES, post_rules=FASTAI_POST_RULES)`),
# for vocabularies and models shared with fastai. Like fastai, they add `xxbos` but no `xxeos`.

# fastai's literal fixes, in its order (later ones see the result of earlier ones).
_FASTAI_LITERALS = [
    ("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"), ("quot;", "'"),
    ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"), ("...", " …"),
]
_RE_REP3 = re.compile(r"(\S)(\1{2,})")
# a word, then 2 or more whitespace-separated copies of it, then a non-word character or the end
_RE_WREP3 = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_RE_SPEC_FASTAI = re.compile(r"([/#\\])")
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
    return _RE_SPEC_FASTAI.sub(r" \1 ", t)


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
