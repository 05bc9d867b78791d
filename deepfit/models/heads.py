"""Transfer-learning pieces: cut a body off a model, build a new classifier head, split into layer groups.

    body = create_body(xresnet18(n_out=5), cut=None)       # everything before the final pooling
    head = create_head(num_features(body), n_out=10)       # concat-pool → BN → dropout → linear ...
    model = nn.Sequential(body, head)                      # `vision_splitter` → [body params, head params]

The body keeps the child module names of the model it was cut from, so a state dict of the full
model (deepfit's or torchvision's) loads into it key for key. `VisionModel` packages all of this
with a `config` dict, registered as `"vision_model"` so that exported learners can be rebuilt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .registry import get_model, register, registered_name, spec

TORCHVISION_PREFIX = "torchvision."
_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d)


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pooling and adaptive average pooling concatenated on the channel axis (2×C channels)."""

    def __init__(self, size: int | tuple[int, int] = 1):
        super().__init__()
        self.size = size
        self.ap = nn.AdaptiveAvgPool2d(size)
        self.mp = nn.AdaptiveMaxPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], dim=1)


def find_cut(model: nn.Module) -> int:
    """Index of the first pooling child from the end (the last layer kept in the body is the one before)."""
    children = list(model.children())
    for i in range(len(children) - 1, -1, -1):
        if isinstance(children[i], (*_POOLS, AdaptiveConcatPool2d)):
            return i
    raise ValueError(f"{type(model).__name__}: no pooling layer among its children "
                     f"({[type(c).__name__ for c in children]}); give `cut` (an index or a function)")


def create_body(model: nn.Module, cut: int | Callable[[nn.Module], nn.Module] | None = None) -> nn.Sequential:
    """The model's children before index `cut` (default: before its final pooling layer), as `nn.Sequential`.

    `cut` may be a negative index, or a function `model -> body`. Child names are kept.
    """
    if callable(cut):
        body = cut(model)
        return body if isinstance(body, nn.Sequential) else nn.Sequential(body)
    named = list(model.named_children())
    if not named:
        raise ValueError(f"{type(model).__name__} has no child modules to cut")
    if cut is None:
        cut = find_cut(model)
    body = named[:cut]
    if not body:
        raise ValueError(f"cut={cut} leaves an empty body ({len(named)} children)")
    return nn.Sequential(OrderedDict(body))


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


@torch.no_grad()
def num_features(body: nn.Module, size: int = 64, c_in: int | None = None) -> int:
    """Channels of the body's output, found by running a dummy batch of `size`×`size` images."""
    if c_in is None:
        conv = first_conv(body)
        if conv is None:
            raise ValueError("cannot infer the input channels of a body without Conv2d; give c_in")
        c_in = conv.in_channels
    p = next(body.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    was_training = body.training
    body.eval()
    try:
        out = body(torch.zeros(2, c_in, size, size, device=device))
    finally:
        body.train(was_training)
    if out.ndim < 2:
        raise ValueError(f"the body's output has shape {tuple(out.shape)}; expected N×C×H×W")
    return out.shape[1]


def create_head(n_features: int, n_out: int, lin_ftrs: Sequence[int] | None = None, ps: float | Sequence[float] = 0.5,
                concat_pool: bool = True, first_bn: bool = True, bn_final: bool = False) -> nn.Sequential:
    """Pooling → flatten → [BatchNorm → Dropout → Linear → ReLU] per hidden layer → BatchNorm → Dropout → Linear.

    `n_features` is the body's output channels (doubled by `AdaptiveConcatPool2d` when `concat_pool`).
    `lin_ftrs` are the hidden widths (default `[512]`); `ps` the dropout(s): one value gives half of it
    to the earlier layers and all of it to the last, as in the notes.
    """
    lin_ftrs = [512] if lin_ftrs is None else list(lin_ftrs)
    n_in = n_features * (2 if concat_pool else 1)
    sizes = [n_in, *lin_ftrs, n_out]
    if isinstance(ps, (int, float)):
        ps = [ps / 2] * len(lin_ftrs) + [ps]
    ps = list(ps)
    if len(ps) != len(sizes) - 1:
        raise ValueError(f"create_head: {len(ps)} dropout values for {len(sizes) - 1} linear layers")
    layers: list[nn.Module] = [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for i, (ni, no, p) in enumerate(zip(sizes[:-1], sizes[1:], ps)):
        last = i == len(sizes) - 2
        if i > 0 or first_bn:
            layers.append(nn.BatchNorm1d(ni))
        if p > 0:
            layers.append(nn.Dropout(p))
        layers.append(nn.Linear(ni, no))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    if bn_final:
        layers.append(nn.BatchNorm1d(n_out, momentum=0.01))
    head = nn.Sequential(*layers)
    init_head(head)
    return head


def init_head(head: nn.Module) -> None:
    """Kaiming-normal linear weights and zero biases."""
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def vision_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups `[body, head]` of a `nn.Sequential(body, head)` model."""
    if not isinstance(model, nn.Sequential) or len(model) != 2:
        raise TypeError(f"vision_splitter expects nn.Sequential(body, head), got {type(model).__name__}"
                        + (f" with {len(model)} children" if isinstance(model, nn.Sequential) else ""))
    return [list(model[0].parameters()), list(model[1].parameters())]


def adapt_input_channels(model: nn.Module, c_in: int) -> nn.Module:
    """Change the first convolution of `model` to take `c_in` channels, keeping pretrained filters useful.

    The new filters are the mean of the old ones over their input channels, repeated and rescaled so
    the response to a constant image stays the same (as when using an RGB body on grayscale images).
    """
    conv = first_conv(model)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no Conv2d to adapt")
    if conv.in_channels == c_in:
        return model
    if conv.groups != 1:
        raise ValueError("cannot adapt a grouped first convolution")
    w = conv.weight.detach()
    new_w = w.mean(dim=1, keepdim=True).repeat(1, c_in, 1, 1) * (w.shape[1] / c_in)
    conv.in_channels = c_in
    conv.weight = nn.Parameter(new_w)
    return model


# --------------------------------------------------------------------------- architectures by name


def _torchvision_builder(name: str) -> Callable[..., nn.Module]:
    try:
        import torchvision.models as tvm
    except ImportError:
        raise ImportError(f"architecture {TORCHVISION_PREFIX}{name} needs torchvision, which is not installed "
                          "(pip install torchvision); or use a deepfit architecture such as 'xresnet18'") from None
    fn = getattr(tvm, name, None)
    if fn is None or not callable(fn):
        raise KeyError(f"torchvision.models has no architecture {name!r}")
    return fn


def resolve_arch(arch: str | Callable[..., nn.Module]) -> tuple[Callable[..., nn.Module], bool]:
    """`(builder, is_torchvision)` for a registered vision name, `'torchvision.<name>'`, or a callable."""
    if callable(arch):
        return arch, getattr(arch, "__module__", "").startswith("torchvision")
    if arch.startswith(TORCHVISION_PREFIX):
        return _torchvision_builder(arch[len(TORCHVISION_PREFIX):]), True
    try:
        entry = spec(arch)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} (or '{TORCHVISION_PREFIX}<name>' with torchvision installed)") from None
    if entry.task != "vision":
        raise ValueError(f"{arch!r} is a {entry.task} model, not a vision architecture to cut a body from")
    return entry.builder, False


def build_arch(arch: str | Callable[..., nn.Module], c_in: int, **kwargs) -> nn.Module:
    """Build `arch` to cut a body from. A registered vision name (every one takes `c_in`) is built with
    `get_model(arch, c_in=c_in, **kwargs)`; a torchvision name or another callable gets `kwargs` only (its
    first convolution is adapted to `c_in` afterwards; put `c_in` in `kwargs` if your callable takes it)."""
    if isinstance(arch, str) and not arch.startswith(TORCHVISION_PREFIX):
        resolve_arch(arch)  # a clear error for unknown and non-vision names
        return get_model(arch, **{"c_in": c_in, **kwargs})
    builder, _ = resolve_arch(arch)
    return builder(**kwargs)


def load_body_weights(body: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load the body's weights from a state dict of the full model or of a `nn.Sequential(body, head)` model.

    Raises naming `source` and the missing or mismatched keys when neither layout matches the body.
    """
    target = body.state_dict()
    layouts = {"full model": dict(state),
               "vision model": {k[2:]: v for k, v in state.items() if k.startswith("0.")}}
    problems = {}
    for layout, cand in layouts.items():
        missing = [k for k in target if k not in cand]
        shapes = [f"{k}: {tuple(cand[k].shape)} vs {tuple(target[k].shape)}" for k in target
                  if k in cand and cand[k].shape != target[k].shape]
        if not missing and not shapes:
            body.load_state_dict({k: cand[k] for k in target})
            return
        problems[layout] = (missing, shapes)
    detail = "; ".join(f"as a {layout}: {len(m)} missing keys {m[:3]}, {len(s)} shape mismatches {s[:3]}"
                       for layout, (m, s) in problems.items())
    raise ValueError(f"{source}: does not match the body's {len(target)} parameters/buffers ({detail}). "
                     "Was it saved from the same architecture with the same c_in and widths?")


class VisionModel(nn.Sequential):
    """A transfer model, `nn.Sequential(body, head)`: the body of `body_arch` cut at `cut`, and a new head.

    `body_arch` is a registered vision name, `'torchvision.<name>'` or a callable (a registered builder
    passed as a function is recorded by its name). `state` (a state dict, not part of `config`) loads
    pretrained body weights before the first convolution is adapted to `c_in` channels (for RGB-only
    architectures). `config` holds the other arguments, so `get_model("vision_model", **config)` rebuilds
    the same network (when `body_arch` is a name).
    """

    def __init__(self, body_arch: str | Callable[..., nn.Module], n_out: int, c_in: int = 3,
                 cut: int | Callable[[nn.Module], nn.Module] | None = None, lin_ftrs: Sequence[int] | None = None,
                 ps: float | Sequence[float] = 0.5, concat_pool: bool = True, first_bn: bool = True,
                 bn_final: bool = False, arch_kwargs: Mapping | None = None, *,
                 state: Mapping[str, torch.Tensor] | None = None, source: str = "weights"):
        if callable(body_arch) and registered_name(body_arch) is not None:
            body_arch = registered_name(body_arch)
        model = build_arch(body_arch, c_in, **dict(arch_kwargs or {}))
        body = create_body(model, cut)
        if state is not None:
            load_body_weights(body, state, source)
        adapt_input_channels(body, c_in)
        head = create_head(num_features(body, c_in=c_in), n_out, lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool,
                           first_bn=first_bn, bn_final=bn_final)
        super().__init__(body, head)
        self.config = dict(body_arch=body_arch, n_out=n_out, c_in=c_in, cut=cut,
                           lin_ftrs=None if lin_ftrs is None else list(lin_ftrs),
                           ps=ps if isinstance(ps, (int, float)) else list(ps), concat_pool=concat_pool,
                           first_bn=first_bn, bn_final=bn_final, arch_kwargs=dict(arch_kwargs or {}))


register("vision_model", VisionModel, "transfer")
