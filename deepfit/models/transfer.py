"""`TransferModel`: a registered architecture's body plus a new classification head, rebuildable from JSON.

It has the layout of `vision_learner`'s model (`nn.Sequential(body, head)`, state-dict keys `0.*`
and `1.*`, layer groups `[body, head]` with `vision_splitter`), but records its constructor
arguments in `self.config`, so `learn.export` / `load_learner` can rebuild it (registered as
`'transfer'`). Weights are loaded by the caller (`deepfit.learner.vision.load_body_weights`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from torch import nn

from .heads import adapt_input_channels, create_body, create_head, num_features


def _takes_c_in(builder) -> bool:
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return False
    return "c_in" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class TransferModel(nn.Sequential):
    """`nn.Sequential(body, head)`: `arch` (a name in `MODELS`) cut before its final pooling, plus `create_head`.

    Args:
        arch: registered architecture name (`deepfit.models.MODELS`).
        n_out: number of classes.
        c_in: input channels (the first convolution is adapted when the architecture cannot take it).
        cut: index of the first child dropped from the architecture (default: its last pooling layer).
        lin_ftrs, ps, concat_pool: see `create_head`.
        arch_kwargs: extra constructor arguments of the architecture (e.g. `widths`).
    """

    def __init__(self, arch: str, n_out: int, c_in: int = 3, cut: int | None = None,
                 lin_ftrs: Sequence[int] | None = None, ps: float = 0.5, concat_pool: bool = True,
                 arch_kwargs: dict | None = None):
        from . import MODELS

        if arch not in MODELS or arch == "transfer":
            raise KeyError(f"unknown architecture {arch!r} for a transfer model; registered: "
                           f"{', '.join(sorted(k for k in MODELS if k != 'transfer'))}")
        builder = MODELS[arch]
        kwargs = dict(arch_kwargs or {})
        if _takes_c_in(builder):
            kwargs.setdefault("c_in", c_in)
        body = create_body(builder(**kwargs), cut)
        adapt_input_channels(body, c_in)
        head = create_head(num_features(body, c_in=c_in), n_out, lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool)
        super().__init__(body, head)
        self.config = dict(arch=arch, n_out=n_out, c_in=c_in, cut=cut,
                           lin_ftrs=None if lin_ftrs is None else list(lin_ftrs), ps=ps, concat_pool=concat_pool,
                           arch_kwargs=dict(arch_kwargs or {}))
