import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from deepfit.learner import Learner, accuracy  # noqa: E402
from deepfit.learner.callbacks import TensorBoardCallback  # noqa: E402
from tests.helpers.images import square_dls, tiny_cnn  # noqa: E402


def read_events(log_dir) -> EventAccumulator:
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    torch.manual_seed(0)
    log_dir = tmp_path_factory.mktemp("tb")
    learn = Learner(tiny_cnn(), square_dls(96, 32, bs=32), metrics=[accuracy], lr=3e-3)
    tb = TensorBoardCallback(log_dir, hparams={"arch": "tiny_cnn", "wd": 0.0}, hist_every=1, n_misclassified=8)
    learn.fit(2, cbs=[tb])
    return learn, tb, log_dir


def test_scalars_have_the_expected_tags_steps_and_values(logged):
    learn, _, log_dir = logged
    ea = read_events(log_dir)
    scalars = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/mom", "epoch/train_loss", "valid/loss", "valid/accuracy"} <= scalars
    losses = ea.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(6))  # 3 batches × 2 epochs
    assert [e.value for e in losses] == pytest.approx(learn.recorder.losses, rel=1e-6)
    assert [e.step for e in ea.Scalars("train/lr")] == list(range(6))
    assert [e.value for e in ea.Scalars("train/lr")] == pytest.approx([3e-3] * 6)
    assert [e.step for e in ea.Scalars("valid/loss")] == [0, 1]
    assert [e.value for e in ea.Scalars("valid/loss")] == pytest.approx([r[1] for r in learn.recorder.values])
    assert [e.value for e in ea.Scalars("valid/accuracy")] == pytest.approx([r[2] for r in learn.recorder.values])
    assert [e.value for e in ea.Scalars("epoch/train_loss")] == pytest.approx([r[0] for r in learn.recorder.values])


def test_images_histograms_and_hparams_are_written(logged):
    _, _, log_dir = logged
    ea = read_events(log_dir)
    images = set(ea.Tags()["images"])
    assert {"images/train_batch", "images/misclassified"} <= images
    assert [e.step for e in ea.Images("images/train_batch")] == [0]  # once
    grid = ea.Images("images/train_batch")[0]
    assert grid.width > 16 and grid.height > 16
    assert [e.step for e in ea.Images("images/misclassified")] == [0, 1]  # each epoch (untrained: errors exist)
    hists = ea.Tags()["histograms"]
    assert "weights/0.weight" in hists and [e.step for e in ea.Histograms("weights/0.weight")] == [0, 1]
    hp = ea.PluginTagToContent("hparams")
    assert hp, "hyper-parameters should be written"
    exp = b"".join(hp.values())
    assert b"arch" in exp and b"n_epoch" in exp and b"valid_loss" in exp


def test_second_fit_continues_steps(tmp_path):
    torch.manual_seed(0)
    learn = Learner(tiny_cnn(), square_dls(64, 32, bs=32), lr=1e-3)
    tb = TensorBoardCallback(tmp_path, log_batch_grid=False, n_misclassified=0)
    learn.add_cb(tb)
    learn.fit(1)
    learn.fit(1)
    ea = read_events(tmp_path)
    assert [e.step for e in ea.Scalars("train/loss")] == [0, 1, 2, 3]
    assert [e.step for e in ea.Scalars("valid/loss")] == [0, 1]
    assert "images" not in ea.Tags() or not ea.Tags()["images"]
    assert tb.writer is None  # closed at the end of each fit
