"""Image folders as `DataLoaders`: reading images, the per-item dataset, the worker loader, the builder.

`ImageDataLoaders.from_folder(path)` (and `from_csv`, `from_name_re`, `from_name_func`,
`from_lists`) returns the same `DataLoaders` interface as `fashion_mnist_loaders`: `.train` and
`.valid` yield normalized float `N×C×H×W` batches on the device, `.vocab` holds the class names.
Small folders are decoded once into a uint8 tensor (`TensorLoader`); large ones are read by
`torch.utils.data.DataLoader` workers every epoch (`ImageLoader`).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

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
from .transforms import IMAGENET_STATS, ItemTransform, apply_item_tfms, compute_stats

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


class ImageDataset(torch.utils.data.Dataset):
    """`(uint8 C×H×W tensor, label)` for item `i`: the file read, converted to `mode`, item-transformed.

    Random item transforms draw from a `random.Random` seeded by `(seed, epoch, i)`.
    """

    def __init__(self, items: Sequence[Path], labels: Tensor, item_tfms: Sequence[ItemTransform] = (),
                 mode: str = "RGB", train: bool = True, seed: int = 0, size: tuple[int, int] | None = None):
        if len(items) != len(labels):
            raise ValueError(f"ImageDataset: {len(items)} items but {len(labels)} labels")
        self.items, self.labels = list(items), labels
        self.item_tfms, self.mode, self.train, self.seed = list(item_tfms), mode, train, seed
        self.size = size
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> Tensor:
        path = self.items[i]
        img = open_image(path, self.mode)
        if self.item_tfms:
            rng = random.Random(_item_seed(self.seed, self.epoch, i))
            img = apply_item_tfms(img, self.item_tfms, rng=rng, train=self.train)
        x = image_to_tensor(img)
        if self.size is not None and tuple(x.shape[1:]) != tuple(self.size):
            raise ImageReadError(f"{path}: image is {x.shape[2]}×{x.shape[1]} (w×h) after item transforms but "
                                 f"others are {self.size[1]}×{self.size[0]}; add an item transform such as "
                                 "Resize(size) so all images share one size")
        return x

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.image(i), self.labels[i]


class ImageLoader:
    """Reads an `ImageDataset` with `torch.utils.data.DataLoader` workers and yields batches on `device`.

    Like `TensorLoader`: uint8 → float / 255 → normalize with `mean`/`std` → batch `tfms`, on the
    device; the order of epoch `e` depends only on `(seed, e)` (`set_epoch` to resume).
    """

    yields_on_device = True

    def __init__(self, dataset: ImageDataset, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, device: torch.device | str | None = None, mean=None, std=None,
                 tfms: Sequence[Callable[[Tensor], Tensor]] = (), num_workers: int = 0, pin_memory: bool = False):
        if bs < 1:
            raise ValueError(f"ImageLoader: bs must be >= 1, got {bs}")
        self.dataset, self.bs, self.shuffle, self.drop_last = dataset, bs, shuffle, drop_last
        self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)
        self.device = torch.device(device) if device is not None else default_device()
        self.tfms = list(tfms)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch = 0
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)
        tell_stats(self.tfms, self.mean, self.std)

    @property
    def n(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else -(-self.n // self.bs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=g).tolist()

    def _convert(self, xb: Tensor) -> Tensor:
        return to_model_input(xb, *stats_on_device(self, xb.device))

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

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        self.dataset.epoch = epoch
        dl = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.bs, sampler=self.order(epoch), drop_last=self.drop_last,
            num_workers=self.num_workers, pin_memory=self.pin_memory and self.device.type == "cuda")
        for xb, yb in dl:
            xb = self._convert(xb.to(self.device, non_blocking=True))
            for tfm in self.tfms:
                xb = tfm(xb)
            yield xb, yb.to(self.device, non_blocking=True)

    def new(self, **kwargs) -> ImageLoader:
        """A copy with some arguments changed (e.g. `shuffle=False`, `tfms=()`)."""
        args = dict(dataset=self.dataset, bs=self.bs, shuffle=self.shuffle, drop_last=self.drop_last,
                    seed=self.seed, device=self.device, mean=self.mean, std=self.std, tfms=self.tfms,
                    num_workers=self.num_workers, pin_memory=self.pin_memory)
        return type(self)(**{**args, **kwargs})


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
    def from_lists(items: Sequence[str | Path], labels: Sequence[str], splitter: Callable | None = None,
                   path: str | Path | None = None, valid_pct: float = 0.2, seed: int = 0,
                   item_tfms: Sequence[ItemTransform] = (), batch_tfms: Sequence[Callable] = (), bs: int = 64,
                   val_bs: int | None = None, num_workers: int = 0, in_memory: bool | str = "auto",
                   max_memory: int = 2**28, stats: Any = "compute", mode: str | None = None,
                   skip_bad: bool = False, vocab: Sequence[str] | CategoryProcessor | None = None,
                   drop_last: bool = False, device: torch.device | str | None = None) -> DataLoaders:
        """Build `DataLoaders` from image paths and their string labels.

        Args:
            splitter: `items -> (train_idx, valid_idx)`; default `RandomSplitter(valid_pct, seed)`.
            item_tfms: per-image PIL transforms (training form for training, validation form for validation).
            batch_tfms: transforms applied on the device to training batches (after normalization).
                Those with a `set_stats` method (e.g. `ColorJitter`) are told the normalization stats.
            in_memory: `True` decodes every image once into a uint8 tensor (random item transforms then
                use their validation form); `False` reads files in `num_workers` workers each epoch;
                `'auto'` loads into memory when the decoded images take at most `max_memory` bytes.
            stats: `'compute'` (per-channel stats of the training images), `'imagenet'`, `(mean, std)`
                or `None` (only scale to [0, 1]).
            mode: PIL mode images are converted to ('L' or 'RGB'); default from the first training image.
            skip_bad: leave out unreadable images (with a warning counting them) instead of raising.
            vocab: a fixed class list or a fitted `CategoryProcessor` (reuse a saved vocabulary);
                default: built from the training labels.
        """
        items = [Path(o) for o in items]
        labels = [str(o) for o in labels]
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
        if isinstance(vocab, CategoryProcessor):
            cats = vocab
        else:
            cats = CategoryProcessor(vocab) if vocab is not None else CategoryProcessor().fit(
                labels[i] for i in train_idx)
        y = torch.zeros(len(items), dtype=torch.long)
        used = [*train_idx, *valid_idx]
        y[used] = cats.encode([labels[i] for i in used], items=[items[i] for i in used])
        device = torch.device(device) if device is not None else default_device()
        # the first training image after the item transforms fixes the channels and size of every item
        probe = image_to_tensor(apply_item_tfms(open_image(items[train_idx[0]], mode), item_tfms, train=False))
        n_ch, size = probe.shape[0], tuple(probe.shape[1:])
        if in_memory == "auto":
            in_memory = len(used) * n_ch * size[0] * size[1] <= max_memory
        val_bs = val_bs or bs * 2
        if in_memory:
            x, y = _load_all([items[i] for i in used], item_tfms, mode, (n_ch, *size)), y[used]
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
            def dataset(idxs, train):
                return ImageDataset([items[i] for i in idxs], y[idxs], item_tfms, mode, train, seed, size)

            train_ds, valid_ds = dataset(train_idx, True), dataset(valid_idx, False)

            def compute():
                sample = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))[:512]
                probe = dataset([train_idx[i] for i in sample.tolist()], False)
                return compute_stats(torch.stack([probe.image(i) for i in range(len(probe))]))

            mean, std = _resolve_stats(stats, compute)
            tell_stats(batch_tfms, mean, std)
            common = dict(device=device, mean=mean, std=std, num_workers=num_workers)
            train = ImageLoader(train_ds, bs=bs, shuffle=True, drop_last=drop_last, seed=seed, tfms=batch_tfms,
                                **common)
            valid = ImageLoader(valid_ds, bs=val_bs, **common)
        dls = DataLoaders(train, valid, device=device, vocab=cats.vocab)
        dls.categorize = cats
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
                 suffix: str = "", valid_pct: float = 0.2, seed: int = 0, **kwargs) -> DataLoaders:
        """Files and labels from a CSV file `path/csv_fname` (or from rows: a list of dicts).

        `valid_col` names a column whose true values ('1', 'true', 'yes') mark validation rows;
        without it a random `valid_pct` is held out.
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
        return ImageDataLoaders.from_lists(items, [labels(o) for o in items], splitter=splitter, path=path,
                                           seed=seed, **kwargs)


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


def _load_all(items: Sequence[Path], item_tfms, mode: str, shape: tuple[int, int, int]) -> Tensor:
    """Decode the images into one uint8 tensor `N×C×H×W` (validation form of the item transforms)."""
    x = torch.empty(len(items), *shape, dtype=torch.uint8)
    for i, path in enumerate(items):
        t = image_to_tensor(apply_item_tfms(open_image(path, mode), item_tfms, train=False))
        if tuple(t.shape) != tuple(shape):
            raise ImageReadError(f"{path}: image is {t.shape[2]}×{t.shape[1]} (w×h) with {t.shape[0]} channel(s) "
                                 f"after item transforms but others are {shape[2]}×{shape[1]} with {shape[0]}; "
                                 "add an item transform such as Resize(size)")
        x[i] = t
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
