"""deepfit: a deep-learning training library for PyTorch."""

from ._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".data": ["DataLoaders", "ImageDataLoaders", "TensorLoader", "fashion_mnist", "fashion_mnist_loaders"],
    ".learner": ["Callback", "Learner", "Recorder", "accuracy", "error_rate", "vision_learner"],
    ".inference": ["InferenceLearner", "load_learner"],
})
