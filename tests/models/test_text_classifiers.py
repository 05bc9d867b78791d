"""Text classifiers: padding never changes the features, chunked encoding, layer groups, LSTM/BiLSTM."""

from __future__ import annotations

import pytest
import torch

from deepfit.models.awd_lstm import AWD_LSTM
from deepfit.models.text_classifiers import (
    LSTMClassifier,
    PoolingLinearClassifier,
    SentenceEncoder,
    awd_lstm_clas_split,
    get_text_classifier,
    lstm_classifier_split,
    masked_concat_pool,
    pad_to_right,
)

PAD = 1
SMALL = dict(emb_sz=8, n_hid=12, n_layers=3)


def pad(t: torch.Tensor, n: int, first: bool) -> torch.Tensor:
    pads = torch.full((n,), PAD, dtype=t.dtype)
    return torch.cat([pads, t] if first else [t, pads])


def test_pad_to_right():
    x = torch.tensor([[1, 1, 5, 6], [7, 8, 9, 1], [4, 5, 6, 7]])
    right, lengths = pad_to_right(x, PAD)
    assert right.tolist() == [[5, 6, 1, 1], [7, 8, 9, 1], [4, 5, 6, 7]]
    assert lengths.tolist() == [2, 3, 4]


def test_masked_concat_pool_ignores_masked_steps():
    out = torch.tensor([[[1.0], [5.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, True, False]])
    assert masked_concat_pool(out, mask).tolist() == [[3.0, 5.0, 3.0]]


@pytest.mark.parametrize("first", [False, True])
def test_masked_pooling_padded_and_unpadded_copies_give_same_features(first):
    torch.manual_seed(0)
    enc = SentenceEncoder(AWD_LSTM(30, **SMALL), bptt=4, max_len=100, pad_idx=PAD).eval()
    text = torch.randint(2, 30, (7,))
    other = torch.randint(2, 30, (13,))
    alone = masked_concat_pool(*enc(text[None]))
    batch = torch.stack([pad(text, 6, first), other])
    padded = masked_concat_pool(*enc(batch))
    torch.testing.assert_close(padded[0], alone[0])
    assert alone.shape == (1, 24)


def test_sentence_encoder_keeps_only_last_max_len_outputs():
    torch.manual_seed(0)
    enc = SentenceEncoder(AWD_LSTM(30, **SMALL), bptt=5, max_len=10, pad_idx=PAD).eval()
    long_text = torch.randint(2, 30, (1, 23))
    out, mask = enc(long_text)
    # the chunks before the one holding the first of the last 10 tokens (position 13) are dropped
    assert out.shape[1] == 23 - 10
    assert mask.sum().item() == 10 and mask[0, -10:].all()
    # the kept outputs equal those of a full run (the state passed through the dropped chunks)
    enc.module.reset()
    full = enc.module(long_text)
    torch.testing.assert_close(out, full[:, 10:])
    # gradients reach the encoder through the kept chunks only
    enc.train()
    out, mask = enc(long_text)
    assert out.requires_grad


def test_classifier_shapes_groups_and_gradual_unfreezing_groups():
    torch.manual_seed(0)
    model = get_text_classifier("awd_lstm", 30, 4, bptt=5, max_len=20, **SMALL)
    x = torch.randint(0, 30, (3, 11))
    assert model(x).shape == (3, 4)
    groups = awd_lstm_clas_split(model)
    assert len(groups) == 5
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert groups[0] == [model[0].module.encoder.weight]
    head = model[1]
    assert isinstance(head, PoolingLinearClassifier)
    assert isinstance(head.layers[0], torch.nn.BatchNorm1d) and head.layers[0].num_features == 24


def test_pooling_head_rejects_bad_dims():
    with pytest.raises(ValueError, match="len\\(ps\\)"):
        PoolingLinearClassifier([24, 10, 2], [0.1])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_classifier_padding_invariant_and_learns(bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(20, 2, emb_sz=8, n_hid=16, n_layers=2, bidirectional=bidirectional, dropout=0.1,
                           pad_idx=PAD)
    model.eval()
    text = torch.randint(2, 20, (6,))
    alone = model(text[None])
    for first in (False, True):
        batch = torch.stack([pad(text, 4, first), torch.randint(2, 20, (10,))])
        torch.testing.assert_close(model(batch)[0], alone[0])
    assert model.fc.in_features == (32 if bidirectional else 16)
    # task: does token 3 occur in the text? (position varies; padding varies)
    g = torch.Generator().manual_seed(1)
    xs = torch.randint(4, 20, (64, 8), generator=g)
    ys = torch.randint(0, 2, (64,), generator=g)
    pos = torch.randint(0, 8, (64,), generator=g)
    xs[ys == 1, pos[ys == 1]] = 3
    xs[::3, -2:] = PAD
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    acc = (model(xs).argmax(1) == ys).float().mean().item()
    assert acc > 0.9


def test_lstm_classifier_pretrained_frozen_embeddings():
    model = LSTMClassifier(10, 3, emb_sz=4, n_hid=5)
    w = torch.randn(10, 4)
    model.set_embeddings(w, freeze=True)
    assert torch.equal(model.embedding.weight, w) and not model.embedding.weight.requires_grad
    model(torch.randint(0, 10, (2, 3))).sum().backward()
    assert model.embedding.weight.grad is None
    assert [len(g) for g in lstm_classifier_split(model)] == [1, 4, 2]
    with pytest.raises(ValueError, match="does not fit"):
        model.set_embeddings(torch.randn(9, 4))


def test_classifier_rebuilds_from_its_config():
    from deepfit.models import get_model

    model = get_text_classifier("awd_lstm", 30, 3, bptt=5, max_len=20, drop_mult=0.5, **SMALL)
    assert model.config["arch"] == "awd_lstm_classifier"
    rebuilt = get_model(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert repr(rebuilt) == repr(model)
    lstm = LSTMClassifier(20, 2, emb_sz=4, n_hid=6, bidirectional=True)
    assert repr(get_model("lstm_classifier", **lstm.config)) == repr(lstm)


def test_bilstm_matches_torch_bidirectional_lstm_on_unpadded_texts():
    torch.manual_seed(0)
    model = LSTMClassifier(20, 3, emb_sz=5, n_hid=6, n_layers=2, bidirectional=True, dropout=0.0).eval()
    ref = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{layer}").copy_(getattr(model.fwd[layer], f"{name}_l0"))
                getattr(ref, f"{name}_l{layer}_reverse").copy_(getattr(model.bwd[layer], f"{name}_l0"))
    x = torch.randint(2, 20, (4, 9))
    _, (h, _) = ref(model.embedding(x))
    expected = model.fc(torch.cat([h[-2], h[-1]], dim=1))
    torch.testing.assert_close(model(x), expected)
