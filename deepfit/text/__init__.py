"""Text: rules and tokenizers, vocabularies, language-model and classifier loaders, text items, generation."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".callbacks": ["RNNResetCallback", "reset_model_state"],
    ".datasets": [
        "FORTUNES_DIR", "TextDecodeError", "TextItems", "fortune_topics", "fortunes_texts", "imdb_texts",
        "read_fortunes", "read_text", "split_fortunes", "texts_from_csv", "texts_from_folder",
    ],
    ".generate": ["generate", "sample_next"],
    ".loaders": [
        "LMLoader", "SortSampler", "SortishSampler", "TextClassifierLoader", "classifier_loaders", "lm_loaders",
        "pad_collate",
    ],
    ".losses": ["FlatCrossEntropyLoss"],
    ".rules": [
        "BOS", "DEFAULT_POST_RULES", "DEFAULT_PRE_RULES", "EOS", "FLD", "PAD", "SPECIAL_TOKENS", "TK_MAJ", "TK_REP",
        "TK_UP", "TK_WREP", "UNK", "add_bos_eos", "deal_caps", "fix_html", "replace_all_caps", "replace_rep",
        "replace_wrep", "rm_useless_spaces", "spec_add_spaces", "sub_br",
    ],
    ".tokenize": ["CharTokenizer", "SpacyTokenizer", "Tokenizer", "decode", "decode_chars"],
    ".vocab": ["Vocab"],
})
