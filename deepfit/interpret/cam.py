"""Class activation maps: CAM for global-pool + linear heads, and Grad-CAM for any conv layer.

Both return a heatmap the size of the input image, scaled to [0, 1], and can save it as an
overlay on the original image (PNG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..probabilities import as_distribution
from .hooks import Hooks
from .images import class_name, denormalize, to_numpy_image

_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)
# Monotonic outputs after the class scores: they keep the order of the scores, so the map of the class is
# still the pooled features (times the linear weights). Allowed after the linear layer, or after the pooling
# when the last conv has one channel per class (the notes' dogs-vs-cats head ends in LogSoftmax).
_MONOTONIC = (nn.LogSoftmax, nn.Softmax, nn.Sigmoid, nn.LogSigmoid, nn.Tanh, nn.ReLU, nn.Hardtanh, nn.Softplus)


def _prepare(learn, image: Tensor) -> Tensor:
    if not isinstance(image, Tensor) or image.ndim not in (2, 3):
        raise ValueError(f"cam: expected one image C×H×W (or H×W), got {getattr(image, 'shape', type(image))}")
    if image.ndim == 2:
        image = image.unsqueeze(0)
    x = learn.preprocess(image)
    if isinstance(x, Tensor) and x.dtype == torch.uint8:  # loaders without `encode` leave raw bytes
        x = x.float() / 255.0
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"cam: the preprocessed image should be 1×C×H×W, got {getattr(x, 'shape', type(x))}")
    return x


def _execution_order(model: nn.Module, x: Tensor) -> tuple[list[nn.Module], dict[int, Any], Tensor]:
    """Leaf modules in the order the forward pass runs them, their inputs, and the model's output."""
    leaves = [m for m in model.modules() if not list(m.children())]
    order: list[nn.Module] = []
    inputs: dict[int, Any] = {}

    def record(hook, module, inp, out):
        order.append(module)
        inputs[id(module)] = inp[0] if isinstance(inp, tuple) and inp else inp

    with Hooks(leaves, record), torch.no_grad():
        out = model(x)
    return order, inputs, out


def _normalize_map(m: Tensor, size: tuple[int, int]) -> Tensor:
    m = F.interpolate(m[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    m = m - m.min()
    return (m / m.max()).cpu() if m.max() > 0 else m.cpu()


def _pick_target(out: Tensor, target: int | None) -> int:
    if out.ndim != 2:
        raise ValueError(f"cam: expected the model to output batch×classes scores, got shape {tuple(out.shape)}")
    if target is None:
        return int(out[0].argmax())
    if not 0 <= target < out.shape[1]:
        raise ValueError(f"cam: target {target} out of range for {out.shape[1]} classes")
    return int(target)


def cam(learn, image: Tensor, target: int | None = None, path: str | Path | None = None) -> Tensor:
    """Class activation map (Zhou et al.) for a model whose head is global average pooling followed
    by one linear layer (Flatten/Dropout/Identity may sit between), or by nothing when the last conv
    already has one channel per class (the notes' dogs-vs-cats head: conv → `AdaptiveAvgPool2d(1)` →
    `Flatten` → `LogSoftmax`). A monotonic output activation (`LogSoftmax`, `Softmax`, `Sigmoid`...)
    may follow the class scores: it keeps their order.

    `image` is one raw item as stored in the dataset (e.g. a uint8 `C×H×W` tensor); it goes through
    the validation loader's preprocessing. `target` defaults to the predicted class.
    Returns an `H×W` heatmap in [0, 1] on the CPU; with `path`, saves an overlay PNG there.
    """
    model = learn.model
    x = _prepare(learn, image)
    was_training = model.training
    model.eval()
    try:
        order, inputs, out = _execution_order(model, x)
    finally:
        model.train(was_training)
    pools = [i for i, m in enumerate(order)
             if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)) and inputs[id(m)].ndim == 4]
    if not pools:
        raise ValueError("cam: no average-pooling layer found; the model's head must be global pooling + linear "
                         "(use grad_cam for other models)")
    pool = order[pools[-1]]
    after = order[pools[-1] + 1:]
    features = inputs[id(pool)][0]  # C×h×w
    linears = [m for m in after if isinstance(m, nn.Linear)]
    scores_at = after.index(linears[0]) + 1 if len(linears) == 1 else 0  # where the class scores exist
    others = [m for i, m in enumerate(after) if not isinstance(m, (nn.Linear, *_PASS_THROUGH))
              and not (i >= scores_at and isinstance(m, _MONOTONIC))]
    if others or len(linears) > 1:
        names = ", ".join(type(m).__name__ for m in after)
        raise ValueError(f"cam: after the global pooling the model runs [{names}]; CAM needs at most one Linear, "
                         "only Flatten/Dropout/Identity before it and only a monotonic activation (LogSoftmax, "
                         "Softmax, Sigmoid...) after the class scores. Use grad_cam for this model.")
    target = _pick_target(out, target)
    if linears:
        weight = linears[0].weight.detach()
        if weight.shape[1] != features.shape[0]:
            raise ValueError(f"cam: the linear layer takes {weight.shape[1]} features but the pooled map has "
                             f"{features.shape[0]} channels (is the pooling global?)")
        heat = torch.einsum("c,chw->hw", weight[target].float(), features.float())
    else:
        if features.shape[0] != out.shape[1]:
            raise ValueError(f"cam: without a linear head the last conv needs one channel per class "
                             f"({out.shape[1]}), got {features.shape[0]}")
        heat = features[target].float()
    heatmap = _normalize_map(heat, tuple(x.shape[-2:]))
    if path is not None:
        save_overlay(learn, image, heatmap, path, title=_title("CAM", learn, out, target))
    return heatmap


def _resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"grad_cam: the model has no submodule named {layer!r}") from None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("grad_cam: the model has no Conv2d layer; pass layer=")
    return convs[-1]


def grad_cam(learn, image: Tensor, target: int | None = None, layer: nn.Module | str | None = None,
             path: str | Path | None = None) -> Tensor:
    """Grad-CAM (Selvaraju et al.) on `layer` (a module or dotted name; default: the last `Conv2d`).

    The layer's output channels are weighted by the spatial mean of the target score's gradient,
    summed, passed through ReLU and upsampled. Parameter gradients are left untouched.
    Returns an `H×W` heatmap in [0, 1] on the CPU; with `path`, saves an overlay PNG there.
    """
    model = learn.model
    module = _resolve_layer(model, layer)
    x = _prepare(learn, image).requires_grad_(True)
    saved: dict[str, Tensor] = {}

    def keep(mod, inp, out):
        if not isinstance(out, Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"grad_cam: layer {type(mod).__name__} outputs {shape}; need N×C×H×W")
        saved["act"] = out
        return out.clone()  # later in-place ops (ReLU(inplace=True)) must not modify the saved map

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            handle = module.register_forward_hook(keep)
            try:
                out = model(x)
            finally:
                handle.remove()
            if "act" not in saved:
                raise ValueError("grad_cam: the chosen layer did not run in the forward pass")
            target = _pick_target(out, target)
            act = saved["act"]
            (grad,) = torch.autograd.grad(out[0, target], act)
    finally:
        model.train(was_training)
    weights = grad[0].mean(dim=(1, 2))
    heat = torch.relu(torch.einsum("c,chw->hw", weights, act[0].detach()))
    heatmap = _normalize_map(heat, tuple(x.shape[-2:]))
    if path is not None:
        save_overlay(learn, image, heatmap, path, title=_title("Grad-CAM", learn, out.detach(), target))
    return heatmap


def _title(kind: str, learn, out: Tensor, target: int) -> str:
    # outputs that already are (log-)probabilities (a softmax / log_softmax head) get no second softmax
    dist = as_distribution(out[:1])
    probs = dist[0] if dist is not None else torch.softmax(out[0].float(), -1)
    name = class_name(getattr(learn.dls, "vocab", None), target)
    return f"{kind}: {name} (p={float(probs[target]):.2f})"


def save_overlay(learn, image: Tensor, heatmap: Tensor, path: str | Path, title: str = "",
                 alpha: float = 0.5) -> Path:
    """Save `image` with `heatmap` drawn over it (jet colormap, `alpha`) as a PNG."""
    from ..plotting import new_figure, save_figure

    if image.ndim == 2:
        image = image.unsqueeze(0)
    shown = denormalize(image, None) if image.dtype != torch.uint8 else image.float() / 255
    fig, (ax0, ax1) = new_figure(1, 2, figsize=(7, 3.6))
    img = to_numpy_image(shown)
    cmap = "gray" if img.ndim == 2 else None
    ax0.imshow(img, cmap=cmap, vmin=0, vmax=1)
    ax0.set_title("image")
    ax1.imshow(img, cmap=cmap, vmin=0, vmax=1)
    ax1.imshow(heatmap.numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    ax1.set_title(title or "heatmap")
    for ax in (ax0, ax1):
        ax.axis("off")
    return save_figure(fig, path)

