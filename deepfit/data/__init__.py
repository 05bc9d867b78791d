"""Reading and batching data; knows nothing of training."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".blocks": [
        "CategoryProcessor", "ColumnLabeller", "FuncSplitter", "GrandparentSplitter", "IMAGE_EXTENSIONS",
        "IndexSplitter", "RandomSplitter", "RegexLabeller", "get_image_files", "parent_label", "read_csv",
    ],
    ".builtin": ["fashion_mnist_loaders", "random_split_indices"],
    ".core": ["DataLoaders", "DeviceLoader", "TensorLoader", "default_device", "to_device"],
    ".download": ["ChecksumError", "DownloadError", "cache_dir", "download_file", "sha256_of"],
    ".external": ["DataFormatError", "FASHION_MNIST_CLASSES", "ImageClassificationData", "fashion_mnist", "read_idx"],
    ".files": [
        "EmptyDataError", "check_not_empty", "list_files", "read_image_file", "read_text_file", "require_columns",
    ],
    ".transforms": [
        "CenterCrop", "ColorJitter", "Flip", "Normalize", "PadCrop", "RandomResizedCrop", "Resize", "Rotate",
        "compute_stats",
    ],
    ".untar": ["URLS", "UnsafeArchiveError", "download_data", "extract_archive", "untar_data"],
    ".vision": ["ImageDataLoaders", "ImageList", "ImageLoader", "ImageReadError", "open_image", "show_batch"],
})
