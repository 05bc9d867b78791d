"""The fastai-compatible rule set. Expected tokens were produced by fastai 2.8.12's `tokenize1(text,
WordTokenizer())` (spaCy 3.8) and are written out here, so the tests need no fastai."""

from deepfit.text.rules import (
    FASTAI_POST_RULES,
    FASTAI_PRE_RULES,
    fastai_fix_html,
    fastai_replace_rep,
    fastai_replace_wrep,
    lowercase_with_bos,
    replace_all_caps_words,
    replace_maj_words,
    replace_space,
)
from deepfit.text.tokenize import Tokenizer, detokenize
from tests.text.test_tokenize import NOTES_PRINTED, NOTES_TEXT

FASTAI_NOTES_TOKENS = [
    "xxbos", "xxmaj", "comedian", "xxmaj", "adam", "xxmaj", "sandler", "'s", "last", "theatrical", "release", '"',
    "i", "xxmaj", "now", "xxmaj", "pronounce", "xxmaj", "you", "xxmaj", "chuck", "and", "xxmaj", "larry", '"',
    "served", "as", "a", "loud", "and", "proud", "plea", "for", "tolerance", "of", "the", "gay", "community", ".",
    "xxmaj", "the", "former", '"', "saturday", "xxmaj", "night", "xxmaj", "live", '"', "funnyman", "'s", "new",
    "movie", '"', "you", "xxmaj", "do", "n't", "xxmaj", "mess", "with", "the", "xxmaj", "zohan", '"', "(", "xxrep",
    "3", "*", "out", "o",
]
MIXED = "\tI'm SO happy... go go go!!! C:\\dir quot;hi quot; U.S.A. McDonald iPhone\n  next"
FASTAI_MIXED_TOKENS = [
    "xxbos", "xxmaj", "i", "'m", "xxup", "so", "happy", "…", "xxwrep", "3", "go", "xxrep", "3", "!", "xxup", "c",
    ":", "\\", "dir", "'", "hi", "'", "xxup", "u.s.a", ".", "mcdonald", "iphone", "\n▁", "next",
]


def test_same_tokens_as_fastai():
    tok = Tokenizer.fastai()
    assert tok.pre_rules == FASTAI_PRE_RULES and tok.post_rules == FASTAI_POST_RULES
    assert tok.tokenize1(NOTES_TEXT) == FASTAI_NOTES_TOKENS
    assert tok.tokenize1(MIXED) == FASTAI_MIXED_TOKENS


def test_where_fastai_departs_from_the_notes():
    # casing decided per whitespace word: `"Saturday` is not capitalised for fastai, it is in the notes
    fastai = " • ".join(Tokenizer.fastai().tokenize1(NOTES_TEXT))
    assert '" • saturday' in fastai and '" • xxmaj • saturday' in NOTES_PRINTED
    assert replace_maj_words('x "Saturday Night"') == 'x "Saturday xxmaj night"'
    assert replace_all_caps_words("I AM (LOUD) A") == "i xxup am (LOUD) a"


def test_fastai_pre_rules():
    assert fastai_replace_rep("ccc") == " xxrep 3 c "
    assert fastai_replace_wrep("go go go now") == " xxwrep 3 go  now"
    # fastai's quirks kept on purpose: quot; becomes ', and "&amp;" becomes "&&" (the bare "amp;" fix runs first)
    assert fastai_fix_html("a quot;b quot; c... &amp;") == "a 'b ' c … &&"
    assert lowercase_with_bos("  Hi THERE \n") == "xxbos hi there"
    assert replace_space(["\n ", "a"]) == ["\n▁", "a"]


def test_detokenize_reads_fastai_tokens():
    assert detokenize(Tokenizer.fastai().tokenize1("Hello there... I said GO.")) == "Hello there … I said GO."
