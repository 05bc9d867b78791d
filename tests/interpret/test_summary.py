import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.interpret import summary
from deepfit.interpret.summary import summary_rows
from deepfit.learner import Learner
from deepfit.models import MLP
from tests.helpers.data import make_linear_data


class TiedHead(nn.Module):
    """A container with a parameter of its own and a weight shared by two layers."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(self.a(x)) * self.scale


def test_summary_totals_shapes_and_frozen_split(capsys):
    learn = Learner(MLP(c_in=4, img_size=1, hidden=(8,), n_out=3), make_linear_data(bs=16))
    for p in learn.model[1].parameters():
        p.requires_grad_(False)
    text = learn.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    total = sum(p.numel() for p in learn.model.parameters())
    frozen = sum(p.numel() for p in learn.model[1].parameters())
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - frozen:,}" in text
    assert f"Frozen params: {frozen:,}" in text
    rows = {r["name"]: r for r in summary_rows(learn)}
    assert rows["1"]["trainable"] == "False" and rows["3"]["trainable"] == "True"
    assert rows["1"]["params"] == 4 * 8 + 8
    assert rows["1"]["output_shape"] == "16×8"  # the first validation batch has 16 items
    assert rows["3"]["output_shape"] == "16×3"
    assert [r["name"] for r in summary_rows(learn)] == ["0", "1", "2", "3"]


def test_summary_counts_shared_and_container_parameters_once():
    x = torch.randn(10, 3)
    y = torch.zeros(10, dtype=torch.long)
    dls = DataLoaders(TensorLoader(x, y, bs=5, device="cpu"), TensorLoader(x, y, bs=5, device="cpu"), device="cpu")
    model = TiedHead()
    model.a.bias.requires_grad_(False)
    learn = Learner(model, dls)
    text = summary(learn, print_it=False)
    total = sum(p.numel() for p in model.parameters())
    assert total == 3 + 9 + 3 + 3
    assert f"Total params: {total:,}" in text
    assert "Frozen params: 3" in text
    rows = {r["name"]: r for r in summary_rows(learn)}
    assert rows["a"]["trainable"] == "partial"
    assert rows["a"]["output_shape"] == "5×3"


def test_summary_does_not_change_training_mode_or_loader_epoch():
    dls = make_linear_data()
    learn = Learner(MLP(c_in=4, img_size=1, hidden=(8,), n_out=3, dropout=0.5), dls)
    learn.model.train()
    epoch = dls.valid.epoch
    summary(learn, print_it=False)
    assert learn.model.training and dls.valid.epoch == epoch
