import pytest
import torch
from torch import nn

from deepfit import Learner
from deepfit.models.char_rnn import CharRnn, CharSeqGru
from deepfit.text import FlatCrossEntropyLoss, Tokenizer, Vocab, generate, lm_loaders, sample_next
from deepfit.text.rules import UNK


def char_vocab(specials=()):
    return Vocab.build([list("hello world, how are you?")], min_freq=1, specials=specials)


def test_char_generation_reproducible_with_seed():
    torch.manual_seed(0)
    vocab = char_vocab()
    model = CharSeqGru(len(vocab), emb_sz=4, n_hid=16)
    a = generate(model, "hel", 40, seed=1, vocab=vocab)
    b = generate(model, "hel", 40, seed=1, vocab=vocab)
    c = generate(model, "hel", 40, seed=2, vocab=vocab)
    assert a == b and a != c
    assert a.startswith("hel") and len(a) == 43
    assert set(a) <= set(vocab.itos) | set("hel")
    assert model.hidden is None and model.training  # state and mode restored
    with_unk = char_vocab([UNK])
    out = generate(CharSeqGru(len(with_unk), emb_sz=4, n_hid=16), "hé", 40, seed=0, vocab=with_unk)
    assert out.startswith("h") and "xxunk" not in out  # unknown prompt chars fed as xxunk, never printed


def test_stateless_model_and_top_k():
    torch.manual_seed(0)
    vocab = char_vocab()
    model = CharRnn(len(vocab), emb_sz=4, n_hid=16)
    out = generate(model, "how", 30, seed=0, vocab=vocab, top_k=1)
    # top_k=1 is greedy: the same whatever the seed
    assert out == generate(model, "how", 30, seed=5, vocab=vocab, top_k=1)


class FixedNext(nn.Module):
    """A 'language model' that always puts all mass on one token id."""

    def __init__(self, vocab_size, target):
        super().__init__()
        self.vocab_size, self.target = vocab_size, target
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.full((*x.shape, self.vocab_size), -1e9)
        out[..., self.target] = 0.0
        return out


def test_word_model_with_learner():
    tok = Tokenizer()
    docs = tok(["The cat sat on the mat.", "The dog sat on the log."])
    vocab = Vocab.build(docs, min_freq=1)
    ids = [vocab.numericalize(d) for d in docs]
    dls = lm_loaders(ids * 20, ids, bs=2, bptt=5, device="cpu", vocab=vocab)
    learn = Learner(FixedNext(len(vocab), vocab.stoi["cat"]), dls, loss_func=FlatCrossEntropyLoss())
    assert generate(learn, "The dog", 3, seed=0) == "The dog cat cat cat"
    with pytest.raises(ValueError, match="vocab"):
        generate(FixedNext(3, 0), "x", 2)


def test_sample_next_temperature():
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([2.0, 1.0, 0.0])
    cold = [sample_next(scores, 0.05, generator=g) for _ in range(50)]
    assert set(cold) == {0}
    hot = {sample_next(scores, 5.0, generator=g) for _ in range(200)}
    assert hot == {0, 1, 2}
    with pytest.raises(ValueError, match="temperature"):
        sample_next(scores, 0.0)


def test_word_generation_is_detokenized():
    # a vocabulary with the notes' markers and torchtext-style custom specials: none is ever shown
    tok = Tokenizer()
    docs = tok(["The cat sat on the mat.", "The dog sat on the log."])
    specials = ["<unk>", "<pad>", "<sos>", "xxbos", "xxeos", "xxmaj", "xxup"]
    vocab = Vocab.build(docs, min_freq=1, specials=specials)
    model = FixedNext(len(vocab), vocab.stoi["xxmaj"])
    assert generate(model, "The dog", 3, seed=0, vocab=vocab) == "The dog"  # markers with nothing after: dropped
    for name in ("<sos>", "<pad>", "xxeos"):
        assert generate(FixedNext(len(vocab), vocab.stoi[name]), "the", 2, seed=0, vocab=vocab) == "the"
    assert generate(FixedNext(len(vocab), vocab.stoi["<unk>"]), "the", 2, seed=0, vocab=vocab) == "the <unk> <unk>"
    seq = iter([vocab.stoi[t] for t in ["xxmaj", "cat", "xxup", "dog", "."]])

    class Scripted(FixedNext):
        def forward(self, x):
            self.target = next(seq)
            return super().forward(x)

    out = generate(Scripted(len(vocab), 0), "i sat", 5, seed=0, vocab=vocab)
    assert out == "I sat Cat DOG."
