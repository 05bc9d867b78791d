"""Callbacks: one module per concern."""

from ..._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".core": ["DeviceCallback", "GatherPreds", "TrainEvalCallback", "loss_per_item"],
    ".csv_logger": ["CSVLogger"],
    ".debug": ["DebugCallback"],
    ".ema": ["EMA"],
    ".hypers": ["AppliedHypers"],
    ".lr_finder": ["LRFindResult", "LRFinder", "lr_find"],
    ".progress": ["ProgressCallback"],
    ".recorder": ["Recorder"],
    ".schedule": ["ParamScheduler", "SaveAtCycleEnd", "fit_flat_cos", "fit_one_cycle", "fit_sgdr"],
    ".tensorboard": ["TensorBoardCallback"],
    ".training": [
        "EarlyStopping", "GradientAccumulation", "GradientClip", "ReduceLROnPlateau", "SaveBestModel",
        "TerminateOnNaN", "TrackerCallback",
    ],
    ".mixup": ["CutMix", "MixUp"],
    ".precision": ["MixedPrecision", "unscale_gradients"],
})
