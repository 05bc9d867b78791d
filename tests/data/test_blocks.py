"""Item lists, splitters, labellers, the class vocabulary, and folder DataLoaders on real Fashion-MNIST PNGs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepfit.data import (
    CategoryProcessor,
    ColumnLabeller,
    Flip,
    FuncSplitter,
    GrandparentSplitter,
    ImageDataLoaders,
    ImageList,
    ImageReadError,
    IndexSplitter,
    RandomSplitter,
    RegexLabeller,
    Resize,
    get_image_files,
    parent_label,
    show_batch,
)
from deepfit.data.vision import ImageLoader, one_batch
from deepfit.learner import Learner, accuracy
from deepfit.learner.callbacks import ProgressCallback
from tests.helpers.data import requires_fmnist
from tests.helpers.vision import tiny_cnn, write_fmnist_folder


def write_png(path: Path, value: int = 0, size=(6, 6), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else (*size, 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path)
    return path


@pytest.fixture
def toy_folder(tmp_path) -> Path:
    """train/{a,b}/ and valid/{a,b}/ with a few tiny gray images whose value encodes the class."""
    for split, n in (("train", 6), ("valid", 2)):
        for cls, value in (("a", 40), ("b", 200)):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{cls}_{split}_{i}.png", value + i)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "a" / ".hidden.png").write_bytes(b"")
    return tmp_path


# ---------------------------------------------------------------- item lists


def test_get_image_files_filters_sorts_and_skips_hidden(toy_folder):
    files = get_image_files(toy_folder)
    assert len(files) == 16 and files == sorted(files)
    assert all(f.suffix == ".png" and not f.name.startswith(".") for f in files)
    only_valid = ImageList.from_folder(toy_folder, folders=["valid"])
    assert len(only_valid) == 4 and all("valid" in f.parts for f in only_valid)
    assert [f.name for f in get_image_files(toy_folder, extensions=["txt"])] == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageList.from_folder(toy_folder / "nowhere")


# ---------------------------------------------------------------- splitters


def test_random_splitter_is_deterministic_disjoint_and_complete():
    items = list(range(103))
    tr, va = RandomSplitter(0.2, seed=1)(items)
    assert (tr, va) == RandomSplitter(0.2, seed=1)(items)
    assert RandomSplitter(0.2, seed=2)(items)[1] != va
    assert not set(tr) & set(va) and sorted(tr + va) == items
    assert len(va) == round(103 * 0.2)
    with pytest.raises(ValueError, match="valid_pct"):
        RandomSplitter(1.0)


def test_grandparent_func_and_index_splitters(toy_folder):
    items = get_image_files(toy_folder)
    tr, va = GrandparentSplitter()(items)
    assert {items[i].parent.parent.name for i in tr} == {"train"}
    assert {items[i].parent.parent.name for i in va} == {"valid"}
    assert GrandparentSplitter()(items) == (tr, va) and not set(tr) & set(va)
    with pytest.raises(ValueError, match="'test'"):
        GrandparentSplitter(valid_name="test")(items)
    tr2, va2 = FuncSplitter(lambda p: p.name.endswith("_0.png"))(items)
    assert len(va2) == 4 and not set(tr2) & set(va2) and len(tr2) + len(va2) == 16
    tr3, va3 = IndexSplitter([3, 1, 1])(items)
    assert va3 == [1, 3] and 1 not in tr3 and len(tr3) == 14
    with pytest.raises(IndexError, match="out of range"):
        IndexSplitter([99])(items)


# ---------------------------------------------------------------- labellers and vocabulary


def test_labellers(tmp_path):
    p = tmp_path / "imgs" / "cat_12.png"
    assert parent_label(p) == "imgs"
    assert RegexLabeller(r"^(\w+?)_\d+")(p) == "cat"
    with pytest.raises(ValueError, match="cat_12.png"):
        RegexLabeller(r"^dog_(\d+)")(p)
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "label"])
        w.writerow(["imgs/cat_12.png", "cat"])
        w.writerow(["dog_1.png", "dog"])
    by_csv = ColumnLabeller(table, "name", "label", root=tmp_path)
    assert by_csv(p) == "cat" and by_csv(tmp_path / "other" / "dog_1.png") == "dog"
    by_rows = ColumnLabeller([{"f": "x.png", "y": "1"}], fn_col="f", label_col="y")
    assert by_rows(tmp_path / "x.png") == "1"
    with pytest.raises(KeyError, match="missing.png"):
        by_csv(tmp_path / "missing.png")


def test_vocab_survives_save_and_load(tmp_path):
    cats = CategoryProcessor().fit(["shoe", "bag", "shirt", "bag"])
    assert cats.vocab == ["bag", "shirt", "shoe"]
    loaded = CategoryProcessor.load(cats.save(tmp_path / "vocab.json"))
    assert loaded.vocab == cats.vocab
    labels = ["shoe", "shirt", "bag"]
    assert torch.equal(loaded.encode(labels), cats.encode(labels))
    assert loaded.decode(loaded.encode(labels)) == labels and loaded.decode(torch.tensor(0)) == "bag"
    with pytest.raises(KeyError, match="'hat'.*x.png"):
        loaded.encode(["hat"], items=["x.png"])
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="bad.json"):
        CategoryProcessor.load(tmp_path / "bad.json")


# ---------------------------------------------------------------- folder DataLoaders


def test_from_folder_in_memory_and_workers_give_the_same_batches(toy_folder, tmp_path):
    kw = dict(bs=4, device="cpu", seed=0)
    mem = ImageDataLoaders.from_folder(toy_folder, in_memory=True, **kw)
    lazy = ImageDataLoaders.from_folder(toy_folder, in_memory=False, num_workers=1, **kw)
    assert isinstance(lazy.train, ImageLoader) and mem.vocab == lazy.vocab == ["a", "b"]
    assert mem.c == 2 and len(mem.train) == 3 and len(mem.valid) == 1
    for a, b in ((mem.train, lazy.train), (mem.valid, lazy.valid)):
        xa, ya = map(torch.cat, zip(*list(a)))
        xb, yb = map(torch.cat, zip(*list(b)))
        assert xa.dtype == torch.float32 and xa.shape[1:] == (1, 6, 6)
        assert torch.allclose(xa, xb) and torch.equal(ya, yb)
    # same seed → same order per epoch; the order changes between epochs
    fresh = ImageDataLoaders.from_folder(toy_folder, in_memory=False, **kw).train
    assert fresh.order(0) == lazy.train.order(0) and fresh.order(0) != fresh.order(1)
    assert sorted(fresh.order(1)) == list(range(12))
    assert mem.train.mean is not None  # stats were computed from the training images


def test_vocab_reused_for_new_data(toy_folder):
    cats = CategoryProcessor(["b", "a"], sort=False)
    dls = ImageDataLoaders.from_folder(toy_folder, bs=4, device="cpu", vocab=cats)
    assert dls.vocab == ["b", "a"]
    xs, ys = next(iter(dls.valid))
    assert set(ys.tolist()) == {0, 1}
    # class "a" images are dark (value 40): after vocab ["b", "a"], they must be label 1
    dark = xs.mean(dim=(1, 2, 3)) < 0
    assert torch.equal(ys[dark], torch.ones_like(ys[dark]))


def test_from_csv_name_re_and_random_split(toy_folder):
    items = get_image_files(toy_folder / "train")
    rows = [{"file": f"train/{p.parent.name}/{p.name}", "label": p.parent.name.upper(),
             "is_valid": "1" if p.name.endswith("_0.png") else "0"} for p in items]
    dls = ImageDataLoaders.from_csv(toy_folder, rows, fn_col="file", label_col="label", valid_col="is_valid",
                                    bs=4, device="cpu")
    assert dls.vocab == ["A", "B"] and len(dls.items[1]) == 2
    by_re = ImageDataLoaders.from_name_re(toy_folder, items, r"^([ab])_", valid_pct=0.25, seed=0, bs=4, device="cpu")
    assert by_re.vocab == ["a", "b"] and len(by_re.items[1]) == 3
    by_list = ImageList.from_folder(toy_folder).dataloaders(parent_label, GrandparentSplitter(), bs=4, device="cpu")
    assert len(by_list.items[0]) == 12 and len(by_list.items[1]) == 4


def test_corrupt_image_error_names_the_file_or_is_skipped(toy_folder):
    bad = toy_folder / "train" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        ImageDataLoaders.from_folder(toy_folder, bs=4, device="cpu", in_memory=True)
    lazy = ImageDataLoaders.from_folder(toy_folder, bs=4, device="cpu", in_memory=False, stats=None)
    with pytest.raises(ImageReadError, match="broken.png"):
        list(lazy.train)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        dls = ImageDataLoaders.from_folder(toy_folder, bs=4, device="cpu", skip_bad=True, in_memory=False)
    assert len(dls.items[0]) == 12 and bad not in dls.items[0]
    assert sum(len(y) for _, y in dls.train) == 12


def test_mismatched_sizes_need_a_resize(toy_folder):
    write_png(toy_folder / "train" / "a" / "big.png", 10, size=(9, 7))
    with pytest.raises(ImageReadError, match="big.png.*Resize"):
        ImageDataLoaders.from_folder(toy_folder, bs=4, device="cpu", in_memory=True)
    dls = ImageDataLoaders.from_folder(toy_folder, bs=4, device="cpu", item_tfms=[Resize(8)], in_memory=False)
    assert all(x.shape[-2:] == (8, 8) for x, _ in dls.train)


def test_rgb_folder_with_jitter_and_show_batch(tmp_path):
    for cls, colour in (("red", (200, 20, 20)), ("green", (20, 200, 20))):
        for i in range(4):
            path = tmp_path / cls / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((10, 12, 3), colour, dtype=np.uint8)).save(path)
    from deepfit.data import ColorJitter

    jitter = ColorJitter(0.2, 0.2, 0.2, 0.05, seed=0)
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.25, bs=3, device="cpu", batch_tfms=[Flip(seed=0), jitter])
    assert jitter.mean is not None and len(jitter.mean) == 3  # told the normalization stats
    xb, yb = one_batch(dls.train)
    assert xb.shape == (3, 3, 10, 12) and xb.dtype == torch.float32
    out = show_batch(dls, tmp_path / "out" / "batch.png", n=6, ncols=3)
    assert out.exists() and Image.open(out).size[0] > 100


@requires_fmnist
def test_fmnist_png_folder_trains_to_80_percent(tmp_path):
    """Real Fashion-MNIST images written as PNG class folders, read back and trained on a small budget."""
    root = write_fmnist_folder(tmp_path / "fmnist", n_train=300, n_valid=50, seed=0)
    dls = ImageDataLoaders.from_folder(root, bs=64, device="cpu", seed=0)
    assert dls.c == 10 and len(dls.items[0]) == 3000 and len(dls.items[1]) == 500
    assert dls.vocab[0] == "Ankle boot" and "T-shirt_top" in dls.vocab
    torch.manual_seed(0)
    learn = Learner(tiny_cnn(1, dls.c, width=16), dls, metrics=accuracy)
    learn.remove_cb(ProgressCallback)
    learn.fit_one_cycle(4, 2e-2)
    acc = learn.recorder.values[-1][-1]
    assert acc >= 0.80, f"accuracy {acc:.3f}"
    # inference on a file path uses the validation pipeline and the same vocabulary
    path = dls.items[1][0]
    in_memory_prediction = learn.predict(path)
    stats = (dls.train.mean.tolist(), dls.train.std.tolist())
    lazy = ImageDataLoaders.from_folder(root, bs=64, device="cpu", in_memory=False, vocab=dls.categorize, stats=stats)
    learn.dls = lazy
    decoded, idx, probs = learn.predict(path)
    assert decoded == dls.vocab[idx] and abs(float(probs.sum()) - 1) < 1e-5
    assert torch.allclose(probs, in_memory_prediction[2], atol=1e-5)
    assert learn.validate()[-1] == pytest.approx(acc, abs=1e-6)


@requires_fmnist
def test_fashion_mnist_loaders_share_the_folder_interface(tmp_path):
    from deepfit.data import fashion_mnist_loaders
    from deepfit.data.vision import input_channels

    dls = fashion_mnist_loaders(bs=16, n_train=32, n_valid=32, device="cpu", tfms=[Flip(seed=0)])
    assert input_channels(dls) == 1 and dls.c == 10
    assert show_batch(dls, tmp_path / "fmnist.png", n=8).exists()
    xb, yb = one_batch(dls.train)
    assert xb.dtype == torch.float32 and xb.shape == (16, 1, 28, 28) and yb.dtype == torch.long


def test_random_item_transforms_do_not_depend_on_workers(tmp_path):
    from deepfit.data import RandomResizedCrop

    rng = np.random.default_rng(0)
    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    kw = dict(valid_pct=0.2, seed=3, bs=4, device="cpu", in_memory=False, item_tfms=[RandomResizedCrop(8)], stats=None)
    serial = ImageDataLoaders.from_folder(tmp_path, num_workers=0, **kw)
    parallel = ImageDataLoaders.from_folder(tmp_path, num_workers=2, **kw)
    for _ in range(2):  # two epochs: crops change between epochs but not with the number of workers
        a = torch.cat([x for x, _ in serial.train])
        b = torch.cat([x for x, _ in parallel.train])
        assert a.shape == (8, 1, 8, 8) and torch.equal(a, b)
    ds = serial.train.dataset
    ds.epoch = 0
    first = ds.image(0)
    ds.epoch = 1
    assert not torch.equal(first, ds.image(0))  # a new random crop each epoch
    valid = torch.cat([x for x, _ in serial.valid])
    assert torch.equal(valid, torch.cat([x for x, _ in serial.valid]))  # validation: centre crops


def test_blocks_does_not_import_vision():
    """The item-list/splitter module is below the image module: no import back up (no circle)."""
    import ast

    import deepfit.data.blocks as blocks

    tree = ast.parse(Path(blocks.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(m and m.endswith("vision") for m in imported), imported
    assert not hasattr(blocks, "ImageList")


def test_in_memory_loader_new_keeps_its_class_and_image_settings(tmp_path: Path):
    from deepfit.data.vision import ImageTensorLoader

    for i in range(4):
        write_png(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", value=40 * i)
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.5, item_tfms=[Resize(4)], bs=2, device="cpu",
                                       in_memory=True, vocab=["a", "b"])
    assert type(dls.valid) is ImageTensorLoader and dls.valid.mode == "L"
    copy = dls.valid.new(bs=1)
    assert type(copy) is ImageTensorLoader and copy.mode == "L" and len(copy.item_tfms) == 1
    x = copy.encode(tmp_path / "b" / "0.png")
    assert x.shape == (1, 1, 4, 4)
