"""deepfit: a deep-learning training library for PyTorch."""

from .data import DataLoaders, TensorLoader, fashion_mnist, fashion_mnist_loaders
from .learner import Callback, Learner, Recorder, accuracy, error_rate

__version__ = "0.1.0"

__all__ = ["Callback", "DataLoaders", "Learner", "Recorder", "TensorLoader", "__version__", "accuracy",
           "error_rate", "fashion_mnist", "fashion_mnist_loaders"]
