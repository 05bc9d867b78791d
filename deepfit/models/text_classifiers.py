"""Text classifiers: the ULMFiT classifier on an AWD-LSTM encoder, and plain LSTM/BiLSTM classifiers.

Inputs are padded batches of token ids `(bs, seq_len)`. Padding may be on either side: every model
here first moves the padding to the right (`pad_to_right`), so results do not depend on it.

- `SentenceEncoder` runs a stateful encoder over a long text in `bptt`-sized chunks. Only the
  outputs of the chunks that overlap each text's last `max_len` tokens are kept (with gradients);
  earlier chunks run without gradients and only pass their hidden state on.
- `masked_concat_pool` pools the kept outputs into `[last, max, mean]` over non-padding steps.
- `PoolingLinearClassifier`: masked concat pooling → [BatchNorm → Dropout → Linear (→ ReLU)] blocks.
- `LSTMClassifier`: embedding → LSTM (layers, optionally bidirectional) → dropout → linear on the
  last hidden state(s) (forward and backward concatenated); padding is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .awd_lstm import (
    AWD_LSTM,
    AWD_LSTM_CLAS_CONFIG,
    SequentialRNN,
    _split_config,
    _unique_params,
    apply_drop_mult,
    arch_name,
    resolve_arch,
)
from .registry import register


def pad_to_right(x: Tensor, pad_idx: int) -> tuple[Tensor, Tensor]:
    """Move the padding of each row of `x` `(bs, seq_len)` to its end, keeping token order.

    Returns `(x_right_padded, lengths)`; a row made only of padding counts as length 1.
    """
    if x.ndim != 2:
        raise ValueError(f"expected token ids of shape (bs, seq_len), got {tuple(x.shape)}")
    is_pad = x == pad_idx
    order = torch.argsort(is_pad.to(torch.int32), dim=1, stable=True)
    lengths = (~is_pad).sum(1).clamp(min=1)
    return x.gather(1, order), lengths


class SentenceEncoder(nn.Module):
    """Runs `module` (a stateful encoder such as `AWD_LSTM`) over long texts in chunks of `bptt` tokens.

    Returns `(outputs, mask)`: the outputs of the kept chunks `(bs, n_kept, n_out)` and a boolean
    mask `(bs, n_kept)`, True where the step is a real token among the text's last `max_len`.
    The module's state is reset at the start of each batch and carried from chunk to chunk.
    `all_layers=True` calls `module(chunk, all_layers=True)` (an `AWD_LSTM`: the embedding and every
    layer's outputs, concatenated) instead of `module(chunk)`.
    """

    def __init__(self, module: nn.Module, bptt: int = 72, max_len: int = 72 * 20, pad_idx: int = 1,
                 all_layers: bool = False):
        super().__init__()
        if bptt < 1 or max_len < 1:
            raise ValueError(f"SentenceEncoder: bptt and max_len must be >= 1, got {bptt}, {max_len}")
        self.module, self.bptt, self.max_len, self.pad_idx = module, bptt, max_len, pad_idx
        self.all_layers = all_layers

    def _run(self, chunk: Tensor) -> Tensor:
        return self.module(chunk, all_layers=True) if self.all_layers else self.module(chunk)

    def reset(self) -> None:
        if hasattr(self.module, "reset"):
            self.module.reset()

    def forward(self, inp: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths = pad_to_right(inp, self.pad_idx)
        sl = x.size(1)
        keep_from = (lengths - self.max_len).clamp(min=0)
        # chunks that end before every text's kept window run without gradients (one host read, and
        # only for batches longer than max_len)
        first = 0 if sl <= self.max_len else int(keep_from.min()) // self.bptt * self.bptt
        self.reset()
        outs = []
        for i in range(0, sl, self.bptt):
            chunk = x[:, i:i + self.bptt]
            if i + self.bptt <= first:
                with torch.no_grad():
                    self._run(chunk)
            else:
                outs.append(self._run(chunk))
        out = torch.cat(outs, dim=1)
        pos = torch.arange(first, sl, device=x.device)
        mask = (pos < lengths[:, None]) & (pos >= keep_from[:, None])
        return out, mask

    def extra_repr(self) -> str:
        return f"bptt={self.bptt}, max_len={self.max_len}, pad_idx={self.pad_idx}, all_layers={self.all_layers}"


def masked_concat_pool(out: Tensor, mask: Tensor) -> Tensor:
    """`[last, max, mean]` of `out` `(bs, seq, n)` over the steps where `mask` `(bs, seq)` is True → `(bs, 3n)`.

    `last` is the output at each row's last True step. Rows with no True step are invalid input.
    """
    if out.shape[:2] != mask.shape:
        raise ValueError(f"outputs {tuple(out.shape)} and mask {tuple(mask.shape)} disagree")
    seq = mask.size(1)
    last_pos = seq - 1 - mask.flip(1).to(torch.int32).argmax(1)
    last = out[torch.arange(out.size(0), device=out.device), last_pos]
    m = mask.unsqueeze(-1)
    max_pool = out.masked_fill(~m, float("-inf")).max(dim=1).values
    n = mask.sum(1, keepdim=True).clamp(min=1).to(out.dtype)
    mean_pool = out.masked_fill(~m, 0).sum(dim=1) / n
    return torch.cat([last, max_pool, mean_pool], dim=1)


def lin_bn_drop(n_in: int, n_out: int, p: float, act: nn.Module | None) -> list[nn.Module]:
    """BatchNorm1d → Dropout(p) (if p > 0) → Linear → activation (if any)."""
    layers: list[nn.Module] = [nn.BatchNorm1d(n_in)]
    if p > 0:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(n_in, n_out))
    if act is not None:
        layers.append(act)
    return layers


class PoolingLinearClassifier(nn.Module):
    """Masked concat pooling, then `[BatchNorm → Dropout → Linear]` blocks with ReLU between them.

    `dims`: `[3 * n_features, *hidden, n_out]`; `ps`: one dropout probability per block.
    Takes the `(outputs, mask)` pair of a `SentenceEncoder`.
    """

    def __init__(self, dims: Sequence[int], ps: Sequence[float]):
        super().__init__()
        if len(dims) < 2 or len(ps) != len(dims) - 1:
            raise ValueError(f"PoolingLinearClassifier: need len(ps) == len(dims) - 1, got dims={list(dims)}, "
                             f"ps={list(ps)}")
        layers: list[nn.Module] = []
        for i, (a, b, p) in enumerate(zip(dims[:-1], dims[1:], ps)):
            last = i == len(ps) - 1
            layers += lin_bn_drop(a, b, p, None if last else nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, inp: tuple[Tensor, Tensor]) -> Tensor:
        out, mask = inp
        return self.layers(masked_concat_pool(out, mask))


def get_text_classifier(arch: str | type[nn.Module], vocab_sz: int, n_out: int, bptt: int = 72,
                        max_len: int = 72 * 20, lin_ftrs: Sequence[int] = (50,), ps: Sequence[float] | None = None,
                        drop_mult: float = 1.0, feature_layers: str = "last", **config: Any) -> SequentialRNN:
    """`SentenceEncoder(arch)` + `PoolingLinearClassifier`: `(bs, seq_len)` ids → `(bs, n_out)` logits.

    `config` overrides `AWD_LSTM_CLAS_CONFIG` (encoder sizes and dropouts; `output_p` is the
    dropout before the first linear layer of the head). `ps` gives the head's dropouts (default
    `[output_p, 0.1, ...]`); `drop_mult` scales every dropout. `feature_layers`: `"last"` pools the last
    LSTM layer's outputs (ULMFiT's classifier), `"all"` the embedding and every layer's (docs/ulmfit.md).
    """
    if feature_layers not in ("last", "all"):
        raise ValueError(f"feature_layers must be 'last' or 'all', got {feature_layers!r}")
    if n_out < 1:
        raise ValueError(f"n_out (the number of classes) must be >= 1, got {n_out}")
    cls = resolve_arch(arch)
    enc_cfg, head_cfg = _split_config(cls, AWD_LSTM_CLAS_CONFIG, config, ("output_p",))
    enc_cfg = apply_drop_mult(enc_cfg, drop_mult)
    encoder = cls(vocab_sz, **enc_cfg)
    n_feat = encoder.all_layers_sz if feature_layers == "all" else getattr(encoder, "emb_sz", enc_cfg.get("emb_sz"))
    dims = [3 * n_feat, *lin_ftrs, n_out]
    head_ps = [head_cfg["output_p"]] + [0.1] * len(lin_ftrs) if ps is None else list(ps)
    head_ps = [p * drop_mult for p in head_ps]
    pad_idx = enc_cfg.get("pad_token", 1)
    model = SequentialRNN(SentenceEncoder(encoder, bptt, max_len, pad_idx, all_layers=feature_layers == "all"),
                          PoolingLinearClassifier(dims, head_ps))
    # the registered name of this classifier (`awd_lstm` → `awd_lstm_classifier`), so it exports and rebuilds
    model.config = dict(arch=f"{arch_name(cls)}_classifier", vocab_sz=vocab_sz, n_out=n_out, bptt=bptt,
                        max_len=max_len, lin_ftrs=list(lin_ftrs), ps=None if ps is None else list(ps),
                        drop_mult=drop_mult, feature_layers=feature_layers, **config)
    return model


def awd_lstm_classifier(vocab_sz: int, n_out: int, **config: Any) -> SequentialRNN:
    """The ULMFiT classifier: an AWD-LSTM read in chunks, masked concat pooling, a linear head."""
    return get_text_classifier(AWD_LSTM, vocab_sz, n_out, **config)


def awd_lstm_clas_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups of an AWD-LSTM classifier: embedding, each LSTM layer, the head.

    With 3 layers: 5 groups. `freeze_to(-1)` trains the head, `freeze_to(-2)` the last LSTM
    layer too, and so on (ULMFiT's gradual unfreezing).
    """
    encoder = model[0].module
    groups = [_unique_params([encoder.encoder_dp])]
    groups += [_unique_params([rnn]) for rnn in encoder.rnns]
    groups.append(_unique_params([model[1]]))
    return groups


def reverse_index(lengths: Tensor, seq_len: int) -> Tensor:
    """`(bs, seq_len)` gather indices reversing the first `lengths[i]` steps of each row (padding stays last).

    The permutation is its own inverse, so the same index re-aligns reversed outputs.
    """
    pos = torch.arange(seq_len, device=lengths.device).expand(len(lengths), seq_len)
    rev = lengths[:, None] - 1 - pos
    return torch.where(rev >= 0, rev, pos)


def _gather_steps(x: Tensor, idx: Tensor) -> Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class LSTMClassifier(nn.Module):
    """Embedding → LSTM (`n_layers`, optionally bidirectional) → dropout → linear on the last hidden state(s).

    The features are the last layer's state after the last real token (forward direction), concatenated
    with the backward direction's state after the first token when bidirectional. Padding (either side) is
    moved to the right, each direction is a single-layer `nn.LSTM` per layer and the backward one reads each
    row's real tokens reversed (a gather), so padding never reaches a used state, with no packed sequences
    (slow on CPU) and no host sync. `dropout` applies between layers and before the linear layer.
    Use `set_embeddings(weight, freeze)` to start from pretrained vectors (see `load_embeddings`).
    """

    def __init__(self, vocab_sz: int, n_out: int, emb_sz: int = 100, n_hid: int = 256, n_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.5, pad_idx: int = 1):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.config = dict(vocab_sz=vocab_sz, n_out=n_out, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers,
                           bidirectional=bidirectional, dropout=dropout, pad_idx=pad_idx)
        self.pad_idx, self.n_layers, self.bidirectional = pad_idx, n_layers, bidirectional
        n_dir = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_idx)
        sizes = [emb_sz] + [n_hid * n_dir] * (n_layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(n_in, n_hid, batch_first=True) for n_in in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(n_in, n_hid, batch_first=True) for n_in in sizes) if bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_hid * n_dir, n_out)

    def set_embeddings(self, weight: Tensor, freeze: bool = False) -> None:
        """Copy pretrained vectors `(vocab_sz, emb_sz)` into the embedding; `freeze` stops their training."""
        if tuple(weight.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(f"embedding weight of shape {tuple(weight.shape)} does not fit "
                             f"{tuple(self.embedding.weight.shape)} (vocab_sz, emb_sz)")
        with torch.no_grad():
            self.embedding.weight.copy_(weight)
        self.embedding.weight.requires_grad_(not freeze)

    def forward(self, inp: Tensor) -> Tensor:
        x, lengths = pad_to_right(inp, self.pad_idx)
        h = self.embedding(x)
        rev = reverse_index(lengths, x.size(1)) if self.bidirectional else None
        for i in range(self.n_layers):
            f, _ = self.fwd[i](h)
            out = f
            if self.bwd is not None:
                b, _ = self.bwd[i](_gather_steps(h, rev))
                b = _gather_steps(b, rev)  # back in reading order: b[:, t] has read tokens len-1 .. t
                out = torch.cat([f, b], dim=-1)
            h = self.dropout(out) if i < self.n_layers - 1 else out
        last = f[torch.arange(x.size(0), device=x.device), lengths - 1]
        if self.bwd is not None:
            last = torch.cat([last, b[:, 0]], dim=1)
        return self.fc(self.dropout(last))


def bilstm_classifier(vocab_sz: int, n_out: int, **kwargs: Any) -> LSTMClassifier:
    """`LSTMClassifier` reading the text both ways (`bidirectional=True`)."""
    kwargs.setdefault("bidirectional", True)
    return LSTMClassifier(vocab_sz, n_out, **kwargs)


def lstm_classifier_split(model: LSTMClassifier) -> list[list[nn.Parameter]]:
    """Layer groups of an `LSTMClassifier`: embedding, LSTM layers (both directions), head."""
    rnns = [model.fwd] + ([model.bwd] if model.bwd is not None else [])
    return [list(model.embedding.parameters()), _unique_params(rnns), list(model.fc.parameters())]


register("awd_lstm_classifier", awd_lstm_classifier, "classifier")
register("lstm_classifier", LSTMClassifier, "classifier")
register("bilstm_classifier", bilstm_classifier, "classifier")
