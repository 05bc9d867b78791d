import pytest

from deepfit.text.rules import DEFAULT_PRE_RULES, rm_useless_spaces
from deepfit.text.tokenize import CharTokenizer, SpacyTokenizer, Tokenizer, decode, decode_chars, detokenize

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

    pytest.importorskip("spacy")
    tok = SpacyTokenizer()
    list(tok(["warm up"]))
    clone = pickle.loads(pickle.dumps(tok))
    assert list(clone(["Hello world"])) == [["Hello", "world"]]


# file 004: the raw IMDB review the notes tokenize (its first 250 characters) and the tokens they print
NOTES_TEXT = ('Comedian Adam Sandler\'s last theatrical release "I Now Pronounce You Chuck and Larry" served as a '
              'loud and proud plea for tolerance of the gay community. The former "Saturday Night Live" '
              'funnyman\'s new movie "You Don\'t Mess with the Zohan" (*** out o')
NOTES_PRINTED = ('xxbos • xxmaj • comedian • xxmaj • adam • xxmaj • sandler • \'s • last • theatrical • release • " • '
                 'i • xxmaj • now • xxmaj • pronounce • xxmaj • you • xxmaj • chuck • and • xxmaj • larry • " • '
                 'served • as • a • loud • and • proud • plea • for • tolerance • of • the • gay • community • . • '
                 'xxmaj • the • former • " • xxmaj • saturday • xxmaj • night • xxmaj • live • " • funnyman • '
                 '\'s • new • movie • ')


def test_notes_sample_sentence_gives_the_printed_tokens():
    toks = Tokenizer().tokenize1(NOTES_TEXT)
    assert " • ".join(toks)[:400] == NOTES_PRINTED[:400]
    assert all(t == t.lower() for t in toks)  # "I" became "i": one vocabulary entry for both
    assert "i" in toks and "I" not in toks


def test_detokenize_shows_no_special_tokens():
    toks = Tokenizer().tokenize1(NOTES_TEXT)
    assert detokenize(toks) == NOTES_TEXT.replace("***", "* * *")  # spaCy splits "***"; spacing is rebuilt
    assert detokenize(["xxbos", "xxmaj", "xxunk", "is", "xxup", "xxunk", "here", "xxmaj"]) == "<unk> is <unk> here"
    assert detokenize(["xxmaj", "a", "xxunk", "b", "xxrep", "x", "xxfld", "1"], unk="") == "A b x 1"
    assert detokenize(["i", "'m", "sure", "i", "am", "."]) == "I'm sure I am."
    assert detokenize(["i", "am"], capitalize_i=False) == "i am"
    out = detokenize(["xxbos", "xxmaj", "xxup", "xxrep", "xxwrep", "2", "xxeos", "ok", "xxpad", "xxup"])
    assert not any(s in out for s in ("xxmaj", "xxup", "xxunk", "xxrep", "xxwrep", "xxbos", "xxeos", "xxpad"))
