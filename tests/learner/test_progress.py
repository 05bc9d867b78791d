import io

from torch import nn

from deepfit.learner import Learner, accuracy
from deepfit.learner.callbacks.progress import ProgressCallback, format_time


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_log_output_is_one_line_per_epoch_without_carriage_returns(tiny_dls):
    out = io.StringIO()
    learn = Learner(nn.Linear(4, 3), tiny_dls, metrics=[accuracy], default_cbs=True)
    learn.progress.stream = out
    learn.fit(3)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.strip().splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]


def test_live_bar_in_terminal(tiny_dls):
    out = FakeTTY()
    learn = Learner(nn.Linear(4, 3), tiny_dls, metrics=[accuracy])
    learn.remove_cb(learn.progress)
    learn.add_cb(ProgressCallback(stream=out, refresh=0.0))
    learn.fit(1)
    text = out.getvalue()
    assert "\repoch 1/1 |" in text and "loss" in text
    assert text.rstrip().splitlines()[-1].split()[0] == "0"


def test_format_time():
    assert format_time(5) == "00:05" and format_time(125) == "02:05" and format_time(3725) == "1:02:05"
