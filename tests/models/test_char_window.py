"""Lesson-7 next-character models: three characters in, the fourth out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.models import Char3ConcatModel, Char3Model, CharLoopLastModel, char_windows, get_model

V = 9


def test_shapes_and_layout_errors():
    x = torch.randint(0, V, (5, 3))
    for model in (Char3Model(V, 4, 8), Char3ConcatModel(V, 4, 8), CharLoopLastModel(V, 4, 8)):
        assert model(x).shape == (5, V)
    assert CharLoopLastModel(V, 4, 8)(torch.randint(0, V, (5, 8))).shape == (5, V)  # any window length
    with pytest.raises(ValueError, match=r"\(bs, 3\)"):
        Char3Model(V, 4, 8)(torch.randint(0, V, (3, 5)))  # a (seq, bs) batch of 5 windows is refused
    with pytest.raises(ValueError, match=r"\(bs, n\)"):
        CharLoopLastModel(V, 4, 8)(torch.randint(0, V, (5,)))


def test_loop_equals_unrolled_char3_with_the_same_weights():
    torch.manual_seed(0)
    char3, loop = Char3Model(V, 4, 8), CharLoopLastModel(V, 4, 8)
    loop.load_state_dict(char3.state_dict())
    x = torch.randint(0, V, (6, 3))
    assert torch.allclose(char3(x), loop(x), atol=1e-6)


def test_concat_variant_reads_state_and_input_concatenated():
    model = Char3ConcatModel(V, 4, 8)
    assert model.l_in.in_features == 8 + 4  # [h, e(c)]
    # the order of the characters matters (it is a sequence model, not a bag of characters)
    torch.manual_seed(0)
    x = torch.tensor([[1, 2, 3]])
    assert not torch.allclose(model(x), model(x.flip(1)))


def test_char_windows():
    ids = torch.arange(10)
    x, y = char_windows(ids, 3)
    assert x.shape == (7, 3) and y.shape == (7,)
    assert x[0].tolist() == [0, 1, 2] and y[0] == 3 and x[-1].tolist() == [6, 7, 8] and y[-1] == 9
    with pytest.raises(ValueError, match="longer than n=3"):
        char_windows(torch.arange(3), 3)


@pytest.mark.parametrize("name", ["char3", "char3_concat", "char_loop_last"])
def test_learns_the_fourth_character_of_a_repeating_text(name):
    torch.manual_seed(0)
    text = "abcadbcd" * 40  # the next character depends on the three before it (not only the last one)
    itos = sorted(set(text))
    ids = torch.tensor([itos.index(c) for c in text])
    x, y = char_windows(ids, 3)
    model = get_model(name, vocab_sz=len(itos), emb_sz=8, n_hid=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_func = nn.CrossEntropyLoss()
    before = loss_func(model(x), y).item()
    for _ in range(150):
        loss = loss_func(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (model(x).argmax(1) == y).float().mean().item()
    assert loss.item() < before / 4 and acc == 1.0, (before, loss.item(), acc)
