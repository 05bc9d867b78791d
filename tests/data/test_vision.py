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


# ---------------------------------------------------------------- streaming: workers, sharding


@pytest.fixture
def noisy_folder(tmp_path: Path) -> Path:
    """Two classes of 14×16 random RGB JPEGs (13 images: batches of 4 leave a partial last batch)."""
    rng = np.random.default_rng(1)
    for i in range(13):
        folder = tmp_path / "data" / ("x" if i % 3 else "y")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (14, 16, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return tmp_path / "data"


def streaming(folder: Path, **kw):
    from deepfit.data.transforms import Flip, RandomResizedCrop

    args = dict(valid_pct=0.25, seed=7, bs=4, device="cpu", in_memory=False, stats="compute",
                item_tfms=[RandomResizedCrop(10)], batch_tfms=[Flip(seed=3)])
    return ImageDataLoaders.from_folder(folder, **{**args, **kw})


def epoch_batches(dl) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in dl]


def test_worker_loaders_give_the_same_batches_as_the_in_process_loader(noisy_folder: Path):
    serial, parallel = streaming(noisy_folder, num_workers=0), streaming(noisy_folder, num_workers=2)
    assert parallel.train.num_workers == 2 and serial.train.num_workers == 0
    loader = parallel.train.torch_loader()
    assert loader.persistent_workers and parallel.train.torch_loader() is loader  # one DataLoader, kept workers
    seen = []
    for epoch in range(3):
        a, b = epoch_batches(serial.train), epoch_batches(parallel.train)
        assert len(a) == len(b) == len(serial.train) == 3
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == torch.float32 and xa.shape[1:] == (3, 10, 10)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        seen.append(torch.cat([x for x, _ in a]))
        if epoch == 0:  # an abandoned pass (like lr_find's) leaves the persistent workers ready for the next
            for dl in (serial.train, parallel.train):
                next(iter(dl))
                dl.set_epoch(1)
    assert not torch.equal(seen[0], seen[1])  # new random crops (and order) every epoch
    for a, b in zip(epoch_batches(serial.valid), epoch_batches(parallel.valid)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_worker_batches_do_not_depend_on_the_number_of_workers_after_resume(noisy_folder: Path):
    # no batch transforms: their generators advance with every batch they see (checkpoints save them)
    one, two = streaming(noisy_folder, num_workers=1, batch_tfms=[]), streaming(noisy_folder, num_workers=2,
                                                                                batch_tfms=[])
    one.train.set_epoch(5)
    list(two.train)  # a process that ran epoch 0 first, then jumps to 5
    two.train.set_epoch(5)
    for (xa, ya), (xb, yb) in zip(epoch_batches(one.train), epoch_batches(two.train)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_image_loader_shards_are_disjoint_and_cover_the_epoch(noisy_folder: Path):
    full = streaming(noisy_folder, num_workers=0, valid_pct=0.0001).train
    n = len(full.dataset)
    expected = full.order(2)
    shards = []
    for rank in range(2):
        dl = full.new()
        dl.shard(rank, 2, pad=False)
        dl.set_epoch(2)
        shards.append(torch.cat([y for _, y in dl]))
        assert dl.order(2) == expected[rank::2]
    assert len(shards[0]) + len(shards[1]) == n
    padded = full.new()
    padded.shard(1, 2, pad=True)
    assert padded.n == -(-n // 2) and len(list(padded)) == len(padded)


def test_default_number_of_workers_follows_the_available_cpus(monkeypatch):
    from deepfit.data import vision

    monkeypatch.setattr(vision, "cgroup_cpu_quota", lambda: None)
    for cpus, expected in ((1, 0), (2, 1), (5, 4), (64, 8)):
        monkeypatch.setattr(vision, "available_cpus", lambda c=cpus: c)
        assert vision.default_num_workers() == expected
    monkeypatch.setattr(vision, "available_cpus", lambda: 64)
    monkeypatch.setattr(vision, "cgroup_cpu_quota", lambda: 2.5)  # a container limited to 2.5 CPUs
    assert vision.default_num_workers() == 1


def test_streaming_loader_defaults_to_the_automatic_worker_count(noisy_folder: Path, monkeypatch):
    from deepfit.data import vision

    monkeypatch.setattr(vision, "default_num_workers", lambda: 3)
    dls = streaming(noisy_folder)
    assert dls.train.num_workers == dls.valid.num_workers == 3
    assert not dls.train.pins_memory  # pinned memory only for CUDA devices
    assert dls.train.new(device="cuda").pins_memory and not dls.train.new(device="cuda", pin_memory=False).pins_memory


def test_train_vision_streams_a_folder_with_workers_and_the_cache(noisy_folder: Path, tmp_path: Path, capsys,
                                                                  monkeypatch):
    """`deepfit train-vision FOLDER --workers N --cache` (streaming forced: the folder is small)."""
    from deepfit.cli import main
    from deepfit.data.cache import CACHE_FOLDER

    seen = {}
    original = ImageDataLoaders.from_folder

    def streaming_from_folder(path, **kw):
        seen.update(kw)
        dls = original(path, in_memory=False, **kw)
        seen["loader"] = dls.train
        return dls

    monkeypatch.setattr(ImageDataLoaders, "from_folder", staticmethod(streaming_from_folder))
    rc = main(["train-vision", str(noisy_folder), "--workers", "1", "--cache", "--size", "12", "--epochs", "2",
               "--bs", "4", "--quiet", "--out", str(tmp_path / "runs"), "--name", "r"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert seen["num_workers"] == 1 and seen["cache"] is True
    assert seen["loader"].num_workers == 1 and seen["loader"].cache.complete
    assert len(list((noisy_folder / CACHE_FOLDER).glob("*.npy"))) == 2  # training and validation splits
    config = (tmp_path / "runs" / "r" / "config.json").read_text()
    assert '"workers": 1' in config and '"cache": true' in config
    assert main(["train-vision", str(noisy_folder), "--workers", "-1"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_in_memory_folder_and_statistics_decoded_by_workers_equal_in_process(noisy_folder: Path, monkeypatch):
    from deepfit.data import vision

    monkeypatch.setattr(vision, "WORKERS_FROM", 4)  # decode these few images with the workers too
    kw = dict(valid_pct=0.25, seed=2, bs=4, device="cpu", item_tfms=[Resize(9)])
    serial = ImageDataLoaders.from_folder(noisy_folder, num_workers=0, in_memory=True, **kw)
    parallel = ImageDataLoaders.from_folder(noisy_folder, num_workers=2, in_memory=True, **kw)
    assert serial.train.x.shape == (13, 3, 9, 9) and torch.equal(serial.train.x, parallel.train.x)
    streamed = [ImageDataLoaders.from_folder(noisy_folder, num_workers=w, in_memory=False, **kw) for w in (0, 2)]
    assert torch.equal(streamed[0].train.mean, streamed[1].train.mean)
    assert torch.allclose(streamed[0].train.mean, serial.train.mean, atol=0.02)  # a sample vs all the images
