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


# --------------------------------------------------------------------------- the notes' transforms (file 001)


def gray_ramp(w=8, h=6) -> Image.Image:
    return Image.fromarray((np.arange(h * w).reshape(h, w) * 5 + 10).astype(np.uint8), mode="L")


def test_random_resized_crop_accepts_the_notes_scale_above_one():
    """The notes' `RandomResizedCrop(size=300, scale=(0.8, 1.1))`: regions that do not fit are drawn again."""
    from deepfit.data.transforms import RandomResizedCrop as RRC

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 60, 3), dtype=np.uint8))
    tfm = RRC(30, scale=(0.8, 1.1))
    outs = [np.asarray(tfm(img, rng=random.Random(i))) for i in range(20)]
    assert all(o.shape == (30, 30, 3) for o in outs)
    assert len({o.tobytes() for o in outs}) > 5  # real random crops, not only the fallback
    # a scale that never fits falls back to the validation form (the centre), as torchvision's does
    never = RRC(30, scale=(1.05, 1.1))
    assert np.array_equal(np.asarray(never(img, rng=random.Random(0))), np.asarray(never(img, train=False)))
    with pytest.raises(ValueError, match="scale"):
        RRC(30, scale=(1.1, 0.8))
    with pytest.raises(ValueError, match="scale"):
        RRC(30, scale=(0.0, 1.0))


def test_pad_as_in_the_notes():
    from deepfit.data.transforms import Pad

    img = gray_ramp()
    a = np.asarray(img)
    out = np.asarray(Pad(1, 0)(img))  # transforms.Pad(1, 0)
    assert out.shape == (8, 10) and out[0].sum() == 0 and out[:, 0].sum() == 0
    assert np.array_equal(out[1:-1, 1:-1], a)
    out = np.asarray(Pad((1, 2), 1)(img))  # left/right 1, top/bottom 2, filled with 1
    assert out.shape == (10, 10) and (out[:2] == 1).all() and np.array_equal(out[2:-2, 1:-1], a)
    out = np.asarray(Pad((1, 2, 2, 3), padding_mode="reflect")(img))  # left, top, right, bottom
    assert out.shape == (6 + 2 + 3, 8 + 1 + 2)
    assert np.array_equal(out, np.pad(a, ((2, 3), (1, 2)), mode="reflect"))
    edge = np.asarray(Pad(2, padding_mode="edge")(img))
    assert (edge[0, 2:-2] == a[0]).all() and edge[0, 0] == a[0, 0]
    sym = np.asarray(Pad(1, padding_mode="symmetric")(img))
    assert np.array_equal(sym[0, 1:-1], a[0])
    rgb = Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8))
    assert np.asarray(Pad(1, fill=(255, 0, 0))(rgb))[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match="padding_mode"):
        Pad(1, padding_mode="wrap")
    with pytest.raises(ValueError, match="padding"):
        Pad((1, 2, 3))


def test_random_crop_without_padding():
    from deepfit.data.transforms import RandomCrop

    img = gray_ramp(20, 16)
    a = np.asarray(img)
    tfm = RandomCrop((10, 12))  # transforms.RandomCrop((10, 20)) style: (h, w)
    crops = [np.asarray(tfm(img, rng=random.Random(i))) for i in range(10)]
    for c in crops:
        assert c.shape == (10, 12)
        windows = [a[t:t + 10, c0:c0 + 12] for t in range(7) for c0 in range(9)]
        assert any(np.array_equal(c, w) for w in windows)  # a window of the image: nothing padded
    assert len({c.tobytes() for c in crops}) > 1
    assert np.array_equal(np.asarray(tfm(img, train=False)), a[3:13, 4:16])  # validation: the centre
    with pytest.raises(ValueError, match="smaller than the crop"):
        RandomCrop(30)(img)
    padded = np.asarray(RandomCrop(22, pad_if_needed=True)(img, rng=random.Random(0)))
    assert padded.shape == (22, 22) and padded.min() == 0


def test_grayscale_and_lambda():
    from deepfit.data.transforms import Grayscale, Lambda

    rgb = Image.fromarray(np.stack([np.full((3, 3), v, np.uint8) for v in (200, 100, 50)], axis=-1))
    one = Grayscale()(rgb)
    assert one.mode == "L" and np.asarray(one)[0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    three = np.asarray(Grayscale(3)(rgb))
    assert three.shape == (3, 3, 3) and (three[..., 0] == three[..., 2]).all()
    with pytest.raises(ValueError, match="num_output_channels"):
        Grayscale(2)
    inv = Lambda(lambda im: Image.eval(im, lambda v: 255 - v))
    assert np.asarray(inv(one))[0, 0] == 255 - np.asarray(one)[0, 0]
    double = Lambda(lambda x: x * 2)  # also a batch transform
    assert torch.equal(apply_batch_tfms(torch.ones(1, 1, 2, 2), [double]), torch.full((1, 1, 2, 2), 2.0))
    with pytest.raises(TypeError, match="function"):
        Lambda(3)


def test_final_size_follows_the_pipeline():
    from deepfit.data.transforms import Grayscale, Lambda, Pad, RandomCrop, final_size

    assert final_size([Resize(28), Pad(2)]) == (32, 32)
    assert final_size([RandomCrop(20), Grayscale(), Pad((1, 2))]) == (24, 22)
    assert final_size([Pad(2)]) is None and final_size([Pad(2)], (10, 10)) == (14, 14)
    assert final_size([Resize(28), Lambda(lambda x: x)]) is None


def test_rotate_p_default_is_half_and_p_one_rotates_every_image():
    assert Rotate().p == 0.5 and "default 0.5" in Rotate.__doc__
    x = batch(n=64, c=1, h=9, w=9)
    rotated = [not torch.allclose(a, b, atol=1e-6) for a, b in zip(Rotate(30, seed=0)(x), x)]
    assert 16 < sum(rotated) < 48
    assert all(not torch.allclose(a, b, atol=1e-6) for a, b in zip(Rotate(30, p=1.0, seed=0)(x), x))


def test_pad_crop_constant_pads_black_in_pixel_space_when_batches_are_normalized():
    mean, std = [0.5, 0.4], [0.25, 0.2]
    x01 = batch(n=16, c=2, h=6, w=6)
    norm = Normalize(mean, std)
    tfm = PadCrop(3, mode="constant", p=1.0, seed=0, mean=mean, std=std)
    out = norm.decode(tfm(norm(x01)))  # back to pixel space
    plain = PadCrop(3, mode="constant", p=1.0, seed=0)(x01)  # the same offsets on [0, 1] batches
    assert torch.allclose(out, plain, atol=1e-5)
    assert (plain == 0).any()  # some border shows, and it is black
    grey = PadCrop(3, mode="constant", p=1.0, seed=0, fill=None, mean=mean, std=std)(norm(x01))
    assert torch.allclose(norm.decode(grey)[plain == 0], torch.tensor(mean).view(1, 2, 1, 1).expand_as(plain)
                          [plain == 0], atol=1e-5)  # fill=None: zeros after normalization, the mean colour
    white = PadCrop(3, mode="constant", p=1.0, seed=0, fill=1.0)(x01)  # asked otherwise: a white border
    assert torch.equal(white == 1.0, plain == 0)  # same border (rand values are < 1 and > 0)


def test_loaders_tell_pixel_space_transforms_their_stats():
    from deepfit.data import TensorLoader

    x = torch.randint(0, 256, (8, 1, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pad = PadCrop(3, mode="constant", p=1.0, seed=0)
    dl = TensorLoader(x, torch.zeros(8, dtype=torch.long), bs=8, device="cpu", mean=[0.3], std=[0.2], tfms=[pad])
    assert pad.mean.tolist() == pytest.approx([0.3]) and pad.std.tolist() == pytest.approx([0.2])
    xb, _ = next(iter(dl))
    pixels = xb * 0.2 + 0.3
    assert pixels.min().item() == pytest.approx(0.0, abs=1e-6)  # black border, not the mean grey


def test_tta_flags_and_tta_transforms():
    from deepfit.data.transforms import Lambda, tta_transforms

    flip, crop, rot, jit = Flip(seed=0), PadCrop(2, seed=0), Rotate(seed=0), ColorJitter(seed=0)
    norm = Normalize([0.5], [0.5])
    assert all(t.tta for t in (flip, crop, rot, jit)) and not norm.tta
    no_flip = Flip(seed=0, tta=False)
    assert tta_transforms([no_flip, crop, norm, Lambda(abs), abs]) == [crop]
    flip.tta = False  # settable per instance after construction too
    assert tta_transforms([flip, rot, jit]) == [rot, jit]
    assert tta_transforms([Lambda(abs, augment=True, tta=True)])[0].fn is abs


def test_augment_presets():
    from deepfit.data.transforms import AUGMENT_PRESETS, augment_preset, tta_transforms

    assert set(AUGMENT_PRESETS) == {"none", "flip", "crop", "standard", "heavy"}
    assert augment_preset("none", 28) == []
    crop = augment_preset("crop", 28, seed=5)
    assert [type(t) for t in crop] == [PadCrop] and crop[0].padding == 2
    assert not any(isinstance(t, Flip) for t in tta_transforms(crop))  # a no-flip preset never flips in TTA
    x = batch(n=8, c=1, h=28, w=28)
    assert torch.equal(augment_preset("crop", 28, seed=5)[0](x), crop[0](x))  # seeded
    assert [type(t) for t in augment_preset("standard", 32)] == [Flip, PadCrop]
    assert [type(t) for t in augment_preset("heavy", 32)] == [Flip, PadCrop, Rotate, ColorJitter]
    with pytest.raises(ValueError, match="crop"):
        augment_preset("mirror", 28)
