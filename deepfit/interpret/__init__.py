"""Looking inside models and training: hooks, summaries, activation statistics, CAM, interpretation, plots."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".activation_stats": ["ActivationStats"],
    ".cam": ["cam", "grad_cam", "save_overlay"],
    ".hooks": ["Hook", "Hooks", "hook_output", "hook_outputs"],
    ".images": ["denormalize", "make_grid"],
    ".interpretation": ["ClassificationInterpretation", "write_classifier_report"],
    ".plots": ["plot_all", "plot_loss", "plot_lr", "plot_metrics", "plot_sched"],
    ".summary": ["summary"],
})
