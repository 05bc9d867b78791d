"""Image transforms: item transforms on PIL images, batch transforms on whole batches on the device.

Item transforms (`Resize`, `CenterCrop`, `RandomResizedCrop`, `RandomCrop`, `Pad`, `Grayscale`,
`Lambda`) run once per image where the image is read (in a loader worker, or once when a folder is
loaded into memory). They are called as `tfm(img, rng=None, train=True)`: `rng` is a `random.Random`
drawn per item, so random crops depend only on `(seed, epoch, item)`, whatever the number of workers;
with `train=False` random transforms fall back to their deterministic validation form.

Batch transforms (`Flip`, `PadCrop`, `Rotate`, `ColorJitter`, `Normalize`) take a float batch
`N×C×H×W` on any device and return one of the same shape and dtype. Random parameters are drawn
from a seeded CPU `torch.Generator` (a few numbers per item) and moved to the batch's device, so
nothing synchronises with the device and a fixed seed gives the same augmentation everywhere.

Each batch transform says whether test-time augmentation may use it (`tta`, settable per instance:
`Flip(tta=False)`); `tta_transforms(tfms)` keeps the augmentations that allow it. `augment_preset(name,
size)` builds the named presets (`AUGMENT_PRESETS`), `crop` being pad-and-crop without flips.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

# --------------------------------------------------------------------------- item transforms (PIL)


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    """`(height, width)` from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class ItemTransform:
    """Base class of per-image transforms: `tfm(img, rng=None, train=True) -> img` on PIL images."""

    random: bool = False

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Resize(ItemTransform):
    """Resize to `size` (int or `(h, w)`).

    `method='squish'` stretches to the exact size; `'crop'` scales so the image covers the size and
    cuts the centre; `'pad'` scales so the image fits inside and pads with black.
    """

    def __init__(self, size: int | Sequence[int], method: str = "crop", resample: int = Image.BILINEAR):
        if method not in ("squish", "crop", "pad"):
            raise ValueError(f"Resize: method must be 'squish', 'crop' or 'pad', got {method!r}")
        self.size, self.method, self.resample = _size2(size), method, resample

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        h, w = self.size
        if img.size == (w, h):
            return img
        if self.method == "squish":
            return img.resize((w, h), self.resample)
        iw, ih = img.size
        scale = max(w / iw, h / ih) if self.method == "crop" else min(w / iw, h / ih)
        nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
        img = img.resize((nw, nh), self.resample)
        if self.method == "crop":
            left, top = (nw - w) // 2, (nh - h) // 2
            return img.crop((left, top, left + w, top + h))
        out = Image.new(img.mode, (w, h))
        out.paste(img, ((w - nw) // 2, (h - nh) // 2))
        return out


class CenterCrop(ItemTransform):
    """Cut the central `size` region (padding with black where the image is smaller)."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _size2(size)

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        h, w = self.size
        iw, ih = img.size
        left, top = (iw - w) // 2, (ih - h) // 2
        return img.crop((left, top, left + w, top + h))


class RandomResizedCrop(ItemTransform):
    """Training: cut a random region covering `scale` of the area with aspect ratio in `ratio`, resize to `size`.

    As in torchvision, `scale` may go above 1 (the notes use `scale=(0.8, 1.1)`): a drawn region that
    does not fit in the image is drawn again, and after 10 misses the validation form is used.
    Validation (`train=False`): `Resize(size, 'crop')`, the centre of the image.
    """

    random = True

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), resample: int = Image.BILINEAR):
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"RandomResizedCrop: scale must satisfy 0 < min <= max, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomResizedCrop: ratio must satisfy 0 < min <= max, got {ratio}")
        self.size, self.scale, self.ratio, self.resample = _size2(size), tuple(scale), tuple(ratio), resample

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        h, w = self.size
        if not train:
            return Resize(self.size, "crop", self.resample)(img)
        rng = rng if rng is not None else random.Random()
        iw, ih = img.size
        area = iw * ih
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            ar = math.exp(rng.uniform(*log_r))
            cw, ch = round(math.sqrt(target * ar)), round(math.sqrt(target / ar))
            if 0 < cw <= iw and 0 < ch <= ih:
                left, top = rng.randint(0, iw - cw), rng.randint(0, ih - ch)
                return img.resize((w, h), self.resample, box=(left, top, left + cw, top + ch))
        return Resize(self.size, "crop", self.resample)(img)


class RandomCrop(ItemTransform):
    """Training: cut a `size` region at a random position (no padding); validation: the centre region.

    An image smaller than `size` is an error naming both sizes, unless `pad_if_needed` pads it first
    (with black, or `fill`). For the CIFAR recipe (pad, then crop back) use the batch transform `PadCrop`.
    """

    random = True

    def __init__(self, size: int | Sequence[int], pad_if_needed: bool = False, fill: int | Sequence[int] = 0):
        self.size, self.pad_if_needed, self.fill = _size2(size), pad_if_needed, fill

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        h, w = self.size
        iw, ih = img.size
        if iw < w or ih < h:
            if not self.pad_if_needed:
                raise ValueError(f"RandomCrop: image is {iw}×{ih} (w×h), smaller than the crop {w}×{h}; "
                                 "resize it first or pass pad_if_needed=True")
            dw, dh = max(0, w - iw), max(0, h - ih)
            img = Pad((dw // 2, dh // 2, dw - dw // 2, dh - dh // 2), fill=self.fill)(img)
            iw, ih = img.size
        if train:
            rng = rng if rng is not None else random.Random()
            left, top = rng.randint(0, iw - w), rng.randint(0, ih - h)
        else:
            left, top = (iw - w) // 2, (ih - h) // 2
        return img.crop((left, top, left + w, top + h))


_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """`(left, top, right, bottom)` from an int, a `(left/right, top/bottom)` pair or a 4-tuple (torchvision's)."""
    if isinstance(padding, int):
        p = (padding,) * 4
    elif len(padding) == 2:
        p = (padding[0], padding[1], padding[0], padding[1])
    elif len(padding) == 4:
        p = tuple(padding)
    else:
        raise ValueError(f"Pad: padding must be an int, 2 or 4 values, got {padding!r}")
    if any(int(v) != v or v < 0 for v in p):
        raise ValueError(f"Pad: padding values must be whole numbers >= 0, got {padding!r}")
    return tuple(int(v) for v in p)  # type: ignore[return-value]


class Pad(ItemTransform):
    """Pad the image's borders, as torchvision's `Pad(padding, fill, padding_mode)`.

    `padding`: an int (all sides), `(left/right, top/bottom)` or `(left, top, right, bottom)`.
    `padding_mode`: 'constant' (with `fill`, a grey level or an RGB triple; default black), 'edge'
    (repeat the border pixels), 'reflect' (mirror without the border pixel), 'symmetric' (with it).
    """

    def __init__(self, padding: int | Sequence[int], fill: int | Sequence[int] = 0, padding_mode: str = "constant"):
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"Pad: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
        self.padding, self.fill, self.padding_mode = _padding4(padding), fill, padding_mode

    def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
        left, top, right, bottom = self.padding
        return size[0] + top + bottom, size[1] + left + right

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        left, top, right, bottom = self.padding
        if not any(self.padding):
            return img
        iw, ih = img.size
        if self.padding_mode == "constant":
            fill = tuple(self.fill) if isinstance(self.fill, (list, tuple)) else self.fill
            if img.mode == "L" and isinstance(fill, tuple):
                raise ValueError(f"Pad: fill {fill} is a colour but the image is grayscale; give one grey level")
            out = Image.new(img.mode, (iw + left + right, ih + top + bottom), fill)
            out.paste(img, (left, top))
            return out
        a = np.asarray(img)
        widths = ((top, bottom), (left, right)) + (((0, 0),) if a.ndim == 3 else ())
        return Image.fromarray(np.pad(a, widths, mode=_PAD_MODES[self.padding_mode]), mode=img.mode)


class Grayscale(ItemTransform):
    """Convert to gray (ITU-R 601 luma, as PIL and torchvision): one channel, or the gray copied to 3."""

    def __init__(self, num_output_channels: int = 1):
        if num_output_channels not in (1, 3):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
        self.num_output_channels = num_output_channels

    def __call__(self, img: Image.Image, rng: random.Random | None = None, train: bool = True) -> Image.Image:
        gray = img.convert("L")
        return gray if self.num_output_channels == 1 else gray.convert("RGB")


class Lambda(ItemTransform):
    """A function as a transform: `Lambda(fn)` calls `fn(x)` (torchvision's `Lambda`).

    As an item transform `x` is a PIL image; in a batch pipeline it is the `N×C×H×W` batch. It is not an
    augmentation for test-time augmentation unless `augment=True, tta=True` say so.
    """

    order: int = 0

    def __init__(self, fn: Callable[[Any], Any], augment: bool = False, tta: bool = False):
        if not callable(fn):
            raise TypeError(f"Lambda: expected a function, got {type(fn).__name__}")
        self.fn, self.augment, self.tta = fn, augment, tta

    def __call__(self, x: Any, rng: random.Random | None = None, train: bool = True) -> Any:
        return self.fn(x)

    def __repr__(self) -> str:
        return f"Lambda({getattr(self.fn, '__name__', repr(self.fn))})"


def apply_item_tfms(img: Image.Image, tfms: Iterable[ItemTransform], rng: random.Random | None = None,
                    train: bool = True) -> Image.Image:
    """Apply item transforms in order."""
    for tfm in tfms:
        img = tfm(img, rng=rng, train=train)
    return img


def final_size(tfms: Sequence[ItemTransform], size: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The `(h, w)` images of size `size` (`None`: unknown) have after `tfms`, or `None` when it is not known.

    Sizing transforms (a `size` attribute) fix it; `Pad` adds to a known size; a `Lambda` makes it unknown.
    """
    for tfm in tfms:
        if isinstance(tfm, Lambda):
            size = None
        elif hasattr(tfm, "out_size"):
            size = tfm.out_size(size) if size is not None else None
        elif getattr(tfm, "size", None) is not None:
            size = tuple(tfm.size)
    return size


# --------------------------------------------------------------------------- batch transforms (tensors)


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """A CPU generator: `generator` itself, else one seeded with `seed` (or from torch's global RNG)."""
    if generator is not None:
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(int(seed))


def _check_batch(x: Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a batch N×C×H×W, got shape {tuple(x.shape)}")


class BatchTransform:
    """Base class of batch transforms: `tfm(x) -> x` on an `N×C×H×W` batch, same shape and dtype.

    `order` sorts transforms in a pipeline (lower first). Random ones draw from `self.generator`.
    `augment`: a random augmentation (not a fixed step such as `Normalize`).
    `tta`: test-time augmentation may apply it, i.e. it keeps the label (class default `True`; pass
    `tta=False`, or set the attribute, for e.g. a flip on digits). See `tta_transforms`.
    """

    order: int = 0
    augment: bool = True
    tta: bool = True

    def __init__(self, p: float = 1.0, seed: int | None = None, generator: torch.Generator | None = None,
                 tta: bool | None = None):
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = p
        self.generator = make_generator(seed, generator)
        if tta is not None:
            self.tta = bool(tta)

    def _uniform(self, n: int, lo: float, hi: float, device) -> Tensor:
        return (torch.rand(n, generator=self.generator) * (hi - lo) + lo).to(device, non_blocking=True)

    def _mask(self, n: int, device) -> Tensor:
        return (torch.rand(n, generator=self.generator) < self.p).to(device, non_blocking=True)

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator" and not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Flip(BatchTransform):
    """Flip each image with probability `p`: `axis='horizontal'` (left-right) or `'vertical'` (up-down)."""

    order = 10

    def __init__(self, p: float = 0.5, axis: str = "horizontal", seed: int | None = None,
                 generator: torch.Generator | None = None, tta: bool | None = None):
        super().__init__(p, seed, generator, tta)
        if axis not in ("horizontal", "vertical"):
            raise ValueError(f"Flip: axis must be 'horizontal' or 'vertical', got {axis!r}")
        self.axis = axis

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "Flip")
        dim = -1 if self.axis == "horizontal" else -2
        mask = self._mask(x.shape[0], x.device).view(-1, 1, 1, 1)
        return torch.where(mask, x.flip(dim), x)


class PadCrop(BatchTransform):
    """Pad by `padding` pixels on each side, then cut a random crop of the original size (the CIFAR recipe).

    `mode`: 'reflect', 'replicate' or 'constant'. Each image gets its own offset. With 'constant' the
    border is the pixel value `fill` (default 0.0: black, like torchvision's `RandomCrop(padding=...)`),
    also when batches are normalized: the loader tells the transform its `mean`/`std` (`set_stats`) and
    the border becomes `(fill - mean) / std` per channel. `fill=None` pads with zeros in the batch's own
    space instead (the mean colour of normalized batches).
    """

    order = 20

    def __init__(self, padding: int = 4, mode: str = "reflect", p: float = 1.0, seed: int | None = None,
                 generator: torch.Generator | None = None, fill: float | None = 0.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, tta: bool | None = None):
        super().__init__(p, seed, generator, tta)
        if padding < 0:
            raise ValueError(f"PadCrop: padding must be >= 0, got {padding}")
        if mode not in ("reflect", "replicate", "constant"):
            raise ValueError(f"PadCrop: mode must be 'reflect', 'replicate' or 'constant', got {mode!r}")
        self.padding, self.mode, self.fill = padding, mode, fill
        self.set_stats(mean, std)

    def set_stats(self, mean: Sequence[float] | Tensor | None, std: Sequence[float] | Tensor | None) -> None:
        """Normalization statistics of the batches this transform will see (`None`: values in [0, 1])."""
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()

    def border_value(self, x: Tensor) -> Tensor | None:
        """The constant border per channel (`1×C×1×1`) in the batch's space, or `None` for zeros."""
        if self.fill is None or (self.fill == 0 and self.mean is None):
            return None
        fill = torch.full((1, x.shape[1], 1, 1), float(self.fill), device=x.device, dtype=x.dtype)
        if self.mean is None:
            return fill
        mean = self.mean.to(x.device, x.dtype).view(1, -1, 1, 1)
        std = self.std.to(x.device, x.dtype).view(1, -1, 1, 1)
        return (fill - mean) / std

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "PadCrop")
        p = self.padding
        if p == 0:
            return x
        n, c, h, w = x.shape
        pad_mode = self.mode if self.mode != "reflect" or (p < h and p < w) else "replicate"
        border = self.border_value(x) if pad_mode == "constant" else None
        if border is None:
            xp = F.pad(x, (p, p, p, p), mode=pad_mode)
        else:  # zero-pad the shifted batch, then shift back: the border becomes `border`
            xp = F.pad(x - border, (p, p, p, p)) + border
        offsets = torch.randint(0, 2 * p + 1, (2, n), generator=self.generator)
        keep = torch.rand(n, generator=self.generator) >= self.p
        offsets[:, keep] = p  # items not augmented get the centre crop, i.e. themselves
        offsets = offsets.to(x.device, non_blocking=True)
        rows = (offsets[0].view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (offsets[1].view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        xp = xp.gather(2, rows.expand(n, c, h, w + 2 * p))
        return xp.gather(3, cols.expand(n, c, h, w))


class Rotate(BatchTransform):
    """Rotate each image by an angle uniform in `[-max_deg, max_deg]` degrees.

    `p` (default 0.5, as fastai's rotation) is the probability that an image is rotated at all; the
    others pass unchanged. torchvision's `RandomRotation(degrees)` rotates every image: that is `p=1.0`.
    Uses `affine_grid` + `grid_sample` (bilinear), with `padding_mode` 'reflection', 'border' or 'zeros'.
    """

    order = 30

    def __init__(self, max_deg: float = 10.0, p: float = 0.5, padding_mode: str = "reflection",
                 seed: int | None = None, generator: torch.Generator | None = None, tta: bool | None = None):
        super().__init__(p, seed, generator, tta)
        if max_deg < 0:
            raise ValueError(f"Rotate: max_deg must be >= 0, got {max_deg}")
        if padding_mode not in ("reflection", "border", "zeros"):
            raise ValueError(f"Rotate: padding_mode must be 'reflection', 'border' or 'zeros', got {padding_mode!r}")
        self.max_deg, self.padding_mode = max_deg, padding_mode

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "Rotate")
        n = x.shape[0]
        angle = torch.rand(n, generator=self.generator) * 2 * self.max_deg - self.max_deg
        angle = torch.where(torch.rand(n, generator=self.generator) < self.p, angle, torch.zeros(n))
        return rotate(x, angle, self.padding_mode)


def rotate(x: Tensor, degrees: Tensor | Sequence[float], padding_mode: str = "reflection") -> Tensor:
    """Rotate each image of `x` by its angle in `degrees` (counter-clockwise on screen), bilinear."""
    if not x.is_floating_point():
        raise TypeError(f"rotate: needs a float batch, got {x.dtype}")
    n, _, h, w = x.shape
    rad = torch.as_tensor(degrees, dtype=torch.float32).cpu() * math.pi / 180
    if rad.shape != (n,):
        raise ValueError(f"rotate: {tuple(rad.shape)} angles for {n} images")
    cos, sin = rad.cos(), rad.sin()
    theta = torch.zeros(n, 2, 3)
    # normalised coordinates stretch x by w and y by h: correct so non-square images rotate rigidly
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    theta = theta.to(device=x.device, dtype=x.dtype, non_blocking=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


_RGB_TO_GRAY = (0.299, 0.587, 0.114)


class ColorJitter(BatchTransform):
    """Random brightness, contrast, saturation and hue changes per image (with probability `p`).

    Factors are drawn uniformly in `[1 - b, 1 + b]` (brightness, contrast, saturation) and the hue
    shift in `[-hue, hue]` turns of the colour wheel (YIQ rotation). Saturation and hue only act
    on 3-channel images. The jitter works on pixel values in [0, 1]: when batches are normalized,
    give the normalization `mean`/`std` (the folder `DataLoaders` builder does this through
    `set_stats`) and the batch is un-normalized, jittered, clamped and normalized again.
    """

    order = 40

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.0,
                 p: float = 1.0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None, tta: bool | None = None):
        super().__init__(p, seed, generator, tta)
        for name, v in dict(brightness=brightness, contrast=contrast, saturation=saturation).items():
            if not 0 <= v < 1:
                raise ValueError(f"ColorJitter: {name} must be in [0, 1), got {v}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"ColorJitter: hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.set_stats(mean, std)

    def set_stats(self, mean: Sequence[float] | Tensor | None, std: Sequence[float] | Tensor | None) -> None:
        """Normalization statistics of the batches this transform will see (`None`: values in [0, 1])."""
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()

    def _factors(self, n: int, amount: float, active: Tensor, device) -> Tensor:
        f = torch.rand(n, generator=self.generator) * 2 * amount + 1 - amount
        return torch.where(active, f, torch.ones(n)).to(device, non_blocking=True).view(n, 1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "ColorJitter")
        n, c = x.shape[:2]
        active = torch.rand(n, generator=self.generator) < self.p
        if self.mean is not None:
            mean = self.mean.to(x.device, x.dtype).view(1, -1, 1, 1)
            std = self.std.to(x.device, x.dtype).view(1, -1, 1, 1)
            x = x * std + mean
        x = x * self._factors(n, self.brightness, active, x.device)
        gray = self._gray(x)
        m = gray.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * self._factors(n, self.contrast, active, x.device) + m
        if c == 3:
            gray = self._gray(x)
            x = gray + (x - gray) * self._factors(n, self.saturation, active, x.device)
            if self.hue > 0:
                shift = torch.rand(n, generator=self.generator) * 2 * self.hue - self.hue
                x = self._rotate_hue(x, torch.where(active, shift, torch.zeros(n)).to(x.device, non_blocking=True))
        x = x.clamp(0, 1)
        if self.mean is not None:
            x = (x - mean) / std
        return x

    @staticmethod
    def _gray(x: Tensor) -> Tensor:
        if x.shape[1] != 3:
            return x.mean(dim=1, keepdim=True)
        w = torch.tensor(_RGB_TO_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)

    @staticmethod
    def _rotate_hue(x: Tensor, turns: Tensor) -> Tensor:
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                              device=x.device, dtype=x.dtype)
        yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
        a = turns * 2 * math.pi
        cos, sin = a.cos().view(-1, 1, 1), a.sin().view(-1, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], i * cos - q * sin, i * sin + q * cos], dim=1)
        return torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), yiq)


class Normalize(BatchTransform):
    """`(x - mean) / std` per channel; `decode` undoes it. Not random, not an augmentation."""

    order = 90
    augment = False
    tta = False

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor):
        self.p = 1.0
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean has {self.mean.numel()} values but std has {self.std.numel()}")
        if (self.std <= 0).any():
            raise ValueError(f"Normalize: std must be > 0, got {self.std.tolist()}")
        self._cache: dict = {}

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        key = (x.device, x.dtype)
        if key not in self._cache:
            if self.mean.numel() not in (1, x.shape[1]):
                raise ValueError(f"Normalize: {self.mean.numel()} channel statistics for a batch with "
                                 f"{x.shape[1]} channels")
            self._cache[key] = (self.mean.to(x.device, x.dtype).view(1, -1, 1, 1),
                                self.std.to(x.device, x.dtype).view(1, -1, 1, 1))
        return self._cache[key]

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "Normalize")
        mean, std = self._stats(x)
        return (x - mean) / std

    def decode(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return x * std + mean


IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def compute_stats(batches: Tensor | Iterable[Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of images scaled to [0, 1].

    `batches` is one tensor `N×C×H×W` (uint8 is divided by 255) or an iterable of such batches.
    """
    if isinstance(batches, Tensor):
        batches = [batches]
    total = total_sq = None
    count = 0
    for xb in batches:
        _check_batch(xb, "compute_stats")
        xb = xb.double() / 255 if xb.dtype == torch.uint8 else xb.double()
        s, s2 = xb.sum(dim=(0, 2, 3)), (xb * xb).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
        count += xb.shape[0] * xb.shape[2] * xb.shape[3]
    if not count:
        raise ValueError("compute_stats: no images")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float().tolist(), std.float().tolist()


def apply_batch_tfms(x: Tensor, tfms: Iterable) -> Tensor:
    """Apply batch transforms sorted by their `order`."""
    for tfm in sorted(tfms, key=lambda t: getattr(t, "order", 0)):
        x = tfm(x)
    return x


def tta_transforms(tfms: Iterable) -> list:
    """The transforms of a pipeline that test-time augmentation may use: augmentations marked `tta`.

    Fixed steps (`Normalize`, a plain `Lambda`) and augmentations built with `tta=False` are left out, as
    are plain functions (which say nothing about themselves). The order of `tfms` is kept.
    """
    return [t for t in tfms if getattr(t, "augment", False) and getattr(t, "tta", False)]


AUGMENT_PRESETS = {
    "none": "no augmentation",
    "flip": "random horizontal flips",
    "crop": "pad-and-crop by 10% of the size, no flips (for digits, text, anything a mirror changes)",
    "standard": "flips + pad-and-crop by 10% of the size",
    "heavy": "flips + pad-and-crop + rotations up to 10 degrees + colour jitter",
}


def augment_preset(name: str, size: int, seed: int = 0) -> list[BatchTransform]:
    """The batch augmentations of preset `name` (see `AUGMENT_PRESETS`) for images `size` pixels wide.

    Transform `i` of a preset is seeded with `seed + i` (flip, pad-and-crop, rotation, colour jitter).
    """
    if name not in AUGMENT_PRESETS:
        raise ValueError(f"augment preset must be one of {sorted(AUGMENT_PRESETS)}, got {name!r}")
    pad = max(1, size // 10)
    if name == "none":
        return []
    if name == "crop":
        return [PadCrop(padding=pad, seed=seed + 1)]
    tfms: list[BatchTransform] = [Flip(seed=seed)]
    if name in ("standard", "heavy"):
        tfms.append(PadCrop(padding=pad, seed=seed + 1))
    if name == "heavy":
        tfms += [Rotate(10.0, seed=seed + 2), ColorJitter(seed=seed + 3)]
    return tfms
