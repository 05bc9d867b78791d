"""`ActivationStats`: per-layer activation mean, std, near-zero share and histograms over training.

Statistics are computed on the device in a forward hook and kept there; they are read to the host
once per epoch (after the training phase), never per batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..learner.events import Callback
from .hooks import Hooks


def layer_stats(x: Tensor, zero_tol: float, absx: Tensor | None = None) -> Tensor:
    """`[mean, std, share of |x| <= zero_tol]` of all elements of `x`, as a device tensor."""
    x = x.detach().float()
    absx = x.abs() if absx is None else absx
    if x.numel() > 1:
        std, mean = torch.std_mean(x)
    else:
        std, mean = x.new_zeros(()), x.mean()
    return torch.stack([mean, std, (absx <= zero_tol).float().mean()])


def default_stat_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules that hold parameters (convolutions, linear layers, norms...), with their names."""
    return [(n, m) for n, m in model.named_modules()
            if n and not list(m.children()) and any(True for _ in m.parameters(recurse=False))]


class ActivationStats(Callback):
    """Records, for each hooked layer and every `every`-th training batch, the mean, standard deviation,
    share of near-zero values (`|a| <= zero_tol`) of its output, and a histogram of `|a|` over
    `[0, hist_max]` in `hist_bins` bins (the "colorful dimension" plot of the course).

    Args:
        modules: modules or dotted names to hook; default: every leaf module with parameters.
        every: record one training batch out of `every`.

    After `fit`: `names`, `stats[name]` = `{'mean': [...], 'std': [...], 'near_zero': [...]}` (one
    value per recorded batch), `hists[name]` (recorded batches × `hist_bins` tensor) and `steps`
    (the training batch index of each record).
    """

    order = 45
    run_valid = False

    def __init__(self, modules: Sequence[nn.Module | str] | None = None, every: int = 1, zero_tol: float = 1e-2,
                 hist_bins: int = 40, hist_max: float = 10.0):
        if every < 1:
            raise ValueError(f"ActivationStats: every must be >= 1, got {every}")
        self.modules, self.every, self.zero_tol = modules, every, zero_tol
        self.hist_bins, self.hist_max = hist_bins, hist_max
        self.names: list[str] = []
        self.stats: dict[str, dict[str, list[float]]] = {}
        self.hists: dict[str, Tensor] = {}
        self.steps: list[int] = []
        self._hooks: Hooks | None = None
        self._active = False

    # ---------------------------------------------------------------- hooks
    def _resolve_modules(self) -> list[tuple[str, nn.Module]]:
        model = self.learn.model
        if self.modules is None:
            found = default_stat_modules(model)
            if not found:
                raise ValueError("ActivationStats: the model has no leaf module with parameters; pass modules=")
            return found
        names = {id(m): n for n, m in model.named_modules()}
        out = []
        for m in self.modules:
            if isinstance(m, str):
                try:
                    out.append((m, model.get_submodule(m)))
                except AttributeError:
                    raise ValueError(f"ActivationStats: the model has no submodule named {m!r}") from None
            elif isinstance(m, nn.Module):
                out.append((names.get(id(m), type(m).__name__), m))
            else:
                raise TypeError(f"ActivationStats: modules must be nn.Module or str, got {type(m).__name__}")
        return out

    def _hook(self, hook, module, inp, out) -> None:
        if not self._active or not isinstance(out, Tensor):
            return
        x = out.detach().float()
        absx = x.abs()
        self._pending[hook.index].append(layer_stats(x, self.zero_tol, absx))
        self._pending_hist[hook.index].append(absx.flatten().histc(self.hist_bins, 0, self.hist_max))

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    # ---------------------------------------------------------------- events
    def before_fit(self) -> None:
        self._remove_hooks()
        named = self._resolve_modules()
        self.names = [n for n, _ in named]
        self.stats = {n: {"mean": [], "std": [], "near_zero": []} for n in self.names}
        self.hists = {n: torch.zeros(0, self.hist_bins) for n in self.names}
        self.steps = []
        self._pending = [[] for _ in named]
        self._pending_hist = [[] for _ in named]
        self._pending_steps: list[int] = []
        self._hooks = Hooks([m for _, m in named], self._hook)
        for i, h in enumerate(self._hooks):
            h.index = i

    def before_batch(self) -> None:
        step = self.learn.train_iter
        self._active = step % self.every == 0
        if self._active:
            self._pending_steps.append(step)

    def after_batch(self) -> None:
        self._active = False

    def after_train(self) -> None:
        self.flush()

    def after_fit(self) -> None:
        self._active = False
        self.flush()
        self._remove_hooks()

    def flush(self) -> None:
        """Read the statistics gathered since the last flush from the device (one sync per layer)."""
        if not getattr(self, "_pending_steps", None):
            return
        for i, name in enumerate(self.names):
            if not self._pending[i]:
                continue
            values = torch.stack(self._pending[i]).cpu()
            for key, col in zip(("mean", "std", "near_zero"), values.T.tolist()):
                self.stats[name][key].extend(col)
            self.hists[name] = torch.cat([self.hists[name], torch.stack(self._pending_hist[i]).cpu()])
            self._pending[i], self._pending_hist[i] = [], []
        self.steps.extend(self._pending_steps)
        self._pending_steps = []

    # ---------------------------------------------------------------- plots
    def plot_stats(self, path: str | Path) -> Path:
        """PNG with three panels (mean, std, near-zero share), one line per layer, over training batches."""
        from ..plotting import new_figure, save_figure

        self.flush()
        fig, axes = new_figure(1, 3, figsize=(15, 4.2))
        labels = {"mean": "activation mean", "std": "activation std", "near_zero": f"share |a| ≤ {self.zero_tol:g}"}
        for ax, key in zip(axes, ("mean", "std", "near_zero")):
            for name in self.names:
                values = self.stats[name][key]
                ax.plot(self.steps[:len(values)], values, label=name)
            ax.set_title(labels[key])
            ax.set_xlabel("training batch")
            ax.set_ylabel(key)
        if self.names:
            axes[-1].legend(fontsize="small")
        fig.suptitle("Activation statistics per layer")
        return save_figure(fig, path)

    def plot_hist(self, path: str | Path, ncols: int = 3) -> Path:
        """The "colorful dimension" plot: for each layer, the histogram of |activations| (log scale)
        stacked over training batches (x: batch, y: magnitude)."""
        from ..plotting import new_figure, save_figure

        self.flush()
        n = max(len(self.names), 1)
        ncols = min(ncols, n)
        nrows = math.ceil(n / ncols)
        fig, axes = new_figure(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), )
        axes = [axes] if not hasattr(axes, "flatten") else list(axes.flatten())
        for ax, name in zip(axes, self.names):
            h = self.hists[name]
            steps = self.steps[:len(h)] or [0]
            ax.imshow(h.T.log1p().numpy() if len(h) else torch.zeros(self.hist_bins, 1).numpy(), origin="lower",
                      aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(steps[0], steps[-1] + 1, 0, self.hist_max))
            ax.set_title(name)
            ax.set_xlabel("training batch")
            ax.set_ylabel("|activation|")
        for ax in axes[len(self.names):]:
            ax.axis("off")
        fig.suptitle("Activation histograms (log counts)")
        return save_figure(fig, path)
