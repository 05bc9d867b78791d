import math
from collections import Counter

import pytest
import torch

from deepfit import Learner
from deepfit.models import MODELS, get_model
from deepfit.models.char_rnn import (
    CharLoopModel,
    CharRnn,
    CharSeqGru,
    CharSeqGruCell,
    CharSeqLstm,
    CharSeqRnn,
    CharSeqRnnCell,
)
from deepfit.text import FlatCrossEntropyLoss, LMLoader, RNNResetCallback, Tokenizer, Vocab, fortunes_texts, lm_loaders
from deepfit.text.rules import UNK
from tests.helpers.data import FORTUNES_DIR, requires_fortunes

V = 11
CHAR_NAMES = ["char_loop", "char_rnn", "char_seq_rnn", "char_seq_rnncell", "char_seq_grucell", "char_seq_gru",
              "char_seq_lstm"]


def graph_size(t: torch.Tensor) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack += [f for f, _ in fn.next_functions]
    return len(seen)


@pytest.mark.parametrize("name", CHAR_NAMES)
def test_registered_and_shapes(name):
    model = get_model(name, vocab_sz=V, emb_sz=5, n_hid=8)
    assert type(model) is MODELS[name]
    out = model(torch.randint(0, V, (3, 7)))
    assert out.shape == (3, 7, V)
    rebuilt = get_model(**model.config)  # config rebuilds the same architecture
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("name", [n for n in CHAR_NAMES if n.startswith("char_seq")])
def test_hidden_detached_no_graph_growth(name):
    torch.manual_seed(0)
    model = get_model(name, vocab_sz=V, emb_sz=5, n_hid=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_func = FlatCrossEntropyLoss()
    sizes = []
    for _ in range(3):
        x, y = torch.randint(0, V, (4, 6)), torch.randint(0, V, (4, 6))
        loss = loss_func(model(x), y)
        sizes.append(graph_size(loss))
        loss.backward()  # would fail ("backward through the graph a second time") if the state kept history
        opt.step()
        opt.zero_grad()
        hidden = model.hidden if isinstance(model.hidden, tuple) else (model.hidden,)
        assert all(h.grad_fn is None and not h.requires_grad for h in hidden)
    assert sizes[0] == sizes[1] == sizes[2]


def test_state_carried_reset_and_batch_size_change():
    torch.manual_seed(0)
    model = CharSeqLstm(V, emb_sz=5, n_hid=8, n_layers=2, dropout=0.0).eval()
    x = torch.randint(0, V, (4, 5))
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)  # the second call starts from the first call's state
    model.reset()
    assert torch.allclose(model(x), a)
    model(x)
    small = model(x[:2])  # batch size changed: the state starts again from zeros
    assert model.hidden[0].shape == (2, 2, 8) and model.hidden[1].shape == (2, 2, 8)
    assert torch.allclose(small, a[:2], atol=1e-6)


def cells_state(seq_state: dict) -> dict:
    """An `nn.RNN`/`nn.GRU` model's state dict renamed for a cell loop: `rnn.weight_ih_l1` → `cells.1.weight_ih`."""
    out = {}
    for k, v in seq_state.items():
        if k.startswith("rnn."):
            name, layer = k[len("rnn."):].rsplit("_l", 1)
            k = f"cells.{layer}.{name}"
        out[k] = v
    return out


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("scratch", [False, True])
@pytest.mark.parametrize("seq_cls, cell_cls", [(CharSeqRnn, CharSeqRnnCell), (CharSeqGru, CharSeqGruCell)])
def test_cell_loop_equals_torch_rnn(seq_cls, cell_cls, scratch, n_layers):
    torch.manual_seed(0)
    seq = seq_cls(V, emb_sz=5, n_hid=8, n_layers=n_layers)
    cell = cell_cls(V, emb_sz=5, n_hid=8, n_layers=n_layers, scratch=scratch)
    cell.load_state_dict(cells_state(seq.state_dict()))
    x = torch.randint(0, V, (3, 6))
    for _ in range(2):  # also after carrying the state once
        assert torch.allclose(seq(x), cell(x), atol=1e-5)
    assert seq.hidden.shape == cell.hidden.shape == (n_layers, 3, 8)


@pytest.mark.parametrize("name", CHAR_NAMES)
def test_sequence_first_layout(name):
    """`batch_first=False` reads the notes' (seq_len, bs) batches and answers in the same layout."""
    torch.manual_seed(0)
    bf = get_model(name, vocab_sz=V, emb_sz=5, n_hid=8, n_layers=1).eval()
    sf = get_model(name, vocab_sz=V, emb_sz=5, n_hid=8, n_layers=1, batch_first=False).eval()
    sf.load_state_dict(bf.state_dict())
    x = torch.randint(0, V, (3, 6))  # (bs, seq_len)
    out = sf(x.t())
    assert out.shape == (6, 3, V)
    assert torch.allclose(out.transpose(0, 1), bf(x), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(seq_len, bs\)"):
        sf(torch.zeros(2, 3, 4, dtype=torch.long))


def test_char_loop_is_one_layer():
    with pytest.raises(ValueError, match="n_layers must be 1"):
        CharLoopModel(V, n_layers=2)


def test_stateless_models_do_not_carry_state():
    x = torch.randint(0, V, (2, 5))
    for model in (CharLoopModel(V, 5, 8), CharRnn(V, 5, 8)):
        assert torch.equal(model(x), model(x))
        assert not hasattr(model, "reset")


class CountingLstm(CharSeqLstm):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.n_resets = 0

    def reset(self):
        self.n_resets += 1
        super().reset()


def test_reset_callback_at_phase_boundaries():
    data = [torch.randint(0, V, (200,)) for _ in range(3)]
    dls = lm_loaders(data, data[:1], bs=4, bptt=10, device="cpu")
    model = CountingLstm(V, emb_sz=5, n_hid=8, n_layers=1, dropout=0.0)
    learn = Learner(model, dls, loss_func=FlatCrossEntropyLoss(), cbs=[RNNResetCallback()])
    learn.remove_cb(learn.progress)
    learn.fit(2)
    assert model.n_resets == 4  # before each training and each validation phase
    assert learn.rnn_reset is not None


@requires_fortunes
def test_lstm_on_fortunes_beats_unigram_entropy():
    torch.manual_seed(0)
    texts = fortunes_texts(FORTUNES_DIR, topics=["computers"]).texts
    tok = Tokenizer.chars()
    train, valid = tok(texts[60:]), tok(texts[:60])
    vocab = Vocab.build(train, min_freq=1, specials=[UNK])
    counts = Counter(c for t in train for c in t)
    total = sum(counts.values())
    entropy = -sum(n / total * math.log(n / total) for n in counts.values())  # ~3.3 nats/char
    train_ids = [vocab.numericalize(t) for t in train]
    budget = 32 * 32 * 100 + 1  # 100 batches of 32 x 32 characters
    dls = lm_loaders(train_ids, [vocab.numericalize(t) for t in valid], bs=64, bptt=32, seed=0, device="cpu",
                     vocab=vocab)
    dls.train = LMLoader([torch.cat(train_ids)[:budget]], bs=32, bptt=32, device="cpu")
    model = CharSeqLstm(len(vocab), emb_sz=24, n_hid=96, n_layers=2, dropout=0.1)
    learn = Learner(model, dls, loss_func=FlatCrossEntropyLoss(), lr=2e-2, cbs=[RNNResetCallback()])
    learn.remove_cb(learn.progress)
    before = learn.validate()[0]
    learn.fit(1)
    after = learn.validate()[0]
    assert before > entropy  # an untrained model is worse than the unigram baseline
    print(f"valid loss {before:.3f} -> {after:.3f} nats/char, unigram entropy {entropy:.3f}")
    assert after < entropy - 0.5, (after, entropy)
