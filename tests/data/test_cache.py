"""The decoded-image cache: written during the first epoch, memory-mapped afterwards, invalidated by changed files,
never left half-written."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepfit.data import cache as cache_mod
from deepfit.data.cache import CACHE_FOLDER, CacheError, DecodedCache, cache_folder, cache_key
from deepfit.data.transforms import Flip, RandomResizedCrop, Resize
from deepfit.data.vision import ImageDataLoaders, ImageDataset
from deepfit.learner import Learner, accuracy
from deepfit.learner.callbacks import ProgressCallback
from tests.helpers.data import requires_fmnist
from tests.helpers.vision import tiny_cnn, write_fmnist_folder


def write_jpg(path: Path, seed: int, size=(20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path, quality=90)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    for i in range(11):
        write_jpg(root / ("cat" if i % 2 else "dog") / f"{i}.jpg", seed=i)
    return root


def build(root: Path, **kw):
    args = dict(valid_pct=0.3, seed=1, bs=4, device="cpu", in_memory=False, num_workers=0, stats=None,
                item_tfms=[Resize(12)], cache=True)
    return ImageDataLoaders.from_folder(root, **{**args, **kw})


def epoch(dl) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(dl))
    return torch.cat(xs), torch.cat(ys)


def npy_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npy"))


# ---------------------------------------------------------------- DecodedCache itself


def test_rows_written_then_finished_become_a_read_only_memory_map(folder: Path, tmp_path: Path):
    items = sorted(folder.rglob("*.jpg"))[:5]
    c = DecodedCache(items, (3, 2, 2), "spec", tmp_path / "c")
    assert not c.complete and c.missing().tolist() == [0, 1, 2, 3, 4]
    values = np.arange(5 * 12, dtype=np.uint8).reshape(5, 3, 2, 2)
    c.write([4, 0], values[[4, 0]])
    assert c.building and c.missing().tolist() == [1, 2, 3]
    assert npy_files(tmp_path / "c") == []  # nothing under the final name until every row is there
    assert not c.finish()  # rows missing and nothing to decode them with
    assert c.finish(decode=lambda i: values[i])
    arr = c.array()
    assert isinstance(arr, np.memmap) and not arr.flags.writeable and np.array_equal(arr, values)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [c.path.name]  # no temporary file left
    again = DecodedCache(items, (3, 2, 2), "spec", tmp_path / "c")
    assert again.complete and np.array_equal(again.array(), values)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 2, 2\)"):
        DecodedCache(items, (3, 2, 2), "other", tmp_path / "c").write([0], np.zeros((1, 2, 2), np.uint8))


def test_key_changes_with_a_file_size_mtime_list_shape_or_spec(folder: Path):
    items = sorted(folder.rglob("*.jpg"))
    ident, stamp = cache_key(items, (3, 8, 8), "a")
    assert cache_key(items, (3, 8, 8), "a") == (ident, stamp)
    assert cache_key(items, (3, 8, 8), "b")[0] != ident and cache_key(items, (1, 8, 8), "a")[0] != ident
    assert cache_key(items[1:], (3, 8, 8), "a")[0] != ident
    st = items[3].stat()
    os.utime(items[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cache_key(items, (3, 8, 8), "a") == (ident, cache_key(items, (3, 8, 8), "a")[1]) != (ident, stamp)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        cache_key([*items, folder / "nope.jpg"], (3, 8, 8), "a")


def _write_some_rows_then_die(items, folder) -> None:
    c = DecodedCache(items, (3, 2, 2), "spec", folder)
    c.write([0, 1], np.ones((2, 3, 2, 2), np.uint8))
    c._rows.flush()
    os._exit(0)  # killed mid-epoch: no finish, no clean-up


def test_a_killed_first_epoch_leaves_no_half_cache(folder: Path, tmp_path: Path):
    items = sorted(folder.rglob("*.jpg"))[:4]
    where = tmp_path / "c"
    child = multiprocessing.get_context("fork").Process(target=_write_some_rows_then_die, args=(items, where))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert npy_files(where) == [] and len(list(where.glob(".*.tmp-*"))) == 1  # only the dead process's temporary
    c = DecodedCache(items, (3, 2, 2), "spec", where)
    assert not c.complete
    assert c.finish(decode=lambda i: np.full((3, 2, 2), i, np.uint8))
    assert [p.name for p in where.iterdir()] == [c.path.name]  # the dead temporary was removed
    assert c.array()[:, 0, 0, 0].tolist() == [0, 1, 2, 3]


def test_a_cache_file_of_another_shape_is_not_used(folder: Path, tmp_path: Path):
    items = sorted(folder.rglob("*.jpg"))[:3]
    c = DecodedCache(items, (1, 2, 2), "s", tmp_path)
    np.save(c.path, np.zeros((3, 1, 2, 3), np.uint8))  # e.g. written by another version
    assert not c.complete
    with pytest.raises(CacheError, match="not complete"):
        c.array()


def test_cache_folder_beside_the_data_else_in_deepfit_data(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DEEPFIT_DATA", str(tmp_path / "store"))
    assert cache_folder(tmp_path / "pics") == tmp_path / "pics" / CACHE_FOLDER
    assert cache_folder(tmp_path / "pics", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setattr(cache_mod, "_writable", lambda folder: False)  # a read-only data folder
    assert cache_folder(tmp_path / "pics") == tmp_path / "store" / "image-cache"
    assert cache_folder(None) == tmp_path / "store" / "image-cache"


# ---------------------------------------------------------------- through ImageDataLoaders


def test_first_epoch_writes_the_cache_and_later_epochs_read_it(folder: Path, monkeypatch):
    dls = build(folder, num_workers=1)
    where = folder / CACHE_FOLDER
    assert not dls.train.cache.complete and npy_files(where) == []
    first = epoch(dls.train)
    assert dls.train.cache.complete and len(npy_files(where)) == 1  # the training split's cache
    dls.train.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(dls.train)))  # same epoch, now from the cache
    valid = epoch(dls.valid)
    assert len(npy_files(where)) == 2

    # a new process: nothing is decoded any more
    fresh = build(folder, num_workers=1)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image although the cache is complete")

    monkeypatch.setattr(ImageDataset, "pixels", no_decoding)
    assert fresh.train.cache.complete and fresh.valid.cache.complete
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(fresh.train)))
    assert all(torch.equal(a, b) for a, b in zip(valid, epoch(fresh.valid)))


def test_cached_batches_equal_uncached_batches_with_batch_augmentation(folder: Path):
    plain = build(folder, cache=False, batch_tfms=[Flip(seed=2)])
    cached = build(folder, cache=True, batch_tfms=[Flip(seed=2)])
    for _ in range(3):  # epoch 0 fills the cache, 1 and 2 read it
        a, b = epoch(plain.train), epoch(cached.train)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert cached.train.cache.complete


def test_a_changed_file_invalidates_the_cache(folder: Path):
    dls = build(folder)
    epoch(dls.train)
    old = dls.train.cache.path
    assert old.exists()
    changed = dls.train.dataset.items[2]
    write_jpg(changed, seed=99)  # new pixels (a new size and modification time)
    fresh = build(folder)
    assert not fresh.train.cache.complete and fresh.train.cache.path != old
    x, _ = epoch(fresh.train)
    assert fresh.train.cache.complete and not old.exists()  # rebuilt, and the stale file deleted
    row = torch.from_numpy(np.array(fresh.train.cache.array()[2]))
    assert torch.equal(row, fresh.train.dataset.image(2))
    assert not torch.equal(row, torch.from_numpy(np.array(dls.train.cache.array()[2])))


def test_touching_a_file_alone_invalidates_the_cache(folder: Path):
    dls = build(folder)
    epoch(dls.train)
    path = dls.train.dataset.items[0]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not build(folder).train.cache.complete


def test_drop_last_and_abandoned_passes_still_complete_the_cache(folder: Path):
    dls = build(folder, drop_last=True, valid_pct=0.01)
    n = len(dls.train.dataset)
    assert n % 4 and len(dls.train) == n // 4  # the last partial batch is never yielded
    next(iter(dls.train))  # an abandoned pass keeps its rows but does not finish the cache
    assert not dls.train.cache.complete and len(dls.train.cache.missing()) == n - 4
    epoch(dls.train)
    assert dls.train.cache.complete
    assert torch.equal(torch.from_numpy(np.array(dls.train.cache.array())),
                       torch.stack([dls.train.dataset.image(i) for i in range(n)]))


def test_build_cache_with_workers_before_training(folder: Path):
    dls = build(folder, num_workers=2)
    c = dls.train.build_cache()
    assert c.complete and c is dls.train.cache
    assert torch.equal(torch.from_numpy(np.array(c.array())),
                       torch.stack([dls.train.dataset.image(i) for i in range(len(c.array()))]))


def test_random_item_transforms_warn_that_the_cache_uses_their_validation_form(folder: Path):
    with pytest.warns(UserWarning, match="validation form"):
        dls = build(folder, item_tfms=[RandomResizedCrop(10)])
    assert not dls.train.dataset.train  # cached items are the centre crops


def test_in_memory_loading_fills_and_reuses_the_cache(folder: Path, monkeypatch):
    first = build(folder, in_memory=True)
    where = folder / CACHE_FOLDER
    assert len(npy_files(where)) == 1
    monkeypatch.setattr(ImageDataset, "pixels", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    again = build(folder, in_memory=True)
    assert torch.equal(again.train.x, first.train.x)


@requires_fmnist
def test_streaming_with_workers_and_the_cache_trains_on_real_images(tmp_path: Path):
    """Real Fashion-MNIST PNGs streamed by a worker: the first epoch writes the cache, later ones read it."""
    root = write_fmnist_folder(tmp_path / "fmnist", n_train=100, n_valid=30, seed=0)
    dls = ImageDataLoaders.from_folder(root, bs=50, device="cpu", seed=0, in_memory=False, num_workers=1, cache=True)
    torch.manual_seed(0)
    learn = Learner(tiny_cnn(1, dls.c, width=16), dls, metrics=accuracy)
    learn.remove_cb(ProgressCallback)
    learn.fit_one_cycle(3, 2e-2)
    assert dls.train.cache.complete and dls.valid.cache.complete
    losses = [row[0] for row in learn.recorder.values]
    acc = learn.recorder.values[-1][-1]
    assert losses[-1] < losses[0] and acc >= 0.6, f"losses {losses}, accuracy {acc:.3f}"
