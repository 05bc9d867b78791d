"""AWD-LSTM (Merity et al., 2017): a regularised, stateful LSTM language model.

Pieces, each a plain `nn.Module`:

- `EmbeddingDropout`: drops whole rows of the embedding matrix (a word is either seen with its
  full vector, scaled, or as zeros everywhere it occurs in the batch).
- `RNNDropout`: variational dropout; one mask per sequence and feature, shared by every time step.
- `WeightDropout`: DropConnect on the hidden-to-hidden weights of an LSTM. The raw weights stay the
  module's parameters (the optimizer updates them); a dropped copy is used for the forward pass in
  training only, through `torch.func.functional_call`, so the stock CPU/cuDNN LSTM kernels run.
- `AWD_LSTM`: embedding → input dropout → `n_layers` single-layer LSTMs with weight dropout and
  hidden dropout between them. It is stateful: the hidden state is carried (detached) from one
  batch to the next until `reset()`; a batch-size change re-initialises it.
- `LinearDecoder`: output dropout → linear layer to the vocabulary, its weight tied to the embedding.
- `SequentialRNN`: `nn.Sequential` whose `reset()` resets every child that can be reset.

`get_language_model(arch, vocab_sz, **config)` builds encoder + tied decoder; `awd_lstm_lm_split`
gives the layer groups for discriminative learning rates.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .registry import register

#: defaults of the language model (Merity et al.; ULMFiT)
AWD_LSTM_LM_CONFIG: dict[str, Any] = dict(
    emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, hidden_p=0.15, input_p=0.25, embed_p=0.02,
    weight_p=0.2, output_p=0.1, tie_weights=True, out_bias=True,
)
#: defaults of the classifier's encoder and head (ULMFiT)
AWD_LSTM_CLAS_CONFIG: dict[str, Any] = dict(
    emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, hidden_p=0.3, input_p=0.4, embed_p=0.05,
    weight_p=0.5, output_p=0.4,
)
#: the keys of a config that are dropout probabilities (scaled by `drop_mult`)
DROPOUT_KEYS: tuple[str, ...] = ("hidden_p", "input_p", "embed_p", "weight_p", "output_p")


def dropout_mask(x: Tensor, shape: Sequence[int], p: float) -> Tensor:
    """A Bernoulli(1 - p) mask of `shape`, like `x` (dtype, device), scaled by 1 / (1 - p)."""
    return x.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


def _check_p(p: float, name: str) -> float:
    if not 0 <= p < 1:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return float(p)


class RNNDropout(nn.Module):
    """Variational dropout on `(bs, seq_len, n_features)` activations: one mask per sequence.

    The same features are zeroed at every time step of a sequence (a mask of shape
    `(bs, 1, n_features)` broadcast over time). Identity in eval mode or when `p == 0`.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_p(p, "RNNDropout p")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.ndim < 3:
            raise ValueError(f"RNNDropout expects (bs, seq_len, features), got shape {tuple(x.shape)}")
        return x * dropout_mask(x.detach(), (x.size(0), 1, *x.shape[2:]), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(nn.Module):
    """Wraps an `nn.Embedding` and drops whole word vectors (rows of its weight) in training.

    A dropped word maps to the zero vector wherever it occurs in the batch; kept rows are scaled by
    1 / (1 - embed_p). Identity (a plain lookup) in eval mode.
    """

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"EmbeddingDropout wraps an nn.Embedding, got {type(emb).__name__}")
        self.emb = emb
        self.embed_p = _check_p(embed_p, "embed_p")

    def forward(self, words: Tensor, scale: float | None = None) -> Tensor:
        weight = self.emb.weight
        if self.training and self.embed_p != 0:
            weight = weight * dropout_mask(weight.detach(), (weight.size(0), 1), self.embed_p)
        if scale is not None:
            weight = weight * scale
        emb = self.emb
        return F.embedding(words, weight, emb.padding_idx, emb.max_norm, emb.norm_type, emb.scale_grad_by_freq,
                           emb.sparse)

    def extra_repr(self) -> str:
        return f"embed_p={self.embed_p}"


_CUDNN_COMPACT = re.compile(r"RNN module weights are not part of single contiguous chunk")


@contextmanager
def _quiet_cudnn_compaction(active: bool) -> Iterator[None]:
    """Hide cuDNN's 'weights are not part of single contiguous chunk' warning, and only that one.

    With dropped weights the cuDNN kernel must copy them into its flat buffer on every call (that
    copy is the price of DropConnect and is cheap next to the LSTM itself); the warning says nothing
    actionable here.
    """
    if not active:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CUDNN_COMPACT.pattern, category=UserWarning)
        yield


class WeightDropout(nn.Module):
    """DropConnect on some weights of `module` (by default an LSTM's `weight_hh_l0`).

    The raw weights remain the wrapped module's parameters, untouched by the dropout: in training
    each forward samples a dropped copy (`F.dropout(raw, weight_p)`, one mask for the whole
    sequence) and runs the module with it through `torch.func.functional_call`; in eval mode the
    module runs with its raw weights.
    """

    def __init__(self, module: nn.Module, weight_p: float, layer_names: Sequence[str] | str = ("weight_hh_l0",)):
        super().__init__()
        self.module = module
        self.weight_p = _check_p(weight_p, "weight_p")
        self.layer_names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
        params = dict(module.named_parameters())
        missing = [n for n in self.layer_names if n not in params]
        if missing:
            raise ValueError(f"WeightDropout: {type(module).__name__} has no parameter(s) {missing}; "
                             f"it has {sorted(params)}")

    def effective_weights(self) -> dict[str, Tensor]:
        """The weights the next forward uses: dropped copies in training, the raw ones in eval."""
        raw = {n: getattr(self.module, n) for n in self.layer_names}
        if not self.training or self.weight_p == 0:
            return raw
        return {n: F.dropout(w, p=self.weight_p, training=True) for n, w in raw.items()}

    def forward(self, *args: Any) -> Any:
        if not self.training or self.weight_p == 0:
            return self.module(*args)
        weights = self.effective_weights()
        on_cuda = any(w.is_cuda for w in weights.values())
        with _quiet_cudnn_compaction(on_cuda):
            return functional_call(self.module, weights, args)

    def reset(self) -> None:
        if hasattr(self.module, "reset"):
            self.module.reset()

    def extra_repr(self) -> str:
        return f"weight_p={self.weight_p}, layer_names={self.layer_names}"


class AWD_LSTM(nn.Module):  # noqa: N801 - the architecture's name
    """The AWD-LSTM encoder: `(bs, seq_len)` token ids → `(bs, seq_len, emb_sz)` outputs of the last layer.

    Layer sizes: `emb_sz → n_hid → ... → n_hid → emb_sz` (the last layer outputs `emb_sz` so a
    decoder can tie its weight to the embedding). Dropouts: `embed_p` (whole word vectors),
    `input_p` (on the embedded sequence), `weight_p` (DropConnect on hidden-to-hidden weights),
    `hidden_p` (between LSTM layers). The returned outputs are the last layer's, before any
    output dropout (a decoder or a classifier head applies its own).

    Stateful: the hidden state of each layer is kept, detached, for the next batch
    (backpropagation through time truncated at batch boundaries). `reset()` clears it; a batch of a
    different size or on another device re-initialises it to zeros.
    """

    initrange = 0.1

    def __init__(self, vocab_sz: int, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3, pad_token: int = 1,
                 hidden_p: float = 0.3, input_p: float = 0.4, embed_p: float = 0.05, weight_p: float = 0.5):
        super().__init__()
        if vocab_sz < 1 or emb_sz < 1 or n_hid < 1 or n_layers < 1:
            raise ValueError(f"AWD_LSTM: vocab_sz, emb_sz, n_hid and n_layers must be >= 1, got "
                             f"{vocab_sz}, {emb_sz}, {n_hid}, {n_layers}")
        if not 0 <= pad_token < vocab_sz:
            raise ValueError(f"AWD_LSTM: pad_token {pad_token} is not an index of a vocabulary of {vocab_sz}")
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers, pad_token=pad_token,
                           hidden_p=hidden_p, input_p=input_p, embed_p=embed_p, weight_p=weight_p)
        self.vocab_sz, self.emb_sz, self.n_hid, self.n_layers, self.pad_token = (
            vocab_sz, emb_sz, n_hid, n_layers, pad_token)
        emb = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        with torch.no_grad():
            emb.weight.uniform_(-self.initrange, self.initrange)
            emb.weight[pad_token].zero_()
        self.encoder_dp = EmbeddingDropout(emb, embed_p)
        sizes = [emb_sz] + [n_hid] * (n_layers - 1) + [emb_sz]
        self.rnns = nn.ModuleList(
            WeightDropout(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True), weight_p) for i in range(n_layers)
        )
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList(RNNDropout(hidden_p) for _ in range(n_layers - 1))
        self.hidden: list[tuple[Tensor, Tensor]] | None = None

    @property
    def encoder(self) -> nn.Embedding:
        """The embedding (its weight is what a tied decoder shares)."""
        return self.encoder_dp.emb

    def reset(self) -> None:
        """Forget the hidden state; the next batch starts from zeros."""
        self.hidden = None

    def _init_hidden(self, bs: int, ref: Tensor) -> list[tuple[Tensor, Tensor]]:
        sizes = [self.n_hid] * (self.n_layers - 1) + [self.emb_sz]
        return [(ref.new_zeros(1, bs, n), ref.new_zeros(1, bs, n)) for n in sizes]

    @property
    def all_layers_sz(self) -> int:
        """Width of `forward(..., all_layers=True)`: the embedding and every LSTM layer's outputs."""
        return 2 * self.emb_sz + (self.n_layers - 1) * self.n_hid

    def forward(self, inp: Tensor, all_layers: bool = False) -> Tensor:
        """`(bs, seq_len)` ids → the last layer's outputs `(bs, seq_len, emb_sz)`.

        With `all_layers=True`: the embedding (after embedding dropout, before input dropout) and the
        outputs of every LSTM layer (before the dropout between layers), concatenated on the last
        dimension: `(bs, seq_len, all_layers_sz)`.
        """
        if inp.ndim != 2:
            raise ValueError(f"AWD_LSTM expects token ids of shape (bs, seq_len), got {tuple(inp.shape)}")
        bs = inp.size(0)
        emb = self.encoder_dp(inp)
        out = self.input_dp(emb)
        hidden = self.hidden
        if hidden is None or hidden[0][0].size(1) != bs or hidden[0][0].device != out.device:
            hidden = self._init_hidden(bs, out.detach())
        new_hidden, layers = [], [emb]
        for i, rnn in enumerate(self.rnns):
            out, (h, c) = rnn(out, hidden[i])
            new_hidden.append((h.detach(), c.detach()))
            layers.append(out)
            if i < self.n_layers - 1:
                out = self.hidden_dps[i](out)
        self.hidden = new_hidden
        return torch.cat(layers, dim=-1) if all_layers else out


class LinearDecoder(nn.Module):
    """Output dropout (variational) → linear layer to `n_out` (the vocabulary).

    `tie_encoder`: an `nn.Embedding` whose weight becomes this decoder's weight (the same Parameter).
    """

    initrange = 0.1

    def __init__(self, n_out: int, n_hid: int, output_p: float = 0.1, tie_encoder: nn.Embedding | None = None,
                 bias: bool = True):
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        with torch.no_grad():
            self.decoder.weight.uniform_(-self.initrange, self.initrange)
            if bias:
                self.decoder.bias.zero_()
        self.output_dp = RNNDropout(output_p)
        if tie_encoder is not None:
            if tie_encoder.weight.shape != self.decoder.weight.shape:
                raise ValueError(f"cannot tie a decoder of shape {tuple(self.decoder.weight.shape)} to an embedding "
                                 f"of shape {tuple(tie_encoder.weight.shape)}")
            self.decoder.weight = tie_encoder.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.output_dp(x))


class SequentialRNN(nn.Sequential):
    """`nn.Sequential` with `reset()`, which resets the state of every child that has one."""

    def reset(self) -> None:
        for m in self.children():
            if hasattr(m, "reset"):
                m.reset()


# ---------------------------------------------------------------------------------------------- builders
ARCHS: dict[str, type[nn.Module]] = {"awd_lstm": AWD_LSTM}


def resolve_arch(arch: str | type[nn.Module]) -> type[nn.Module]:
    """`'awd_lstm'` or the class itself → the encoder class."""
    if isinstance(arch, str):
        try:
            return ARCHS[arch.lower()]
        except KeyError:
            raise KeyError(f"unknown text architecture {arch!r}; known: {', '.join(sorted(ARCHS))}") from None
    if isinstance(arch, type) and issubclass(arch, nn.Module):
        return arch
    raise TypeError(f"arch must be a name or an nn.Module class, got {arch!r}")


def arch_name(arch: type[nn.Module]) -> str:
    for name, cls in ARCHS.items():
        if cls is arch:
            return name
    return arch.__name__


def apply_drop_mult(config: dict[str, Any], drop_mult: float) -> dict[str, Any]:
    """A copy of `config` with every dropout probability multiplied by `drop_mult`."""
    if drop_mult < 0:
        raise ValueError(f"drop_mult must be >= 0, got {drop_mult}")
    return {k: (v * drop_mult if k in DROPOUT_KEYS else v) for k, v in config.items()}


def _split_config(arch: type[nn.Module], defaults: dict[str, Any], config: dict[str, Any],
                  head_keys: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    full = {**defaults, **config}
    arch_keys = set(inspect.signature(arch.__init__).parameters) - {"self", "vocab_sz"}
    unknown = set(full) - arch_keys - set(head_keys)
    if unknown:
        raise TypeError(f"unknown config keys for {arch.__name__}: {sorted(unknown)}; "
                        f"known: {sorted(arch_keys | set(head_keys))}")
    return ({k: v for k, v in full.items() if k in arch_keys}, {k: v for k, v in full.items() if k in head_keys})


def get_language_model(arch: str | type[nn.Module], vocab_sz: int, drop_mult: float = 1.0,
                       **config: Any) -> SequentialRNN:
    """Encoder + tied `LinearDecoder`: `(bs, seq_len)` ids → `(bs, seq_len, vocab_sz)` logits.

    `config` overrides `AWD_LSTM_LM_CONFIG` (encoder sizes and dropouts, `output_p`,
    `tie_weights`, `out_bias`); `drop_mult` scales every dropout probability.
    """
    cls = resolve_arch(arch)
    enc_cfg, dec_cfg = _split_config(cls, AWD_LSTM_LM_CONFIG, config, ("output_p", "tie_weights", "out_bias"))
    enc_cfg = apply_drop_mult(enc_cfg, drop_mult)
    encoder = cls(vocab_sz, **enc_cfg)
    tie = encoder.encoder if dec_cfg["tie_weights"] else None
    n_hid = getattr(encoder, "emb_sz", enc_cfg.get("emb_sz"))
    decoder = LinearDecoder(vocab_sz, n_hid, output_p=dec_cfg["output_p"] * drop_mult, tie_encoder=tie,
                            bias=dec_cfg["out_bias"])
    model = SequentialRNN(encoder, decoder)
    # the registered name of this language model (`awd_lstm` → `awd_lstm_lm`), so it exports and rebuilds
    model.config = dict(arch=f"{arch_name(cls)}_lm", vocab_sz=vocab_sz, drop_mult=drop_mult, **config)
    return model


def awd_lstm_lm(vocab_sz: int, **config: Any) -> SequentialRNN:
    """The AWD-LSTM language model: encoder + decoder tied to its embedding (`get_language_model`)."""
    return get_language_model(AWD_LSTM, vocab_sz, **config)


def _unique_params(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def awd_lstm_lm_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups of an AWD-LSTM language model: one per LSTM layer, then embedding + decoder.

    The tied embedding/decoder weight sits in the last group (it is trained with the head, as in
    ULMFiT's fine-tuning of a language model).
    """
    encoder, decoder = model[0], model[1]
    groups: list[list[nn.Parameter]] = [_unique_params([rnn]) for rnn in encoder.rnns]
    groups.append(_unique_params([encoder.encoder_dp, decoder]))
    return groups


register("awd_lstm", AWD_LSTM, "encoder")
register("awd_lstm_lm", awd_lstm_lm, "lm")
