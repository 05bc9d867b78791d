import pytest
import torch

from deepfit.interpret import plot_all, plot_loss, plot_lr, plot_metrics, plot_sched
from deepfit.learner import Learner, Recorder, accuracy, error_rate
from deepfit.models import MLP
from tests.conftest import make_linear_data
from tests.interpret.helpers import assert_png


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    opt = lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)
    learn = Learner(MLP(n_in=4, hidden=(8,), n_out=3), make_linear_data(n=64, bs=16), opt_func=opt, lr=0.1,
                    metrics=[accuracy, error_rate])
    learn.fit(3)
    return learn


def test_recorder_plots_are_pngs_of_the_expected_size(trained, tmp_path):
    assert_png(plot_loss(trained, tmp_path / "loss.png"), (640, 400))
    assert_png(plot_lr(trained.recorder, tmp_path / "lr.png"), (640, 400))
    assert_png(plot_sched(trained, tmp_path / "sched.png"), (1000, 400))
    # three panels: losses, accuracy, error_rate
    assert_png(plot_metrics(trained, tmp_path / "metrics.png"), (1350, 360))
    paths = plot_all(trained, tmp_path / "all")
    assert sorted(p.name for p in paths.values()) == ["loss.png", "lr.png", "metrics.png", "sched.png"]


def test_plot_functions_check_their_input(tmp_path):
    with pytest.raises(TypeError, match="Recorder"):
        plot_lr(object(), tmp_path / "x.png")
    learn = Learner(MLP(n_in=4, hidden=(8,), n_out=3), make_linear_data())
    with pytest.raises(ValueError, match="no epoch results"):
        plot_metrics(learn, tmp_path / "x.png")
    assert isinstance(learn.recorder, Recorder)
