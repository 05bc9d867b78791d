import pytest

from deepfit.text.rules import DEFAULT_PRE_RULES, rm_useless_spaces
from deepfit.text.tokenize import CharTokenizer, SpacyTokenizer, Tokenizer, decode, decode_chars

TEXT = ('The CAT sat on the mat. It was sooooo happy!!!! She said "don\'t go" (really).\n'
        "New line here: OK? I'm fine... no no no no, thanks.")


def shout(t: str) -> str:  # a module-level rule (picklable for worker processes)
    return t.upper()


def test_special_tokens_kept_whole():
    toks = Tokenizer().tokenize1("xxbos Hello xxmaj world xxrep 4 !")
    assert toks[:3] == ["xxbos", "xxbos", "xxmaj"]
    assert "xxrep" in toks and "xxmaj" in toks and not any(t.startswith("xx") and len(t) < 4 for t in toks)


def test_tokenize_with_rules():
    toks = Tokenizer().tokenize1(TEXT)
    assert toks[0] == "xxbos" and toks[-1] == "xxeos"
    assert toks[1:5] == ["xxmaj", "the", "xxup", "cat"]
    i = toks.index("xxrep")
    assert toks[i - 1:i + 3] == ["s", "xxrep", "5", "o"]
    assert toks[toks.index("xxwrep"):toks.index("xxwrep") + 3] == ["xxwrep", "4", "no"]
    assert "do" in toks and "n't" in toks


def test_decode_round_trip():
    tok = Tokenizer()
    assert decode(tok.tokenize1(TEXT)) == TEXT
    assert tok.decode(tok.tokenize1("a &amp; b<br />c")) == "a & b\nc"


def test_decode_undoes_specials():
    assert decode(["xxbos", "xxmaj", "hi", "xxup", "bob", "xxwrep", "3", "go", "xxrep", "4", "!", "xxeos"]) == \
        "Hi BOB go go go!!!!"


def test_char_tokenizer():
    tok = Tokenizer.chars()
    assert tok(["ab c", "d"]) == [["a", "b", " ", "c"], ["d"]]
    assert tok.decode(tok.tokenize1("Hi there!")) == "Hi there!"
    assert decode_chars(["xxbos", "a", "b"]) == "ab"
    assert isinstance(tok.tok, CharTokenizer)


def test_parallel_matches_serial_and_is_ordered():
    texts = [f"Text number {i}: HELLO world/again" for i in range(40)]
    serial = Tokenizer(n_workers=1, chunksize=7)(texts)
    parallel = Tokenizer(n_workers=2, chunksize=7)(texts)
    assert parallel == serial
    assert serial[3][:4] == ["xxbos", "xxmaj", "text", "number"] and "3" in serial[3]


def test_cache_keyed_by_texts_and_rules(tmp_path):
    texts = ["Hello there", "General Kenobi"]
    tok = Tokenizer(cache_dir=tmp_path)
    first = tok(texts)
    files = list(tmp_path.glob("tokens-*.json"))
    assert len(files) == 1
    assert tok(texts) == first and len(list(tmp_path.glob("*.json"))) == 1  # a hit writes nothing new
    # a different rule list gives a different key (and different tokens)
    tok2 = Tokenizer(cache_dir=tmp_path, pre_rules=[*DEFAULT_PRE_RULES, shout])
    assert tok2.cache_key(texts) != tok.cache_key(texts)
    assert tok2(texts)[0][:3] == ["xxbos", "xxup", "hello"]
    assert tok.cache_key(texts) != tok.cache_key(["Hello there", "General Kenobi!"])
    assert len(list(tmp_path.glob("*.json"))) == 2
    # the cache is really read: corrupt the stored tokens and see them come back
    files[0].write_text('[["cached"], ["x"]]')
    assert tok(texts) == [["cached"], ["x"]]


def test_rules_order_changes_result():
    tok = Tokenizer(pre_rules=[rm_useless_spaces], post_rules=[])
    assert tok.tokenize1("Hi  THERE") == ["Hi", "THERE"]


def test_bad_input():
    with pytest.raises(TypeError, match="text 1"):
        Tokenizer()(["ok", 3])
    with pytest.raises(ValueError, match="n_workers"):
        Tokenizer(n_workers=0)
    with pytest.raises(TypeError, match="picklable"):
        Tokenizer(n_workers=2, chunksize=1, pre_rules=[lambda t: t])(["a", "b"])


def test_spacy_tokenizer_pickles_without_spacy_state():
    import pickle

    tok = SpacyTokenizer()
    list(tok(["warm up"]))
    clone = pickle.loads(pickle.dumps(tok))
    assert list(clone(["Hello world"])) == [["Hello", "world"]]
