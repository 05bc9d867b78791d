import pytest
import torch

from deepfit.data import DataLoaders
from deepfit.text.loaders import (
    LMLoader,
    SortishSampler,
    SortSampler,
    TextClassifierLoader,
    classifier_loaders,
    lm_loaders,
    pad_collate,
)


def make_texts(n=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 60, (n,), generator=g).tolist()
    start, texts = 0, []
    for n_tok in lengths:  # distinct ids so that any loss/duplication shows
        texts.append(torch.arange(start, start + n_tok))
        start += n_tok
    return texts


def epoch_rows(dl, epoch):
    dl.set_epoch(epoch)
    batches = list(dl)
    return torch.cat([b[0] for b in batches], dim=1), torch.cat([b[1] for b in batches], dim=1), batches


@pytest.mark.parametrize("random_bptt", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_lm_batches_reproduce_the_stream(random_bptt, shuffle):
    texts = make_texts()
    dl = LMLoader(texts, bs=5, bptt=12, shuffle=shuffle, random_bptt=random_bptt, seed=3, device="cpu")
    for epoch in (0, 1):
        stream = dl.stream(epoch)
        x, y, batches = epoch_rows(dl, epoch)
        n = dl.row_len
        assert len(batches) == len(dl.seq_lens(epoch))
        # rows read left to right give back the stream exactly: nothing lost, nothing repeated
        assert torch.equal(x.reshape(-1), stream[:5 * n])
        assert torch.equal(y.reshape(-1), stream[1:5 * n + 1])
        assert len(stream) - 5 * n < 5 + 1  # only the tail that cannot fill a row is dropped
        # y is x shifted by one, inside every batch and across batches
        assert torch.equal(x[:, 1:], y[:, :-1])
        for xb, yb in batches:
            assert xb.shape == yb.shape and xb.shape[0] == 5
            assert torch.equal(xb[:, 1:], yb[:, :-1])
        assert sorted(stream.tolist()) == list(range(len(stream)))


def test_lm_shuffle_changes_order_per_epoch_and_is_seeded():
    texts = make_texts()
    a = LMLoader(texts, bs=4, bptt=10, shuffle=True, seed=1, device="cpu")
    b = LMLoader(texts, bs=4, bptt=10, shuffle=True, seed=1, device="cpu")
    assert torch.equal(a.stream(0), b.stream(0))
    assert not torch.equal(a.stream(0), a.stream(1))
    assert torch.equal(LMLoader(texts, bs=4, bptt=10, device="cpu").stream(0), torch.cat(texts))


def test_random_bptt_lengths():
    texts = make_texts(200)
    dl = LMLoader(texts, bs=4, bptt=20, random_bptt=True, seed=0, device="cpu")
    lens = dl.seq_lens(0)
    assert sum(lens) == dl.row_len and min(lens[:-1]) >= 5
    assert len(set(lens)) > 3  # lengths vary
    assert abs(sum(lens[:-1]) / len(lens[:-1]) - 19.5) < 3  # about bptt (95% bptt, 5% bptt/2)
    assert len(dl) == len(lens) == len(list(dl))  # __len__ is exact
    fixed = LMLoader(texts, bs=4, bptt=20, device="cpu")
    assert fixed.seq_lens()[:-1] == [20] * (len(fixed) - 1) and 0 < fixed.seq_lens()[-1] <= 20


def test_lm_iteration_advances_epoch_and_validates():
    dl = LMLoader(make_texts(), bs=3, bptt=8, shuffle=True, seed=0, device="cpu")
    first = torch.cat([x for x, _ in dl], 1)
    second = torch.cat([x for x, _ in dl], 1)
    assert dl.epoch == 2 and not torch.equal(first, second)
    dl.set_epoch(0)
    assert torch.equal(torch.cat([x for x, _ in dl], 1), first)
    with pytest.raises(ValueError, match="too few"):
        LMLoader([torch.arange(3)], bs=4)
    with pytest.raises(ValueError, match="text 1"):
        LMLoader([torch.arange(3), torch.zeros(2, 2)], bs=1)


def test_lm_loaders_builds_dataloaders():
    dls = lm_loaders(make_texts(), make_texts(10), bs=4, bptt=8, device="cpu", vocab=["a", "b"])
    assert isinstance(dls, DataLoaders) and isinstance(dls.train, LMLoader) and dls.vocab == ["a", "b"]
    assert dls.train.random_bptt and not dls.valid.random_bptt and not dls.valid.shuffle
    x, y = next(iter(dls.valid))
    assert x.shape == (4, 8) and x.dtype == torch.long and x.device.type == "cpu"


def test_sort_sampler():
    lengths = [3, 9, 1, 9, 5]
    assert list(SortSampler(lengths)) == [1, 3, 4, 0, 2]
    assert list(SortSampler(lengths, descending=False)) == [2, 0, 4, 1, 3]


def test_sortish_sampler_every_index_once():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 500, (1003,), generator=g).tolist()
    s = SortishSampler(lengths, bs=16, seed=0, chunk_mult=4)
    e0 = list(s)
    e1 = list(s)
    assert sorted(e0) == list(range(1003)) and sorted(e1) == list(range(1003))
    assert e0 != e1
    batches = s.batches(0)
    assert max(lengths[i] for i in batches[0].tolist()) == max(lengths)  # longest batch first
    assert all(len(b) == 16 for b in batches[:-1]) and len(batches[-1]) == 1003 % 16
    # sortish: inside a batch the lengths are close (a random batch of 16 spans ~470 of the 1..500 range)
    spread = sum(max(lengths[i] for i in b.tolist()) - min(lengths[i] for i in b.tolist()) for b in batches)
    assert spread / len(batches) < 200


def test_pad_collate():
    samples = [(torch.tensor([5, 6, 7]), 1), (torch.tensor([8]), 0), (torch.tensor([9, 10]), 1)]
    x, y = pad_collate(samples, pad_idx=1, pad_first=True)
    assert x.tolist() == [[5, 6, 7], [1, 1, 8], [1, 9, 10]] and y.tolist() == [1, 0, 1]
    x, _ = pad_collate(samples, pad_idx=0, pad_first=False)
    assert x.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]


def test_classifier_loader():
    texts = make_texts(50)
    labels = torch.arange(50) % 3
    train = TextClassifierLoader(texts, labels, bs=8, shuffle=True, pad_idx=1, seed=0, device="cpu")
    seen = []
    for x, y in train:
        assert x.shape[0] == y.shape[0] <= 8
        for row, lbl in zip(x, y):
            ids = row[row != 1] if (row == 1).any() else row
            k = next(i for i, t in enumerate(texts) if t[-1] == ids[-1])
            assert lbl == labels[k]
            seen.append(k)
    assert sorted(seen) == list(range(50)) and len(train) == 7
    valid = TextClassifierLoader(texts, labels, bs=8, device="cpu")
    first_x, _ = next(iter(valid))
    assert first_x.shape[1] == max(len(t) for t in texts)
    dls = classifier_loaders(texts, labels, texts[:10], labels[:10], bs=8, device="cpu", classes=["a", "b", "c"])
    assert dls.c == 3 and isinstance(dls.valid.sampler, SortSampler)
    with pytest.raises(ValueError, match="labels"):
        TextClassifierLoader(texts, labels[:3])


def test_lm_sequence_first_is_the_transpose():
    texts = make_texts()
    bf = LMLoader(texts, bs=5, bptt=12, shuffle=True, random_bptt=True, seed=3, device="cpu")
    sf = LMLoader(texts, bs=5, bptt=12, shuffle=True, random_bptt=True, seed=3, device="cpu", batch_first=False)
    for (xb, yb), (xs, ys) in zip(bf, sf, strict=True):
        assert xs.shape == (xb.shape[1], 5) and ys.shape == xs.shape
        assert torch.equal(xs, xb.t()) and torch.equal(ys, yb.t())
        assert torch.equal(xs[1:], ys[:-1])  # time runs along axis 0: y is x one step later
    dls = lm_loaders(texts[:30], texts[30:], bs=4, bptt=6, device="cpu", batch_first=False)
    assert dls.train.batch_first is False and dls.valid.batch_first is False
    x, y = next(iter(dls.valid))
    assert x.shape == (6, 4)


def _fibonacci_texts(n_texts=60, length=80, v=7, seed=0):
    """Token t+1 = (t + t-1) mod v: the next token depends on the last two, not on the last one alone."""
    g = torch.Generator().manual_seed(seed)
    texts = []
    for _ in range(n_texts):
        a, b = torch.randint(0, v, (2,), generator=g).tolist()
        seq = [a, b]
        while len(seq) < length:
            seq.append((seq[-1] + seq[-2]) % v)
        texts.append(torch.tensor(seq))
    return texts


def test_seq_first_model_learns_along_time_with_batch_first_false():
    from torch import nn

    from deepfit.learner import Learner
    from deepfit.text import FlatCrossEntropyLoss

    class SeqFirstRNN(nn.Module):  # like the notes' lesson-7 models: nn.GRU with its default (seq, bs) layout
        def __init__(self, v=7, nh=32):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(v, nh), nn.GRU(nh, nh), nn.Linear(nh, v)

        def forward(self, x):
            return self.out(self.rnn(self.emb(x))[0])

    texts = _fibonacci_texts()
    losses = {}
    for batch_first in (False, True):
        torch.manual_seed(0)
        dls = lm_loaders(texts[:50], texts[50:], bs=8, bptt=20, random_bptt=False, device="cpu",
                         batch_first=batch_first)
        learn = Learner(SeqFirstRNN(), dls, loss_func=FlatCrossEntropyLoss(), lr=1e-2)
        learn.fit(6, 1e-2)
        losses[batch_first] = learn.validate()[0]
    # (seq, bs) batches: the GRU reads along time and predicts the sequence (only each batch's first step
    # is a guess); (bs, seq) batches make it recur across unrelated rows: no better than knowing one token.
    assert losses[False] < 0.5
    assert losses[True] > 1.0


def test_fix_length_pads_and_truncates():
    samples = [(torch.tensor([5, 6, 7, 8, 9]), 0), (torch.tensor([3]), 1)]
    x, y = pad_collate(samples, pad_idx=1, pad_first=False, fix_length=3)
    assert x.tolist() == [[5, 6, 7], [3, 1, 1]] and y.tolist() == [0, 1]
    x, _ = pad_collate(samples, pad_idx=1, pad_first=True, fix_length=4)
    assert x.tolist() == [[5, 6, 7, 8], [1, 1, 1, 3]]
    with pytest.raises(ValueError, match="fix_length"):
        pad_collate(samples, fix_length=0)
    texts = make_texts(20)
    dls = classifier_loaders(texts[:15], [0] * 15, texts[15:], [1] * 5, bs=4, device="cpu", fix_length=50)
    assert {b[0].shape[1] for b in dls.train} == {50} and {b[0].shape[1] for b in dls.valid} == {50}


def test_classifier_loader_sequence_first_and_multi_hot_labels():
    texts = make_texts(10)
    labels = torch.zeros(10, 3)
    labels[:, 0], labels[::2, 2] = 1, 1
    dl = TextClassifierLoader(texts, labels, bs=4, pad_idx=0, device="cpu", batch_first=False)
    x, y = next(iter(dl))
    assert x.shape[1] == 4 and x.shape[0] == max(len(texts[i]) for i in list(dl.sampler)[:4])
    assert y.shape == (4, 3) and y.dtype == labels.dtype
    dls = classifier_loaders(texts[:6], labels[:6], texts[6:], labels[6:], bs=4, device="cpu")
    assert dls.multi_label is True
    assert classifier_loaders(texts[:6], [0] * 6, texts[6:], [1] * 4, device="cpu").multi_label is False
    with pytest.raises(ValueError, match="multi-hot"):
        classifier_loaders(texts[:6], labels[:6], texts[6:], [1] * 4, device="cpu")
