"""Matplotlib helpers that never need a display: figures are built without pyplot and saved as PNG.

matplotlib is imported when the first figure is made, so importing a module that plots costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.0),
               dpi: int = 100) -> tuple[Figure, Any]:
    """A new figure and its axes, not attached to any interactive backend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    axes = fig.subplots(nrows, ncols)
    return fig, axes


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save `fig` as PNG at `path` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
