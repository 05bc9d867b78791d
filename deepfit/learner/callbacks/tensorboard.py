"""`TensorBoardCallback`: training history, images and hyper-parameters in TensorBoard event files.

Uses only `torch.utils.tensorboard.SummaryWriter` (needs the `tensorboard` package). Batch losses
come from the `Recorder`, which reads them from the device once per training phase; they are
written at the end of each epoch with their batch numbers as steps, so nothing syncs per batch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..events import Callback


def _image_like(x: Any) -> bool:
    return isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] in (1, 3)


class TensorBoardCallback(Callback):
    """Writes to `log_dir` (default `learn.path/'runs'/<timestamp>`):

    - `train/loss`, `train/lr`, `train/mom` per training batch (step = batch number over all fits);
    - `epoch/train_loss`, `valid/loss` and `valid/<metric>` per epoch (step = epoch number);
    - `images/train_batch`: a grid of the first training batch, once;
    - `images/misclassified`: up to `n_misclassified` wrong validation predictions each epoch, labelled
      prediction/actual (classification with image inputs only);
    - hyper-parameters (`hparams`, plus lr, epochs, batch size, optimizer, model, loss) with the final
      validation results, at the end of `fit`;
    - `weights/<param>` histograms every `hist_every` epochs when set.
    """

    order = 70  # after the Recorder has written the epoch's row
    main_process_only = True

    def __init__(self, log_dir: str | Path | None = None, hparams: dict[str, Any] | None = None,
                 log_batch_grid: bool = True, n_misclassified: int = 16, hist_every: int | None = None,
                 grid_size: int = 32):
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.hparams = dict(hparams or {})
        self.log_batch_grid, self.n_misclassified = log_batch_grid, n_misclassified
        self.hist_every, self.grid_size = hist_every, grid_size
        self.writer = None
        self._batch_offset = 0  # batch steps written by earlier fits
        self._epoch_offset = 0
        self._grid_done = False

    # ---------------------------------------------------------------- setup
    def before_fit(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        recorder = getattr(self.learn, "recorder", None)
        if recorder is None:
            raise RuntimeError("TensorBoardCallback needs the Learner's Recorder (default callbacks)")
        if self.log_dir is None:
            self.log_dir = Path(self.learn.path) / "runs" / time.strftime("%Y%m%d_%H%M%S")
        if self.writer is None:
            self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self._mis = None
        self._n_written = 0
        if self.learn.resuming:
            self._n_written = len(recorder.losses)
        self._fit_start_epoch = self._epoch_offset

    def before_batch(self) -> None:
        if self._grid_done or not self.log_batch_grid or not self.learn.training:
            return
        self._grid_done = True
        xb = self.learn.xb
        if _image_like(xb):
            from ...interpret.images import denormalize, make_grid

            images = denormalize(xb[:self.grid_size], self.learn.dl)
            self.writer.add_image("images/train_batch", make_grid(images), self._batch_offset)

    # ---------------------------------------------------------------- misclassified images
    def before_validate(self) -> None:
        self._mis = None

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training or self.n_misclassified <= 0:
            return
        pred, yb, xb = learn.pred, learn.yb, learn.xb
        if not (_image_like(xb) and isinstance(pred, Tensor) and pred.ndim == 2 and isinstance(yb, Tensor)
                and yb.ndim == 1 and len(yb) == len(pred)):
            return
        # Keep (on the device, no sync) the wrong items first, at most n_misclassified of them.
        p = pred.detach().argmax(1)
        wrong = p != yb
        if self._mis is not None:
            x0, p0, y0, w0 = self._mis
            xb, p, yb, wrong = torch.cat([x0, xb.detach()]), torch.cat([p0, p]), torch.cat([y0, yb]), torch.cat(
                [w0, wrong])
        order = torch.argsort(wrong.to(torch.int8), descending=True, stable=True)[:self.n_misclassified]
        self._mis = (xb.detach()[order], p[order], yb[order], wrong[order])

    def _write_misclassified(self, step: int) -> None:
        if getattr(self, "_mis", None) is None:
            return
        xb, p, yb, wrong = self._mis
        keep = wrong.cpu()
        if not bool(keep.any()):
            return
        from ...interpret.images import class_name, denormalize, figure_to_array, to_numpy_image
        from ...plotting import new_figure

        xb, p, yb = xb.cpu()[keep], p.cpu()[keep], yb.cpu()[keep]
        images = denormalize(xb, self.learn.dls.valid)
        vocab = getattr(self.learn.dls, "vocab", None)
        n = len(images)
        ncols = min(8, n)
        nrows = math.ceil(n / ncols)
        fig, axes = new_figure(nrows, ncols, figsize=(1.6 * ncols, 1.9 * nrows))
        axes = [axes] if not hasattr(axes, "flatten") else list(axes.flatten())
        for j, ax in enumerate(axes):
            ax.axis("off")
            if j < n:
                img = to_numpy_image(images[j])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
                ax.set_title(f"{class_name(vocab, int(p[j]))}/{class_name(vocab, int(yb[j]))}", fontsize=7)
        fig.suptitle(f"misclassified (prediction/actual), epoch {step}", fontsize=8)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.82 if nrows == 1 else 0.9, hspace=0.45)
        self.writer.add_image("images/misclassified", figure_to_array(fig), step, dataformats="HWC")

    # ---------------------------------------------------------------- per epoch
    def after_epoch(self) -> None:
        learn, recorder, w = self.learn, self.learn.recorder, self.writer
        recorder.flush()
        step0 = self._batch_offset
        for i in range(self._n_written, len(recorder.losses)):
            w.add_scalar("train/loss", recorder.losses[i], step0 + i)
            if i < len(recorder.lrs):
                w.add_scalar("train/lr", recorder.lrs[i], step0 + i)
            if i < len(recorder.moms) and not math.isnan(recorder.moms[i]):
                w.add_scalar("train/mom", recorder.moms[i], step0 + i)
        self._n_written = len(recorder.losses)
        epoch = self._epoch_offset
        if recorder.values:
            names = recorder.metric_names[1:]
            if recorder.add_time:
                names = names[:-1]
            for name, value in zip(names, recorder.values[-1]):
                if isinstance(value, float) and math.isnan(value):
                    continue
                tag = "epoch/train_loss" if name == "train_loss" else (
                    "valid/loss" if name == "valid_loss" else f"valid/{name}")
                if name.startswith("train_") and name != "train_loss":
                    tag = f"train/{name[len('train_'):]}"
                w.add_scalar(tag, value, epoch)
        self._write_misclassified(epoch)
        self._mis = None
        if self.hist_every and (epoch + 1) % self.hist_every == 0:
            for name, param in learn.model.named_parameters():
                w.add_histogram(f"weights/{name}", param.detach().float().cpu(), epoch)
        w.flush()
        self._epoch_offset += 1

    # ---------------------------------------------------------------- end
    def _hparams(self) -> dict[str, Any]:
        learn = self.learn
        train = getattr(learn.dls, "train", None)
        hp: dict[str, Any] = {
            "lr": float(learn.opt.param_groups[-1]["lr"]) if learn.opt is not None else float(learn.lr),
            "n_epoch": int(learn.n_epoch),
            "bs": int(getattr(train, "bs", 0) or 0),
            "opt": type(learn.opt).__name__ if learn.opt is not None else "",
            "model": type(learn.model).__name__,
            "loss": getattr(learn.loss_func, "__name__", type(learn.loss_func).__name__),
        }
        for k, v in self.hparams.items():
            hp[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
        return hp

    def after_fit(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        recorder, w = self.learn.recorder, self.writer
        metrics: dict[str, float] = {}
        if recorder.values:
            names = recorder.metric_names[2:]  # skip epoch and train_loss
            for name, value in zip(names, recorder.values[-1][1:]):
                if name != "time" and not (isinstance(value, float) and math.isnan(value)):
                    metrics[f"hparam/{name}"] = float(value)
        exp, ssi, sei = hparams(self._hparams(), metrics)
        step = self._epoch_offset
        w.file_writer.add_summary(exp, step)
        w.file_writer.add_summary(ssi, step)
        w.file_writer.add_summary(sei, step)
        for k, v in metrics.items():
            w.add_scalar(k, v, step)
        self._batch_offset += len(recorder.losses)
        self.close()

    def close(self) -> None:
        """Flush and close the event file (a later `fit` opens a new one in the same folder)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
