"""Reading and batching data; knows nothing of training."""

from .builtin import fashion_mnist_loaders, random_split_indices
from .core import DataLoaders, DeviceLoader, TensorLoader, default_device, to_device
from .download import ChecksumError, cache_dir, download_file, sha256_of
from .external import FASHION_MNIST_CLASSES, DataFormatError, ImageClassificationData, fashion_mnist, read_idx

__all__ = [
    "FASHION_MNIST_CLASSES", "ChecksumError", "DataFormatError", "DataLoaders", "DeviceLoader",
    "ImageClassificationData", "TensorLoader", "cache_dir", "default_device", "download_file", "fashion_mnist",
    "fashion_mnist_loaders", "random_split_indices", "read_idx", "sha256_of", "to_device",
]
