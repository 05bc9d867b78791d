"""A tiny AWD-LSTM language model on made-up words, for the ULMFiT transfer tests."""

from __future__ import annotations

import torch

from deepfit.text import Vocab, lm_loaders
from deepfit.text.learner import TextLearner, language_model_learner

#: encoder sizes small enough for a test that trains in well under a second
TINY_CFG = dict(emb_sz=8, n_hid=12, n_layers=2)
WORDS = [f"w{i}" for i in range(30)]


def random_tokens(vocab: Vocab, n: int, seed: int, lo: int = 3, hi: int = 14) -> list[list[str]]:
    """`n` seeded texts of `lo` to `hi - 1` random `w*` words of `vocab`, each after `xxbos`."""
    g = torch.Generator().manual_seed(seed)
    words = [t for t in vocab.itos if t.startswith("w")]
    out = []
    for _ in range(n):
        k = int(torch.randint(lo, hi, (1,), generator=g))
        out.append(["xxbos"] + [words[int(i)] for i in torch.randint(0, len(words), (k,), generator=g)])
    return out


def train_tiny_lm(tmp_path, vocab: Vocab, train_ids: list, valid_ids: list) -> TextLearner:
    """One epoch of a `TINY_CFG` language model (seed 0), its encoder saved as `tmp_path/models/enc.pth`."""
    torch.manual_seed(0)
    lm = language_model_learner(lm_loaders(train_ids, valid_ids, bs=4, bptt=8, vocab=vocab, device="cpu"),
                                config=TINY_CFG, path=tmp_path)
    lm.remove_cb(lm.progress)
    lm.fit(1, 1e-2)
    lm.save_encoder("enc")
    return lm
