"""Looking inside models and training: hooks, summaries, activation statistics, CAM, interpretation, plots."""

from .activation_stats import ActivationStats
from .cam import cam, grad_cam, save_overlay
from .hooks import Hook, Hooks, hook_output, hook_outputs
from .images import denormalize, make_grid
from .interpretation import ClassificationInterpretation, write_classifier_report
from .plots import plot_all, plot_loss, plot_lr, plot_metrics, plot_sched
from .summary import summary

__all__ = [
    "ActivationStats", "ClassificationInterpretation", "Hook", "Hooks", "cam", "denormalize", "grad_cam",
    "hook_output", "hook_outputs", "make_grid", "plot_all", "plot_loss", "plot_lr", "plot_metrics", "plot_sched",
    "save_overlay", "summary", "write_classifier_report",
]
