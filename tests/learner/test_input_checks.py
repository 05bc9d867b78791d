"""Bad input gives a clear error: model/data mismatches before training, empty data, bad files, NaN loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.data import DataFormatError, DataLoaders, EmptyDataError, TensorLoader
from deepfit.data.files import check_not_empty, list_files, read_image_file, read_text_file, require_columns
from deepfit.learner import Learner, ModelDataMismatchError, NaNLossCheck
from deepfit.learner.callbacks import ProgressCallback
from deepfit.models import MLP, SimpleCNN


def learner(x, y, model, vocab=None, loss_func=None, path=".") -> Learner:
    dls = DataLoaders(TensorLoader(x, y, bs=8, shuffle=True, seed=0, device="cpu"),
                      TensorLoader(x, y, bs=8, device="cpu"), device="cpu", vocab=vocab)
    learn = Learner(model, dls, loss_func=loss_func, path=path)
    learn.remove_cb(ProgressCallback)
    return learn


def images(n=16, c=1, size=28):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g)


def labels(n=16, k=10):
    return torch.arange(n) % k


def untouched(learn: Learner) -> dict:
    return {k: v.clone() for k, v in learn.model.state_dict().items()}


def assert_not_trained(learn: Learner, before: dict) -> None:
    assert all(torch.equal(learn.model.state_dict()[k], v) for k, v in before.items())
    assert learn.train_iter == 0


def test_wrong_input_channels():
    learn = learner(images(c=1), labels(), SimpleCNN(c_in=3, n_out=10, width=4, hidden=8))
    before = untouched(learn)
    with pytest.raises(ModelDataMismatchError, match=r"layer '0\.0' \(Conv2d\(3, 4.*expects 3 input channels, got 1 "
                                                     r"\(input shape \[8, 1, 28, 28\]\)"):
        learn.fit(1)
    assert_not_trained(learn, before)


def test_wrong_input_size_for_fixed_head():
    learn = learner(images(size=32), labels(), MLP(hidden=(8,), n_out=10))
    with pytest.raises(ModelDataMismatchError, match=r"layer '1' \(Linear\(in_features=784.*expects inputs of shape "
                                                     r"\[\.\.\., 784\], got \[8, 1024\].*\[8, 1, 32, 32\]"):
        learn.fit(1)


def test_wrong_number_of_classes_against_vocab():
    learn = learner(images(), labels(), MLP(hidden=(8,), n_out=5), vocab=[str(i) for i in range(10)])
    with pytest.raises(ModelDataMismatchError, match=r"output layer '3' \(Linear\(in_features=8, out_features=5.*"
                                                     r"gives 5 outputs per item .*\[8, 5\]\) but the data has 10 "
                                                     r"classes"):
        learn.fit(1)


def test_wrong_number_of_classes_against_targets():
    learn = learner(images(), labels(k=10), MLP(hidden=(8,), n_out=5))
    with pytest.raises(ModelDataMismatchError, match="gives 5 outputs per item.*targets hold class index 9"):
        learn.fit(1)


def test_loss_shape_mismatch():
    learn = learner(images(), torch.rand(16, 3), MLP(hidden=(8,), n_out=2), loss_func=nn.MSELoss())
    with pytest.warns(UserWarning), pytest.raises(ModelDataMismatchError, match=r"loss MSELoss fails.*\[8, 2\].*"
                                                                                 r"\[8, 3\]"):
        learn.fit(1)


def test_empty_dataset():
    learn = learner(images(n=0), labels(n=0), MLP(hidden=(8,), n_out=10))
    with pytest.raises(EmptyDataError, match=r"training loader yields no batches \(it holds 0 items\)"):
        learn.fit(1)


def test_nan_inputs_detected_before_training():
    x = torch.randn(16, 4)
    x[3, 1] = float("nan")
    learn = learner(x, labels(k=2), MLP(c_in=4, img_size=1, hidden=(4,), n_out=2))
    learn.dls.train.shuffle = False
    with pytest.raises(FloatingPointError, match="before any training: the inputs of that batch contain NaN"):
        learn.fit(1)


def test_nan_loss_during_training():
    x = torch.randn(32, 4)
    learn = learner(x, labels(32, k=2), MLP(c_in=4, img_size=1, hidden=(4,), n_out=2))
    learn.add_cb(NaNLossCheck())
    learn.fit(1)  # fine at a sane learning rate
    with pytest.raises(FloatingPointError, match=r"training loss became nan at epoch 0, batch \d+"):
        learn.fit(1, lr=float("nan"))


def test_check_leaves_training_unchanged():
    """The check runs the model once without touching RNGs or loader positions."""
    runs = []
    for check in (True, False):
        torch.manual_seed(0)
        learn = learner(images(), labels(), MLP(hidden=(8,), n_out=10, dropout=0.3))
        learn.check_inputs = check
        learn.fit(2)
        runs.append(untouched(learn))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_non_utf8_text_names_file_and_offset(tmp_path):
    path = tmp_path / "review.txt"
    path.write_bytes("caf\u00e9 ok\n".encode() + b"bad \xff byte")
    with pytest.raises(DataFormatError, match=r"review.txt: not valid UTF-8 at byte offset 13 \(byte 0xff"):
        read_text_file(path)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfhello")
    assert read_text_file(tmp_path / "bom.txt") == "hello"


def test_undecodable_image_names_file(tmp_path):
    bad = tmp_path / "cat.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataFormatError, match=r"cat.jpg: cannot decode image"):
        read_image_file(bad)
    with pytest.raises(FileNotFoundError, match="dog.jpg: no such image file"):
        read_image_file(tmp_path / "dog.jpg")


def test_empty_folder_and_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.png").write_bytes(b"")
    with pytest.raises(EmptyDataError, match=r"empty: folder holds no files with extensions \['.png'\]"):
        list_files(tmp_path / "empty", [".png"])
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        list_files(tmp_path / "nowhere")
    with pytest.raises(EmptyDataError, match="validation set is empty"):
        check_not_empty(0, "validation set")


def test_missing_csv_column(tmp_path):
    with pytest.raises(DataFormatError, match=r"labels.csv: no column 'label' \(columns are: 'name', 'breed'\)"):
        require_columns(tmp_path / "labels.csv", ["name", "breed"], ["name", "label"])
    require_columns("x.csv", ["name", "label"], ["name", None, "label"])
