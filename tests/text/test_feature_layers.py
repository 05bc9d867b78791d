"""Classifiers that pool every AWD-LSTM layer (`feature_layers="all"`): what the features are, that they do not
depend on batch-mates or padding, that the encoder still loads from a language model, and that the model
rebuilds from its config."""

from __future__ import annotations

import pytest
import torch

from deepfit.models import AWD_LSTM
from deepfit.models.registry import get_model
from deepfit.models.text_classifiers import get_text_classifier, masked_concat_pool
from deepfit.text import Vocab, classifier_loaders, lm_loaders
from deepfit.text.learner import language_model_learner, text_classifier_learner
from deepfit.text.loaders import pad_collate
from tests.helpers.tiny_lm import TINY_CFG, WORDS, random_tokens, train_tiny_lm

CFG = TINY_CFG


def random_texts(vocab: Vocab, n: int, seed: int, lo: int = 2, hi: int = 17) -> list[torch.Tensor]:
    return [vocab.numericalize(t) for t in random_tokens(vocab, n, seed, lo, hi)]


def test_all_layers_are_the_embedding_and_each_lstm_layer_concatenated():
    torch.manual_seed(0)
    enc = AWD_LSTM(40, emb_sz=8, n_hid=12, n_layers=3).eval()
    x = torch.randint(2, 40, (3, 9))
    seen = []
    hooks = [rnn.register_forward_hook(lambda m, i, o: seen.append(o[0])) for rnn in enc.rnns]
    enc.reset()
    last = enc(x)
    enc.reset()
    seen.clear()
    every = enc(x, all_layers=True)
    for h in hooks:
        h.remove()
    assert enc.all_layers_sz == 8 + 12 + 12 + 8
    assert every.shape == (3, 9, enc.all_layers_sz)
    emb, l1, l2, l3 = every.split([8, 12, 12, 8], dim=-1)
    torch.testing.assert_close(emb, enc.encoder(x))
    for got, want in zip((l1, l2, l3), seen):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(l3, last)  # the last layer is what the plain forward returns


def test_all_layer_classifier_head_width_and_unknown_value():
    model = get_text_classifier(AWD_LSTM, 40, 3, feature_layers="all", **CFG)
    assert model[1].layers[0].num_features == 3 * (8 + 12 + 8)
    assert get_text_classifier(AWD_LSTM, 40, 3, **CFG)[1].layers[0].num_features == 3 * 8
    with pytest.raises(ValueError, match="feature_layers"):
        get_text_classifier(AWD_LSTM, 40, 3, feature_layers="first", **CFG)
    rebuilt = get_model(**model.config)
    assert rebuilt[0].all_layers and rebuilt.load_state_dict(model.state_dict()) is not None


@pytest.mark.parametrize("pad_first", [True, False])
def test_all_layer_features_load_the_lm_encoder_and_ignore_batch_mates_and_padding(tmp_path, pad_first):
    vocab = Vocab.build([WORDS], min_freq=1)
    ids = random_texts(vocab, 40, 0)
    lm = train_tiny_lm(tmp_path, vocab, ids[:30], ids[30:])
    dls = classifier_loaders(ids[:30], [len(t) % 2 for t in ids[:30]], ids[30:], [len(t) % 2 for t in ids[30:]],
                             bs=8, device="cpu", classes=["a", "b"], pad_idx=vocab.pad_idx)
    dls.text_vocab = vocab
    clas = text_classifier_learner(dls, path=tmp_path, bptt=4, feature_layers="all",
                                   pretrained_encoder=tmp_path / "models" / "enc.pth")
    for name, p in lm.model[0].state_dict().items():
        assert torch.equal(clas.model[0].module.state_dict()[name], p), name
    clas.model.eval()
    enc = clas.model[0]
    batch, _ = pad_collate([(t, 0) for t in ids[30:36]], pad_idx=vocab.pad_idx, pad_first=pad_first)
    assert (batch == vocab.pad_idx).any()
    together = masked_concat_pool(*enc(batch))
    alone = torch.cat([masked_concat_pool(*enc(t[None])) for t in ids[30:36]])
    assert together.shape == (6, 3 * enc.module.all_layers_sz)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_train_classifier_pools_every_layer_on_a_pretrained_encoder_and_the_last_from_scratch(tmp_path):
    """`deepfit train-classifier --lm RUN` builds its classifier with ULMFIT_FEATURE_LAYERS; without --lm, "last"."""
    from argparse import Namespace
    from types import SimpleNamespace

    from deepfit.commands.classifier import build_classifier_learner
    from deepfit.commands.lm import ENCODER_NAME
    from deepfit.text.learner import ULMFIT_FEATURE_LAYERS

    vocab = Vocab.build([WORDS], min_freq=1)
    ids = random_texts(vocab, 20, 0)
    torch.manual_seed(0)
    lm = language_model_learner(lm_loaders(ids[:16], ids[16:], bs=4, bptt=8, vocab=vocab, device="cpu"),
                                config=CFG, path=tmp_path)
    lm.save_encoder(ENCODER_NAME)
    dls = classifier_loaders(ids[:16], [0, 1] * 8, ids[16:], [0, 1] * 2, bs=8, device="cpu", classes=["a", "b"],
                             pad_idx=vocab.pad_idx)
    args = Namespace(arch="awd_lstm", precision="fp32", embeddings=None, emb_sz=8, n_hid=12, n_layers=2)
    lm_run = SimpleNamespace(models_dir=tmp_path / "models", path=tmp_path)
    pretrained = build_classifier_learner(args, dls, vocab, lm_run)
    scratch = build_classifier_learner(args, dls, vocab, None)
    assert ULMFIT_FEATURE_LAYERS == "all"
    assert pretrained.model.config["feature_layers"] == "all" and pretrained.model[0].all_layers
    assert scratch.model.config["feature_layers"] == "last" and not scratch.model[0].all_layers
