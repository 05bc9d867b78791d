"""Item transforms (PIL) and batch transforms (tensors on the device)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from deepfit.data.transforms import (
    CenterCrop,
    ColorJitter,
    Flip,
    Normalize,
    PadCrop,
    RandomResizedCrop,
    Resize,
    Rotate,
    apply_batch_tfms,
    compute_stats,
    rotate,
)


def batch(n=8, c=3, h=12, w=16, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_item_transforms_sizes():
    img = Image.fromarray(np.arange(40 * 60, dtype=np.uint8).reshape(40, 60) % 251)
    assert Resize(20, "squish")(img).size == (20, 20)
    assert Resize((10, 30), "crop")(img).size == (30, 10)
    padded = Resize(30, "pad")(img)
    assert padded.size == (30, 30)
    assert np.asarray(padded)[0].sum() == 0  # 60×40 fits as 30×20: black bars top and bottom
    crop = CenterCrop(10)(img)
    assert np.array_equal(np.asarray(crop), np.asarray(img)[15:25, 25:35])


def test_random_resized_crop_is_seeded_and_has_a_valid_form():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    tfm = RandomResizedCrop(16, scale=(0.2, 0.5))
    a = np.asarray(tfm(img, rng=random.Random(3)))
    b = np.asarray(tfm(img, rng=random.Random(3)))
    c = np.asarray(tfm(img, rng=random.Random(4)))
    assert a.shape == (16, 16) and np.array_equal(a, b) and not np.array_equal(a, c)
    valid = np.asarray(tfm(img, train=False))
    assert np.array_equal(valid, np.asarray(Resize(16, "crop")(img)))


@pytest.mark.parametrize("tfm", [Flip(seed=0), Flip(axis="vertical", seed=0), PadCrop(3, seed=0),
                                 PadCrop(2, mode="constant", seed=0), Rotate(20, p=1.0, seed=0),
                                 ColorJitter(0.3, 0.3, 0.3, 0.1, seed=0), Normalize([0.5] * 3, [0.25] * 3)],
                         ids=lambda t: type(t).__name__)
def test_batch_transforms_keep_shape_and_dtype(tfm):
    x = batch()
    out = tfm(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()


def test_flip_is_exact_and_probability_respected():
    x = batch(n=64)
    out = Flip(p=1.0, seed=0)(x)
    assert torch.equal(out, x.flip(-1))
    assert torch.equal(Flip(p=1.0, axis="vertical", seed=0)(x), x.flip(-2))
    assert torch.equal(Flip(p=0.0, seed=0)(x), x)
    half = Flip(p=0.5, seed=1)(x)
    flipped = [torch.equal(half[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(half[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48
    # also on integer batches (uint8 images)
    xi = (x * 255).to(torch.uint8)
    assert torch.equal(Flip(p=1.0)(xi), xi.flip(-1))


def test_transforms_are_seedable():
    x = batch(n=16)
    for make in (lambda g: Flip(generator=g), lambda g: PadCrop(3, generator=g), lambda g: Rotate(30, generator=g),
                 lambda g: ColorJitter(0.4, 0.4, 0.4, 0.2, generator=g)):
        a = make(torch.Generator().manual_seed(5))(x)
        b = make(torch.Generator().manual_seed(5))(x)
        c = make(torch.Generator().manual_seed(6))(x)
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_pad_crop_is_a_shifted_window_of_the_padded_image():
    x = batch(n=32, c=2, h=8, w=8)
    out = PadCrop(2, mode="constant", seed=0)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(32):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], wnd) for wnd in windows)
    assert not torch.equal(out, x)
    assert torch.equal(PadCrop(2, p=0.0, seed=0)(x), x)


def test_rotate_by_zero_is_identity_and_by_ninety_turns_the_image():
    x = batch(n=4, c=1, h=9, w=9)
    assert torch.allclose(Rotate(0.0, p=1.0, seed=0)(x), x, atol=1e-5)
    assert torch.allclose(Rotate(45.0, p=0.0, seed=0)(x), x, atol=1e-5)
    quarter = rotate(x, [90.0] * 4)
    assert torch.allclose(quarter, x.rot90(1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(rotate(x, [-90.0] * 4), x.rot90(-1, dims=(2, 3)), atol=1e-5)
    rect = batch(n=2, c=1, h=6, w=10)
    assert rotate(rect, [30.0, -30.0]).shape == rect.shape


def test_color_jitter_respects_normalization_and_gray_images():
    x01 = batch(n=8, c=3)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    norm = Normalize(mean, std)
    a = ColorJitter(0.3, 0.3, 0.3, 0.05, seed=2)(x01)
    b = ColorJitter(0.3, 0.3, 0.3, 0.05, mean=mean, std=std, seed=2)(norm(x01))
    assert torch.allclose(norm.decode(b), a, atol=1e-5)
    assert 0 <= a.min() and a.max() <= 1
    gray = batch(n=4, c=1)
    out = ColorJitter(0.0, 0.0, 0.5, 0.2, seed=0)(gray)  # saturation and hue do nothing on one channel
    assert torch.allclose(out, gray, atol=1e-6)


def test_normalize_and_compute_stats():
    x = torch.randint(0, 256, (20, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = compute_stats(x)
    xf = x.float() / 255
    assert np.allclose(mean, xf.mean(dim=(0, 2, 3)).tolist(), atol=1e-5)
    assert np.allclose(std, xf.std(dim=(0, 2, 3), unbiased=False).tolist(), atol=1e-4)
    mean2, std2 = compute_stats([x[:7], x[7:]])
    assert np.allclose(mean2, mean, atol=1e-6) and np.allclose(std2, std, atol=1e-6)
    normed = Normalize(mean, std)(xf)
    assert torch.allclose(normed.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(Normalize(mean, std).decode(normed), xf, atol=1e-5)
    with pytest.raises(ValueError, match="channel"):
        Normalize([0.5, 0.5], [0.2, 0.2])(xf)


def test_apply_batch_tfms_sorts_by_order():
    x = batch()
    norm, flip = Normalize([0.5] * 3, [0.5] * 3), Flip(p=1.0, seed=0)
    assert torch.allclose(apply_batch_tfms(x, [norm, flip]), norm(flip(x)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="axis"):
        Flip(axis="diagonal")
    with pytest.raises(ValueError, match="p must be"):
        Flip(p=1.5)
    with pytest.raises(ValueError, match="N×C×H×W"):
        Flip()(torch.zeros(3, 4, 4))
