import pytest
import torch

from deepfit.text.rules import SPECIAL_TOKENS
from deepfit.text.vocab import Vocab

DOCS = [["the", "cat", "the", "dog"], ["the", "dog", "a", "bird"], ["a", "the", "zebra"]]


def test_specials_first_then_by_frequency():
    v = Vocab.build(DOCS, min_freq=1)
    assert v.itos[:9] == SPECIAL_TOKENS
    # the:4, a:2, dog:2 (tie -> alphabetical), then singletons alphabetical
    assert v.itos[9:] == ["the", "a", "dog", "bird", "cat", "zebra"]
    assert v.unk_idx == 0 and v.pad_idx == 1


def test_min_freq_and_max_vocab():
    v = Vocab.build(DOCS, min_freq=2)
    assert v.itos[9:] == ["the", "a", "dog"]
    v = Vocab.build(DOCS, min_freq=1, max_vocab=11)
    assert len(v) == 11 and v.itos[9:] == ["the", "a"]
    with pytest.raises(ValueError, match="max_vocab"):
        Vocab.build(DOCS, max_vocab=3)


def test_unknown_maps_to_xxunk():
    v = Vocab.build(DOCS, min_freq=2)
    ids = v.numericalize(["the", "cat", "unseen", "dog"])
    assert ids.dtype == torch.long
    assert ids.tolist() == [v.stoi["the"], 0, 0, v.stoi["dog"]]
    assert v.textify(ids) == ["the", "xxunk", "xxunk", "dog"]


def test_specials_seen_in_text_not_duplicated():
    v = Vocab.build([["xxbos", "hi", "hi", "xxbos"]], min_freq=1)
    assert v.itos.count("xxbos") == 1 and v.itos[9:] == ["hi"]


def test_without_unk_raises():
    v = Vocab.build([list("abca")], min_freq=1, specials=[])
    assert v.itos == ["a", "b", "c"] and v.unk_idx is None
    with pytest.raises(KeyError, match="'z'"):
        v.numericalize(["a", "z"])


def test_json_round_trip(tmp_path):
    v = Vocab.build(DOCS, min_freq=1)
    path = v.save(tmp_path / "vocab.json")
    w = Vocab.load(path)
    assert w.itos == v.itos and w.stoi == v.stoi and w.specials == v.specials
    assert w.numericalize(["zebra", "nope"]).tolist() == v.numericalize(["zebra", "nope"]).tolist()
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json"):
        Vocab.load(tmp_path / "bad.json")


def test_duplicate_tokens_rejected():
    with pytest.raises(ValueError, match="twice"):
        Vocab(["a", "b", "a"])


def test_custom_special_names_are_recognised():
    # file 001's torchtext fields: init_token='<sos>', eos_token='<eos>', unk_token='<unk>' (pad '<pad>')
    specials = ["<unk>", "<pad>", "<sos>", "<eos>"]
    v = Vocab.build(DOCS, min_freq=2, specials=specials)
    assert v.itos[:4] == specials and v.unk_token == "<unk>" and v.pad_token == "<pad>"
    assert (v.unk_idx, v.pad_idx) == (0, 1)
    assert v.textify(v.numericalize(["the", "never-seen"])) == ["the", "<unk>"]
    # any other spelling, named explicitly
    w = Vocab.build(DOCS, min_freq=2, specials=["PAD!", "?"], unk_token="?", pad_token="PAD!")
    assert (w.unk_idx, w.pad_idx) == (1, 0) and w.index("zzz") == 1


def test_custom_specials_survive_save_load(tmp_path):
    w = Vocab.build(DOCS, min_freq=2, specials=["?", "_"], unk_token="?", pad_token="_")
    r = Vocab.load(w.save(tmp_path / "v.json"))
    assert (r.unk_token, r.pad_token, r.unk_idx, r.pad_idx) == ("?", "_", 0, 1)


def test_unknown_special_name_rejected():
    with pytest.raises(ValueError, match="unk_token '<oov>'"):
        Vocab(["a", "b"], specials=[], unk_token="<oov>")
