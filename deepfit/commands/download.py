"""`deepfit download`: fetch a built-in dataset into the cache folder."""

from __future__ import annotations

import argparse

from ..data import fashion_mnist
from .errors import UsageError
from .training import say


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch a built-in dataset into the cache folder."""
    if args.name != "fashion-mnist":
        raise UsageError(f"unknown dataset {args.name!r}", hint="available: fashion-mnist")
    train, test = fashion_mnist(download=True)
    say(f"Fashion-MNIST ready: {len(train)} training and {len(test)} test images")
    return 0
