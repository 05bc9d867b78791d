import pytest
import torch
from torch import nn

from deepfit.interpret import plot_all, plot_loss, plot_lr, plot_metrics, plot_sched
from deepfit.learner import Learner, Recorder, accuracy, error_rate
from tests.helpers.data import make_linear_data
from tests.helpers.images import assert_png


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    opt = lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)
    learn = Learner(mlp(), make_linear_data(n=64, bs=16), opt_func=opt, lr=0.1,
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
    learn = Learner(mlp(), make_linear_data())
    with pytest.raises(ValueError, match="no epoch results"):
        plot_metrics(learn, tmp_path / "x.png")
    assert isinstance(learn.recorder, Recorder)


def test_plots_take_plain_history_without_a_learner(tmp_path):
    """Any object holding a recorder's lists plots: the plots read values, they do not need the learner."""
    from types import SimpleNamespace

    history = SimpleNamespace(losses=[2.0, 1.5, 1.2, 1.0], smooth_losses=[2.0, 1.8, 1.6, 1.4],
                              lrs=[0.1, 0.2, 0.1, 0.05], moms=[0.9, 0.85, 0.9, 0.95],
                              values=[[1.6, 1.3, 0.5], [1.1, 1.0, 0.7]],
                              metric_names=["epoch", "train_loss", "valid_loss", "accuracy", "time"])
    assert_png(plot_loss(history, tmp_path / "loss.png"), (640, 400))
    assert_png(plot_metrics(history, tmp_path / "metrics.png"), (900, 360))  # losses + accuracy
    assert len(plot_all(history, tmp_path / "all")) == 4


def test_recorder_plot_loss_draws_the_same_png_as_interpret(trained, tmp_path):
    a = trained.recorder.plot_loss(tmp_path / "a.png", skip_start=1)
    b = plot_loss(trained, tmp_path / "b.png", skip_start=1)
    assert a.read_bytes() == b.read_bytes()


def test_interpret_plots_import_nothing_from_the_learner_package():
    import ast
    from pathlib import Path

    import deepfit.interpret.plots as plots

    tree = ast.parse(Path(plots.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "learner" in m], imported
