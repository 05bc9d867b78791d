"""Reading and batching data; knows nothing of training."""

from .archive import ArchiveTooLargeError
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
from .cache import CacheError, DecodedCache, cache_folder
from .core import (
    DataLoaders,
    DeviceLoader,
    EncodingLoader,
    EpochLoader,
    Loader,
    TensorLoader,
    default_device,
    tell_stats,
    to_device,
    to_model_input,
)
from .download import (
    ChecksumError,
    DownloadError,
    Expected,
    cache_dir,
    download_file,
    download_verified,
    file_digests,
    sha256_of,
)
from .external import FASHION_MNIST_CLASSES, DataFormatError, ImageClassificationData, fashion_mnist, read_idx
from .files import (
    EmptyDataError,
    check_not_empty,
    get_files,
    list_files,
    read_image_file,
    read_text_file,
    require_columns,
    to_8bit,
)
from .multilabel import MultiCategoryProcessor, labels_from_columns, multi_hot, split_labels
from .transforms import (
    AUGMENT_PRESETS,
    CenterCrop,
    ColorJitter,
    Flip,
    Grayscale,
    Lambda,
    Normalize,
    Pad,
    PadCrop,
    RandomCrop,
    RandomResizedCrop,
    Resize,
    Rotate,
    augment_preset,
    compute_stats,
    tta_transforms,
)
from .untar import URLS, RemoteFile, UnsafeArchiveError, download_data, extract_archive, untar_data
from .vision import (
    ImageDataLoaders,
    ImageDataset,
    ImageList,
    ImageLoader,
    ImageReadError,
    default_num_workers,
    open_image,
    show_batch,
)

__all__ = [
    "AUGMENT_PRESETS", "ArchiveTooLargeError", "CacheError", "CategoryProcessor", "CenterCrop", "ChecksumError",
    "ColorJitter", "ColumnLabeller", "DataFormatError", "DataLoaders", "DecodedCache", "DeviceLoader",
    "DownloadError", "EmptyDataError", "EncodingLoader", "EpochLoader", "Expected", "FASHION_MNIST_CLASSES", "Flip",
    "FuncSplitter", "GrandparentSplitter", "Grayscale", "IMAGE_EXTENSIONS", "ImageClassificationData",
    "ImageDataLoaders", "ImageDataset", "ImageList", "ImageLoader", "ImageReadError", "IndexSplitter", "Lambda",
    "Loader", "MultiCategoryProcessor", "Normalize", "Pad", "PadCrop", "RandomCrop", "RandomResizedCrop",
    "RandomSplitter", "RegexLabeller", "RemoteFile", "Resize", "Rotate", "TensorLoader", "URLS", "UnsafeArchiveError",
    "augment_preset", "cache_dir", "cache_folder", "check_not_empty", "compute_stats", "default_device",
    "default_num_workers", "download_data", "download_file", "download_verified", "extract_archive", "fashion_mnist",
    "fashion_mnist_loaders", "file_digests", "get_files", "get_image_files", "labels_from_columns", "list_files",
    "multi_hot", "open_image", "parent_label", "random_split_indices", "read_csv", "read_idx", "read_image_file",
    "read_text_file", "require_columns", "sha256_of", "show_batch", "split_labels", "tell_stats", "to_8bit",
    "to_device", "to_model_input", "tta_transforms", "untar_data",
]
