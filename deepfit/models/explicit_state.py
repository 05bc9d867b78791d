"""Stateful language models with their hidden state as an explicit input and output, for export.

deepfit's recurrent language models keep their hidden state inside the module (`model.hidden`, carried
from batch to batch). An exported graph (ONNX, TorchScript, `torch.export`) cannot hold such state, so
`ExplicitState(model)` wraps a model in eval mode as a pure function:

    logits, *new_state = wrapper(token_ids, *state)

`state` is a flat list of tensors named by `wrapper.state_names`; `wrapper.initial_state(bs)` gives the
zeros a sequence starts from. Feeding each call's `new_state` to the next call reproduces the stateful
model exactly (generation one token at a time, or a long text in pieces).

Supported: the AWD-LSTM language model (`awd_lstm_lm`: `h0, c0, h1, c1, ...`, each `(1, bs, size)`) and the
stateful char models (`char_seq_*`: `h` `(n_layers, bs, n_hid)`, plus `c` for the LSTM). Models that start
from zeros at every batch (`char_loop`, `char_rnn`) have no state to carry and export as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .awd_lstm import AWD_LSTM
from .char_rnn import CellLoopModel, StatefulCharModel, from_batch_first, to_batch_first


def _awd_parts(model: nn.Module) -> tuple[AWD_LSTM, nn.Module] | None:
    """`(encoder, decoder)` of an AWD-LSTM language model (`SequentialRNN(AWD_LSTM, decoder)`), else None."""
    children = list(model.children()) if isinstance(model, nn.Sequential) else []
    if len(children) == 2 and isinstance(children[0], AWD_LSTM):
        return children[0], children[1]
    return None


def has_hidden_state(model: nn.Module) -> bool:
    """Whether `model` carries a hidden state between calls that `ExplicitState` can expose."""
    return isinstance(model, StatefulCharModel) or _awd_parts(model) is not None


class ExplicitState(nn.Module):
    """`forward(x, *state) -> (output, *new_state)` around a stateful language model (see the module docstring).

    The wrapped model is shared, not copied, and put in eval mode (dropout off): the wrapper is for inference
    and export. Its own `hidden` attribute is neither read nor changed.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        awd = _awd_parts(model)
        if awd is None and not isinstance(model, StatefulCharModel):
            raise TypeError(f"ExplicitState: {type(model).__name__} has no hidden state to expose; supported are "
                            "the AWD-LSTM language model and the stateful char models (char_seq_*)")
        self.model = model
        batch_first = getattr(model, "batch_first", True)
        #: the axes of the token ids (and of the output) that hold the batch and the time steps
        self.batch_dim, self.seq_dim = (0, 1) if batch_first else (1, 0)
        #: True for models that loop over time steps in Python: a traced or exported graph is unrolled for the
        #: example's sequence length and takes only that length
        self.fixed_length = isinstance(model, CellLoopModel)
        if awd is not None:
            enc = awd[0]
            sizes = [enc.n_hid] * (enc.n_layers - 1) + [enc.emb_sz]
            self.state_shapes = [(1, n) for n in sizes for _ in "hc"]
            self.state_names = [f"{k}{i}" for i in range(enc.n_layers) for k in "hc"]
        else:
            shape = (model.n_layers, model.n_hid)
            self.state_names = ["h", "c"] if model.is_lstm else ["h"]
            self.state_shapes = [shape] * len(self.state_names)
        self.eval()

    def initial_state(self, bs: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                      ) -> list[Tensor]:
        """The zero state a sequence starts from, for a batch of `bs`: one tensor per `state_names` entry."""
        return [torch.zeros(lead, bs, n, device=device, dtype=dtype) for lead, n in self.state_shapes]

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        if len(state) != len(self.state_names):
            raise ValueError(f"ExplicitState: expected {len(self.state_names)} state tensors "
                             f"({', '.join(self.state_names)}), got {len(state)}")
        awd = _awd_parts(self.model)
        if awd is not None:
            return self._awd(awd[0], awd[1], x, state)
        return self._char(self.model, x, state)

    @staticmethod
    def _awd(enc: AWD_LSTM, decoder: nn.Module, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if x.ndim != 2:
            raise ValueError(f"AWD_LSTM expects token ids of shape (bs, seq_len), got {tuple(x.shape)}")
        out = enc.input_dp(enc.encoder_dp(x))
        new_state: list[Tensor] = []
        for i, rnn in enumerate(enc.rnns):
            out, (h, c) = rnn(out, (state[2 * i], state[2 * i + 1]))
            new_state += [h, c]
            if i < enc.n_layers - 1:
                out = enc.hidden_dps[i](out)
        return (decoder(out), *new_state)

    @staticmethod
    def _char(model: StatefulCharModel, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        x = to_batch_first(x, model.batch_first, type(model).__name__)
        emb = model.e(x)
        hidden = (state[0], state[1]) if model.is_lstm else state[0]
        out, h = model._run(emb, hidden)
        logits = from_batch_first(model.l_out(model.drop(out)), model.batch_first)
        return (logits, *h) if model.is_lstm else (logits, h)


__all__ = ["ExplicitState", "has_hidden_state"]
