"""Helpers for the vision data and transfer tests: real Fashion-MNIST subsets, as tensors or PNG folders."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from deepfit.data import DataLoaders, TensorLoader, fashion_mnist
from deepfit.data.external import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from deepfit.models import conv_bn_relu

_CACHE: dict = {}


def fmnist():
    if "data" not in _CACHE:
        _CACHE["data"] = fashion_mnist()
    return _CACHE["data"]


def class_folder_name(name: str) -> str:
    return name.replace("/", "_")


def pick(labels: torch.Tensor, classes, n_per_class: int, seed: int) -> torch.Tensor:
    """`n_per_class` seeded random indices of each class in `classes`."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
    return torch.cat(out)


def write_fmnist_folder(root: Path, n_train: int, n_valid: int, seed: int = 0) -> Path:
    """`root/train/<class>/<i>.png` from training images and `root/valid/<class>/<i>.png` from test images."""
    train, test = fmnist()
    for split, data, n in (("train", train, n_train), ("valid", test, n_valid)):
        for i in pick(data.labels, range(10), n, seed).tolist():
            folder = root / split / class_folder_name(data.classes[int(data.labels[i])])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i].numpy(), mode="L").save(folder / f"{i}.png", compress_level=1)
    return root


def subset_loaders(classes, n_train: int, n_valid: int, bs: int = 64, seed: int = 0, tfms=(),
                   drop_last: bool = False) -> DataLoaders:
    """In-memory DataLoaders over the given Fashion-MNIST classes, labels renumbered 0..len(classes)-1."""
    train, test = fmnist()
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[list(classes)] = torch.arange(len(classes))
    stats = dict(mean=[FASHION_MNIST_MEAN], std=[FASHION_MNIST_STD], device="cpu")
    tr = pick(train.labels, classes, n_train, seed)
    va = pick(test.labels, classes, n_valid, seed)
    x_tr, y_tr = train.images[tr].unsqueeze(1), remap[train.labels[tr]]
    x_va, y_va = test.images[va].unsqueeze(1), remap[test.labels[va]]
    vocab = [train.classes[c] for c in classes]
    train_dl = TensorLoader(x_tr, y_tr, bs=bs, shuffle=True, seed=seed, tfms=tfms, drop_last=drop_last, **stats)
    return DataLoaders(train_dl, TensorLoader(x_va, y_va, bs=256, **stats), device="cpu", vocab=vocab)


def tiny_cnn(c_in: int = 1, n_out: int = 10, width: int = 16) -> nn.Sequential:
    """Three stride-2 conv blocks, global average pool, linear: cheap enough for CPU tests."""
    return nn.Sequential(conv_bn_relu(c_in, width, stride=2), conv_bn_relu(width, width * 2, stride=2),
                         conv_bn_relu(width * 2, width * 4, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width * 4, n_out))
