"""Special tokens and the tokenizer's rules.

Pre-rules are `str -> str` functions applied to a raw text before it is split into tokens; post-rules are
`list[str] -> list[str]` functions applied to its tokens. Both are plain functions kept in plain lists
(`DEFAULT_PRE_RULES`, `DEFAULT_POST_RULES`): copy a list and add, remove or reorder functions to change them.
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
