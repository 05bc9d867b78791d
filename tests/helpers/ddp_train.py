"""Training script run by tests/test_distributed.py, under torchrun or as one process.

    python tests/helpers/ddp_train.py OUT_DIR MODE BS
MODE: 'train' (fit 2 epochs with checkpoints and a CSV log, then rank 0 saves weights, figures and an
export), 'first' (fit 1 epoch, checkpointing), 'resume' (fit 2 epochs resuming from the last checkpoint)
or 'fail' (rank 1 raises). Except in 'fail', every rank also saves its weights as weights_rank<R>_<MODE>.pt.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deepfit import distributed  # noqa: E402
from deepfit.data import DataLoaders, TensorLoader  # noqa: E402
from deepfit.learner import Callback, CheckpointCallback, CSVLogger, Learner, accuracy  # noqa: E402
from deepfit.models import get_model  # noqa: E402


def make_data(bs: int) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    xv = torch.randn(37, 6, generator=g)
    yv = (xv[:, :3].sum(1) > 0).long() + (xv[:, 3] > 0.5).long()
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, seed=5, device="cpu"),
                       TensorLoader(xv, yv, bs=5, device="cpu"), device="cpu")


def make_model() -> nn.Module:
    torch.manual_seed(1)
    return get_model("mlp", c_in=6, img_size=1, hidden=[16], n_out=3)


class FailOnRank1(Callback):
    def after_batch(self):
        if distributed.rank() == 1 and self.learn.train_iter == 1:
            raise RuntimeError("rank 1 failed on purpose")


def report_group_at_exit() -> None:
    """Registered before `fit`, so it runs after deepfit's own exit handler (atexit runs last-in, first-out)."""
    import torch.distributed as dist

    print(f"process group still initialized at exit: {dist.is_initialized()}", flush=True)


def main() -> None:
    out, mode, bs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    atexit.register(report_group_at_exit)
    dls = make_data(bs)
    cbs = [FailOnRank1()] if mode == "fail" else [CheckpointCallback(every="epoch", keep_last=1),
                                                   CSVLogger("history.csv", append=mode == "resume")]
    learn = Learner(make_model(), dls, metrics=[accuracy], lr=0.1, cbs=cbs, path=out,
                    opt_func=lambda p, lr: torch.optim.SGD(p, lr=lr))
    if mode == "first":
        learn.fit(1)
    else:
        learn.fit(2, resume="last" if mode == "resume" else None)
    if mode != "fail":  # every rank's weights, to check that all ranks end with the same model
        torch.save({k: v.detach().cpu() for k, v in learn.model.state_dict().items()},
                   out / f"weights_rank{distributed.rank()}_{mode}.pt")
    if distributed.is_main_process():
        torch.save({k: v.detach().cpu() for k, v in learn.model.state_dict().items()}, out / f"weights_{mode}.pt")
        (out / f"figures_{mode}.json").write_text(json.dumps({"values": learn.recorder.values,
                                                              "world": distributed.world_size(),
                                                              "n_train_batches": len(dls.train)}))
    learn.export(out / "export")


if __name__ == "__main__":
    main()
