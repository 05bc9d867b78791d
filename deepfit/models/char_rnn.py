"""Character-level language models (the lesson-7 progression): a hand-unrolled RNN, `nn.RNN`, then stateful
sequence models trained with backpropagation through time over `nn.RNN`, a loop over an RNN cell, a loop
over a GRU cell, `nn.GRU` and a multi-layer `nn.LSTM` with dropout.

Batch layout: every model here takes token ids `(bs, seq_len)` and returns scores `(bs, seq_len, vocab_sz)`
(deepfit's LM loaders give `(bs, seq_len)`). With `batch_first=False` a model takes the notes' (and
torchtext's) `(seq_len, bs)` and returns `(seq_len, bs, vocab_sz)`. The two layouts are not interchangeable:
a `(bs, seq_len)` batch fed to a `batch_first=False` model runs without error and learns across the wrong
axis. The models return raw scores (train them with `FlatCrossEntropyLoss`; the notes' `log_softmax` lives
in the loss).

Every model takes the language-model keywords `vocab_sz`, `emb_sz` (the notes' `n_fac`), `n_hid` (the
notes' `n_hidden`) and `n_layers`. Stateful models keep `self.hidden` `(n_layers, bs, n_hid)` between calls:
it is detached after each forward (so gradients stop at the batch boundary and the graph does not grow
across batches) and re-initialised with zeros when the batch size or the device changes; `reset()` forgets
it (see `deepfit.text.RNNResetCallback`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register
from .rnn_cells import GRUCell, RNNCell

Hidden = Tensor | tuple[Tensor, Tensor]


def detach_hidden(h: Hidden) -> Hidden:
    """Keep the values of a hidden state, drop its history."""
    return h.detach() if isinstance(h, Tensor) else tuple(detach_hidden(x) for x in h)


def to_batch_first(x: Tensor, batch_first: bool, model: str) -> Tensor:
    """Token ids `(bs, seq_len)`, from `x` in the model's layout (`(seq_len, bs)` when not batch-first)."""
    if x.ndim != 2:
        layout = "(bs, seq_len)" if batch_first else "(seq_len, bs)"
        raise ValueError(f"{model} expects token ids {layout}, got shape {tuple(x.shape)}")
    return x if batch_first else x.t()


def from_batch_first(out: Tensor, batch_first: bool) -> Tensor:
    """Scores `(bs, seq_len, V)` back in the model's layout."""
    return out if batch_first else out.transpose(0, 1).contiguous()


class CharLoopModel(nn.Module):
    """A recurrent net written as a plain loop: `h = tanh(W_h (h + relu(W_in e(c))))` at every step, starting
    from zeros at each batch; predicts the next character at every step. One layer (`n_layers` must be 1)."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256, n_layers: int = 1,
                 batch_first: bool = True):
        super().__init__()
        if n_layers != 1:
            raise ValueError(f"CharLoopModel is the notes' one-layer loop; n_layers must be 1, got {n_layers}")
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers, batch_first=batch_first)
        self.n_hid, self.batch_first = n_hid, batch_first
        self.e = nn.Embedding(vocab_sz, emb_sz)
        self.l_in = nn.Linear(emb_sz, n_hid)
        self.l_hidden = nn.Linear(n_hid, n_hid)
        self.l_out = nn.Linear(n_hid, vocab_sz)

    def forward(self, x: Tensor) -> Tensor:
        x = to_batch_first(x, self.batch_first, type(self).__name__)
        emb = self.e(x)
        h = emb.new_zeros(x.shape[0], self.n_hid)
        outs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.l_hidden(h + F.relu(self.l_in(emb[:, t]))))
            outs.append(h)
        return from_batch_first(self.l_out(torch.stack(outs, dim=1)), self.batch_first)


class CharRnn(nn.Module):
    """`nn.RNN` over the sequence, hidden state from zeros at each batch."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256, n_layers: int = 1,
                 batch_first: bool = True):
        super().__init__()
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers, batch_first=batch_first)
        self.batch_first = batch_first
        self.e = nn.Embedding(vocab_sz, emb_sz)
        self.rnn = nn.RNN(emb_sz, n_hid, n_layers, batch_first=True)
        self.l_out = nn.Linear(n_hid, vocab_sz)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.e(to_batch_first(x, self.batch_first, type(self).__name__)))
        return from_batch_first(self.l_out(out), self.batch_first)


class StatefulCharModel(nn.Module):
    """Base of the stateful models: embedding -> recurrent core -> dropout -> linear, with the hidden state
    carried over.

    Subclasses build `self.rnn` and may override `_run(emb, hidden) -> (out, hidden)`, which works
    batch-first: `emb` `(bs, seq_len, emb_sz)`, `hidden` `(n_layers, bs, n_hid)` (a pair for an LSTM).
    """

    is_lstm = False

    def __init__(self, vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int = 1, dropout: float = 0.0,
                 batch_first: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"{type(self).__name__}: n_layers must be >= 1, got {n_layers}")
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers, batch_first=batch_first)
        self.vocab_sz, self.n_hid, self.n_layers, self.batch_first = vocab_sz, n_hid, n_layers, batch_first
        self.e = nn.Embedding(vocab_sz, emb_sz)
        self.drop = nn.Dropout(dropout)
        self.l_out = nn.Linear(n_hid, vocab_sz)
        self.hidden: Hidden | None = None

    def reset(self) -> None:
        """Forget the hidden state (the next batch starts from zeros)."""
        self.hidden = None

    def init_hidden(self, bs: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Hidden:
        h = torch.zeros(self.n_layers, bs, self.n_hid, device=device, dtype=dtype)
        return (h, torch.zeros_like(h)) if self.is_lstm else h

    def _current_hidden(self, x: Tensor, dtype: torch.dtype) -> Hidden:
        h = self.hidden
        ref = h[0] if isinstance(h, tuple) else h
        if ref is None or ref.shape[1] != x.shape[0] or ref.device != x.device or ref.dtype != dtype:
            h = self.init_hidden(x.shape[0], x.device, dtype)
        return h

    def _run(self, emb: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
        return self.rnn(emb, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = to_batch_first(x, self.batch_first, type(self).__name__)
        emb = self.e(x)
        out, h = self._run(emb, self._current_hidden(x, emb.dtype))
        self.hidden = detach_hidden(h)
        return from_batch_first(self.l_out(self.drop(out)), self.batch_first)


class CharSeqRnn(StatefulCharModel):
    """Stateful `nn.RNN` trained with backpropagation through time."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256, n_layers: int = 1,
                 batch_first: bool = True):
        super().__init__(vocab_sz, emb_sz, n_hid, n_layers, batch_first=batch_first)
        self.rnn = nn.RNN(emb_sz, n_hid, n_layers, batch_first=True)


class CellLoopModel(StatefulCharModel):
    """Base of the stateful loops over a cell, one cell per layer (what `nn.RNN`/`nn.GRU` do inside).

    `scratch=True` uses deepfit's hand-written cells (`deepfit.models.rnn_cells`, the notes' maths) instead of
    PyTorch's; both have the same parameters, so their state dicts are interchangeable.
    """

    torch_cell: type[nn.Module] = nn.RNNCell
    scratch_cell: type[nn.Module] = RNNCell

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256, n_layers: int = 1, scratch: bool = False,
                 batch_first: bool = True):
        super().__init__(vocab_sz, emb_sz, n_hid, n_layers, batch_first=batch_first)
        self.config.update(scratch=scratch)
        cell = self.scratch_cell if scratch else self.torch_cell
        self.cells = nn.ModuleList(cell(emb_sz if i == 0 else n_hid, n_hid) for i in range(n_layers))

    def _run(self, emb: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        hs = list(hidden.unbind(0))
        outs = []
        for t in range(emb.shape[1]):
            inp = emb[:, t]
            for i, cell in enumerate(self.cells):
                hs[i] = cell(inp, hs[i])
                inp = hs[i]
            outs.append(inp)
        return torch.stack(outs, dim=1), torch.stack(hs, dim=0)


class CharSeqRnnCell(CellLoopModel):
    """Stateful loop over an RNN cell (`nn.RNNCell`, or deepfit's `RNNCell` with `scratch=True`)."""


class CharSeqGruCell(CellLoopModel):
    """Stateful loop over a GRU cell (`nn.GRUCell`, or deepfit's `GRUCell` with `scratch=True`)."""

    torch_cell = nn.GRUCell
    scratch_cell = GRUCell


class CharSeqGru(StatefulCharModel):
    """Stateful `nn.GRU`."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256, n_layers: int = 1,
                 dropout: float = 0.0, batch_first: bool = True):
        super().__init__(vocab_sz, emb_sz, n_hid, n_layers, dropout, batch_first)
        self.config.update(dropout=dropout)
        self.rnn = nn.GRU(emb_sz, n_hid, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)


class CharSeqLstm(StatefulCharModel):
    """Stateful multi-layer `nn.LSTM`, with `dropout` between layers and on the last layer's outputs."""

    is_lstm = True

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256, n_layers: int = 2,
                 dropout: float = 0.5, batch_first: bool = True):
        super().__init__(vocab_sz, emb_sz, n_hid, n_layers, dropout, batch_first)
        self.config.update(dropout=dropout)
        self.rnn = nn.LSTM(emb_sz, n_hid, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)


register("char_loop", CharLoopModel, "lm")
register("char_rnn", CharRnn, "lm")
register("char_seq_rnn", CharSeqRnn, "lm")
register("char_seq_rnncell", CharSeqRnnCell, "lm")
register("char_seq_grucell", CharSeqGruCell, "lm")
register("char_seq_gru", CharSeqGru, "lm")
register("char_seq_lstm", CharSeqLstm, "lm")

__all__ = ["CellLoopModel", "CharLoopModel", "CharRnn", "CharSeqGru", "CharSeqGruCell", "CharSeqLstm", "CharSeqRnn",
           "CharSeqRnnCell", "StatefulCharModel", "detach_hidden"]
