"""`SequentialModel`: an `nn.Sequential` subclass whose slices are plain `nn.Sequential`s.

`nn.Sequential.__getitem__(slice)` rebuilds the slice with `type(self)(OrderedDict)`, which fails for
subclasses whose constructors take architecture arguments (`XResNet`, `VGG`, ...). Slicing one of
these returns an `nn.Sequential` holding the same modules, under the same names, instead.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class SequentialModel(nn.Sequential):
    """Base of the registered `nn.Sequential` architectures: `model[a:b]` is an `nn.Sequential`."""

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


__all__ = ["SequentialModel"]
