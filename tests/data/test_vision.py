"""Reading images into DataLoaders: 16-bit files, and item transforms that change channels or size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepfit.data.files import read_image_file, to_8bit
from deepfit.data.transforms import Grayscale, Pad, RandomCrop, Resize
from deepfit.data.vision import ImageDataLoaders, image_mode, one_batch, open_image


def write_16bit_png(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    return path


def test_16bit_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path):
    values = np.array([[0, 257, 32896], [4000, 60000, 65535]])
    path = write_16bit_png(tmp_path / "deep.png", values)
    img = open_image(path)
    assert img.mode == "L"
    assert np.asarray(img).tolist() == [[0, 1, 128], [16, 233, 255]]
    assert np.asarray(open_image(path, "RGB"))[1, 0].tolist() == [16, 16, 16]
    assert image_mode(path) == "L"


def test_to_8bit_on_32_bit_and_float_images():
    as_int = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert np.asarray(to_8bit(as_int)).tolist() == [[0, 100, 255]]  # an 8-bit range stays as it is
    as_int16 = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert np.asarray(to_8bit(as_int16)).tolist() == [[0, 255]]
    as_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_8bit(as_float)).tolist() == [[0, 128, 255]]
    rgb = Image.new("RGB", (2, 2))
    assert to_8bit(rgb) is rgb


def test_16bit_folder_trains_on_varied_pixels(tmp_path: Path):
    rng = np.random.default_rng(0)
    for i in range(6):
        write_16bit_png(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", rng.integers(0, 65536, (5, 5)))
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.34, bs=6, device="cpu", stats=None,
                                       vocab=["a", "b"])
    xb, _ = one_batch(dls.train)
    assert xb.shape[1] == 1
    assert xb.min() < 0.2 and xb.max() > 0.8 and (xb < 1).float().mean() > 0.9  # not every pixel 255
    path = tmp_path / "a" / "1.png"
    expect = np.round(np.asarray(Image.open(path), dtype=np.float64) / 257)
    assert np.array_equal(np.asarray(read_image_file(path)), expect)


def write_rgb(path: Path, seed: int, size=(10, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


@pytest.fixture
def rgb_folder(tmp_path: Path) -> Path:
    for i in range(8):
        write_rgb(tmp_path / ("cat" if i % 2 else "dog") / f"{i}.png", seed=i)
    return tmp_path


@pytest.mark.parametrize("in_memory", [True, False])
def test_grayscale_item_transform_gives_one_channel_batches(rgb_folder: Path, in_memory: bool):
    dls = ImageDataLoaders.from_folder(rgb_folder, valid_pct=0.25, item_tfms=[Grayscale()], bs=4, device="cpu",
                                       in_memory=in_memory, vocab=["cat", "dog"])
    xb, _ = one_batch(dls.train)
    assert xb.shape == (4, 1, 10, 12) and dls.n_channels == 1
    assert dls.valid.encode(rgb_folder / "cat" / "1.png").shape == (1, 1, 10, 12)


@pytest.mark.parametrize("in_memory", [True, False])
def test_pad_and_random_crop_item_transforms_set_the_batch_size(rgb_folder: Path, in_memory: bool):
    tfms = [Resize(8), Pad(2), RandomCrop(10)]
    dls = ImageDataLoaders.from_folder(rgb_folder, valid_pct=0.25, item_tfms=tfms, bs=4, device="cpu",
                                       in_memory=in_memory, vocab=["cat", "dog"], stats=None)
    xb, _ = one_batch(dls.train)
    assert xb.shape == (4, 3, 10, 10)
    vb, _ = one_batch(dls.valid)
    assert vb.shape[1:] == (3, 10, 10)
    assert torch.all(vb[:, :, 0, :] == 0)  # the validation form is the centre of the black-padded 12×12 image
