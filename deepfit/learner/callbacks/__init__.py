"""Callbacks: one module per concern."""

from .core import DeviceCallback, GatherPreds, TrainEvalCallback, loss_per_item
from .progress import ProgressCallback
from .recorder import Recorder

__all__ = ["DeviceCallback", "GatherPreds", "ProgressCallback", "Recorder", "TrainEvalCallback", "loss_per_item"]
