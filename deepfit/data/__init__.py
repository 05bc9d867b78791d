"""Reading and batching data; knows nothing of training."""

from .blocks import (
    IMAGE_EXTENSIONS,
    CategoryProcessor,
    ColumnLabeller,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    RegexLabeller,
    get_image_files,
    parent_label,
    read_csv,
)
from .builtin import fashion_mnist_loaders, random_split_indices
from .core import DataLoaders, DeviceLoader, TensorLoader, default_device, to_device
from .download import ChecksumError, DownloadError, cache_dir, download_file, sha256_of
from .external import FASHION_MNIST_CLASSES, DataFormatError, ImageClassificationData, fashion_mnist, read_idx
from .files import EmptyDataError, check_not_empty, list_files, read_image_file, read_text_file, require_columns
from .transforms import (
    CenterCrop,
    ColorJitter,
    Flip,
    Normalize,
    PadCrop,
    RandomResizedCrop,
    Resize,
    Rotate,
    compute_stats,
)
from .untar import URLS, UnsafeArchiveError, download_data, extract_archive, untar_data
from .vision import ImageDataLoaders, ImageList, ImageLoader, ImageReadError, open_image, show_batch

__all__ = [
    "CategoryProcessor", "CenterCrop", "ChecksumError", "ColorJitter", "ColumnLabeller", "DataFormatError",
    "DataLoaders", "DeviceLoader", "DownloadError", "EmptyDataError", "FASHION_MNIST_CLASSES", "Flip", "FuncSplitter",
    "GrandparentSplitter", "IMAGE_EXTENSIONS", "ImageClassificationData", "ImageDataLoaders", "ImageList",
    "ImageLoader", "ImageReadError", "IndexSplitter", "Normalize", "PadCrop", "RandomResizedCrop", "RandomSplitter",
    "RegexLabeller", "Resize", "Rotate", "TensorLoader", "URLS", "UnsafeArchiveError", "cache_dir", "check_not_empty",
    "compute_stats", "default_device", "download_data", "download_file", "extract_archive", "fashion_mnist",
    "fashion_mnist_loaders", "get_image_files", "list_files", "open_image", "parent_label", "random_split_indices",
    "read_csv", "read_idx", "read_image_file", "read_text_file", "require_columns", "sha256_of", "show_batch",
    "to_device", "untar_data",
]
