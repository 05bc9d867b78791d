"""vision_learner: body + new head, weights from local files, freezing, and transfer on real Fashion-MNIST."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from deepfit.learner import Learner, accuracy, vision_learner
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.vision import load_body_weights, read_state_dict
from deepfit.models import AdaptiveConcatPool2d
from tests.helpers.data import make_linear_data, requires_fmnist
from tests.helpers.vision import subset_loaders, tiny_cnn


def image_dls(c_in=1, n_classes=3, n=24, size=16, bs=8):
    from deepfit.data import DataLoaders, TensorLoader

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c_in, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % n_classes
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=0, device="cpu", mean=[0.5] * c_in,
                                    std=[0.25] * c_in),
                       TensorLoader(x, y, bs=bs, device="cpu", mean=[0.5] * c_in, std=[0.25] * c_in),
                       device="cpu", vocab=[f"c{i}" for i in range(n_classes)])


def quiet(learn: Learner) -> Learner:
    learn.remove_cb(ProgressCallback)
    return learn


def trainable(module: nn.Module) -> set[bool]:
    return {p.requires_grad for p in module.parameters()}


def test_from_scratch_registered_arch_has_body_and_head_groups():
    dls = image_dls(c_in=1)
    learn = vision_learner("xresnet18", dls, arch_kwargs=dict(widths=(8, 8, 16, 16)))
    body, head = learn.model
    assert isinstance(head[0], AdaptiveConcatPool2d) and head[-1].out_features == 3
    assert body[0][0].in_channels == 1  # c_in passed from the data
    assert [len(g) for g in learn.parameter_groups()] == [len(list(body.parameters())), len(list(head.parameters()))]
    assert trainable(learn.model) == {True}  # no weights: not frozen
    xb, _ = next(iter(dls.valid))
    assert learn.model(xb).shape == (8, 3)
    with pytest.raises(KeyError, match="unknown architecture"):
        vision_learner("no_such_net", dls)


def test_weights_from_each_saved_layout_load_and_start_frozen(tmp_path):
    dls = image_dls(c_in=1, n_classes=2)
    torch.manual_seed(1)
    source = tiny_cnn(1, 5, width=8)
    torch.save(source.state_dict(), tmp_path / "full.pth")
    saver = quiet(Learner(source, make_linear_data(), path=tmp_path))
    ckpt = saver.save("ckpt", with_opt=False)
    first = vision_learner(tiny_cnn, dls, weights=tmp_path / "full.pth", arch_kwargs=dict(width=8))
    torch.save(first.model.state_dict(), tmp_path / "vision.pth")
    for path in (tmp_path / "full.pth", ckpt, tmp_path / "vision.pth"):
        learn = vision_learner(tiny_cnn, dls, weights=path, arch_kwargs=dict(width=8))
        body, head = learn.model
        assert torch.equal(body[0][0].weight, source[0][0].weight), path
        assert torch.equal(body[2][1].running_mean, source[2][1].running_mean), path
        # frozen: convolutions fixed, batchnorm and head trainable
        assert not body[1][0].weight.requires_grad and body[1][1].weight.requires_grad
        assert trainable(head) == {True}
    learn.unfreeze()
    assert trainable(learn.model) == {True}


def test_wrong_weights_are_named(tmp_path):
    dls = image_dls(c_in=1)
    torch.save(tiny_cnn(1, 5, width=8).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(ValueError, match="narrow.pth.*shape mismatches"):
        vision_learner(tiny_cnn, dls, weights=tmp_path / "narrow.pth", arch_kwargs=dict(width=16))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        read_state_dict(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        vision_learner(tiny_cnn, dls, weights=tmp_path / "missing.pth")
    body = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(ValueError, match="missing keys"):
        load_body_weights(body, {"other.weight": torch.zeros(1)})


def test_three_channel_body_adapted_to_gray_images(tmp_path):
    class NoCin(nn.Sequential):  # like torchvision models: no c_in argument, RGB only
        def __init__(self):
            super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 4))

    torch.save(NoCin().state_dict(), tmp_path / "rgb.pth")
    learn = vision_learner(NoCin, image_dls(c_in=1), weights=tmp_path / "rgb.pth")
    assert learn.model[0][0].weight.shape == (8, 1, 3, 3)
    assert learn.model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)


def test_torchvision_resnet_body_when_installed():
    dls = image_dls(c_in=3, size=32)
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ImportError, match="torchvision"):
            vision_learner("torchvision.resnet18", dls)
        return
    learn = vision_learner("torchvision.resnet18", dls)
    assert learn.model(next(iter(dls.valid))[0]).shape == (8, 3)


@requires_fmnist
def test_transfer_from_classes_0_4_beats_scratch_on_classes_5_9(tmp_path):
    """Pretrain on 5 Fashion-MNIST classes; fine-tune a new head on the other 5 (frozen, then unfrozen).

    With the same small budget (one epoch frozen + one unfrozen vs two epochs from scratch, 150
    images), the pretrained body wins on average over two seeds.
    """
    torch.manual_seed(0)
    pre = subset_loaders(range(5), 800, 50, bs=64, seed=0)
    source = tiny_cnn(1, 5, width=16)
    quiet(Learner(source, pre)).fit_one_cycle(2, 2e-2)
    torch.save(source.state_dict(), tmp_path / "pretrained.pth")
    transfer, scratch = [], []
    for seed in (0, 1):
        dls = subset_loaders(range(5, 10), 30, 100, bs=16, seed=seed + 10, drop_last=True)
        assert dls.vocab == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        torch.manual_seed(seed)
        learn = quiet(vision_learner(tiny_cnn, dls, weights=tmp_path / "pretrained.pth", metrics=accuracy,
                                     arch_kwargs=dict(width=16)))
        learn.fit(1, 1e-2)
        learn.unfreeze()
        learn.fit(1, slice(1e-3, 1e-2))
        transfer.append(learn.recorder.values[-1][-1])
        torch.manual_seed(seed)
        learn = quiet(vision_learner(tiny_cnn, dls, metrics=accuracy, arch_kwargs=dict(width=16)))
        learn.fit(1, 1e-2)
        learn.fit(1, 1e-2)
        scratch.append(learn.recorder.values[-1][-1])
    assert sum(transfer) / 2 > sum(scratch) / 2 + 0.03, (transfer, scratch)


def test_export_and_load_learner_round_trip(tmp_path):
    import numpy as np
    from PIL import Image

    from deepfit.data import ImageDataLoaders, Resize
    from deepfit.learner.export import load_learner

    for cls, value in (("dark", 30), ("light", 220)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = np.full((12, 10, 3), value + 5 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    dls = ImageDataLoaders.from_folder(tmp_path / "imgs", valid_pct=0.25, bs=4, device="cpu", in_memory=False,
                                       item_tfms=[Resize(16)])
    learn = vision_learner("xresnet18", dls, arch_kwargs=dict(widths=(8, 8, 16, 16)), path=tmp_path)
    folder = learn.export("export")
    loaded = load_learner(folder)
    path = dls.items[1][0]
    decoded, idx, probs = learn.predict(path)
    decoded2, idx2, probs2 = loaded.predict(path)
    assert decoded == decoded2 and idx == idx2
    assert torch.allclose(probs, probs2, atol=1e-5)


def test_cnn_learner_is_vision_learner_with_the_notes_names():
    from deepfit.learner.vision import cnn_learner

    dls = image_dls(n_classes=3)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    learn = cnn_learner("xresnet18", dls, loss_func=loss, opt_func=torch.optim.SGD, c_out=3,
                        arch_kwargs=dict(widths=(8, 8, 16, 16)))
    ref = vision_learner("xresnet18", dls, n_out=3, arch_kwargs=dict(widths=(8, 8, 16, 16)))
    assert learn.loss_func is loss and learn.opt_func is torch.optim.SGD
    assert [n for n, _ in learn.model.named_parameters()] == [n for n, _ in ref.model.named_parameters()]
    assert learn.model[1][-1].out_features == 3 and len(learn.parameter_groups()) == 2
    with pytest.raises(ValueError, match="disagree"):
        cnn_learner("xresnet18", dls, c_out=3, n_out=4)
    with pytest.raises(TypeError):
        cnn_learner("xresnet18", dls, loss)  # the notes' positional loss_func: give it by keyword
