"""AWD-LSTM pieces: the three dropouts, the stateful encoder, the tied decoder and the layer groups."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from deepfit.models import MODELS, get_model
from deepfit.models.awd_lstm import (
    AWD_LSTM,
    EmbeddingDropout,
    RNNDropout,
    SequentialRNN,
    WeightDropout,
    apply_drop_mult,
    awd_lstm_lm_split,
    get_language_model,
)

SMALL = dict(emb_sz=8, n_hid=12, n_layers=3)


def test_rnn_dropout_identity_in_eval_and_one_mask_per_sequence():
    torch.manual_seed(0)
    dp = RNNDropout(0.5)
    x = torch.ones(4, 7, 6)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    y = dp(x)
    # every time step of a sequence carries the same mask
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert (y == 0).any() and (y == 2).any()
    # masks differ across sequences of the batch (with overwhelming probability)
    assert not torch.equal(y[0, 0], y[1, 0]) or not torch.equal(y[2, 0], y[3, 0])
    assert torch.equal(RNNDropout(0.0).train()(x), x)


def test_embedding_dropout_drops_whole_rows_and_is_zero_in_eval():
    torch.manual_seed(0)
    emb = nn.Embedding(20, 5)
    dp = EmbeddingDropout(emb, 0.5)
    words = torch.arange(20).repeat(3, 1)  # every word three times
    dp.eval()
    assert torch.equal(dp(words), emb(words))
    dp.train()
    out = dp(words)
    ref = emb(words)
    dropped = (out == 0).all(-1)  # (3, 20)
    kept = ~dropped
    # a word is dropped everywhere in the batch or nowhere: whole rows of the weight
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))
    assert dropped.any() and kept.any()
    torch.testing.assert_close(out[kept], ref[kept] * 2)
    assert emb.weight.grad is None
    out.sum().backward()
    assert emb.weight.grad is not None


def test_weight_dropout_raw_weights_intact_and_effective_only_in_training():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True)
    raw = lstm.weight_hh_l0.detach().clone()
    plain = nn.LSTM(4, 6, batch_first=True)
    plain.load_state_dict(lstm.state_dict())
    wd = WeightDropout(lstm, 0.5)
    x = torch.randn(2, 5, 4)

    wd.train()
    eff = wd.effective_weights()["weight_hh_l0"]
    assert (eff == 0).float().mean() > 0.2  # some connections dropped
    nz = eff != 0
    torch.testing.assert_close(eff[nz], raw[nz] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from the LSTM kernel
        out, _ = wd(x)
    assert not torch.allclose(out, plain(x)[0])
    assert torch.equal(lstm.weight_hh_l0, raw), "training forward changed the raw weight"
    assert isinstance(lstm.weight_hh_l0, nn.Parameter)
    assert [n for n, _ in wd.named_parameters()] == [f"module.{n}" for n, _ in plain.named_parameters()]
    out.sum().backward()
    assert lstm.weight_hh_l0.grad is not None  # the optimizer trains the raw weight

    wd.eval()
    assert wd.effective_weights()["weight_hh_l0"] is lstm.weight_hh_l0
    torch.testing.assert_close(wd(x)[0], plain(x)[0])
    with pytest.raises(ValueError, match="no parameter"):
        WeightDropout(nn.LSTM(2, 2), 0.1, "weight_hh_l9")


def test_awd_lstm_shapes_state_and_reset():
    torch.manual_seed(0)
    enc = AWD_LSTM(30, **SMALL).eval()
    x = torch.randint(2, 30, (3, 9))
    out = enc(x)
    assert out.shape == (3, 9, 8)
    assert [h.shape for h, _ in enc.hidden] == [(1, 3, 12), (1, 3, 12), (1, 3, 8)]
    assert not any(h.requires_grad or c.requires_grad for h, c in enc.hidden)
    # stateful: the same input again gives different outputs, until reset()
    again = enc(x)
    assert not torch.allclose(out, again)
    enc.reset()
    torch.testing.assert_close(enc(x), out)
    # feeding a text in two halves (carrying the state) equals feeding it whole
    enc.reset()
    halves = torch.cat([enc(x[:, :4]), enc(x[:, 4:])], dim=1)
    torch.testing.assert_close(halves, out)
    # a batch of another size re-initialises the state
    assert enc(x[:2]).shape == (2, 9, 8)
    assert enc.hidden[0][0].shape == (1, 2, 12)


def test_language_model_decoder_is_tied_and_groups_cover_all_parameters():
    lm = get_language_model(AWD_LSTM, 40, **SMALL)
    enc, dec = lm[0], lm[1]
    assert dec.decoder.weight is enc.encoder.weight
    assert lm(torch.randint(0, 40, (2, 5))).shape == (2, 5, 40)
    groups = awd_lstm_lm_split(lm)
    assert len(groups) == 4
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == len(list(lm.parameters()))
    assert any(p is enc.encoder.weight for p in groups[-1])
    untied = get_language_model("awd_lstm", 40, tie_weights=False, **SMALL)
    assert untied[1].decoder.weight is not untied[0].encoder.weight


def test_defaults_drop_mult_registry_and_bad_config():
    enc = AWD_LSTM(100)
    assert (enc.emb_sz, enc.n_hid, enc.n_layers) == (400, 1152, 3)
    lm = get_language_model("awd_lstm", 50, drop_mult=0.5, **SMALL)
    assert lm[0].input_dp.p == pytest.approx(0.125) and lm[1].output_dp.p == pytest.approx(0.05)
    assert apply_drop_mult({"emb_sz": 4, "hidden_p": 0.2}, 2) == {"emb_sz": 4, "hidden_p": 0.4}
    assert {"awd_lstm", "awd_lstm_lm", "awd_lstm_classifier", "lstm_classifier"} <= set(MODELS)
    assert lm.config["arch"] == "awd_lstm_lm"  # built by get_language_model, rebuilt by name
    rebuilt = get_model(**lm.config)
    rebuilt.load_state_dict(lm.state_dict())
    assert isinstance(rebuilt, SequentialRNN)
    with pytest.raises(TypeError, match="unknown config keys"):
        get_language_model("awd_lstm", 10, n_hidden=3)
    with pytest.raises(KeyError, match="unknown text architecture"):
        get_language_model("gpt", 10)
    with pytest.raises(ValueError, match="pad_token"):
        AWD_LSTM(2, pad_token=5)


def test_reset_and_lm_learns_a_repeating_sequence():
    torch.manual_seed(0)
    lm = get_language_model("awd_lstm", 12, drop_mult=0.0, emb_sz=16, n_hid=16, n_layers=2)
    seq = torch.arange(2, 12).repeat(8)[None].repeat(4, 1)  # 2 3 ... 11 2 3 ...
    opt = torch.optim.Adam(lm.parameters(), lr=3e-2)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(10):
        lm.reset()
        for i in range(0, 70, 10):
            x, y = seq[:, i:i + 10], seq[:, i + 1:i + 11]
            loss = loss_fn(lm(x).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    lm.reset()
    assert lm[0].hidden is None
