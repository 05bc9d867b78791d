"""Character-level language models (the lesson-7 progression): a hand-unrolled RNN, `nn.RNN`, then stateful
sequence models trained with backpropagation through time over `nn.RNN`, an `nn.RNNCell` loop, `nn.GRU` and a
multi-layer `nn.LSTM` with dropout.

Every model takes `x` of shape `(bs, seq_len)` (token ids) and returns scores `(bs, seq_len, vocab_size)`.
Stateful models keep `self.hidden` between calls: it is detached after each forward (so gradients stop at the
batch boundary and the graph does not grow across batches) and re-initialised with zeros when the batch size or
the device changes; `reset()` forgets it (see `deepfit.text.RNNResetCallback`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Hidden = Tensor | tuple[Tensor, Tensor]


def detach_hidden(h: Hidden) -> Hidden:
    """Keep the values of a hidden state, drop its history."""
    return h.detach() if isinstance(h, Tensor) else tuple(detach_hidden(x) for x in h)


class CharLoopModel(nn.Module):
    """A recurrent net written as a plain loop: `h = tanh(W_h (h + relu(W_in e(c))))` at every step, starting
    from zeros at each batch; predicts the next character at every step."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, n_fac=n_fac, n_hidden=n_hidden)
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        emb = self.e(x)
        h = emb.new_zeros(x.shape[0], self.n_hidden)
        outs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.l_hidden(h + F.relu(self.l_in(emb[:, t]))))
            outs.append(h)
        return self.l_out(torch.stack(outs, dim=1))


class CharRnn(nn.Module):
    """`nn.RNN` over the sequence, hidden state from zeros at each batch."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, n_fac=n_fac, n_hidden=n_hidden)
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = nn.RNN(n_fac, n_hidden, batch_first=True)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.e(x))
        return self.l_out(out)


class StatefulCharModel(nn.Module):
    """Base of the stateful models: embedding -> recurrent core -> linear, with the hidden state carried over.

    Subclasses build `self.rnn` and implement `_run(emb, hidden) -> (out, hidden)`.
    """

    is_lstm = False

    def __init__(self, vocab_size: int, n_fac: int, n_hidden: int, n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, n_fac=n_fac, n_hidden=n_hidden)
        self.vocab_size, self.n_hidden, self.n_layers = vocab_size, n_hidden, n_layers
        self.e = nn.Embedding(vocab_size, n_fac)
        self.drop = nn.Dropout(dropout)
        self.l_out = nn.Linear(n_hidden, vocab_size)
        self.hidden: Hidden | None = None

    def reset(self) -> None:
        """Forget the hidden state (the next batch starts from zeros)."""
        self.hidden = None

    def init_hidden(self, bs: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Hidden:
        h = torch.zeros(self.n_layers, bs, self.n_hidden, device=device, dtype=dtype)
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
        emb = self.e(x)
        out, h = self._run(emb, self._current_hidden(x, emb.dtype))
        self.hidden = detach_hidden(h)
        return self.l_out(self.drop(out))


class CharSeqRnn(StatefulCharModel):
    """Stateful `nn.RNN` trained with backpropagation through time."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256):
        super().__init__(vocab_size, n_fac, n_hidden)
        self.rnn = nn.RNN(n_fac, n_hidden, batch_first=True)


class CharSeqRnnCell(StatefulCharModel):
    """Stateful loop over an `nn.RNNCell` (what `nn.RNN` does inside)."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256):
        super().__init__(vocab_size, n_fac, n_hidden)
        self.rnn = nn.RNNCell(n_fac, n_hidden)

    def _run(self, emb: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        h = hidden[0]
        outs = []
        for t in range(emb.shape[1]):
            h = self.rnn(emb[:, t], h)
            outs.append(h)
        return torch.stack(outs, dim=1), h.unsqueeze(0)


class CharSeqGru(StatefulCharModel):
    """Stateful `nn.GRU`."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256, n_layers: int = 1,
                 dropout: float = 0.0):
        super().__init__(vocab_size, n_fac, n_hidden, n_layers, dropout)
        self.config.update(n_layers=n_layers, dropout=dropout)
        self.rnn = nn.GRU(n_fac, n_hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)


class CharSeqLstm(StatefulCharModel):
    """Stateful multi-layer `nn.LSTM`, with `dropout` between layers and on the last layer's outputs."""

    is_lstm = True

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256, n_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__(vocab_size, n_fac, n_hidden, n_layers, dropout)
        self.config.update(n_layers=n_layers, dropout=dropout)
        self.rnn = nn.LSTM(n_fac, n_hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)


CHAR_MODELS = {
    "char_loop": CharLoopModel,
    "char_rnn": CharRnn,
    "char_seq_rnn": CharSeqRnn,
    "char_seq_rnncell": CharSeqRnnCell,
    "char_seq_gru": CharSeqGru,
    "char_seq_lstm": CharSeqLstm,
}
