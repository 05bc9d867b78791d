"""Readers for standard dataset files: the idx format of (Fashion-)MNIST.

`fashion_mnist()` looks for the four `.gz` files in this order, taking the first folder that has
all of them:

1. the `path` argument, when given;
2. `$DEEPFIT_DATA/fashion-mnist` (default `~/.cache/deepfit/fashion-mnist`);
3. `/usr/share/datasets/fashion-mnist` (the Debian package `dataset-fashion-mnist`);

and, when none has them and `download=True`, downloads the official files into (2) and verifies
their sizes and SHA-256.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .download import cache_dir, download_file

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
# Sizes in bytes of the same files (those of the Debian package dataset-fashion-mnist, whose SHA-256 match).
FASHION_MNIST_SIZES = {
    "train-images-idx3-ubyte.gz": 26421856,
    "train-labels-idx1-ubyte.gz": 29491,
    "t10k-images-idx3-ubyte.gz": 4422079,
    "t10k-labels-idx1-ubyte.gz": 5125,
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Per-pixel statistics of the training images (scaled to [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file and what is wrong."""


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a NumPy array, checking its header and size."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path}: cannot read idx data ({e})") from e
    if len(raw) < 4:
        raise DataFormatError(f"{path}: file is truncated (only {len(raw)} bytes, no idx header)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise DataFormatError(f"{path}: bad magic number 0x{raw[:4].hex()} (expected 0x000008NN for uint8 "
                              "idx data)")
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataFormatError(f"{path}: bad magic number 0x{raw[:4].hex()}: {ndim} dimensions, "
                              f"expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataFormatError(f"{path}: file is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    got = len(raw) - header_len
    if got != expected:
        kind = "truncated" if got < expected else "longer than its header says"
        raise DataFormatError(f"{path}: file is {kind}: header says shape {tuple(shape)} = {expected} bytes "
                              f"of data, found {got}")
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)


def _find_folder(names, path: str | Path | None, download: bool) -> Path:
    candidates = ([Path(path)] if path is not None else []) + [cache_dir() / "fashion-mnist",
                                                                 DEBIAN_FASHION_MNIST]
    for folder in candidates:
        if all((folder / n).exists() for n in names):
            return folder
    if path is not None and not download:
        missing = [n for n in names if not (Path(path) / n).exists()]
        raise FileNotFoundError(f"{path}: missing Fashion-MNIST files {missing}")
    if not download:
        raise FileNotFoundError("Fashion-MNIST not found in " + ", ".join(str(c) for c in candidates)
                                + "; install the Debian package dataset-fashion-mnist or call "
                                "fashion_mnist(download=True)")
    folder = cache_dir() / "fashion-mnist"
    for name in names:
        download_file(FASHION_MNIST_URL + name, folder / name, sha256=FASHION_MNIST_FILES[name],
                      size=FASHION_MNIST_SIZES[name])
    return folder


@dataclass
class ImageClassificationData:
    """Images (uint8, N×H×W or N×C×H×W), integer labels and class names."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_image_label_pair(images_path: Path, labels_path: Path, classes) -> ImageClassificationData:
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if len(images) != len(labels):
        raise DataFormatError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} "
                              "labels")
    if len(labels) and int(labels.max()) >= len(classes):
        raise DataFormatError(f"{labels_path}: label {int(labels.max())} out of range for {len(classes)} classes")
    return ImageClassificationData(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                                   tuple(classes))


def fashion_mnist(path: str | Path | None = None, download: bool = False
                  ) -> tuple[ImageClassificationData, ImageClassificationData]:
    """Fashion-MNIST as `(train, test)`: 60,000 and 10,000 uint8 28×28 images with labels.

    See the module docstring for where the files are looked for.
    """
    folder = _find_folder(list(FASHION_MNIST_FILES), path, download)
    train = read_image_label_pair(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz",
                                  FASHION_MNIST_CLASSES)
    test = read_image_label_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz",
                                 FASHION_MNIST_CLASSES)
    return train, test
