"""Loss for sequence outputs."""

from __future__ import annotations

from torch import Tensor, nn


class FlatCrossEntropyLoss(nn.CrossEntropyLoss):
    """Cross-entropy over scores `(..., n_classes)` and targets `(...)`, both flattened first.

    For language models: `pred` `(bs, seq_len, vocab)`, `y` `(bs, seq_len)`. With `reduction='none'` the
    per-token losses come back in the target's shape. Being an `nn.CrossEntropyLoss`, `get_preds` applies a
    softmax to its predictions.
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape[:-1] != target.shape:
            raise ValueError(f"FlatCrossEntropyLoss: predictions {tuple(pred.shape)} do not match targets "
                             f"{tuple(target.shape)} (expected pred = target shape + (n_classes,))")
        loss = super().forward(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))
        return loss.view(target.shape) if self.reduction == "none" else loss
