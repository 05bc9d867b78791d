import gzip
import struct

import numpy as np
import pytest

from deepfit.data import DataFormatError, read_idx
from deepfit.data.external import read_image_label_pair
from tests.helpers.data import requires_fmnist


def write_idx(path, array: np.ndarray, magic: bytes | None = None, truncate: int = 0):
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if truncate:
        data = data[:-truncate]
    with gzip.open(path, "wb") as f:
        f.write(data)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a.gz", expected_ndim=3), arr)


def test_truncated_file_names_file_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((5, 28, 28), dtype=np.uint8), truncate=100)
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz: file is truncated.*\(5, 28, 28\)"):
        read_idx(path)


def test_bad_magic_number(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.zeros(3, dtype=np.uint8), magic=b"\x12\x34\x08\x01")
    with pytest.raises(DataFormatError, match=r"labels\.gz: bad magic number 0x12340801"):
        read_idx(path)
    write_idx(path, np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="1 dimensions, expected 3"):
        read_idx(path, expected_ndim=3)


def test_not_gzip_is_reported(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip data at all")
    with pytest.raises(DataFormatError, match=r"x\.gz: cannot read idx data"):
        read_idx(path)


def test_image_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "i.gz", np.zeros((4, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "l.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"i\.gz has 4 images but .*l\.gz has 3 labels"):
        read_image_label_pair(tmp_path / "i.gz", tmp_path / "l.gz", ["a"])


@requires_fmnist
def test_fashion_mnist_real_files():
    from deepfit.data import fashion_mnist

    train, test = fashion_mnist()
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype.is_floating_point is False and str(train.images.dtype) == "torch.uint8"
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    assert (train.labels.bincount() == 6000).all()
    assert train.classes[9] == "Ankle boot"


def test_fashion_mnist_download_checks_the_known_size(server, tmp_path, monkeypatch):
    from deepfit.data import ChecksumError, external, fashion_mnist
    from tests.helpers.http_server import Resource

    base, files = server
    monkeypatch.setattr(external, "FASHION_MNIST_URL", base + "/")
    monkeypatch.setattr(external, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    for name in external.FASHION_MNIST_FILES:
        files[f"/{name}"] = Resource(b"not the real file")
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz: expected 26421856 bytes, the server "
                                            r"announces 17"):
        fashion_mnist(download=True)
    assert list((tmp_path / "cache" / "fashion-mnist").iterdir()) == []


@requires_fmnist
def test_fashion_mnist_known_sizes_match_the_installed_files():
    from deepfit.data.external import DEBIAN_FASHION_MNIST, FASHION_MNIST_FILES, FASHION_MNIST_SIZES

    assert set(FASHION_MNIST_SIZES) == set(FASHION_MNIST_FILES)
    for name, size in FASHION_MNIST_SIZES.items():
        assert (DEBIAN_FASHION_MNIST / name).stat().st_size == size
