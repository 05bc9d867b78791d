"""ULMFiT transfer mechanics: vocabulary alignment, encoder identity, state resets, batch-invariant pooled
features, the stage plan and the rates it applies, the divergence warning, the safe lr suggestion."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from deepfit.models.text_classifiers import masked_concat_pool
from deepfit.text import Vocab, classifier_loaders
from deepfit.text.callbacks import DivergenceWarning
from deepfit.text.learner import (
    FASTAI_LR_DIVS,
    fit_ulmfit,
    suggest_lr,
    text_classifier_learner,
    ulmfit_plan,
)
from tests.helpers.tiny_lm import TINY_CFG, WORDS, random_tokens, train_tiny_lm

CFG = TINY_CFG


texts = random_tokens


def trained_lm(tmp_path, vocab: Vocab):
    ids = [vocab.numericalize(t) for t in texts(vocab, 60, 0)]
    return train_tiny_lm(tmp_path, vocab, ids[:50], ids[50:])


def classifier(tmp_path, vocab: Vocab, n: int = 24, bptt: int = 72, **kw):
    toks = texts(vocab, n, 1)
    ids = [vocab.numericalize(t) for t in toks]
    labels = [len(t) % 2 for t in toks]
    k = n * 3 // 4
    dls = classifier_loaders(ids[:k], labels[:k], ids[k:], labels[k:], bs=8, device="cpu", classes=["a", "b"],
                             pad_idx=vocab.pad_idx)
    dls.text_vocab = vocab
    clas = text_classifier_learner(dls, path=tmp_path, bptt=bptt, pretrained_encoder=tmp_path / "models" / "enc.pth",
                                   **kw)
    clas.remove_cb(clas.progress)
    return clas


# ---------------------------------------------------------------------------------------------- mechanics
def test_classifier_ids_mean_the_lm_words_even_with_another_vocabulary_order(tmp_path):
    vocab_lm = Vocab.build([WORDS + ["Cat"]], min_freq=1)
    lm = trained_lm(tmp_path, vocab_lm)
    # the classifier's vocabulary: other order, a new word, the same specials, a case variant of a known word
    vocab_c = Vocab.build([list(reversed(WORDS[5:])) + ["new", "cat"]], min_freq=1)
    clas = classifier(tmp_path, vocab_c)
    emb_lm = lm.model[0].encoder.weight.detach()
    emb_c = clas.model[0].module.encoder.weight.detach()
    for tok in ["xxunk", "xxpad", "xxbos", "xxmaj", "w5", "w29"]:
        torch.testing.assert_close(emb_c[vocab_c.stoi[tok]], emb_lm[vocab_lm.stoi[tok]], msg=tok)
    # unknown to the LM ("new", and "cat" that the LM only saw as "Cat"): the mean row, not some other word's
    for tok in ["new", "cat"]:
        torch.testing.assert_close(emb_c[vocab_c.stoi[tok]], emb_lm.mean(0), msg=tok)
    # the same words through both vocabularies give the same encoder outputs
    words = ["xxbos", "w7", "w9", "w5", "w20", "w7"]
    lm.model.eval()
    clas.model.eval()
    lm.model[0].reset()
    out_lm = lm.model[0](vocab_lm.numericalize(words)[None])
    out_c, mask = clas.model[0](vocab_c.numericalize(words)[None])
    assert mask.all()
    torch.testing.assert_close(out_c, out_lm)


def test_encoder_output_is_identical_in_the_lm_and_the_classifier_with_dropout_off(tmp_path):
    vocab = Vocab.build([WORDS], min_freq=1)
    lm = trained_lm(tmp_path, vocab)
    clas = classifier(tmp_path, vocab, drop_mult=1.0)  # the classifier's dropouts are larger than the LM's
    lm.model.eval()
    clas.model.eval()
    x = vocab.numericalize(texts(vocab, 1, 5, lo=30, hi=31)[0])[None]
    lm.model[0].reset()
    expected = lm.model[0](x)
    out, _ = clas.model[0](x)
    assert torch.equal(out, expected)
    # in training mode the classifier's dropouts make them differ: the test above is not vacuous
    clas.model.train()
    torch.manual_seed(0)
    assert not torch.allclose(clas.model[0](x)[0], expected)


def test_classifier_state_is_reset_for_every_batch(tmp_path):
    vocab = Vocab.build([WORDS], min_freq=1)
    trained_lm(tmp_path, vocab)
    clas = classifier(tmp_path, vocab, bptt=4)
    clas.model.eval()
    a = vocab.numericalize(texts(vocab, 1, 7, lo=10, hi=11)[0])[None]
    b = vocab.numericalize(texts(vocab, 1, 8, lo=10, hi=11)[0])[None]
    alone = clas.model(b)
    clas.model(a)
    after_other = clas.model(b)
    assert torch.equal(alone, after_other)


@pytest.mark.parametrize("pad_first", [True, False])
def test_pooled_features_do_not_depend_on_batch_mates_or_padding(tmp_path, pad_first):
    from deepfit.text.loaders import pad_collate

    vocab = Vocab.build([WORDS], min_freq=1)
    trained_lm(tmp_path, vocab)
    clas = classifier(tmp_path, vocab, bptt=4)  # texts longer than bptt run over several chunks
    clas.model.eval()
    enc = clas.model[0]
    ids = [vocab.numericalize(t) for t in texts(vocab, 6, 9, lo=2, hi=17)]
    batch, _ = pad_collate([(t, 0) for t in ids], pad_idx=vocab.pad_idx, pad_first=pad_first)
    assert (batch == vocab.pad_idx).any()
    together = masked_concat_pool(*enc(batch))
    alone = torch.cat([masked_concat_pool(*enc(t[None])) for t in ids])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    # and the logits, through the head's batchnorm in eval mode
    torch.testing.assert_close(clas.model(batch), torch.cat([clas.model(t[None]) for t in ids]), rtol=1e-5,
                               atol=1e-6)


# ---------------------------------------------------------------------------------------------- the recipe
def test_ulmfit_defaults_train_the_head_then_every_layer_at_one_rate():
    plan = ulmfit_plan(5)
    assert [s.epochs for s in plan] == [1, 0, 0, 5]
    assert plan[0].lr == pytest.approx(4e-2)
    assert plan[3].lr.start == plan[3].lr.stop == pytest.approx(2e-2)
    assert plan[3].label == "stage 4/4: all groups, lr 0.02"


def test_ulmfit_plan_spreads_2_6_per_group_whatever_the_depth():
    for n_groups in (4, 5):
        plan = ulmfit_plan(n_groups, lr=1e-2, epochs=(1, 1, 1, 3), lr_divs=(1, 2, 2, 2), group_factor=2.6)
        assert [s.frozen_to for s in plan] == [-1, -2, -3, 0]
        assert plan[0].lr == 1e-2
        last = plan[-1].lr
        assert last.stop == pytest.approx(5e-3) and last.stop / last.start == pytest.approx(2.6 ** (n_groups - 1))
    fastai = ulmfit_plan(5, lr=2e-2, lr_divs=FASTAI_LR_DIVS, factor=2.6 ** 4)
    assert [s.lr.stop if isinstance(s.lr, slice) else s.lr for s in fastai] == pytest.approx([2e-2, 1e-2, 5e-3, 1e-3])
    assert plan[1].label == "stage 2/4: last 2 groups, lr 0.0019..0.005"
    assert plan[0].label == "stage 1/4: head only, lr 0.01"
    assert "all groups" in plan[3].label
    with pytest.raises(ValueError, match="need 4 entries"):
        ulmfit_plan(5, epochs=(1, 1))


def test_fit_ulmfit_applies_the_planned_rates_moms_and_wd(tmp_path):
    vocab = Vocab.build([WORDS], min_freq=1)
    trained_lm(tmp_path, vocab)
    clas = classifier(tmp_path, vocab, wd=0.1)
    seen = []
    res = fit_ulmfit(clas, 1e-2, epochs=(1, 1, 1, 1), lr_divs=(1, 2, 2, 4), group_factor=2.6, on_stage=seen.append)
    assert [s.index for s in seen] == [0, 1, 2, 3]
    assert [r["trainable_groups"] for r in res] == [[3], [2, 3], [1, 2, 3], [0, 1, 2, 3]]
    # a few steps per stage: the one-cycle peak is reached to within a step
    assert res[0]["applied"]["lrs"] == pytest.approx([1e-2], rel=0.1)
    for r, top in zip(res[1:], (5e-3, 5e-3, 2.5e-3)):
        lrs = r["applied"]["lrs"]
        assert lrs[-1] == pytest.approx(top, rel=0.1)
        for lo, hi in zip(lrs, lrs[1:]):
            assert hi / lo == pytest.approx(2.6, rel=1e-3)
    for r in res:
        assert r["applied"]["moms"] == pytest.approx((0.8, 0.7), abs=0.01)
        assert r["applied"]["wds"] == pytest.approx([0.1] * len(r["trainable_groups"]))
        assert math.isfinite(r["valid"][0])
    assert clas.ulmfit_stage is None


def test_fit_ulmfit_start_stage_skips_the_stages_before_it(tmp_path):
    vocab = Vocab.build([WORDS], min_freq=1)
    trained_lm(tmp_path, vocab)
    clas = classifier(tmp_path, vocab)
    res = fit_ulmfit(clas, 1e-2, epochs=(1, 1, 1, 1), start_stage=2)
    assert [r["stage"] for r in res] == [2, 3]
    assert [r["trainable_groups"] for r in res] == [[1, 2, 3], [0, 1, 2, 3]]


# ---------------------------------------------------------------------------------------------- safety
def test_divergence_warning_fires_on_a_blown_up_rate_and_not_on_a_sane_one(tmp_path):
    vocab = Vocab.build([WORDS], min_freq=1)
    trained_lm(tmp_path, vocab)
    clas = classifier(tmp_path, vocab, n=64)
    assert any(isinstance(c, DivergenceWarning) for c in clas.cbs)
    assert math.isfinite(clas.validate()[0])  # validation outside fit runs its batch hook too
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clas.fit_one_cycle(2, 1e-3)
    clas.unfreeze()
    with pytest.warns(RuntimeWarning, match="validation loss diverged"):
        clas.fit(2, 50.0)


def test_suggest_lr_is_capped_for_the_stage_and_leaves_the_model_alone(tmp_path):
    vocab = Vocab.build([WORDS], min_freq=1)
    lm = trained_lm(tmp_path, vocab)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    lr, res = suggest_lr(lm, "lm", num_it=30)
    assert 0 < lr <= 3e-2
    assert lr <= min(v for v in (res.steepest, res.minimum) if math.isfinite(v)) + 1e-12
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    clas = classifier(tmp_path, vocab)
    lr_head, _ = suggest_lr(clas, "head", num_it=30)
    assert 0 < lr_head <= 4e-2
    assert all(p.requires_grad for p in clas.model.parameters())  # the head-only sweep unfreezes again
    with pytest.raises(ValueError, match="stage"):
        suggest_lr(clas, "decoder")


def test_a_ulmfit_run_resumed_mid_stage_ends_bit_identical(tmp_path):
    from deepfit.learner.checkpoint import CheckpointCallback
    from deepfit.learner.events import Callback, CancelFit

    vocab = Vocab.build([WORDS], min_freq=1)
    trained_lm(tmp_path, vocab)
    epochs = (1, 1, 0, 2)

    def fresh():
        torch.manual_seed(1)
        return classifier(tmp_path, vocab, n=40)

    full = fresh()
    fit_ulmfit(full, 1e-2, epochs=epochs)

    class StopInLastStage(Callback):
        order = 95  # after the checkpoint of the epoch is written

        def after_epoch(self):
            if self.learn.ulmfit_stage.index == 3 and self.learn.epoch == 0:
                raise CancelFit()

    interrupted = fresh()
    stop, ckpt = StopInLastStage(), CheckpointCallback(name="ulmfit")
    fit_ulmfit(interrupted, 1e-2, epochs=epochs, cbs=[ckpt, stop])
    last = sorted((tmp_path / "models").glob("ulmfit_*.pt"))[-1]

    resumed = fresh()
    res = fit_ulmfit(resumed, 1e-2, epochs=epochs, start_stage=3, resume=last)
    assert [r["stage"] for r in res] == [3]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert not all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                      interrupted.model.state_dict().values()))
