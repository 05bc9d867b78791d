"""Loaders that yield batches on the target device, and the `DataLoaders` train/valid pair.

- `Loader`: the protocol a `Learner` relies on (batches on `device`, a length); `EpochLoader` and
  `EncodingLoader` name the optional abilities (reproducible epochs, encoding one raw item).
- `to_model_input`: the one conversion of raw inputs (uint8 → float / 255 → per-channel normalize)
  shared by every loader and by inference.
- `TensorLoader`: an in-memory dataset (e.g. uint8 images) batched by indexing; each batch is
  moved to the device once, converted to float, normalized and transformed there.
- `DeviceLoader`: wraps any iterable of `(x, y)` batches (a `torch.utils.data.DataLoader`, a list,
  a generator factory) and moves each batch to the device.
- `DataLoaders`: the pair used by a `Learner`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

Transform = Callable[[Tensor], Tensor]


@runtime_checkable
class Loader(Protocol):
    """What a `Learner` needs from a loader: `(x, y)` batches already on `device`, and their number.

    `DataLoaders` wraps anything else (a `torch.utils.data.DataLoader`, a list of batches) in a
    `DeviceLoader`, which satisfies this protocol.
    """

    device: torch.device

    def __iter__(self) -> Iterator[tuple[Any, Any]]: ...

    def __len__(self) -> int: ...


@runtime_checkable
class EpochLoader(Loader, Protocol):
    """A loader whose epoch order depends only on `(seed, epoch)`: checkpoints save both and resume exactly."""

    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class EncodingLoader(Loader, Protocol):
    """A loader that turns one raw item (a tensor, a path...) into a batch of one, as in validation (`predict`)."""

    def encode(self, item: Any) -> Tensor: ...


def _channel_view(stat: Tensor | Sequence[float], x: Tensor) -> Tensor:
    """`stat` (one value per channel) on `x`'s device and dtype, shaped to broadcast over channel axis 1."""
    t = torch.as_tensor(stat, dtype=x.dtype, device=x.device).flatten()
    shape = [1, -1] + [1] * (x.ndim - 2) if x.ndim >= 2 else [-1]
    return t.view(shape)


def to_model_input(x: Tensor, mean: Tensor | Sequence[float] | None = None,
                   std: Tensor | Sequence[float] | None = None,
                   device: torch.device | str | None = None) -> Tensor:
    """Raw inputs as the model sees them: on `device`, uint8 divided by 255, floats normalized per channel.

    `mean`/`std` hold one value per channel (axis 1 of `x`), or `None` for no normalization.
    Integer inputs other than uint8 (token ids, class indices) are returned unchanged.
    """
    if device is not None:
        x = x.to(device, non_blocking=True)
    fresh = x.dtype == torch.uint8  # a new float tensor, normalized in place (the same values, no temporaries)
    if fresh:
        x = x.float().div_(255.0)
    elif not x.is_floating_point():
        return x
    if mean is None:
        return x
    if std is None:
        raise ValueError("to_model_input: mean given without std")
    if fresh:
        return x.sub_(_channel_view(mean, x)).div_(_channel_view(std, x))
    return (x - _channel_view(mean, x)) / _channel_view(std, x)


def stats_on_device(dl: Any, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """`dl.mean`/`dl.std` on `device`, cached on the loader (`_mean_dev`/`_std_dev`) until the device changes."""
    if dl.mean is None:
        return None, None
    cached = getattr(dl, "_mean_dev", None)
    if cached is None or cached.device != device:
        dl._mean_dev, dl._std_dev = dl.mean.to(device), dl.std.to(device)
    return dl._mean_dev, dl._std_dev


def default_device() -> torch.device:
    """CUDA when available, else MPS when available, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_device(b: Any, device: torch.device | str) -> Any:
    """Move a tensor, or tensors nested in tuples/lists/dicts, to `device`."""
    if isinstance(b, Tensor):
        return b.to(device, non_blocking=True)
    if isinstance(b, (tuple, list)):
        return type(b)(to_device(o, device) for o in b)
    if isinstance(b, dict):
        return {k: to_device(v, device) for k, v in b.items()}
    return b


def tell_stats(tfms: Iterable, mean: Sequence[float] | Tensor | None, std: Sequence[float] | Tensor | None) -> None:
    """Give normalization `mean`/`std` to the batch transforms that work in pixel space (those with
    `set_stats`, e.g. `ColorJitter`, `PadCrop`) and were not given statistics of their own."""
    if mean is None:
        return
    for tfm in tfms:
        if callable(getattr(tfm, "set_stats", None)) and getattr(tfm, "mean", None) is None:
            tfm.set_stats(mean, std)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


class TensorLoader:
    """Batches an in-memory dataset `(x, y)` on `device`.

    Args:
        x: inputs, any dtype, first dimension = items. uint8 inputs are divided by 255 on the device.
        y: targets, same first dimension.
        bs: batch size.
        shuffle: reshuffle each epoch. The order of epoch `e` depends only on `(seed, e)`, so it is
            reproducible, resumable and identical across processes (see `set_epoch`).
        drop_last: drop the last partial batch.
        seed: shuffling seed; `None` draws one from torch's global generator.
        device: where batches are produced.
        mean, std: per-channel normalization applied on the device after scaling (channel axis 1).
        tfms: batch transforms `x -> x` applied on the device after normalization (e.g. augmentation);
            those working in pixel space are told `mean`/`std` (`tell_stats`).
        indices: restrict to these item indices (for splits and shards).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        bs: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device: torch.device | str | None = None,
        mean: Sequence[float] | Tensor | None = None,
        std: Sequence[float] | Tensor | None = None,
        tfms: Sequence[Transform] = (),
        indices: Tensor | Sequence[int] | None = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"TensorLoader: x has {len(x)} items but y has {len(y)}")
        if bs < 1:
            raise ValueError(f"TensorLoader: bs must be >= 1, got {bs}")
        self.x, self.y = x, y
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last
        self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)
        self.device = torch.device(device) if device is not None else default_device()
        self.tfms = list(tfms)
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)
        self.epoch = 0
        self.shard_rank, self.num_shards, self.pad_shards = 0, 1, False
        self.set_stats(mean, std)

    def set_stats(self, mean, std) -> None:
        """Set per-channel normalization statistics (or `None` for none)."""
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)
        self._mean_dev = self._std_dev = None
        tell_stats(self.tfms, self.mean, self.std)

    @property
    def n_items(self) -> int:
        """Items in the whole dataset (all shards)."""
        return len(self.x) if self.indices is None else len(self.indices)

    @property
    def n(self) -> int:
        """Items this loader yields per epoch (its shard's share when sharded)."""
        total, world = self.n_items, self.num_shards
        if world == 1:
            return total
        if self.pad_shards:
            return -(-total // world)
        return len(range(self.shard_rank, total, world))

    def shard(self, rank: int, world: int, pad: bool = False) -> None:
        """Yield only items `rank, rank + world, ...` of each epoch's order (for distributed training).

        With `pad=True` the order is first padded by wrapping around so every shard has the same size.
        """
        if not 0 <= rank < world:
            raise ValueError(f"shard rank must be in [0, {world}), got {rank}")
        self.shard_rank, self.num_shards, self.pad_shards = rank, world, pad

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else -(-self.n // self.bs)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch number used for the next shuffle (for resuming and distributed sharding)."""
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> Tensor:
        """Item indices in the order of epoch `epoch` (default: the next one)."""
        epoch = self.epoch if epoch is None else epoch
        total = self.n_items
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            perm = torch.randperm(total, generator=g)
        else:
            perm = torch.arange(total)
        if self.num_shards > 1:
            if self.pad_shards and total % self.num_shards:
                extra = self.num_shards - total % self.num_shards
                perm = torch.cat([perm, perm[:extra]])
            perm = perm[self.shard_rank::self.num_shards]
        return perm if self.indices is None else self.indices[perm]

    def encode(self, x: Tensor) -> Tensor:
        """Convert raw inputs (one item, or a batch) the way batches are, without the random tfms."""
        if x.ndim == self.x.ndim - 1:
            x = x.unsqueeze(0)
        return self._convert(x.to(self.device, non_blocking=True))

    def _convert(self, xb: Tensor) -> Tensor:
        return to_model_input(xb, *stats_on_device(self, xb.device))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.order()
        self.epoch += 1
        n_batches = len(self)
        for i in range(n_batches):
            idx = order[i * self.bs:(i + 1) * self.bs]
            xb = self._convert(self.x[idx].to(self.device, non_blocking=True))
            for tfm in self.tfms:
                xb = tfm(xb)
            yb = self.y[idx].to(self.device, non_blocking=True)
            yield xb, yb

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this loader (subclasses add theirs)."""
        return dict(x=self.x, y=self.y, bs=self.bs, shuffle=self.shuffle, drop_last=self.drop_last,
                    seed=self.seed, device=self.device, mean=self.mean, std=self.std, tfms=self.tfms,
                    indices=self.indices)

    def new(self, **kwargs) -> TensorLoader:
        """A copy of the same class with some arguments changed (e.g. `shuffle=False`, `tfms=()`)."""
        dl = type(self)(**{**self.init_args(), **kwargs})
        dl.shard(self.shard_rank, self.num_shards, self.pad_shards)
        return dl


class DeviceLoader:
    """Wraps an iterable of `(x, y)` batches and moves every batch to `device`.

    `source` may be a re-iterable object (a `torch.utils.data.DataLoader`, a list) or a
    zero-argument function returning a fresh iterator each epoch.
    """

    def __init__(self, source: Iterable | Callable[[], Iterable], device: torch.device | str | None = None,
                 tfms: Sequence[Transform] = ()):
        self.source = source
        self.device = torch.device(device) if device is not None else default_device()
        self.tfms = list(tfms)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator:
        source = self.source() if callable(self.source) and not hasattr(self.source, "__iter__") else self.source
        for batch in source:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(f"DeviceLoader: expected batches of (x, y), got {type(batch).__name__}"
                                 + (f" of length {len(batch)}" if hasattr(batch, "__len__") else ""))
            xb, yb = to_device(batch[0], self.device), to_device(batch[1], self.device)
            for tfm in self.tfms:
                xb = tfm(xb)
            yield xb, yb

    def set_epoch(self, epoch: int) -> None:
        sampler = getattr(self.source, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def as_loader(dl: Any, device: torch.device) -> Any:
    """Use deepfit loaders as they are (on `device`); wrap anything else in a `DeviceLoader`."""
    if dl is None:
        return None
    if isinstance(dl, (TensorLoader, DeviceLoader)) or getattr(dl, "yields_on_device", False):
        if hasattr(dl, "device") and torch.device(dl.device) != device:
            dl.device = device
        return dl
    return DeviceLoader(dl, device)


class DataLoaders:
    """A training loader and a validation loader that yield batches on `device`.

    Any iterable of `(x, y)` batches works (plain `torch.utils.data.DataLoader`s are wrapped so
    their batches are moved to the device). `vocab` holds the class names when known.
    """

    def __init__(self, train: Any, valid: Any = None, device: torch.device | str | None = None,
                 vocab: Sequence[str] | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.train = as_loader(train, self.device)
        self.valid = as_loader(valid, self.device)
        self.vocab = list(vocab) if vocab is not None else None
        self.test: Any = None

    @property
    def c(self) -> int | None:
        """Number of classes, when known."""
        return len(self.vocab) if self.vocab is not None else None

    def __getitem__(self, i: int):
        return (self.train, self.valid)[i]

    def __repr__(self) -> str:
        def size(dl):
            return len(dl) if dl is not None and hasattr(dl, "__len__") else "?"

        return (f"DataLoaders(train={size(self.train)} batches, valid={size(self.valid)} batches, "
                f"device={self.device})")
