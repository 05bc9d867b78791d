"""ULMFiT learners: vocabulary transfer, AR/TAR, encoder transfer, gradual unfreezing, a real fortunes run."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import pytest
import torch

from deepfit.learner.metrics import Perplexity
from deepfit.text import FlatCrossEntropyLoss, RNNResetCallback, Vocab, classifier_loaders, lm_loaders
from deepfit.text.learner import (
    FASTAI_LR_DIVS,
    RNNRegularizer,
    TextLearner,
    fit_ulmfit,
    language_model_learner,
    text_classifier_learner,
    transfer_vocab,
)
from tests.helpers.data import requires_fortunes

TINY = dict(emb_sz=8, n_hid=12, n_layers=3)


def make_vocab(words: list[str]) -> Vocab:
    return Vocab.build([words], min_freq=1)


def random_texts(vocab: Vocab, n: int, length: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(9, len(vocab), (length,), generator=g) for _ in range(n)]


def lm_dls(vocab: Vocab, seed: int = 0):
    return lm_loaders(random_texts(vocab, 20, 15, seed), random_texts(vocab, 6, 15, seed + 1), bs=4, bptt=6,
                      vocab=vocab, device="cpu")


def clas_dls(vocab: Vocab):
    texts = random_texts(vocab, 24, 9, 3)
    labels = [int(t[0]) % 2 for t in texts]
    return classifier_loaders(texts[:16], labels[:16], texts[16:], labels[16:], bs=8, device="cpu",
                              classes=["a", "b"])


def test_transfer_vocab_copies_shared_rows_and_gives_new_tokens_the_mean():
    old = ["xxunk", "xxpad", "cat", "dog"]
    new = ["xxunk", "xxpad", "dog", "zebra", "cat"]
    emb = torch.arange(8.0).view(4, 2)
    bias = torch.tensor([0.0, 1.0, 2.0, 5.0])
    other = torch.randn(3, 3)
    state = {"0.encoder_dp.emb.weight": emb, "1.decoder.weight": emb.clone(), "1.decoder.bias": bias,
             "0.rnns.0.module.weight_ih_l0": other}
    out, n_shared = transfer_vocab(state, old, new)
    assert n_shared == 4
    assert out["0.encoder_dp.emb.weight"].tolist() == [[0, 1], [2, 3], [6, 7], [3, 4], [4, 5]]
    assert out["1.decoder.weight"].tolist() == out["0.encoder_dp.emb.weight"].tolist()
    assert out["1.decoder.bias"].tolist() == [0, 1, 5, 2, 2]
    assert out["0.rnns.0.module.weight_ih_l0"] is other
    with pytest.raises(ValueError, match="old vocabulary has"):
        transfer_vocab(state, old[:3], new)


def test_language_model_learner_defaults_and_pretrained_with_another_vocab(tmp_path):
    words_a = [f"w{i}" for i in range(20)]
    vocab_a = make_vocab(words_a)
    learn = language_model_learner(lm_dls(vocab_a), config=TINY, path=tmp_path)
    assert isinstance(learn, TextLearner)
    assert isinstance(learn.loss_func, FlatCrossEntropyLoss)
    assert isinstance(learn.metrics[0], Perplexity)
    assert any(isinstance(c, RNNResetCallback) for c in learn.cbs)
    assert any(isinstance(c, RNNRegularizer) for c in learn.cbs)
    assert len(learn.parameter_groups()) == 4
    path = learn.save_pretrained("lm_a")
    assert path == tmp_path / "models" / "lm_a.pth"
    old = learn.model[0].encoder.weight.detach().clone()

    vocab_b = make_vocab(words_a[5:] + ["new1", "new2"])
    learn_b = language_model_learner(lm_dls(vocab_b), pretrained=path, path=tmp_path)
    enc_b = learn_b.model[0]
    assert enc_b.emb_sz == 8 and enc_b.n_hid == 12  # sizes come from the saved config
    w = enc_b.encoder.weight.detach()
    for tok in ["xxpad", "xxbos", "w5", "w19"]:
        torch.testing.assert_close(w[vocab_b.stoi[tok]], old[vocab_a.stoi[tok]])
    for tok in ["new1", "new2"]:
        torch.testing.assert_close(w[vocab_b.stoi[tok]], old.mean(0))
    assert learn_b.model[1].decoder.weight is enc_b.encoder.weight  # still tied after loading
    with pytest.raises(ValueError, match="do not fit"):
        language_model_learner(lm_dls(vocab_b), pretrained=path, config=dict(n_hid=10), path=tmp_path)


def test_rnn_regularizer_adds_ar_tar_to_the_gradient_not_to_the_recorded_loss(tmp_path):
    torch.manual_seed(0)
    vocab = make_vocab([f"w{i}" for i in range(20)])
    learn = language_model_learner(lm_dls(vocab), config=TINY, path=tmp_path, alpha=2.0, beta=1.0)
    model = learn.model.train()
    reg = RNNRegularizer(alpha=2.0, beta=1.0)
    fake = SimpleNamespace(model=model, training=True, loss=None)
    reg.learn = fake
    reg.before_fit()
    seen = {}
    handle = model[1].output_dp.register_forward_hook(lambda m, i, o: seen.update(raw=i[0], out=o))
    x, y = next(iter(learn.dls.train))
    pred = model(x)
    ce = FlatCrossEntropyLoss()(pred, y)
    fake.loss = ce
    reg.after_loss()
    handle.remove()
    reg.after_fit()
    assert fake.loss.item() == ce.item()  # the recorded value is the plain cross-entropy
    expected = ce + 2.0 * seen["out"].pow(2).mean() + (seen["raw"][:, 1:] - seen["raw"][:, :-1]).pow(2).mean()
    params = [p for p in model.parameters()]
    g_reg = torch.autograd.grad(fake.loss, params, retain_graph=True)
    g_exp = torch.autograd.grad(expected, params, retain_graph=True)
    g_ce = torch.autograd.grad(ce, params)
    for a, b in zip(g_reg, g_exp):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(g_reg, g_ce))
    assert reg._handle is None


def test_encoder_round_trip_and_gradual_unfreezing_groups(tmp_path):
    torch.manual_seed(0)
    vocab = make_vocab([f"w{i}" for i in range(20)])
    lm = language_model_learner(lm_dls(vocab), config=TINY, path=tmp_path)
    lm.fit(1, 1e-2)
    lm.save_encoder("enc")
    clas = text_classifier_learner(clas_dls(vocab), vocab=vocab, config=TINY, bptt=4, path=tmp_path,
                                   pretrained_encoder=tmp_path / "models" / "enc.pth")
    for (k, a), b in zip(lm.model[0].state_dict().items(), clas.model[0].module.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(clas.parameter_groups()) == 5

    before = [[p.detach().clone() for p in g] for g in clas.parameter_groups()]
    stages = fit_ulmfit(clas, 1e-2, epochs=(0, 1, 0, 0), lr_divs=FASTAI_LR_DIVS, group_factor=2.6)
    assert [s["trainable_groups"] for s in stages] == [[4], [3, 4], [2, 3, 4], [0, 1, 2, 3, 4]]
    assert stages[1]["lr"] == slice(1e-2 / 2 / 2.6 ** 4, 1e-2 / 2)
    after = clas.parameter_groups()
    # the stage with freeze_to(-2) trained groups 3 and 4 only
    for i, (g0, g1) in enumerate(zip(before, after)):
        changed = any(not torch.equal(a, b) for a, b in zip(g0, g1))
        assert changed == (i >= 3), f"group {i}"
    assert all(p.requires_grad for p in clas.model.parameters())  # unfrozen at the end
    with pytest.raises(ValueError, match="need 4 entries"):
        fit_ulmfit(clas, 1e-2, epochs=(1, 1))


def test_classifier_learner_needs_a_token_vocab(tmp_path):
    vocab = make_vocab([f"w{i}" for i in range(20)])
    with pytest.raises(ValueError, match="token vocabulary"):
        text_classifier_learner(clas_dls(vocab), config=TINY)


# ---------------------------------------------------------------------------------------------- real data
TOPICS = ["linux", "love", "food"]


def simple_tokens(text: str) -> list[str]:
    """A fast lower-case word/punctuation split (the test is about the models, not the tokenizer)."""
    return ["xxbos", *re.findall(r"[a-z]+|[^\sa-z]", text.lower())]


@requires_fortunes
def test_pretrained_pipeline_beats_from_scratch_on_fortunes_topics(tmp_path):
    from deepfit.text import fortunes_texts

    items = fortunes_texts(topics=TOPICS)
    toks = [simple_tokens(t) for t in items.texts]
    idx = list(range(len(toks)))
    random.Random(0).shuffle(idx)
    valid, train = idx[:150], idx[150:]
    vocab = Vocab.build([toks[i] for i in train], min_freq=2)
    ids = [vocab.numericalize(t) for t in toks]
    labels = items.label_ids(TOPICS)
    cfg = dict(emb_sz=32, n_hid=64, n_layers=2)

    # (1) language model on the unlabelled training texts
    torch.manual_seed(0)
    lm = language_model_learner(lm_loaders([ids[i] for i in train], [ids[i] for i in valid], bs=32, bptt=24,
                                           vocab=vocab, device="cpu"),
                                config=cfg, drop_mult=0.2, path=tmp_path)
    lm.remove_cb(lm.progress)
    lm.fit_one_cycle(5, 2e-2)
    ppl = [row[2] for row in lm.recorder.values]
    assert ppl[-1] < 0.8 * ppl[0] and ppl[-1] < len(vocab) / 10
    lm.save_encoder("enc")

    # (2) the same classifier with and without the pretrained encoder, 150 labelled texts, the same epochs:
    # the pretrained encoder's features are better than random ones (head only, encoder frozen), and ULMFiT
    # (fit_ulmfit's defaults) beats the same recipe from a random encoder. (Against a from-scratch AWD-LSTM with
    # plain one-cycle this small LM does not win: docs/ulmfit.md measures why.)
    labelled = train[:150]
    dls = classifier_loaders([ids[i] for i in labelled], [labels[i] for i in labelled], [ids[i] for i in valid],
                             [labels[i] for i in valid], bs=8, device="cpu", classes=TOPICS)

    def head_only(c):
        c.freeze()
        c.fit_one_cycle(6, 2e-2, moms=(0.8, 0.7, 0.8))

    results = {}
    for name, enc in [("pretrained", tmp_path / "models" / "enc.pth"), ("scratch", None)]:
        for recipe, fit in [("head", head_only), ("ulmfit", fit_ulmfit)]:
            torch.manual_seed(0)
            dls.train.set_epoch(0)
            clas = text_classifier_learner(dls, vocab=vocab, config=cfg, path=tmp_path, pretrained_encoder=enc)
            clas.remove_cb(clas.progress)
            fit(clas)
            results[name, recipe] = clas.validate()
    print(results)
    (loss_pre, acc_pre), (loss_scr, acc_scr) = results["pretrained", "head"], results["scratch", "head"]
    assert loss_pre < loss_scr and acc_pre > acc_scr + 0.1, results  # measured 0.69 vs 0.50
    # ULMFiT from the pretrained encoder ends with the lower validation loss (measured 0.82 vs 0.91). Accuracy on
    # 150 texts is too coarse to compare here: floating-point rounding alone (torch's fused against its per-tensor
    # Adam) moved it from 0.66 vs 0.61 to 0.653 vs 0.660, one text.
    assert results["pretrained", "ulmfit"][0] < 0.95 * results["scratch", "ulmfit"][0], results
