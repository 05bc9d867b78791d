"""Next-character models of the lesson-7 notes: a fixed window of characters in, the next one out.

Batch layout: token ids `(bs, n)`, one row per window, the characters of a window side by side
(the notes pass them as separate `(bs,)` tensors `c1, c2, c3`: they are `x[:, 0], x[:, 1], x[:, 2]`).
The output is `(bs, vocab_sz)` raw scores for the character after the window (use `nn.CrossEntropyLoss`
with targets `(bs,)`; the notes' `log_softmax` lives in the loss).

- `Char3Model`: three characters written out as three steps of the same layers, the input added to the
  state: `h = tanh(W_h (h + relu(W_in e(c))))`, from `h = 0`.
- `Char3ConcatModel`: the same, with each character's embedding concatenated to the state instead:
  `h = tanh(W_h relu(W_in [h, e(c)]))`.
- `CharLoopLastModel`: `Char3Model`'s step in a `for` loop over a window of any length, predicting only
  from the last state (the notes' `CharLoopModel`; with the same weights it equals `Char3Model` on three
  characters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register


def _check_window(x: Tensor, n: int | None, model: str) -> None:
    if x.ndim != 2 or (n is not None and x.shape[1] != n):
        want = f"(bs, {n})" if n is not None else "(bs, n)"
        raise ValueError(f"{model} expects a window of token ids {want}, one row per window, got shape "
                         f"{tuple(x.shape)}")


class Char3Model(nn.Module):
    """Three characters in `(bs, 3)`, scores of the fourth out `(bs, vocab_sz)`; three unrolled steps."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256):
        super().__init__()
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid)
        self.e = nn.Embedding(vocab_sz, emb_sz)
        self.l_in = nn.Linear(emb_sz, n_hid)  # input → hidden, shared by the three steps
        self.l_hidden = nn.Linear(n_hid, n_hid)  # hidden → hidden, shared by the three steps
        self.l_out = nn.Linear(n_hid, vocab_sz)

    def forward(self, x: Tensor) -> Tensor:
        _check_window(x, 3, type(self).__name__)
        c1, c2, c3 = x.unbind(1)
        in1 = F.relu(self.l_in(self.e(c1)))
        in2 = F.relu(self.l_in(self.e(c2)))
        in3 = F.relu(self.l_in(self.e(c3)))
        h = torch.zeros_like(in1)
        h = torch.tanh(self.l_hidden(h + in1))
        h = torch.tanh(self.l_hidden(h + in2))
        h = torch.tanh(self.l_hidden(h + in3))
        return self.l_out(h)


class Char3ConcatModel(nn.Module):
    """Three characters in `(bs, 3)`, the fourth out; each step reads `[state, embedding]` concatenated."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256):
        super().__init__()
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid)
        self.n_hid = n_hid
        self.e = nn.Embedding(vocab_sz, emb_sz)
        self.l_in = nn.Linear(n_hid + emb_sz, n_hid)
        self.l_hidden = nn.Linear(n_hid, n_hid)
        self.l_out = nn.Linear(n_hid, vocab_sz)

    def forward(self, x: Tensor) -> Tensor:
        _check_window(x, 3, type(self).__name__)
        emb = self.e(x)
        h = emb.new_zeros(x.shape[0], self.n_hid)
        for t in range(3):
            h = torch.tanh(self.l_hidden(F.relu(self.l_in(torch.cat([h, emb[:, t]], dim=1)))))
        return self.l_out(h)


class CharLoopLastModel(nn.Module):
    """A window of any length `(bs, n)` in a loop, scores of the next character from the last state only."""

    def __init__(self, vocab_sz: int, emb_sz: int = 42, n_hid: int = 256):
        super().__init__()
        self.config = dict(vocab_sz=vocab_sz, emb_sz=emb_sz, n_hid=n_hid)
        self.n_hid = n_hid
        self.e = nn.Embedding(vocab_sz, emb_sz)
        self.l_in = nn.Linear(emb_sz, n_hid)
        self.l_hidden = nn.Linear(n_hid, n_hid)
        self.l_out = nn.Linear(n_hid, vocab_sz)

    def forward(self, x: Tensor) -> Tensor:
        _check_window(x, None, type(self).__name__)
        emb = self.e(x)
        h = emb.new_zeros(x.shape[0], self.n_hid)
        for t in range(x.shape[1]):
            h = torch.tanh(self.l_hidden(h + F.relu(self.l_in(emb[:, t]))))
        return self.l_out(h)


def char_windows(ids: Tensor, n: int = 3) -> tuple[Tensor, Tensor]:
    """Every window of `n` consecutive ids of the 1-D `ids` and the id after it: `(x (N, n), y (N,))`."""
    if ids.ndim != 1 or len(ids) <= n:
        raise ValueError(f"char_windows needs a 1-D sequence longer than n={n}, got shape {tuple(ids.shape)}")
    x = ids.unfold(0, n, 1)[:-1]
    return x, ids[n:]


register("char3", Char3Model, "next_token")
register("char3_concat", Char3ConcatModel, "next_token")
register("char_loop_last", CharLoopLastModel, "next_token")

__all__ = ["Char3ConcatModel", "Char3Model", "CharLoopLastModel", "char_windows"]
