"""Batching numericalized texts: the language-model loader (BPTT streams) and the classifier loader
(length-sorted samplers and a pad collate). All loaders yield batches on their device."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.core import DataLoaders, _epoch_seed, default_device


def _as_ids(t: Tensor | Sequence[int], i: int) -> Tensor:
    t = torch.as_tensor(t)
    if t.ndim != 1:
        raise ValueError(f"text {i}: expected a 1-d sequence of token ids, got shape {tuple(t.shape)}")
    if t.is_floating_point():
        raise ValueError(f"text {i}: token ids must be integers, got {t.dtype}")
    return t.long()


def _seed_or_random(seed: int | None) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)


# ====================================================================== language model

class LMLoader:
    """Language-model batches `(x, y)` of shape `(bs, seq_len)` (`(seq_len, bs)` with `batch_first=False`),
    `y` being `x` one token later.

    Each epoch the texts are concatenated (in a new seeded order when `shuffle`) into one stream, cut into `bs`
    rows of `(n_tokens - 1) // bs` tokens, and read left to right `seq_len` tokens at a time, so row `i` of
    consecutive batches continues the same text (a stateful model carries its hidden state across batches).
    The last few tokens that do not fill a row are dropped.

    Args:
        texts: numericalized texts (1-d int tensors or lists of ids).
        bs: number of parallel streams (rows of a batch).
        bptt: sequence length of a batch.
        shuffle: shuffle the order of the texts each epoch.
        random_bptt: vary the length: `bptt` 95% of the time else `bptt / 2`, plus a `Normal(0, 5)` jitter,
            at least 5 (the last batch of an epoch is shorter).
        seed: seed for the text order and the lengths; epoch `e` depends only on `(seed, e)`.
        device: where batches are produced.
        batch_first: `False` gives sequence-first batches `(seq_len, bs)`, the layout of `nn.RNN`/`nn.LSTM`/
            `nn.GRU` with their default `batch_first=False` (the notes' lesson-7 models); the same tokens,
            transposed.
    """

    yields_on_device = True

    def __init__(self, texts: Sequence[Tensor | Sequence[int]], bs: int = 64, bptt: int = 70,
                 shuffle: bool = False, random_bptt: bool = False, seed: int | None = None,
                 device: torch.device | str | None = None, batch_first: bool = True):
        if bs < 1 or bptt < 1:
            raise ValueError(f"LMLoader: bs and bptt must be >= 1, got bs={bs}, bptt={bptt}")
        self.texts = [_as_ids(t, i) for i, t in enumerate(texts)]
        self.n_tokens = sum(len(t) for t in self.texts)
        if self.n_tokens < bs + 1:
            raise ValueError(f"LMLoader: {self.n_tokens} tokens are too few for bs={bs} (need at least {bs + 1})")
        self.bs, self.bptt = bs, bptt
        self.shuffle, self.random_bptt = shuffle, random_bptt
        self.batch_first = batch_first
        self.seed = _seed_or_random(seed)
        self.device = torch.device(device) if device is not None else default_device()
        self.epoch = 0
        self.shard_rank, self.num_shards = 0, 1
        self._lens_cache: tuple[int, list[int]] | None = None
        self._stream_cache: Tensor | None = None

    @property
    def shard_len(self) -> int:
        """Tokens of each epoch's stream given to each shard (the whole stream but one when not sharded)."""
        return (self.n_tokens - 1) // self.num_shards

    @property
    def row_len(self) -> int:
        """Tokens per stream (row) in an epoch."""
        return self.shard_len // self.bs

    def shard(self, rank: int, world: int, pad: bool = False) -> None:
        """Read only part `rank` of `world` equal contiguous parts of each epoch's stream (distributed training).

        Every shard has the same number of batches, so `pad` has nothing to do here.
        """
        if not 0 <= rank < world:
            raise ValueError(f"shard rank must be in [0, {world}), got {rank}")
        if (self.n_tokens - 1) // world < self.bs:
            raise ValueError(f"LMLoader: {self.n_tokens} tokens are too few for {world} shards of bs={self.bs}")
        self.shard_rank, self.num_shards = rank, world
        self._lens_cache = None

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch used by the next iteration (for resuming)."""
        self.epoch = epoch

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.texts)))
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(len(self.texts), generator=g).tolist()

    def stream(self, epoch: int | None = None) -> Tensor:
        """The concatenated token stream of epoch `epoch` (default: the next one), on the CPU."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            if self._stream_cache is None:
                self._stream_cache = torch.cat(self.texts)
            return self._stream_cache
        return torch.cat([self.texts[i] for i in self._order(epoch)])

    def seq_lens(self, epoch: int | None = None) -> list[int]:
        """Sequence length of each batch of epoch `epoch` (default: the next one)."""
        epoch = self.epoch if epoch is None else epoch
        if self._lens_cache is not None and self._lens_cache[0] == epoch:
            return self._lens_cache[1]
        total, lens = self.row_len, []
        if not self.random_bptt:
            lens = [self.bptt] * (total // self.bptt) + ([total % self.bptt] if total % self.bptt else [])
        else:
            rng = random.Random(_epoch_seed(self.seed, epoch) ^ 0x5EED)
            done = 0
            while done < total:
                base = self.bptt if rng.random() < 0.95 else self.bptt / 2
                sl = min(max(5, int(round(rng.gauss(base, 5)))), total - done)
                lens.append(sl)
                done += sl
        self._lens_cache = (epoch, lens)
        return lens

    def __len__(self) -> int:
        return len(self.seq_lens())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        lens = self.seq_lens(epoch)
        bs, n = self.bs, self.row_len
        start = self.shard_rank * self.shard_len
        s = self.stream(epoch)[start:start + bs * n + 1].to(self.device, non_blocking=True)
        x, y = s[:-1].view(bs, n), s[1:].view(bs, n)
        if not self.batch_first:
            x, y = x.t(), y.t()
        t = 0
        for sl in lens:
            if self.batch_first:
                yield x[:, t:t + sl].contiguous(), y[:, t:t + sl].contiguous()
            else:
                yield x[t:t + sl].contiguous(), y[t:t + sl].contiguous()
            t += sl

    def __repr__(self) -> str:
        return (f"LMLoader({self.n_tokens} tokens, bs={self.bs}, bptt={self.bptt}, shuffle={self.shuffle}, "
                f"random_bptt={self.random_bptt}, batch_first={self.batch_first}, device={self.device})")


def lm_loaders(train_texts: Sequence[Tensor | Sequence[int]], valid_texts: Sequence[Tensor | Sequence[int]],
               bs: int = 64, bptt: int = 70, shuffle: bool = True, random_bptt: bool = True, seed: int = 0,
               device: torch.device | str | None = None, vocab: Any = None, batch_first: bool = True
               ) -> DataLoaders:
    """Training (shuffled, random bptt) and validation (in order, fixed bptt) `LMLoader`s as `DataLoaders`.

    `vocab` (a `Vocab` or a list of tokens) becomes `dls.vocab` (its token list) and `dls.text_vocab`.
    `batch_first=False`: `(seq_len, bs)` batches for sequence-first models.
    """
    device = torch.device(device) if device is not None else default_device()
    train = LMLoader(train_texts, bs=bs, bptt=bptt, shuffle=shuffle, random_bptt=random_bptt, seed=seed,
                     device=device, batch_first=batch_first)
    valid = LMLoader(valid_texts, bs=bs, bptt=bptt, shuffle=False, random_bptt=False, seed=seed, device=device,
                     batch_first=batch_first)
    itos = getattr(vocab, "itos", vocab)
    dls = DataLoaders(train, valid, device=device, vocab=itos)
    dls.text_vocab = vocab
    return dls


# ====================================================================== classifier

class SortSampler:
    """Item indices sorted by length (longest first by default): the validation order for padded batches."""

    def __init__(self, lengths: Sequence[int] | Tensor, descending: bool = True):
        self.lengths = torch.as_tensor(lengths)
        self.descending = descending

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.sort(self.lengths, descending=self.descending, stable=True).indices.tolist())

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do (the order does not depend on the epoch)."""


class SortishSampler:
    """Roughly length-sorted random order for training: little padding, still random.

    Each epoch: a random permutation, cut into chunks of `bs * chunk_mult` items, each chunk sorted by length
    (longest first) and cut into batches of `bs`; the batches are shuffled, except that the batch holding the
    longest item comes first (a memory problem shows at once) and a short last batch stays last.
    Every index appears exactly once.
    """

    def __init__(self, lengths: Sequence[int] | Tensor, bs: int, seed: int | None = None, chunk_mult: int = 50):
        if bs < 1 or chunk_mult < 1:
            raise ValueError(f"SortishSampler: bs and chunk_mult must be >= 1, got bs={bs}, chunk_mult={chunk_mult}")
        self.lengths = torch.as_tensor(lengths)
        self.bs, self.chunk_mult = bs, chunk_mult
        self.seed = _seed_or_random(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[Tensor]:
        """The index batches of epoch `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        n = len(self.lengths)
        perm = torch.randperm(n, generator=g)
        size = self.bs * self.chunk_mult
        parts = []
        for i in range(0, n, size):
            chunk = perm[i:i + size]
            order = torch.sort(self.lengths[chunk], descending=True, stable=True).indices
            parts.append(chunk[order])
        batches = list(torch.cat(parts).split(self.bs)) if parts else []
        if len(batches) <= 1:
            return batches
        last = batches.pop() if len(batches[-1]) < self.bs else None
        longest = max(range(len(batches)), key=lambda k: int(self.lengths[batches[k]].max()))
        first = batches.pop(longest)
        rest = [batches[k] for k in torch.randperm(len(batches), generator=g).tolist()]
        return [first, *rest] + ([last] if last is not None else [])

    def __iter__(self) -> Iterator[int]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        for b in batches:
            yield from b.tolist()


def _check_fix_length(fix_length: int | None, where: str) -> None:
    if fix_length is not None and (isinstance(fix_length, bool) or not isinstance(fix_length, int)
                                   or fix_length < 1):
        raise ValueError(f"{where}: fix_length must be a positive int or None, got {fix_length!r}")


def pad_collate(samples: Sequence[tuple[Tensor | Sequence[int], Any]], pad_idx: int = 1,
                pad_first: bool = True, fix_length: int | None = None) -> tuple[Tensor, Tensor]:
    """Stack `(ids, label)` samples into `x` `(bs, max_len)` padded with `pad_idx` (before the text when
    `pad_first`, else after it) and `y` `(bs,)` (or `(bs, n_classes)` for multi-hot labels).

    `fix_length=n` makes every `x` `(bs, n)` whatever the batch: shorter texts are padded, longer ones cut to
    their first `n` tokens (torchtext's `Field(fix_length=n)`).
    """
    if not samples:
        raise ValueError("pad_collate: empty batch")
    _check_fix_length(fix_length, "pad_collate")
    xs = [_as_ids(s[0], i) for i, s in enumerate(samples)]
    if fix_length is not None:
        xs = [x[:fix_length] for x in xs]
    max_len = fix_length if fix_length is not None else max(len(x) for x in xs)
    out = torch.full((len(xs), max_len), pad_idx, dtype=torch.long)
    for i, x in enumerate(xs):
        if len(x) == 0:
            continue
        if pad_first:
            out[i, max_len - len(x):] = x
        else:
            out[i, :len(x)] = x
    ys = [s[1] for s in samples]
    y = torch.stack(ys) if isinstance(ys[0], Tensor) else torch.tensor(ys)
    return out, y


class TextClassifierLoader:
    """Padded batches of numericalized texts and their labels, on `device`.

    `shuffle=True` orders items with a `SortishSampler` (training), `False` with a `SortSampler` (validation).
    `labels` are class indices `(n,)`, or multi-hot rows `(n, n_classes)` for multi-label data.
    `fix_length=n`: every batch is padded or cut to `n` tokens (see `pad_collate`). `batch_first=False`:
    `x` is `(seq_len, bs)` for sequence-first models (`nn.LSTM` without `batch_first=True`); `y` is unchanged.
    """

    yields_on_device = True

    def __init__(self, texts: Sequence[Tensor | Sequence[int]], labels: Tensor | Sequence[int], bs: int = 64,
                 shuffle: bool = False, pad_idx: int = 1, pad_first: bool = True, seed: int | None = None,
                 device: torch.device | str | None = None, fix_length: int | None = None,
                 batch_first: bool = True):
        self.texts = [_as_ids(t, i) for i, t in enumerate(texts)]
        self.labels = torch.as_tensor(labels)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"TextClassifierLoader: {len(self.texts)} texts but {len(self.labels)} labels")
        if bs < 1:
            raise ValueError(f"TextClassifierLoader: bs must be >= 1, got {bs}")
        self.bs, self.shuffle, self.pad_idx, self.pad_first = bs, shuffle, pad_idx, pad_first
        _check_fix_length(fix_length, "TextClassifierLoader")
        self.fix_length, self.batch_first = fix_length, batch_first
        lengths = [len(t) for t in self.texts]
        self.sampler = SortishSampler(lengths, bs, seed=seed) if shuffle else SortSampler(lengths)
        self.device = torch.device(device) if device is not None else default_device()

    def __len__(self) -> int:
        return math.ceil(len(self.texts) / self.bs)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    # a shuffling loader exposes its sampler's seed and epoch, so that checkpoints save and restore its order
    # (a validation loader has neither: `hasattr` is False)
    def _sortish(self, name: str) -> SortishSampler:
        if not isinstance(self.sampler, SortishSampler):
            raise AttributeError(f"{type(self).__name__} without shuffling has no {name}")
        return self.sampler

    @property
    def seed(self) -> int:
        return self._sortish("seed").seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._sortish("seed").seed = int(value)

    @property
    def epoch(self) -> int:
        return self._sortish("epoch").epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._sortish("epoch").epoch = int(value)

    def _batches(self) -> list[list[int]]:
        if isinstance(self.sampler, SortishSampler):
            batches = [b.tolist() for b in self.sampler.batches()]
            self.sampler.epoch += 1
            return batches
        order = list(self.sampler)
        return [order[i:i + self.bs] for i in range(0, len(order), self.bs)]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for idx in self._batches():
            x, y = pad_collate([(self.texts[i], self.labels[i]) for i in idx], self.pad_idx, self.pad_first,
                               self.fix_length)
            if not self.batch_first:
                x = x.t().contiguous()
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def classifier_loaders(train_texts: Sequence[Tensor | Sequence[int]], train_labels: Tensor | Sequence[int],
                       valid_texts: Sequence[Tensor | Sequence[int]], valid_labels: Tensor | Sequence[int],
                       bs: int = 64, pad_idx: int = 1, pad_first: bool = True, seed: int = 0,
                       device: torch.device | str | None = None, classes: Sequence[str] | None = None,
                       fix_length: int | None = None, batch_first: bool = True) -> DataLoaders:
    """Training (`SortishSampler`) and validation (`SortSampler`) `TextClassifierLoader`s as `DataLoaders`;
    `classes` become `dls.vocab`. Multi-hot `(n, n_classes)` labels make a multi-label task
    (`dls.multi_label` is then `True`). `fix_length`/`batch_first`: see `TextClassifierLoader`."""
    device = torch.device(device) if device is not None else default_device()
    train = TextClassifierLoader(train_texts, train_labels, bs=bs, shuffle=True, pad_idx=pad_idx,
                                 pad_first=pad_first, seed=seed, device=device, fix_length=fix_length,
                                 batch_first=batch_first)
    valid = TextClassifierLoader(valid_texts, valid_labels, bs=bs, shuffle=False, pad_idx=pad_idx,
                                 pad_first=pad_first, device=device, fix_length=fix_length,
                                 batch_first=batch_first)
    if train.labels.ndim != valid.labels.ndim:
        raise ValueError(f"classifier_loaders: training labels have shape {tuple(train.labels.shape)} but "
                         f"validation labels {tuple(valid.labels.shape)}: both must be indices or both multi-hot")
    dls = DataLoaders(train, valid, device=device, vocab=classes)
    dls.multi_label = train.labels.ndim == 2
    return dls
