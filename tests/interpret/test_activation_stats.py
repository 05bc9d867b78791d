import torch
from torch import nn

from deepfit.interpret import ActivationStats
from deepfit.interpret.hooks import active_hook_count
from deepfit.learner import Learner
from tests.helpers.data import make_linear_data
from tests.helpers.images import assert_png


class RecordTrainOutputs:
    """A plain PyTorch forward hook keeping every training-time output of a module."""

    def __init__(self, module: nn.Module):
        self.outputs: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inp, out):
        if torch.is_grad_enabled():  # validation runs under no_grad
            self.outputs.append(out.detach().clone())


def make_learner():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    return Learner(model, make_linear_data(n=96, bs=16), lr=1e-2)


def test_stats_of_a_known_layer_match_direct_computation():
    learn = make_learner()
    stats = ActivationStats(modules=["0"], zero_tol=0.05, hist_bins=20, hist_max=4.0)
    direct = RecordTrainOutputs(learn.model[0])
    learn.fit(2, cbs=[stats])
    direct.handle.remove()
    outs = direct.outputs
    assert len(outs) == 12 and stats.steps == list(range(12))
    s = stats.stats["0"]
    assert torch.allclose(torch.tensor(s["mean"]), torch.stack([o.mean() for o in outs]), atol=1e-6)
    assert torch.allclose(torch.tensor(s["std"]), torch.stack([o.std() for o in outs]), atol=1e-6)
    near = torch.stack([(o.abs() <= 0.05).float().mean() for o in outs])
    assert torch.allclose(torch.tensor(s["near_zero"]), near)
    hist = torch.stack([o.abs().flatten().histc(20, 0, 4.0) for o in outs])
    assert torch.equal(stats.hists["0"], hist)
    assert active_hook_count(learn.model) == 0


def test_default_modules_every_and_relu_near_zero():
    learn = make_learner()
    stats = ActivationStats(modules=[learn.model[0], learn.model[1]], every=3)
    learn.fit(1, cbs=[stats])
    assert stats.names == ["0", "1"]
    assert stats.steps == [0, 3]
    # after a ReLU, everything negative is exactly zero: the near-zero share is at least the share of
    # negative inputs
    relu_near = torch.tensor(stats.stats["1"]["near_zero"])
    assert (relu_near > 0.2).all()
    default = ActivationStats()
    learn.fit(1, cbs=[default])
    assert default.names == ["0", "2"]  # leaf modules with parameters
    assert len(default.stats["2"]["std"]) == 6


def test_activation_plots_are_pngs(tmp_path):
    learn = make_learner()
    stats = ActivationStats()
    learn.fit(1, cbs=[stats])
    assert_png(stats.plot_stats(tmp_path / "stats.png"), (1500, 420))
    assert_png(stats.plot_hist(tmp_path / "hist.png"), (900, 340))
