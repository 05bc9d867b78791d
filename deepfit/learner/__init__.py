"""The training loop and everything that plugs into it."""

from .callbacks import DeviceCallback, GatherPreds, ProgressCallback, Recorder, TrainEvalCallback
from .events import (
    EVENTS,
    Callback,
    CancelBackward,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
)
from .learner import Learner
from .metrics import AvgLoss, AvgMetric, Metric, Perplexity, accuracy, error_rate, top_k_accuracy

__all__ = [
    "EVENTS", "AvgLoss", "AvgMetric", "Callback", "CancelBackward", "CancelBatch", "CancelEpoch", "CancelFit",
    "CancelStep", "CancelTrain", "CancelValidate", "DeviceCallback", "GatherPreds", "Learner", "Metric",
    "Perplexity", "ProgressCallback", "Recorder", "TrainEvalCallback", "accuracy", "error_rate",
    "top_k_accuracy",
]
