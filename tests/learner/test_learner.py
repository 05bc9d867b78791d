import pytest
import torch
from torch import nn

from deepfit.data import DataLoaders, TensorLoader
from deepfit.learner import (
    Callback,
    CancelBackward,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
    Learner,
    accuracy,
)
from deepfit.models import MLP
from tests.helpers.data import make_linear_data, requires_fmnist

BATCH_TRAIN = ["before_batch", "after_pred", "after_loss", "before_backward", "after_backward", "before_step",
               "after_step", "after_batch"]
BATCH_VALID = ["before_batch", "after_pred", "after_loss", "after_batch"]


class EventLog(Callback):
    """Records every event; optionally raises `exc` at `(event, occurrence)`."""

    def __init__(self, raise_at: tuple[str, int] | None = None, exc: type[Exception] | None = None):
        self.events: list[str] = []
        self.raise_at, self.exc = raise_at, exc
        self.counts: dict[str, int] = {}

    def _record(self, name: str) -> None:
        self.events.append(name)
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.raise_at == (name, self.counts[name]):
            raise self.exc()


for _event in ["before_fit", "before_epoch", "before_train", *BATCH_TRAIN, "after_train", "before_validate",
               "after_validate", "after_epoch", "after_fit", "after_cancel_fit", "after_cancel_epoch",
               "after_cancel_train", "after_cancel_validate", "after_cancel_batch", "after_cancel_backward",
               "after_cancel_step"]:
    setattr(EventLog, _event, lambda self, _n=_event: self._record(_n))


def two_batch_dls() -> DataLoaders:
    x = torch.randn(8, 4)
    y = torch.randint(0, 3, (8,))
    return DataLoaders(TensorLoader(x, y, bs=4, device="cpu"), TensorLoader(x, y, bs=4, device="cpu"), device="cpu")


def run(raise_at=None, exc=None) -> list[str]:
    log = EventLog(raise_at, exc)
    learn = Learner(nn.Linear(4, 3), two_batch_dls(), cbs=[log], default_cbs=False)
    learn.fit(1)
    return log.events


def test_event_order_exact():
    expected = (["before_fit", "before_epoch", "before_train"] + BATCH_TRAIN * 2 + ["after_train", "before_validate"]
                + BATCH_VALID * 2 + ["after_validate", "after_epoch", "after_fit"])
    assert run() == expected


def test_cancel_batch_skips_rest_of_batch_and_runs_after_batch():
    events = run(("after_pred", 1), CancelBatch)
    first = events[3:events.index("after_batch") + 1]
    assert first == ["before_batch", "after_pred", "after_cancel_batch", "after_batch"]
    assert events.count("before_step") == 1  # only the second batch stepped


def test_cancel_backward_and_step():
    events = run(("before_backward", 1), CancelBackward)
    assert events[3:9] == ["before_batch", "after_pred", "after_loss", "before_backward", "after_cancel_backward",
                           "after_backward"]
    events = run(("before_step", 1), CancelStep)
    i = events.index("before_step")
    assert events[i:i + 4] == ["before_step", "after_cancel_step", "after_step", "after_batch"]


def test_cancel_train_goes_to_validation():
    events = run(("before_batch", 1), CancelTrain)
    assert events[:6] == ["before_fit", "before_epoch", "before_train", "before_batch", "after_cancel_train",
                          "after_train"]
    assert events[6] == "before_validate" and events.count("after_validate") == 1


def test_cancel_validate():
    events = run(("before_validate", 1), CancelValidate)
    i = events.index("before_validate")
    assert events[i:] == ["before_validate", "after_cancel_validate", "after_validate", "after_epoch", "after_fit"]


def test_cancel_epoch_and_fit():
    events = run(("after_train", 1), CancelEpoch)
    i = events.index("after_train")
    assert events[i:] == ["after_train", "after_cancel_epoch", "after_epoch", "after_fit"]
    events = run(("before_epoch", 1), CancelFit)
    assert events == ["before_fit", "before_epoch", "after_cancel_fit", "after_fit"]


def test_callback_replacing_loss_is_honoured():
    class ZeroLoss(Callback):
        def after_loss(self):
            self.learn.loss = self.learn.loss * 0.0

    model = nn.Linear(4, 3)
    before = [p.detach().clone() for p in model.parameters()]
    learn = Learner(model, two_batch_dls(), cbs=[ZeroLoss()], opt_func=lambda p, lr: torch.optim.SGD(p, lr=lr),
                    lr=0.5, default_cbs=False)
    learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert float(learn.loss) == 0.0


def test_callback_replacing_batch_is_used():
    class DoubleX(Callback):
        def before_batch(self):
            self.learn.xb = self.learn.xb * 2
            self.seen = self.learn.xb

        def after_pred(self):
            assert self.learn.pred.shape == (4, 3)
            self.pred_input_norm = float(self.learn.xb.abs().sum())

    cb = DoubleX()
    learn = Learner(nn.Linear(4, 3), two_batch_dls(), cbs=[cb], default_cbs=False)
    learn.fit(1)
    assert cb.pred_input_norm == pytest.approx(float(cb.seen.abs().sum()))


def test_fit_cbs_removed_after_fit_and_defaults_removable(tiny_dls):
    learn = Learner(nn.Linear(4, 3), tiny_dls)
    log = EventLog()
    learn.fit(1, cbs=[log])
    assert log not in learn.cbs and not hasattr(learn, "event_log")
    assert log.events[0] == "before_fit"
    learn.remove_cb(learn.progress)
    assert not hasattr(learn, "progress")
    assert [type(c).__name__ for c in learn.cbs] == ["DeviceCallback", "TrainEvalCallback", "Recorder"]


def test_exception_in_callback_names_callback_and_event(tiny_dls):
    class Broken(Callback):
        def after_loss(self):
            raise RuntimeError("boom")

    learn = Learner(nn.Linear(4, 3), tiny_dls, cbs=[Broken()])
    with pytest.raises(RuntimeError, match="boom") as info:
        learn.fit(1)
    notes = getattr(info.value, "__notes__", [])
    assert notes == ["deepfit: raised in callback Broken during event 'after_loss'"]
    assert any(frame.name == "after_loss" for frame in info.traceback)


def test_training_learns_and_recorder_tables(tiny_dls):
    learn = Learner(nn.Linear(4, 3), tiny_dls, metrics=[accuracy], lr=0.1)
    learn.fit(5)
    rec = learn.recorder
    assert rec.metric_names == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(rec.values) == 5 and len(rec.losses) == 5 * len(tiny_dls.train)
    assert rec.values[-1][0] < rec.values[0][0]
    assert rec.values[-1][2] > 0.8
    assert len(rec.lrs) == len(rec.losses) and rec.lrs[0] == pytest.approx(0.1)
    valid_loss, acc = learn.validate()
    assert valid_loss == pytest.approx(rec.values[-1][1], rel=1e-5) and acc == pytest.approx(rec.values[-1][2])


def test_get_preds_and_predict(tiny_dls):
    learn = Learner(nn.Linear(4, 3), tiny_dls, lr=0.1)
    learn.fit(2)
    preds, targs = learn.get_preds()
    assert preds.shape == (64, 3) and targs.shape == (64,)
    assert torch.allclose(preds.sum(1), torch.ones(64), atol=1e-5)
    raw, _, losses = learn.get_preds(act=None, with_loss=True)
    assert losses.shape == (64,)
    assert torch.allclose(losses.mean(), nn.functional.cross_entropy(raw, targs), atol=1e-6)
    decoded, idx, probs = learn.predict(tiny_dls.valid.x[0])
    assert decoded == idx == int(preds[0].argmax()) and torch.allclose(probs, preds[0], atol=1e-6)


def _train_once(seed: int) -> tuple[list[float], torch.Tensor]:
    torch.manual_seed(seed)
    dls = make_linear_data(seed=3)
    learn = Learner(MLP(c_in=4, n_out=3, hidden=(16,), img_size=1), dls, metrics=[accuracy], default_cbs=True)
    learn.remove_cb(learn.progress)
    learn.fit(2)
    return learn.recorder.losses, next(learn.model.parameters()).detach().clone()


def test_same_seed_same_results():
    losses_a, w_a = _train_once(7)
    losses_b, w_b = _train_once(7)
    losses_c, _ = _train_once(8)
    assert losses_a == losses_b and torch.equal(w_a, w_b)
    assert losses_a != losses_c


@requires_fmnist
def test_mlp_reaches_80_percent_on_real_subset(fmnist_small):
    torch.manual_seed(0)
    learn = Learner(MLP(), fmnist_small, metrics=[accuracy], lr=2e-3)
    learn.fit(1)
    assert learn.recorder.values[-1][2] >= 0.80


def test_get_preds_on_sequences_of_different_lengths():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 10)

        def forward(self, x):
            return self.emb(x)

    batches = [(torch.randint(0, 10, (2, 5)), torch.randint(0, 10, (2, 5))),
               (torch.randint(0, 10, (2, 3)), torch.randint(0, 10, (2, 3)))]
    loss = lambda p, t: nn.functional.cross_entropy(p.reshape(-1, 10), t.reshape(-1))
    learn = Learner(Seq(), DataLoaders(batches, batches, device="cpu"), loss_func=loss, default_cbs=False)
    preds, targs = learn.get_preds(act=None)
    assert preds.shape == (16, 10) and targs.shape == (16,)
    assert torch.equal(targs[:10], batches[0][1].reshape(-1))


# ---------------------------------------------------------------------------------------------- probabilities
class FashionNetwork(nn.Module):
    """The cookbook's network (hidden layers, then `log_softmax`), trained with `NLLLoss`, at a small size."""

    def __init__(self, n_in: int = 4, n_out: int = 3):
        super().__init__()
        self.hidden1 = nn.Linear(n_in, 16)
        self.output = nn.Linear(16, n_out)

    def forward(self, x):
        return torch.log_softmax(self.output(torch.relu(self.hidden1(x))), dim=1)


@pytest.mark.parametrize("loss_func", [nn.NLLLoss(), torch.nn.functional.nll_loss,
                                       lambda p, y: torch.nn.functional.nll_loss(p, y), nn.CrossEntropyLoss()],
                         ids=["NLLLoss", "F.nll_loss", "custom", "CrossEntropyLoss"])
def test_log_softmax_model_gives_probabilities(loss_func):
    torch.manual_seed(0)
    learn = Learner(FashionNetwork(), make_linear_data(), loss_func=loss_func, metrics=accuracy, default_cbs=False)
    learn.fit(3, lr=3e-2)
    log_probs, targs = learn.get_preds(act=None)
    probs, _ = learn.get_preds()
    assert torch.allclose(probs, log_probs.exp(), atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert (probs.argmax(1) == targs).float().mean() > 0.8
    x = learn.dls.valid.x[0]
    decoded, idx, p = learn.predict(x)
    assert torch.allclose(p, learn.model(x[None])[0].exp(), atol=1e-6) and idx == int(p.argmax()) == decoded


def test_model_ending_in_softmax_gets_no_second_softmax(tiny_dls):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    learn = Learner(model, tiny_dls, default_cbs=False)
    raw, _ = learn.get_preds(act=None)
    probs, _ = learn.get_preds()
    assert torch.equal(probs, raw)  # cross-entropy's softmax would flatten them towards 1/3
    assert torch.allclose(learn.predict(tiny_dls.valid.x[0])[2], raw[0])
    logits = Learner(nn.Linear(4, 3), tiny_dls, default_cbs=False)
    assert torch.allclose(logits.get_preds()[0], logits.get_preds(act=None)[0].softmax(1))


@pytest.mark.parametrize("head, activation", [(nn.Softmax(dim=1), "softmax"), (nn.LogSoftmax(dim=1), "exp"),
                                              (nn.LogSoftmax(dim=1), "softmax"), (nn.LogSoftmax(dim=1), None)])
def test_load_learner_predict_gives_no_second_softmax(head, activation):
    from deepfit.inference import InferenceLearner

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), head)
    inf = InferenceLearner(model, {"activation": activation, "vocab": ["a", "b", "c"]})
    x = torch.randn(4)
    label, idx, probs = inf.predict(x)
    expected = model(x[None])[0].detach()
    expected = expected.exp() if isinstance(head, nn.LogSoftmax) else expected
    assert torch.allclose(probs, expected, atol=1e-6) and label == "abc"[idx] and idx == int(expected.argmax())
