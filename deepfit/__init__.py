"""deepfit: a deep-learning training library for PyTorch."""

from .data import DataLoaders, ImageDataLoaders, TensorLoader, fashion_mnist, fashion_mnist_loaders
from .learner import Callback, Learner, Recorder, accuracy, error_rate, load_learner, vision_learner

__version__ = "0.1.0"

__all__ = ["Callback", "DataLoaders", "Learner", "Recorder", "TensorLoader", "__version__", "accuracy",
           "error_rate", "fashion_mnist", "fashion_mnist_loaders"]
__all__ += ["load_learner"]
__all__ += ["ImageDataLoaders", "vision_learner"]
