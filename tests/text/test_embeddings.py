"""GloVe-format loader on a small file written by the test."""

from __future__ import annotations

import pytest
import torch

from deepfit.text.embeddings import load_embeddings, pretrained_embedding

GLOVE = """the 0.1 0.2 0.3
cat 1.0 -1.0 0.5
Dog 2.0 2.0 2.0
new york 3.0 3.0 3.0
sat -0.5 0.25 1e-1
"""


@pytest.fixture
def glove_file(tmp_path):
    path = tmp_path / "glove.tiny.3d.txt"
    path.write_text(GLOVE, encoding="utf-8")
    return path


def test_load_embeddings_found_missing_pad_and_report(glove_file):
    vocab = ["xxunk", "xxpad", "the", "cat", "dog", "new york", "zebra", "sat"]
    messages = []
    vecs = load_embeddings(glove_file, vocab, seed=0, logger=messages.append)
    w = vecs.weight
    assert w.shape == (8, 3) and w.dtype == torch.float32
    assert w[2].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert w[3].tolist() == pytest.approx([1.0, -1.0, 0.5])
    assert w[4].tolist() == pytest.approx([2.0, 2.0, 2.0])  # 'dog' found as 'Dog' (case fallback)
    assert w[5].tolist() == pytest.approx([3.0, 3.0, 3.0])  # a word with a space
    assert w[7].tolist() == pytest.approx([-0.5, 0.25, 0.1])
    assert torch.equal(w[1], torch.zeros(3))  # padding
    assert vecs.n_found == 5
    assert vecs.missing == ["xxunk", "zebra"]
    assert w[6].abs().sum() > 0 and not torch.equal(w[0], w[6])  # random vectors
    assert messages == ["found 5/7 vocabulary tokens (71.4%) in glove.tiny.3d.txt, dim 3"]
    again = load_embeddings(glove_file, vocab, seed=0, logger=None)
    assert torch.equal(again.weight, w)  # seeded


def test_exact_match_wins_over_lowercase(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 2\nApple 1 1\napple 2 2\n", encoding="utf-8")  # word2vec header skipped
    vecs = load_embeddings(path, ["apple", "Apple"], logger=None)
    assert vecs.weight.tolist() == [[2.0, 2.0], [1.0, 1.0]]


def test_pretrained_embedding_frozen(glove_file):
    emb = pretrained_embedding(glove_file, ["xxunk", "xxpad", "cat"], freeze=True, logger=None)
    assert not emb.weight.requires_grad and emb.padding_idx == 1
    assert emb(torch.tensor([2])).tolist() == [pytest.approx([1.0, -1.0, 0.5])]
    trainable = pretrained_embedding(glove_file, ["cat"], freeze=False, logger=None)
    assert trainable.weight.requires_grad


def test_bad_files_name_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2 3\nb 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.txt:2"):
        load_embeddings(bad, ["a", "b"], logger=None)
    nan = tmp_path / "nan.txt"
    nan.write_text("a 1 x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="non-number"):
        load_embeddings(nan, ["a"], logger=None)
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "none.txt", ["a"])
