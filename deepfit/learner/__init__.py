"""The training loop and everything that plugs into it."""

from .callbacks import (
    CSVLogger,
    DeviceCallback,
    GatherPreds,
    ProgressCallback,
    Recorder,
    TensorBoardCallback,
    TrainEvalCallback,
)
from .checkpoint import CheckpointCallback, CheckpointError, PickleRefusedError
from .checks import ModelDataMismatchError, NaNLossCheck
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
from .export import ExportError, InferenceLearner, load_learner
from .learner import Learner
from .metrics import AvgLoss, AvgMetric, Metric, Perplexity, accuracy, error_rate, top_k_accuracy
from .vision import vision_learner

__all__ = [
    "EVENTS", "AvgLoss", "AvgMetric", "Callback", "CancelBackward", "CancelBatch", "CancelEpoch", "CancelFit",
    "CancelStep", "CancelTrain", "CancelValidate", "DeviceCallback", "GatherPreds", "Learner", "Metric",
    "Perplexity", "ProgressCallback", "Recorder", "TrainEvalCallback", "accuracy", "error_rate",
    "top_k_accuracy",
]
__all__ += ["vision_learner"]
__all__ += ["CheckpointCallback", "CheckpointError", "ExportError", "InferenceLearner", "ModelDataMismatchError",
            "NaNLossCheck", "PickleRefusedError", "load_learner"]
__all__ += ["CSVLogger", "TensorBoardCallback"]
from .callbacks import (  # noqa: E402
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    LRFinder,
    LRFindResult,
    ParamScheduler,
    ReduceLROnPlateau,
    SaveAtCycleEnd,
    SaveBestModel,
    TerminateOnNaN,
)
from .freeze import BnFreeze  # noqa: E402
from .optim import SGD, SGDW, Adam  # noqa: E402
from .schedules import SchedCos, SchedExp, SchedLin, SchedNo, combine_scheds  # noqa: E402

__all__ += ["SGD", "SGDW", "Adam", "BnFreeze", "EarlyStopping", "GradientAccumulation", "GradientClip", "LRFindResult",
            "LRFinder", "ParamScheduler", "ReduceLROnPlateau", "SaveAtCycleEnd", "SaveBestModel", "SchedCos",
            "SchedExp", "SchedLin", "SchedNo", "TerminateOnNaN", "combine_scheds"]
from .callbacks import CutMix, MixedPrecision, MixUp  # noqa: E402
from .losses import LabelSmoothingCrossEntropy, NoneReduce  # noqa: E402

__all__ += ["CutMix", "LabelSmoothingCrossEntropy", "MixUp", "MixedPrecision", "NoneReduce"]
from .text import (  # noqa: E402
    RNNRegularizer,
    TextLearner,
    fit_ulmfit,
    language_model_learner,
    text_classifier_learner,
    transfer_vocab,
)

__all__ += ["RNNRegularizer", "TextLearner", "fit_ulmfit", "language_model_learner", "text_classifier_learner",
            "transfer_vocab"]
