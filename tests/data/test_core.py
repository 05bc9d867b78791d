import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from deepfit.data import DataLoaders, DeviceLoader, TensorLoader, random_split_indices


def make(n=10, **kw):
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).repeat(1, 1, 2, 2)
    y = torch.arange(n)
    return TensorLoader(x, y, device="cpu", **kw)


def test_keeps_last_partial_batch_and_drop_last():
    assert [len(y) for _, y in make(bs=4)] == [4, 4, 2]
    assert [len(y) for _, y in make(bs=4, drop_last=True)] == [4, 4]
    assert len(make(bs=4)) == 3 and len(make(bs=4, drop_last=True)) == 2


def test_shuffle_is_seeded_per_epoch_and_covers_everything():
    a, b = make(bs=3, shuffle=True, seed=1), make(bs=3, shuffle=True, seed=1)
    ep_a = [torch.cat([y for _, y in a]) for _ in range(2)]
    ep_b = [torch.cat([y for _, y in b]) for _ in range(2)]
    assert torch.equal(ep_a[0], ep_b[0]) and torch.equal(ep_a[1], ep_b[1])
    assert not torch.equal(ep_a[0], ep_a[1])
    assert sorted(ep_a[0].tolist()) == list(range(10))
    c = make(bs=3, shuffle=True, seed=1)
    c.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in c]), ep_a[1])


def test_converts_uint8_and_normalizes_on_device():
    dl = make(bs=10, mean=[2.0 / 255], std=[0.5])
    xb, _ = next(iter(dl))
    assert xb.dtype == torch.float32
    expected = (torch.arange(10).float() / 255 - 2.0 / 255) / 0.5
    assert torch.allclose(xb[:, 0, 0, 0], expected)
    assert torch.allclose(dl.encode(dl.x[3])[0, 0, 0, 0], expected[3])


def test_tfms_and_indices():
    dl = make(bs=4, indices=[7, 8, 9], tfms=[lambda x: x + 1])
    xb, yb = next(iter(dl))
    assert yb.tolist() == [7, 8, 9]
    assert torch.allclose(xb[:, 0, 0, 0], torch.tensor([7, 8, 9]) / 255 + 1)


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="x has 3 items but y has 2"):
        TensorLoader(torch.zeros(3), torch.zeros(2))


def test_dataloaders_wrap_plain_torch_dataloader():
    ds = TensorDataset(torch.randn(10, 3), torch.arange(10))
    dls = DataLoaders(DataLoader(ds, batch_size=4), [(torch.ones(2, 3), torch.zeros(2))], device="cpu",
                      vocab=["a", "b"])
    assert isinstance(dls.train, DeviceLoader) and len(dls.train) == 3
    assert [len(y) for _, y in dls.train] == [4, 4, 2]
    assert dls.c == 2 and next(iter(dls.valid))[0].device.type == "cpu"


def test_device_loader_rejects_non_pairs():
    with pytest.raises(ValueError, match="expected batches of \\(x, y\\)"):
        list(DeviceLoader([torch.zeros(3)], device="cpu"))


def test_random_split_disjoint_and_deterministic():
    t1, v1 = random_split_indices(100, 0.2, seed=3)
    t2, v2 = random_split_indices(100, 0.2, seed=3)
    assert torch.equal(t1, t2) and torch.equal(v1, v2)
    assert len(v1) == 20 and len(set(t1.tolist()) & set(v1.tolist())) == 0
    assert sorted(t1.tolist() + v1.tolist()) == list(range(100))


def test_to_model_input_scales_uint8_normalizes_floats_and_leaves_ids_alone():
    from deepfit.data.core import to_model_input

    x = torch.tensor([[[[0, 255]]], [[[51, 102]]]], dtype=torch.uint8)  # 2×1×1×2
    out = to_model_input(x)
    assert out.dtype == torch.float32 and torch.allclose(out.flatten(), torch.tensor([0.0, 1.0, 0.2, 0.4]))
    norm = to_model_input(x, mean=[0.5], std=[0.25])
    assert torch.allclose(norm.flatten(), torch.tensor([-2.0, 2.0, -1.2, -0.4]))
    rgb = torch.ones(1, 3, 2, 2)
    per_channel = to_model_input(rgb, mean=[0.0, 0.5, 1.0], std=[1.0, 0.5, 2.0])
    assert per_channel[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]
    ids = torch.tensor([[3, 1, 4]])
    assert to_model_input(ids, mean=[0.5], std=[0.2]) is ids
    with pytest.raises(ValueError, match="std"):
        to_model_input(rgb, mean=[0.0, 0.0, 0.0])


def test_loaders_convert_like_to_model_input():
    from deepfit.data.core import to_model_input

    dl = make(n=4, bs=4, mean=[0.5], std=[0.25])
    xb, _ = next(iter(dl))
    assert torch.equal(xb, to_model_input(dl.x, [0.5], [0.25]))
    assert torch.equal(dl.encode(dl.x[2]), to_model_input(dl.x[2:3], [0.5], [0.25]))


def test_loaders_satisfy_the_loader_protocols():
    from deepfit.data.core import EncodingLoader, EpochLoader, Loader

    tl = make()
    assert isinstance(tl, Loader) and isinstance(tl, EpochLoader) and isinstance(tl, EncodingLoader)
    dev = DeviceLoader([(torch.zeros(2, 1), torch.zeros(2))], device="cpu")
    assert isinstance(dev, Loader) and not isinstance(dev, EpochLoader)
    assert not isinstance([(torch.zeros(1), torch.zeros(1))], Loader)  # a list has no device
    dls = DataLoaders([(torch.zeros(2, 1), torch.zeros(2))], device="cpu")
    assert isinstance(dls.train, Loader)


def test_new_builds_the_same_class_with_changed_arguments():
    class Sub(TensorLoader):
        pass

    dl = Sub(torch.zeros(6, 1), torch.arange(6), bs=2, shuffle=True, seed=3, device="cpu")
    dl.shard(1, 2)
    copy = dl.new(shuffle=False)
    assert type(copy) is Sub and copy.shuffle is False and copy.seed == 3 and copy.bs == 2
    assert (copy.shard_rank, copy.num_shards) == (1, 2)
