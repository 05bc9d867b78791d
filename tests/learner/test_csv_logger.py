import csv
import math

import pytest
import torch

from deepfit.learner import Callback, Learner, accuracy
from deepfit.learner.callbacks import CSVLogger
from deepfit.models import MLP
from tests.helpers.data import make_linear_data


def make_learner(path, **kw):
    torch.manual_seed(0)
    return Learner(MLP(c_in=4, img_size=1, hidden=(8,), n_out=3), make_linear_data(n=64, bs=16), metrics=[accuracy],
                   lr=1e-2, path=path, **kw)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_rows_equal_the_recorder_values(tmp_path):
    learn = make_learner(tmp_path)
    logger = CSVLogger("logs/history.csv")
    learn.fit(3, cbs=[logger])
    rows = read_rows(tmp_path / "logs" / "history.csv")
    assert rows[0] == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(rows) == 4
    for i, (row, values) in enumerate(zip(rows[1:], learn.recorder.values)):
        assert int(row[0]) == i
        assert [float(v) for v in row[1:4]] == values  # exact: floats written with repr
        assert float(row[4]) >= 0
    assert logger.read()[2]["accuracy"] == rows[3][3]


def test_append_keeps_header_and_rows(tmp_path):
    learn = make_learner(tmp_path)
    learn.fit(1, cbs=[CSVLogger("h.csv")])
    learn.fit(2, cbs=[CSVLogger("h.csv", append=True)])
    rows = read_rows(tmp_path / "h.csv")
    assert rows[0][0] == "epoch" and len(rows) == 4
    assert [r[0] for r in rows[1:]] == ["0", "0", "1"]
    learn.fit(1, cbs=[CSVLogger("h.csv")])  # overwrite
    assert len(read_rows(tmp_path / "h.csv")) == 2


class Crash(Callback):
    order = 100

    def after_epoch(self):
        if self.learn.epoch == 1:
            raise RuntimeError("killed")


def test_rows_survive_a_crash(tmp_path):
    learn = make_learner(tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        learn.fit(4, cbs=[CSVLogger("h.csv"), Crash()])
    rows = read_rows(tmp_path / "h.csv")
    assert len(rows) == 3  # header + the two finished epochs, readable without closing the file
    assert not math.isnan(float(rows[2][2]))


class KilledBeforeCheckpoint(Callback):
    """A kill after the epoch's row is written (CSVLogger, order 65) and before its checkpoint (order 90)."""

    order = 70

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_epoch(self):
        if self.learn.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("append", [True, False])
def test_resume_after_a_kill_between_row_and_checkpoint_writes_each_epoch_once(tmp_path, append):
    from deepfit.learner.checkpoint import CheckpointCallback

    learn = make_learner(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        learn.fit(3, cbs=[CSVLogger("h.csv", append=append), CheckpointCallback(), KilledBeforeCheckpoint(1)])
    assert [r[0] for r in read_rows(tmp_path / "h.csv")[1:]] == ["0", "1"]  # row 1 written, its checkpoint not
    again = make_learner(tmp_path)
    again.fit(3, cbs=[CSVLogger("h.csv", append=append), CheckpointCallback()], resume="last")
    rows = read_rows(tmp_path / "h.csv")
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]  # was 0, 1, 1, 2
    assert [[float(v) for v in r[1:4]] for r in rows[1:]] == again.recorder.values


def test_resume_keeps_the_rows_of_earlier_fits(tmp_path):
    """Rows of an earlier phase (another fit appending to the same file) stay; only this fit's extra rows go."""
    from deepfit.learner.checkpoint import CheckpointCallback

    learn = make_learner(tmp_path)
    learn.fit(1, cbs=[CSVLogger("h.csv")])  # a first phase: row "0"
    with pytest.raises(KeyboardInterrupt):
        learn.fit(3, cbs=[CSVLogger("h.csv", append=True), CheckpointCallback(name="main"), KilledBeforeCheckpoint(1)])
    assert [r[0] for r in read_rows(tmp_path / "h.csv")[1:]] == ["0", "0", "1"]
    again = make_learner(tmp_path)
    again.fit(3, cbs=[CSVLogger("h.csv", append=True), CheckpointCallback(name="main")], resume="last")
    assert [r[0] for r in read_rows(tmp_path / "h.csv")[1:]] == ["0", "0", "1", "2"]
