"""The training loop and everything that plugs into it."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".callbacks": [
        "CSVLogger", "CutMix", "DebugCallback", "DeviceCallback", "EMA", "EarlyStopping", "GatherPreds",
        "GradientAccumulation",
        "GradientClip", "LRFindResult", "LRFinder", "MixUp", "MixedPrecision", "ParamScheduler", "ProgressCallback",
        "Recorder", "ReduceLROnPlateau", "SaveAtCycleEnd", "SaveBestModel", "TensorBoardCallback", "TerminateOnNaN",
        "TrainEvalCallback",
    ],
    ".checkpoint": [
        "CheckpointCallback", "CheckpointError", "NonFiniteWeightsError", "PickleRefusedError", "non_finite_tensors",
    ],
    ".checks": ["ModelDataMismatchError", "NaNLossCheck", "NonFiniteLossError"],
    ".events": [
        "Callback", "CancelBackward", "CancelBatch", "CancelEpoch", "CancelFit", "CancelStep", "CancelTrain",
        "CancelValidate", "EVENTS",
    ],
    ".export": ["ExportError"],
    "..inference": ["InferenceLearner", "load_learner"],  # old import path: deepfit.inference
    ".learner": ["Learner"],
    ".metrics": [
        "AvgLoss", "AvgMetric", "Metric", "Perplexity", "accuracy", "accuracy_multi", "error_rate", "f1_multi",
        "fbeta_multi", "top_k_accuracy",
    ],
    ".vision": ["cnn_learner", "vision_learner"],
    ".freeze": ["BnFreeze"],
    ".optim": ["Adam", "SGD", "SGDW", "children_splitter"],
    ".probs": ["to_probs"],
    ".schedules": ["SchedCos", "SchedExp", "SchedLin", "SchedNo", "combine_scheds"],
    ".losses": ["BCEWithLogitsFlat", "LabelSmoothingCrossEntropy", "NoneReduce", "resolve_activation"],
    ".distributed": ["DistributedCallback", "distrib_ctx"],
})
