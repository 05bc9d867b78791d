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
    "FASHION_MNIST_CLASSES", "ChecksumError", "DataFormatError", "DataLoaders", "DeviceLoader",
    "ImageClassificationData", "TensorLoader", "cache_dir", "default_device", "download_file", "fashion_mnist",
    "fashion_mnist_loaders", "random_split_indices", "read_idx", "sha256_of", "to_device",
]
__all__ += [
    "IMAGE_EXTENSIONS", "CategoryProcessor", "CenterCrop", "ColorJitter", "ColumnLabeller", "Flip", "FuncSplitter",
    "GrandparentSplitter", "ImageDataLoaders", "ImageList", "ImageLoader", "ImageReadError", "IndexSplitter",
    "Normalize", "PadCrop", "RandomResizedCrop", "RandomSplitter", "RegexLabeller", "Resize", "Rotate",
    "compute_stats", "get_image_files", "open_image", "parent_label", "read_csv", "show_batch",
]
__all__ += ["URLS", "DownloadError", "EmptyDataError", "UnsafeArchiveError", "check_not_empty", "download_data",
            "extract_archive", "list_files", "read_image_file", "read_text_file", "require_columns", "untar_data"]
