"""Text: rules and tokenizers, vocabularies, language-model and classifier loaders, text items, generation."""

from .callbacks import DivergenceWarning, RNNResetCallback, reset_model_state
from .datasets import (
    FORTUNES_DIR,
    TextDecodeError,
    TextItems,
    fortune_topics,
    fortunes_texts,
    imdb_texts,
    read_fortunes,
    read_text,
    split_fortunes,
    texts_from_csv,
    texts_from_folder,
)
from .generate import generate, sample_next
from .loaders import (
    LMLoader,
    SortishSampler,
    SortSampler,
    TextClassifierLoader,
    classifier_loaders,
    lm_loaders,
    pad_collate,
)
from .losses import FlatCrossEntropyLoss
from .rules import (
    BOS,
    CASED_POST_RULES,
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
    add_bos_eos,
    deal_caps,
    fix_html,
    mark_maj,
    replace_all_caps,
    replace_rep,
    replace_wrep,
    rm_useless_spaces,
    spec_add_spaces,
    sub_br,
)
from .tokenize import CharTokenizer, SpacyTokenizer, Tokenizer, decode, decode_chars, detokenize
from .vocab import Vocab

__all__ = [
    "BOS", "CASED_POST_RULES", "CharTokenizer", "DEFAULT_POST_RULES", "DEFAULT_PRE_RULES", "DivergenceWarning", "EOS",
    "FASTAI_POST_RULES", "FASTAI_PRE_RULES", "FLD", "FORTUNES_DIR", "FlatCrossEntropyLoss", "LMLoader", "PAD",
    "RNNResetCallback", "SPECIAL_TOKENS", "SortSampler", "SortishSampler", "SpacyTokenizer", "TK_MAJ", "TK_REP",
    "TK_UP", "TK_WREP", "TextClassifierLoader", "TextDecodeError", "TextItems", "Tokenizer", "UNK", "Vocab",
    "add_bos_eos", "classifier_loaders", "deal_caps", "decode", "decode_chars", "detokenize", "fix_html",
    "fortune_topics", "fortunes_texts", "generate", "imdb_texts", "lm_loaders", "mark_maj", "pad_collate",
    "read_fortunes", "read_text", "replace_all_caps", "replace_rep", "replace_wrep", "reset_model_state",
    "rm_useless_spaces", "sample_next", "spec_add_spaces", "split_fortunes", "sub_br", "texts_from_csv",
    "texts_from_folder",
]
