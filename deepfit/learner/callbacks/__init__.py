"""Callbacks: one module per concern."""

from .core import DeviceCallback, GatherPreds, TrainEvalCallback, loss_per_item
from .csv_logger import CSVLogger
from .lr_finder import LRFinder, LRFindResult, lr_find
from .progress import ProgressCallback
from .recorder import Recorder
from .schedule import ParamScheduler, SaveAtCycleEnd, fit_flat_cos, fit_one_cycle, fit_sgdr
from .tensorboard import TensorBoardCallback

__all__ = ["CSVLogger", "DeviceCallback", "GatherPreds", "ProgressCallback", "Recorder", "TensorBoardCallback",
           "TrainEvalCallback", "loss_per_item"]
from .training import (  # noqa: E402
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    ReduceLROnPlateau,
    SaveBestModel,
    TerminateOnNaN,
    TrackerCallback,
)

__all__ += ["EarlyStopping", "GradientAccumulation", "GradientClip", "LRFindResult", "LRFinder", "ParamScheduler",
            "ReduceLROnPlateau", "SaveAtCycleEnd", "SaveBestModel", "TerminateOnNaN", "TrackerCallback",
            "fit_flat_cos", "fit_one_cycle", "fit_sgdr", "lr_find"]
from .mixup import CutMix, MixUp  # noqa: E402
from .precision import MixedPrecision, unscale_gradients  # noqa: E402

__all__ += ["CutMix", "MixUp", "MixedPrecision", "unscale_gradients"]
