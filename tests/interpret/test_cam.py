import pytest
import torch
from torch import nn

from deepfit.interpret import cam, grad_cam
from deepfit.interpret.hooks import active_hook_count
from deepfit.learner import Learner, accuracy
from deepfit.models import SimpleCNN
from tests.helpers.images import assert_png, square_dls, square_images

N_TRAIN, N_VALID = 384, 48


class AddCoords(nn.Module):
    """Appends row and column coordinate channels, so a conv net with global pooling can tell where
    things are (the class here depends only on position)."""

    def forward(self, x):
        n, _, h, w = x.shape
        rows = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        cols = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, rows, cols], 1)


@pytest.fixture(scope="module")
def square_learner():
    torch.manual_seed(0)
    model = nn.Sequential(AddCoords(), nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    learn = Learner(model, square_dls(N_TRAIN, N_VALID), metrics=[accuracy], lr=1e-2)
    learn.fit(4)
    assert learn.recorder.values[-1][-1] > 0.9, "the square task should be learned"
    return learn


def peak_inside_square_share(heatmaps, corners, sq: int = 5) -> float:
    hits = 0
    for h, (r0, c0) in zip(heatmaps, corners.tolist()):
        r, c = divmod(int(h.argmax()), h.shape[1])
        hits += r0 <= r < r0 + sq and c0 <= c < c0 + sq
    return hits / len(heatmaps)


def valid_items():
    x, y, corners = square_images(N_TRAIN + N_VALID, seed=0)
    return x[N_TRAIN:], y[N_TRAIN:], corners[N_TRAIN:]


def test_cam_peak_lies_inside_the_square(square_learner, tmp_path):
    x, y, corners = valid_items()
    maps = [cam(square_learner, x[i]) for i in range(len(x))]
    assert all(m.shape == (16, 16) and float(m.min()) == 0.0 and float(m.max()) == 1.0 for m in maps)
    assert peak_inside_square_share(maps, corners) >= 0.8
    explicit = cam(square_learner, x[0], target=int(y[0]), path=tmp_path / "cam.png")
    assert torch.allclose(explicit, maps[0])  # the model predicts y[0], the default target
    assert_png(tmp_path / "cam.png", (700, 360))
    assert active_hook_count(square_learner.model) == 0


def test_grad_cam_peak_lies_inside_the_square(square_learner, tmp_path):
    x, _, corners = valid_items()
    model = square_learner.model
    params_before = [p.grad for p in model.parameters()]
    maps = [grad_cam(square_learner, x[i], layer="3") for i in range(len(x))]
    assert peak_inside_square_share(maps, corners) >= 0.8
    assert [p.grad for p in model.parameters()] == params_before  # no parameter gradients touched
    grad_cam(square_learner, x[1], path=tmp_path / "gradcam.png")  # default layer: the last Conv2d
    assert_png(tmp_path / "gradcam.png", (700, 360))
    assert active_hook_count(model) == 0


def test_cam_rejects_heads_it_cannot_explain_and_grad_cam_handles_them():
    dls = square_dls(32, 8)
    learn = Learner(SimpleCNN(c_in=1, n_out=4, width=4, hidden=8), dls)
    x, _, _ = square_images(1)
    with pytest.raises(ValueError, match="grad_cam"):
        cam(learn, x[0])
    heat = grad_cam(learn, x[0], layer="2.0")  # a conv inside a block followed by in-place ReLU
    assert heat.shape == (16, 16)
    with pytest.raises(ValueError, match="no submodule"):
        grad_cam(learn, x[0], layer="nope")
    with pytest.raises(ValueError, match="out of range"):
        cam(Learner(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), dls), x[0], target=7)


def test_cam_on_the_notes_head_conv_pool_flatten_log_softmax(tmp_path):
    """The notes' dogs-vs-cats head: a conv with one channel per class, average pooling, Flatten and LogSoftmax,
    trained with NLLLoss; CAM is the class's channel of that conv."""
    torch.manual_seed(0)
    model = nn.Sequential(AddCoords(), nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(),
                          nn.Conv2d(16, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LogSoftmax(dim=1))
    learn = Learner(model, square_dls(N_TRAIN, N_VALID), loss_func=nn.NLLLoss(), metrics=[accuracy], lr=1e-2)
    learn.fit(4)
    assert learn.recorder.values[-1][-1] > 0.9, "the square task should be learned"
    x, y, corners = valid_items()
    maps = [cam(learn, x[i]) for i in range(len(x))]
    assert peak_inside_square_share(maps, corners) >= 0.8
    features = model[:6](learn.preprocess(x[0]))[0, int(y[0])].detach()
    expected = features - features.min()
    assert torch.allclose(cam(learn, x[0], target=int(y[0])), expected / expected.max(), atol=1e-5)
    cam(learn, x[0], path=tmp_path / "cam.png")
    assert_png(tmp_path / "cam.png", (700, 360))


def test_cam_accepts_a_monotonic_activation_after_the_class_scores_only():
    dls = square_dls(32, 8)
    x, _, _ = square_images(1)
    body = [nn.Conv2d(1, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    ok = Learner(nn.Sequential(*body, nn.Linear(8, 4), nn.LogSoftmax(dim=1)), dls, loss_func=nn.NLLLoss())
    assert cam(ok, x[0]).shape == (16, 16)
    torch.manual_seed(0)
    body = [nn.Conv2d(1, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    before_linear = Learner(nn.Sequential(*body, nn.ReLU(), nn.Linear(8, 4)), dls)
    with pytest.raises(ValueError, match="monotonic activation"):
        cam(before_linear, x[0])  # a ReLU between the pooling and the linear layer breaks CAM's linearity
