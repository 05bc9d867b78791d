"""The image data of `train-vision` and `lr-find`: a folder of class subfolders or a built-in dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from ..data.blocks import IMAGE_EXTENSIONS, get_image_files
from ..data.builtin import fashion_mnist_loaders
from ..data.transforms import Resize, augment_preset
from ..data.vision import ImageDataLoaders, ImageReadError
from .catalog import BUILTIN
from .errors import CLIError, UsageError

SHOWN_EXTENSIONS = (".png", ".jpg", ".jpeg")


def augment_tfms(preset: str, size: int, seed: int) -> list:
    """The batch transforms of an `--augment` preset for `size`-pixel images (`data.transforms.augment_preset`)."""
    return augment_preset(preset, size, seed=seed)


def image_size(args: argparse.Namespace) -> int | None:
    """The side in pixels of the images `args.data` trains on, where it is known before loading them: 28 for the
    built-in datasets, `--size`, else the longer side of an image folder's first image (None for a CSV)."""
    if args.data in BUILTIN:
        return 28
    if getattr(args, "size", None):
        return args.size
    path = Path(args.data) if args.data is not None else None
    if path is None or not path.is_dir():
        return None
    files = get_image_files(path, extensions=IMAGE_EXTENSIONS)
    if not files:
        return None
    try:
        with Image.open(files[0]) as img:
            return max(img.size)
    except OSError:
        return None


def use_channels_last(dls) -> None:
    """Make every loader of `dls` hand out channels-last (NHWC) batches (after its other transforms)."""
    from ..recipes import ChannelsLast

    for dl in (dls.train, dls.valid, getattr(dls, "test", None)):
        if dl is not None and not any(isinstance(t, ChannelsLast) for t in dl.tfms):
            dl.tfms.append(ChannelsLast())


def build_vision_dls(args: argparse.Namespace, augment: bool = True):
    """The `DataLoaders` for `args.data`; returns `(dls, description)`."""
    data = args.data
    if data is None:
        raise UsageError("missing DATA", hint="give an image folder or 'fashion-mnist' (or --resume RUN_DIR)")
    preset = args.augment if augment else "none"
    if data in BUILTIN:
        return _fashion_mnist(args, preset)
    if getattr(args, "multi_label", False):
        return _multi_label_csv(args, preset)
    path = Path(data)
    _check_folder(path)
    item_tfms = [Resize(args.size)] if args.size else []
    try:
        dls = ImageDataLoaders.from_folder(path, valid_pct=args.valid_pct, seed=args.seed, item_tfms=item_tfms,
                                           batch_tfms=augment_tfms(preset, args.size or 32, args.seed), bs=args.bs,
                                           num_workers=getattr(args, "workers", None),
                                           cache=bool(getattr(args, "cache", False)))
    except ImageReadError as e:
        if "others are" in str(e) and not args.size:
            raise UsageError(f"images in '{path}' differ in size: {str(e).split(';')[0]}",
                             hint="add --size N to resize (and centre-crop) every image to N×N") from None
        raise
    if args.n_train is not None:
        dls.train = _subset_loader(dls.train, args.n_train, args.seed)
    n_train, n_valid = len(dls.items[0]), len(dls.items[1])
    if n_valid == 0:
        raise UsageError(f"DATA folder '{path}' gives no validation images",
                         hint="add a valid/ folder, more images, or a larger --valid-pct")
    return dls, f"{path} ({n_train} training, {n_valid} validation images, classes: {', '.join(dls.vocab)})"


def _fashion_mnist(args: argparse.Namespace, preset: str):
    if args.size is not None and args.size != 28:
        raise UsageError("--size applies to image folders; fashion-mnist images are 28×28")
    try:
        dls = fashion_mnist_loaders(bs=args.bs, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid,
                                    valid_pct=args.valid_pct if args.valid_pct is not None else 0.1,
                                    tfms=augment_tfms(preset, 28, args.seed))
    except FileNotFoundError as e:
        raise CLIError(f"Fashion-MNIST is not available: {e}", hint="run `deepfit download fashion-mnist` "
                       "(or install the Debian package dataset-fashion-mnist)") from None
    return dls, f"fashion-mnist ({len(dls.train.indices)} training, {len(dls.valid.indices)} validation images)"


def _multi_label_csv(args: argparse.Namespace, preset: str):
    """`--multi-label`: DATA is a CSV file (header row; image file relative to the CSV's folder, then its labels
    separated by spaces); a random `--valid-pct` (default 0.2) is held out."""
    path = Path(args.data)
    if not path.is_file() or path.suffix.lower() != ".csv":
        raise UsageError(f"--multi-label: DATA '{path}' is not a CSV file",
                         hint="give a CSV file with a header row: the image file (relative to the CSV's folder), "
                              "then its labels separated by spaces")
    item_tfms = [Resize(args.size)] if args.size else []
    try:
        dls = ImageDataLoaders.from_csv(path.parent, path.name, label_delim=" ",
                                        valid_pct=0.2 if args.valid_pct is None else args.valid_pct, seed=args.seed,
                                        item_tfms=item_tfms, bs=args.bs, num_workers=getattr(args, "workers", None),
                                        batch_tfms=augment_tfms(preset, args.size or 32, args.seed))
    except ImageReadError as e:
        if "others are" in str(e) and not args.size:
            raise UsageError(f"images named in '{path}' differ in size: {str(e).split(';')[0]}",
                             hint="add --size N to resize (and centre-crop) every image to N×N") from None
        raise
    except (KeyError, IndexError, ValueError, FileNotFoundError) as e:
        raise CLIError(f"cannot read the images and labels of '{path}': {e}",
                       hint="the first column names an image file next to the CSV, the second its labels") from None
    if args.n_train is not None:
        dls.train = _subset_loader(dls.train, args.n_train, args.seed)
    n_train, n_valid = len(dls.items[0]), len(dls.items[1])
    if n_valid == 0:
        raise UsageError(f"DATA '{path}' gives no validation images", hint="add rows, or a larger --valid-pct")
    return dls, (f"{path} ({n_train} training, {n_valid} validation images, multi-label: "
                 f"{', '.join(dls.vocab)})")


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"DATA folder '{path}' does not exist",
                         hint=f"give a folder of class subfolders holding images, or one of: {', '.join(BUILTIN)}")
    if not path.is_dir():
        raise UsageError(f"DATA '{path}' is not a folder",
                         hint="give a folder whose subfolders (one per class) hold the images")
    if not get_image_files(path, extensions=IMAGE_EXTENSIONS):
        raise UsageError(f"DATA folder '{path}' has no images (looked for {', '.join(SHOWN_EXTENSIONS)})",
                         hint="put the images in one subfolder per class, e.g. DATA/cat/1.png")


def _subset_loader(dl, n: int, seed: int):
    idx = getattr(dl, "indices", None)
    if idx is None or not hasattr(dl, "new"):
        raise UsageError("--n-train works only on folders small enough to load into memory")
    g = torch.Generator().manual_seed(seed + 1)
    keep = torch.as_tensor(idx)[torch.randperm(len(idx), generator=g)[:n]]
    return dl.new(indices=keep)
