"""Image folders as `DataLoaders`: reading images, the per-item dataset, the worker loader, the builder.

`ImageDataLoaders.from_folder(path)` (and `from_csv`, `from_name_re`, `from_name_func`,
`from_lists`) returns the same `DataLoaders` interface as `fashion_mnist_loaders`: `.train` and
`.valid` yield normalized float `N×C×H×W` batches on the device, `.vocab` holds the class names.
Small folders are decoded once into a uint8 tensor (`TensorLoader`); large ones are read by
`torch.utils.data.DataLoader` workers every epoch (`ImageLoader`).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..threads import available_cpus, cgroup_cpu_quota
from .blocks import (
    IMAGE_EXTENSIONS,
    CategoryProcessor,
    ColumnLabeller,
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    RegexLabeller,
    _cell,
    get_image_files,
    parent_label,
    read_csv,
)
from .cache import DecodedCache, cache_folder
from .core import (
    DataLoaders,
    TensorLoader,
    _epoch_seed,
    default_device,
    stats_on_device,
    tell_stats,
    to_model_input,
)
from .external import DataFormatError
from .files import read_image_file
from .multilabel import MultiCategoryProcessor, split_labels
from .transforms import IMAGENET_STATS, ItemTransform, apply_item_tfms, compute_stats

# images decoded up front (in_memory, statistics) use the workers from this many on: fewer decode faster than
# worker processes start
WORKERS_FROM = 500
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class ImageReadError(DataFormatError):
    """An image file cannot be read or decoded; the message names the file."""


def open_image(path: str | Path, mode: str | None = None) -> Image.Image:
    """Open and fully decode an image, converted to `mode` ('L', 'RGB'...) when given.

    A missing file raises `FileNotFoundError`, an undecodable one `ImageReadError`; both name the file.
    """
    try:
        return read_image_file(path, mode)
    except DataFormatError as e:
        raise ImageReadError(str(e)) from None


def image_mode(path: str | Path) -> str:
    """'L' for a grayscale image file, else 'RGB'."""
    return "L" if open_image(path).mode in _GRAY_MODES else "RGB"


def image_to_tensor(img: Image.Image) -> Tensor:
    """A PIL image as a uint8 tensor `C×H×W`."""
    a = np.array(img, dtype=np.uint8, copy=True)
    t = torch.from_numpy(a)
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def _item_seed(seed: int, epoch: int, i: int) -> int:
    return _epoch_seed(seed, epoch) * 10_000_019 + i


def default_num_workers(cap: int = 8) -> int:
    """Loader worker processes when none are asked for: the CPUs this process may use (its affinity mask,
    capped by a cgroup CPU quota) less one for the training loop, at most `cap`; 0 on a single CPU."""
    cpus = available_cpus()
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(0, min(cap, cpus - 1))


class ImageDataset(torch.utils.data.Dataset):
    """The decoded items of an image list: the file read, converted to `mode`, item-transformed.

    `ds[i]` is `(uint8 C×H×W tensor, label)`; `ds[[(epoch, i), ...]]` is a whole batch `(uint8 N×C×H×W,
    labels)` (what `ImageLoader` asks its workers for). Random item transforms draw from a `random.Random`
    seeded by `(seed, epoch, i)`, so an item's pixels do not depend on which process decodes it.
    `shape` (`(C, H, W)`), when given, is checked for every item.
    """

    def __init__(self, items: Sequence[Path], labels: Tensor, item_tfms: Sequence[ItemTransform] = (),
                 mode: str = "RGB", train: bool = True, seed: int = 0, shape: tuple[int, int, int] | None = None):
        if len(items) != len(labels):
            raise ValueError(f"ImageDataset: {len(items)} items but {len(labels)} labels")
        self.items, self.labels = list(items), labels
        self.item_tfms, self.mode, self.train, self.seed = list(item_tfms), mode, train, seed
        self.shape = None if shape is None else tuple(int(s) for s in shape)
        self.epoch = 0
        self._random = any(getattr(t, "random", True) for t in self.item_tfms)  # unknown kinds: assume random

    def __len__(self) -> int:
        return len(self.items)

    @property
    def spec(self) -> str:
        """What decides an item's pixels besides its file (the key of a decoded cache)."""
        return f"mode={self.mode};train={self.train};tfms=[{', '.join(map(repr, self.item_tfms))}]"

    def pixels(self, i: int, epoch: int | None = None, copy: bool = True) -> np.ndarray:
        """Item `i` as a uint8 array `H×W` or `H×W×C` (random item transforms drawn for `epoch`); with
        `copy=False` a read-only view of the image's own buffer (no copy)."""
        path = self.items[i]
        img = open_image(path, self.mode)
        if self.item_tfms:
            epoch = self.epoch if epoch is None else epoch
            rng = random.Random(_item_seed(self.seed, epoch, i)) if self.train and self._random else None
            img = apply_item_tfms(img, self.item_tfms, rng=rng, train=self.train)
        a = np.array(img, dtype=np.uint8) if copy else np.asarray(img, dtype=np.uint8)
        if self.shape is not None:
            c = 1 if a.ndim == 2 else a.shape[2]
            if (c, *a.shape[:2]) != self.shape:
                raise ImageReadError(f"{path}: image is {a.shape[1]}×{a.shape[0]} (w×h) with {c} channel(s) after "
                                     f"item transforms but others are {self.shape[2]}×{self.shape[1]} with "
                                     f"{self.shape[0]}; add an item transform such as Resize(size) so all images "
                                     "share one size")
        return a

    def image(self, i: int, epoch: int | None = None) -> Tensor:
        """Item `i` as a uint8 tensor `C×H×W`."""
        return _hwc_to_chw(self.pixels(i, epoch))

    def batch(self, keys: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """`(uint8 N×C×H×W, labels)` of the items `[(epoch, i), ...]`."""
        idx = [i for _, i in keys]
        if self.shape is None:
            x = torch.stack([self.image(i, e) for e, i in keys])
        else:
            x = _batch_tensor((len(keys), *self.shape))
            rows = x.numpy()
            for k, (e, i) in enumerate(keys):
                a = self.pixels(i, e, copy=False)  # copied once, into the batch
                rows[k] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return x, self.labels[idx]

    def __getitem__(self, key: int | tuple[int, int] | list[tuple[int, int]]):
        if isinstance(key, list):
            return self.batch(key)
        if isinstance(key, tuple):
            epoch, i = key
            return self.image(i, epoch), self.labels[i]
        return self.image(key), self.labels[key]


def _batch_tensor(shape: tuple[int, ...]) -> Tensor:
    """An uninitialized uint8 tensor; in a loader worker, in shared memory (as torch's default collate makes
    it), so that handing the batch to the training process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    empty = torch.empty(0, dtype=torch.uint8)
    storage = empty._typed_storage()._new_shared(math.prod(shape), device=empty.device)
    return empty.new(storage).view(shape)


def _hwc_to_chw(a: np.ndarray) -> Tensor:
    t = torch.from_numpy(a)
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


class _Plan(torch.utils.data.Sampler):
    """The batches of the epoch being read, as lists of `(epoch, item)` keys; the loader sets them before each
    pass, so one (persistent) `torch.utils.data.DataLoader` serves every epoch."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageLoader:
    """Reads an `ImageDataset` in `num_workers` worker processes and yields batches on `device`.

    The workers decode and item-transform whole batches (uint8); the batch is copied to the device (from
    pinned memory, without blocking, on CUDA), converted there like `TensorLoader` (uint8 → float / 255 →
    normalize with `mean`/`std`) and augmented by the batch `tfms`. The order of epoch `e` and its random item
    transforms depend only on `(seed, e)`, so any number of workers gives the same batches (`set_epoch` to
    resume). The workers are started once and kept between epochs (`persistent_workers`); a change to the
    dataset after the first pass does not reach them (make a new loader with `new`).

    `cache`, a `DecodedCache` of this dataset, is filled during the first complete pass (or by
    `build_cache()`); from then on batches are read from its memory map in this process, without workers.
    """

    yields_on_device = True

    def __init__(self, dataset: ImageDataset, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, device: torch.device | str | None = None, mean=None, std=None,
                 tfms: Sequence[Callable[[Tensor], Tensor]] = (), num_workers: int = 0,
                 pin_memory: bool | None = None, persistent_workers: bool = True, prefetch_factor: int = 2,
                 cache: DecodedCache | None = None):
        if bs < 1:
            raise ValueError(f"ImageLoader: bs must be >= 1, got {bs}")
        if num_workers < 0:
            raise ValueError(f"ImageLoader: num_workers must be >= 0, got {num_workers}")
        self.dataset, self.bs, self.shuffle, self.drop_last = dataset, bs, shuffle, drop_last
        self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)
        self.device = torch.device(device) if device is not None else default_device()
        self.tfms = list(tfms)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers, self.prefetch_factor = persistent_workers, prefetch_factor
        self.cache = cache
        self.epoch = 0
        self.shard_rank, self.num_shards, self.pad_shards = 0, 1, False
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)
        tell_stats(self.tfms, self.mean, self.std)
        self._plan = _Plan()
        self._torch_loader: torch.utils.data.DataLoader | None = None
        self._torch_loader_pins = False

    @property
    def n(self) -> int:
        """Items this loader yields per epoch (its shard's share when sharded)."""
        total, world = len(self.dataset), self.num_shards
        if world == 1:
            return total
        if self.pad_shards:
            return -(-total // world)
        return len(range(self.shard_rank, total, world))

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else -(-self.n // self.bs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int, world: int, pad: bool = False) -> None:
        """Yield only items `rank, rank + world, ...` of each epoch's order (distributed training); `pad=True`
        first wraps the order around so that every shard has the same size."""
        if not 0 <= rank < world:
            raise ValueError(f"shard rank must be in [0, {world}), got {rank}")
        self.shard_rank, self.num_shards, self.pad_shards = rank, world, pad

    def order(self, epoch: int | None = None) -> list[int]:
        """Item indices in the order of epoch `epoch` (default: the next one), this shard's only."""
        epoch = self.epoch if epoch is None else epoch
        total = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            perm = torch.randperm(total, generator=g)
        else:
            perm = torch.arange(total)
        if self.num_shards > 1:
            if self.pad_shards and total % self.num_shards:
                perm = torch.cat([perm, perm[:self.num_shards - total % self.num_shards]])
            perm = perm[self.shard_rank::self.num_shards]
        return perm.tolist()

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The item indices of each batch of epoch `epoch`."""
        order = self.order(epoch)
        return [order[k * self.bs:(k + 1) * self.bs] for k in range(len(self))]

    @property
    def pins_memory(self) -> bool:
        """Whether batches are staged in pinned memory: `pin_memory`, by default on when the device is CUDA."""
        return self.device.type == "cuda" and self.pin_memory is not False

    def _convert(self, xb: Tensor) -> Tensor:
        return to_model_input(xb, *stats_on_device(self, xb.device))

    def _on_device(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        xb = self._convert(xb.to(self.device, non_blocking=True))
        for tfm in self.tfms:
            xb = tfm(xb)
        return xb, yb.to(self.device, non_blocking=True)

    def encode(self, item: Any) -> Tensor:
        """One raw item (a path, a PIL image, a uint8 `C×H×W` tensor) as a batch of one, like validation."""
        if isinstance(item, (str, Path)):
            item = open_image(item, self.dataset.mode)
        if isinstance(item, Image.Image):
            if item.mode != self.dataset.mode:
                item = item.convert(self.dataset.mode)
            item = image_to_tensor(apply_item_tfms(item, self.dataset.item_tfms, train=False))
        if not isinstance(item, Tensor):
            raise TypeError(f"ImageLoader.encode: expected a path, PIL image or tensor, got {type(item).__name__}")
        if item.ndim == 3:
            item = item.unsqueeze(0)
        return self._convert(item.to(self.device))

    def torch_loader(self) -> torch.utils.data.DataLoader:
        """The `torch.utils.data.DataLoader` that decodes batches (made once; again when pinning changes)."""
        pins = self.pins_memory
        if self._torch_loader is None or self._torch_loader_pins != pins:
            extra: dict[str, Any] = {}
            if self.num_workers > 0:
                extra = dict(persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor)
            self._torch_loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=None, sampler=self._plan, num_workers=self.num_workers, pin_memory=pins,
                **extra)
            self._torch_loader_pins = pins
        return self._torch_loader

    def _decoded(self, batches: list[list[int]], epoch: int) -> Iterator[tuple[list[int], Tensor, Tensor]]:
        """`(indices, uint8 xb, yb)` of each batch, decoded by the workers (or here, with no workers)."""
        self._plan.batches = [[(epoch, i) for i in idx] for idx in batches]
        for k, (xb, yb) in enumerate(self.torch_loader()):
            yield batches[k], xb, yb

    def _cached(self, batches: list[list[int]]) -> Iterator[tuple[Tensor, Tensor]]:
        rows_all = self.cache.array()  # type: ignore[union-attr]
        for idx in batches:
            xb = torch.from_numpy(np.take(rows_all, np.asarray(idx, dtype=np.int64), axis=0))
            yb = self.dataset.labels[idx]
            if self.pins_memory:
                xb, yb = xb.pin_memory(), yb.pin_memory()
            yield xb, yb

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        batches = self.batches(epoch)
        cache = self.cache
        if cache is not None and cache.complete:
            for xb, yb in self._cached(batches):
                yield self._on_device(xb, yb)
            return
        build = cache is not None and self.num_shards == 1
        done = 0
        for idx, xb, yb in self._decoded(batches, epoch):
            if build:
                cache.write(idx, xb.numpy())  # type: ignore[union-attr]
            done += 1
            yield self._on_device(xb, yb)
        if build and done == len(batches):
            self._finish_cache()

    def _finish_cache(self) -> None:
        self.cache.finish(decode=lambda i: self.dataset.image(i, 0).numpy())  # type: ignore[union-attr]

    def build_cache(self) -> DecodedCache:
        """Fill the decoded cache now, with this loader's workers, instead of during the first epoch."""
        if self.cache is None:
            raise ValueError("ImageLoader.build_cache: this loader has no cache (pass cache=True to the builder)")
        if not self.cache.complete:
            rows = self.cache.missing().tolist()
            batches = [rows[k:k + self.bs] for k in range(0, len(rows), self.bs)]
            for idx, xb, _ in self._decoded(batches, 0):
                self.cache.write(idx, xb.numpy())
            self._finish_cache()
        return self.cache

    def new(self, **kwargs) -> ImageLoader:
        """A copy with some arguments changed (e.g. `shuffle=False`, `tfms=()`); it starts its own workers."""
        args = dict(dataset=self.dataset, bs=self.bs, shuffle=self.shuffle, drop_last=self.drop_last,
                    seed=self.seed, device=self.device, mean=self.mean, std=self.std, tfms=self.tfms,
                    num_workers=self.num_workers, pin_memory=self.pin_memory,
                    persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor,
                    cache=self.cache)
        dl = type(self)(**{**args, **kwargs})
        dl.shard(self.shard_rank, self.num_shards, self.pad_shards)
        return dl


class ImageTensorLoader(TensorLoader):
    """A `TensorLoader` over decoded images that also encodes paths and PIL images for `predict`.

    `mode` ('L' or 'RGB') and `item_tfms` (their validation form) are how a raw image is made into an item.
    """

    def __init__(self, x: Tensor, y: Tensor, mode: str = "RGB", item_tfms: Sequence[ItemTransform] = (),
                 **kwargs):
        super().__init__(x, y, **kwargs)
        self.mode, self.item_tfms = mode, list(item_tfms)

    def encode(self, item: Any) -> Tensor:
        if isinstance(item, (str, Path)):
            item = open_image(item, self.mode)
        if isinstance(item, Image.Image):
            if item.mode != self.mode:
                item = item.convert(self.mode)
            item = image_to_tensor(apply_item_tfms(item, self.item_tfms, train=False))
        return super().encode(item)

    def init_args(self) -> dict[str, Any]:
        return {**super().init_args(), "mode": self.mode, "item_tfms": self.item_tfms}


def _find_bad(items: Sequence[Path], idxs: Sequence[int]) -> list[int]:
    bad = []
    for i in idxs:
        try:
            open_image(items[i])
        except (ImageReadError, FileNotFoundError):
            bad.append(i)
    return bad


def _resolve_stats(stats, compute: Callable[[], tuple[list[float], list[float]]]):
    if stats is None:
        return None, None
    if isinstance(stats, str):
        if stats == "compute":
            return compute()
        if stats == "imagenet":
            return IMAGENET_STATS
        raise ValueError(f"stats must be None, 'compute', 'imagenet' or (mean, std), got {stats!r}")
    mean, std = stats
    return list(np.atleast_1d(mean)), list(np.atleast_1d(std))


class ImageDataLoaders:
    """Builders of image classification `DataLoaders` (all return a `deepfit.data.DataLoaders`)."""

    @staticmethod
    def from_lists(items: Sequence[str | Path], labels: Sequence[str] | Sequence[Sequence[str]],
                   splitter: Callable | None = None,
                   path: str | Path | None = None, valid_pct: float = 0.2, seed: int = 0,
                   item_tfms: Sequence[ItemTransform] = (), batch_tfms: Sequence[Callable] = (), bs: int = 64,
                   val_bs: int | None = None, num_workers: int | None = None, in_memory: bool | str = "auto",
                   max_memory: int = 2**28, cache: bool | str | Path = False, pin_memory: bool | None = None,
                   stats: Any = "compute", mode: str | None = None,
                   skip_bad: bool = False, vocab: Sequence[str] | CategoryProcessor | None = None,
                   drop_last: bool = False, device: torch.device | str | None = None) -> DataLoaders:
        """Build `DataLoaders` from image paths and their string labels.

        Labels that are lists of names (several per image) make a multi-label task: multi-hot float targets
        over a `MultiCategoryProcessor` vocabulary, `dls.multi_label = True` (a `Learner` then defaults to
        `BCEWithLogitsFlat`).

        Args:
            splitter: `items -> (train_idx, valid_idx)`; default `RandomSplitter(valid_pct, seed)`.
            item_tfms: per-image PIL transforms (training form for training, validation form for validation).
            batch_tfms: transforms applied on the device to training batches (after normalization).
                Those with a `set_stats` method (e.g. `ColorJitter`) are told the normalization stats.
            num_workers: processes that decode and item-transform the images (0: this process); default
                `default_num_workers()`, the CPUs available to this process less one, at most 8. They
                stream the folder every epoch (kept between epochs), or decode it once for `in_memory`
                (folders of `WORKERS_FROM` = 500 images or more).
            in_memory: `True` decodes every image once into a uint8 tensor (random item transforms then
                use their validation form); `False` streams the files, decoded by the workers each epoch;
                `'auto'` loads into memory when the decoded images take at most `max_memory` bytes.
            cache: keep the decoded images (uint8, validation form of the item transforms, as `in_memory`)
                in a file written during the first epoch and memory-mapped afterwards (`DecodedCache`):
                `True` beside the data (`<path>/.deepfit-cache/`, else `$DEEPFIT_DATA/image-cache/`), or a
                folder. A file that changes (size or modification time) invalidates it.
            pin_memory: stage batches in pinned memory for non-blocking copies (default: on CUDA).
            stats: `'compute'` (per-channel stats of the training images), `'imagenet'`, `(mean, std)`
                or `None` (only scale to [0, 1]).
            mode: PIL mode images are converted to ('L' or 'RGB'); default from the first training image.
            skip_bad: leave out unreadable images (with a warning counting them) instead of raising.
            vocab: a fixed class list or a fitted `CategoryProcessor` (reuse a saved vocabulary);
                default: built from the training labels.
        """
        items = [Path(o) for o in items]
        multi_label = bool(labels) and all(isinstance(o, (list, tuple)) for o in labels)
        labels = [[str(n) for n in o] for o in labels] if multi_label else [str(o) for o in labels]
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        if not items:
            raise ValueError("no items")
        splitter = splitter if splitter is not None else RandomSplitter(valid_pct, seed)
        train_idx, valid_idx = splitter(items)
        if skip_bad:
            bad = set(_find_bad(items, [*train_idx, *valid_idx]))
            if bad:
                names = ", ".join(str(items[i]) for i in sorted(bad)[:3])
                warnings.warn(f"skipped {len(bad)} unreadable image(s): {names}{', ...' if len(bad) > 3 else ''}",
                              stacklevel=2)
                train_idx = [i for i in train_idx if i not in bad]
                valid_idx = [i for i in valid_idx if i not in bad]
                if not train_idx:
                    raise ValueError("every training image is unreadable")
        if mode is None:
            mode = image_mode(items[train_idx[0]])
        used = [*train_idx, *valid_idx]
        if multi_label:
            if isinstance(vocab, MultiCategoryProcessor):
                cats = vocab
            else:
                cats = MultiCategoryProcessor(vocab) if vocab is not None else MultiCategoryProcessor().fit(
                    labels[i] for i in train_idx)
            y = torch.zeros(len(items), len(cats.vocab))
            y[used] = cats.encode([labels[i] for i in used])
        else:
            if isinstance(vocab, CategoryProcessor):
                cats = vocab
            else:
                cats = CategoryProcessor(vocab) if vocab is not None else CategoryProcessor().fit(
                    labels[i] for i in train_idx)
            y = torch.zeros(len(items), dtype=torch.long)
            y[used] = cats.encode([labels[i] for i in used], items=[items[i] for i in used])
        device = torch.device(device) if device is not None else default_device()
        # the first training image after the item transforms fixes the channels and size of every item
        probe = image_to_tensor(apply_item_tfms(open_image(items[train_idx[0]], mode), item_tfms, train=False))
        n_ch, size = probe.shape[0], tuple(probe.shape[1:])
        shape = (n_ch, *size)
        if in_memory == "auto":
            in_memory = len(used) * n_ch * size[0] * size[1] <= max_memory
        if num_workers is None:
            num_workers = default_num_workers()
        root = path if path is not None else _common_folder(items)
        val_bs = val_bs or bs * 2

        def dataset(idxs, train):
            return ImageDataset([items[i] for i in idxs], y[idxs], item_tfms, mode, train, seed, shape)

        def decoded_cache(ds: ImageDataset) -> DecodedCache | None:
            if cache is False:
                return None
            return DecodedCache(ds.items, shape, ds.spec, cache_folder(root, cache))

        if in_memory:
            all_ds = dataset(used, False)
            x, y = _load_all(all_ds, num_workers if len(used) >= WORKERS_FROM else 0, decoded_cache(all_ds)), y[used]
            n_train = len(train_idx)
            sample = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:5000]
            mean, std = _resolve_stats(stats, lambda: compute_stats(x[sample]))
            tell_stats(batch_tfms, mean, std)
            train = ImageTensorLoader(x, y, mode, item_tfms, bs=bs, shuffle=True, drop_last=drop_last, seed=seed,
                                      device=device, mean=mean, std=std, tfms=batch_tfms,
                                      indices=torch.arange(n_train))
            valid = ImageTensorLoader(x, y, mode, item_tfms, bs=val_bs, device=device, mean=mean, std=std,
                                      indices=torch.arange(n_train, len(used)))
        else:
            if cache is not False and any(getattr(t, "random", False) for t in item_tfms):
                warnings.warn("cache: random item transforms use their validation form on cached images; "
                              "augment with batch transforms (on the device) instead", stacklevel=2)
            # the decoded cache holds the validation form of the item transforms, for training too
            train_ds, valid_ds = dataset(train_idx, cache is False), dataset(valid_idx, False)

            def compute():
                sample = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))[:512]
                probe = dataset([train_idx[i] for i in sample.tolist()], False)
                return compute_stats(_load_all(probe, num_workers if len(probe) >= WORKERS_FROM else 0))

            mean, std = _resolve_stats(stats, compute)
            tell_stats(batch_tfms, mean, std)
            common = dict(device=device, mean=mean, std=std, num_workers=num_workers, pin_memory=pin_memory)
            train = ImageLoader(train_ds, bs=bs, shuffle=True, drop_last=drop_last, seed=seed, tfms=batch_tfms,
                                cache=decoded_cache(train_ds), **common)
            valid = ImageLoader(valid_ds, bs=val_bs, cache=decoded_cache(valid_ds), **common)
        dls = DataLoaders(train, valid, device=device, vocab=cats.vocab)
        dls.categorize = cats
        dls.multi_label = multi_label
        dls.item_tfms = list(item_tfms)
        dls.path = Path(path) if path is not None else None
        dls.n_channels = n_ch
        dls.items = ([items[i] for i in train_idx], [items[i] for i in valid_idx])
        return dls

    @staticmethod
    def from_folder(path: str | Path, train: str = "train", valid: str = "valid", valid_pct: float | None = None,
                    seed: int = 0, extensions=IMAGE_EXTENSIONS, label_func: Callable[[Path], str] = parent_label,
                    **kwargs) -> DataLoaders:
        """Images in class folders: `path/train/<class>/*`, `path/valid/<class>/*` (split by folder name).

        With `valid_pct`, or when there is no `valid` folder, a random `valid_pct` (default 0.2) of all
        images found is held out instead.
        """
        path = Path(path)
        if valid_pct is None and (path / train).is_dir() and (path / valid).is_dir():
            items = get_image_files(path, folders=[train, valid], extensions=extensions)
            splitter = GrandparentSplitter(train, valid)
        else:
            items = get_image_files(path, extensions=extensions)
            splitter = RandomSplitter(0.2 if valid_pct is None else valid_pct, seed)
        if not items:
            raise FileNotFoundError(f"{path}: no image files")
        return ImageDataLoaders.from_lists(items, [label_func(o) for o in items], splitter=splitter, path=path,
                                           seed=seed, **kwargs)

    @staticmethod
    def from_name_func(path: str | Path, fnames: Sequence[str | Path], label_func: Callable[[Path], str],
                       valid_pct: float = 0.2, seed: int = 0, **kwargs) -> DataLoaders:
        """Label each file with `label_func(path)`; random split."""
        fnames = [Path(o) for o in fnames]
        return ImageDataLoaders.from_lists(fnames, [label_func(o) for o in fnames],
                                           splitter=RandomSplitter(valid_pct, seed), path=path, seed=seed, **kwargs)

    @staticmethod
    def from_name_re(path: str | Path, fnames: Sequence[str | Path], pat: str, valid_pct: float = 0.2,
                     seed: int = 0, **kwargs) -> DataLoaders:
        """Label each file with the first group of the regular expression `pat` on its name; random split."""
        return ImageDataLoaders.from_name_func(path, fnames, RegexLabeller(pat), valid_pct, seed, **kwargs)

    @staticmethod
    def from_csv(path: str | Path, csv_fname: str | Sequence = "labels.csv", folder: str | None = None,
                 fn_col: str | int = 0, label_col: str | int = 1, valid_col: str | int | None = None,
                 suffix: str = "", valid_pct: float = 0.2, seed: int = 0, label_delim: str | None = None,
                 **kwargs) -> DataLoaders:
        """Files and labels from a CSV file `path/csv_fname` (or from rows: a list of dicts).

        `valid_col` names a column whose true values ('1', 'true', 'yes') mark validation rows;
        without it a random `valid_pct` is held out. `label_delim` (e.g. `" "`): the label cell holds
        several labels (`"cat dog"`), a multi-label task (see `from_lists`).
        """
        path = Path(path)
        rows = read_csv(path / csv_fname) if isinstance(csv_fname, (str, Path)) else list(csv_fname)
        root = path / folder if folder else path
        items = [root / f"{_cell(r, fn_col, i)}{suffix}" for i, r in enumerate(rows)]
        labels = ColumnLabeller(rows, fn_col, label_col, root=root, suffix=suffix)
        if valid_col is not None:
            flags = [str(_cell(r, valid_col, i)).strip().lower() in ("1", "true", "yes") for i, r in enumerate(rows)]
            splitter = IndexSplitter(i for i, f in enumerate(flags) if f)
        else:
            splitter = RandomSplitter(valid_pct, seed)
        names = [labels(o) for o in items]
        if label_delim is not None:
            names = [split_labels(n, label_delim) for n in names]
        return ImageDataLoaders.from_lists(items, names, splitter=splitter, path=path, seed=seed, **kwargs)


class ImageList(Sequence):
    """A list of image paths under a root folder `path`.

    Build it with `from_folder`, `from_csv` or `from_rows`; turn it into `DataLoaders` with
    `dataloaders(get_label, splitter, ...)`.
    """

    def __init__(self, items: Iterable[str | Path], path: str | Path | None = None):
        self.items = [Path(o) for o in items]
        self.path = Path(path) if path is not None else Path(".")

    @classmethod
    def from_folder(cls, path: str | Path, extensions: Iterable[str] = IMAGE_EXTENSIONS, recurse: bool = True,
                    folders: Sequence[str] | None = None) -> ImageList:
        """Every image file under `path` (optionally only in `folders`), sorted."""
        items = get_image_files(path, recurse, folders, extensions)
        if not items:
            raise FileNotFoundError(f"{path}: no image files with extensions {sorted(extensions)}")
        return cls(items, path)

    @classmethod
    def from_rows(cls, path: str | Path, rows: Sequence[Mapping[str, str]], fn_col: str | int = 0,
                  folder: str | None = None, suffix: str = "") -> ImageList:
        """Items named in column `fn_col` of `rows` (dicts, or lists when `fn_col` is an int)."""
        root = Path(path) / folder if folder else Path(path)
        return cls([root / f"{_cell(r, fn_col, i)}{suffix}" for i, r in enumerate(rows)], path)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str = "labels.csv", fn_col: str | int = 0,
                 folder: str | None = None, suffix: str = "") -> ImageList:
        """Items named in column `fn_col` of the CSV file `path/csv_fname` (with a header row)."""
        return cls.from_rows(path, read_csv(Path(path) / csv_fname), fn_col, folder, suffix)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ImageList(self.items[i], self.path)
        return self.items[i]

    def __iter__(self) -> Iterator[Path]:
        return iter(self.items)

    def filter(self, fn: Callable[[Path], bool]) -> ImageList:
        return ImageList([o for o in self.items if fn(o)], self.path)

    def __repr__(self) -> str:
        head = ", ".join(str(o.relative_to(self.path) if o.is_relative_to(self.path) else o)
                         for o in self.items[:3])
        return f"ImageList({len(self)} items in {self.path}: {head}{', ...' if len(self) > 3 else ''})"

    def dataloaders(self, get_label: Callable[[Path], str] | Sequence[str], splitter: Callable | None = None,
                    **kwargs):
        """`ImageDataLoaders` from these items (see `ImageDataLoaders.from_lists` for the options)."""
        labels = list(get_label) if not callable(get_label) else [get_label(o) for o in self.items]
        return ImageDataLoaders.from_lists(self.items, labels, splitter=splitter, path=self.path, **kwargs)


def _common_folder(items: Sequence[Path]) -> Path:
    """The deepest folder holding every item."""
    return Path(os.path.commonpath([str(p.parent.absolute()) for p in items]))


def _load_all(ds: ImageDataset, num_workers: int = 0, cache: DecodedCache | None = None) -> Tensor:
    """Decode every item of `ds` into one uint8 tensor `N×C×H×W`, with `num_workers` processes, or read them
    from `cache` (and fill it when it is not complete)."""
    if cache is not None and cache.complete:
        return torch.from_numpy(np.array(cache.array()))
    x = torch.empty((len(ds), *ds.shape), dtype=torch.uint8)  # type: ignore[misc]
    bs = 64
    plan = _Plan()
    plan.batches = [[(0, i) for i in range(k, min(k + bs, len(ds)))] for k in range(0, len(ds), bs)]
    dl = torch.utils.data.DataLoader(ds, batch_size=None, sampler=plan, num_workers=num_workers)
    for k, (xb, _) in enumerate(dl):
        x[k * bs:k * bs + len(xb)] = xb
    if cache is not None:
        cache.write(np.arange(len(ds)), x.numpy())
        cache.finish()
    return x


def _loader_stats(dl) -> tuple[Tensor | None, Tensor | None]:
    return getattr(dl, "mean", None), getattr(dl, "std", None)


def one_batch(dl) -> tuple[Tensor, Tensor]:
    """The first batch of `dl`, without moving its epoch counter."""
    epoch = getattr(dl, "epoch", None)
    try:
        return next(iter(dl))
    finally:
        if epoch is not None:
            dl.epoch = epoch


def show_batch(dls: DataLoaders, path: str | Path, n: int = 16, ncols: int = 4, split: str = "train",
               figsize_per: float = 1.6) -> Path:
    """Save a PNG grid of the first `n` images of a batch, each titled with its class name."""
    from ..plotting import new_figure, save_figure

    dl = dls.train if split == "train" else dls.valid
    xb, yb = one_batch(dl)
    xb, yb = xb[:n].detach().float().cpu(), yb[:n].cpu()
    mean, std = _loader_stats(dl)
    if mean is not None:
        xb = xb * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    xb = xb.clamp(0, 1)
    n = len(xb)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(figsize_per * ncols, figsize_per * nrows + 0.2))
    axes = np.array(axes).reshape(-1)
    vocab = getattr(dls, "vocab", None)
    for ax in axes:
        ax.axis("off")
    for ax, x, y in zip(axes, xb, yb):
        img = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
        ax.imshow(img.numpy(), cmap="gray" if x.shape[0] == 1 else None, vmin=0, vmax=1)
        label = int(y) if y.ndim == 0 else y.tolist()
        ax.set_title(str(vocab[label]) if vocab is not None and isinstance(label, int) else str(label), fontsize=8)
    return save_figure(fig, path)


def input_channels(dls: DataLoaders) -> int:
    """Number of input channels of the images in `dls` (read from the data, or from one batch)."""
    n = getattr(dls, "n_channels", None)
    if n is not None:
        return n
    train = dls.train
    x = getattr(train, "x", None)
    if isinstance(x, Tensor) and x.ndim == 4:
        return x.shape[1]
    xb, _ = one_batch(train)
    return xb.shape[1]
