import pytest
import torch
import torch.nn.functional as F

from deepfit.interpret import ClassificationInterpretation, write_classifier_report
from deepfit.learner import Learner
from deepfit.models import MLP
from tests.helpers.data import make_linear_data
from tests.helpers.images import assert_png, square_dls, tiny_cnn


@pytest.fixture(scope="module")
def tabular_interp():
    torch.manual_seed(0)
    learn = Learner(MLP(c_in=4, img_size=1, hidden=(8,), n_out=3), make_linear_data(n=120, bs=16), lr=3e-2)
    learn.fit(1)
    return learn, ClassificationInterpretation.from_learner(learn)


def test_confusion_matrix_equals_direct_count(tabular_interp):
    learn, interp = tabular_interp
    x, y = learn.dls.valid.x, learn.dls.valid.y
    with torch.no_grad():
        preds = learn.model(x).argmax(1)
    direct = torch.zeros(3, 3, dtype=torch.long)
    for actual, pred in zip(y.tolist(), preds.tolist()):
        direct[actual, pred] += 1
    assert torch.equal(interp.confusion_matrix(), direct)
    assert interp.confusion_matrix().sum() == len(y)
    assert 0 < direct.diag().sum() < len(y), "want both right and wrong predictions in this test"


def test_most_confused_lists_off_diagonal_cells(tabular_interp):
    _, interp = tabular_interp
    cm = interp.confusion_matrix()
    pairs = interp.most_confused(min_val=1)
    expected = sorted(((a, p, int(cm[a, p])) for a in range(3) for p in range(3) if a != p and cm[a, p] >= 1),
                      key=lambda t: -t[2])
    assert [c for _, _, c in pairs] == [c for _, _, c in expected]
    assert {(a, p) for a, p, _ in pairs} == {(str(a), str(p)) for a, p, _ in expected}
    assert interp.most_confused(min_val=int(cm.max()) + 1) == []


def test_top_losses_are_the_largest_per_item_losses(tabular_interp):
    learn, interp = tabular_interp
    with torch.no_grad():
        losses = F.cross_entropy(learn.model(learn.dls.valid.x), learn.dls.valid.y, reduction="none")
    values, idxs = interp.top_losses(5)
    assert torch.allclose(values, losses.sort(descending=True).values[:5], atol=1e-6)
    assert torch.allclose(losses[idxs], values, atol=1e-6)
    assert len(interp.top_losses()[0]) == len(losses)


def test_interpretation_plots_and_report(tmp_path):
    torch.manual_seed(0)
    learn = Learner(tiny_cnn(), square_dls(64, 40))
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.inputs.shape == (40, 1, 16, 16)
    assert_png(interp.plot_confusion_matrix(tmp_path / "cm.png"), (520, 420))
    assert_png(interp.plot_top_losses(6, tmp_path / "top.png", ncols=3), (810, 580))
    paths = write_classifier_report(learn, tmp_path / "run")
    assert paths["confusion_matrix"] == tmp_path / "run" / "confusion_matrix.png"
    assert_png(paths["confusion_matrix"], (520, 420))
    assert_png(paths["top_losses"], (1080, 1160))


def test_plot_top_losses_needs_images(tabular_interp, tmp_path):
    _, interp = tabular_interp
    with pytest.raises(ValueError, match="image inputs"):
        interp.plot_top_losses(4, tmp_path / "x.png")
