"""Distributed training on CPU with gloo and two processes started by torchrun."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepfit import distributed
from deepfit.data import TensorLoader
from deepfit.learner import Learner, accuracy
from tests.helpers import ddp_train

SCRIPT = Path(ddp_train.__file__)


def torchrun(tmp_path: Path, mode: str, bs: int, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
           str(SCRIPT), str(tmp_path), mode, str(bs)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = torchrun(out, "train", bs=8)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def single_process_learner(bs: int, tmp_path: Path) -> Learner:
    learn = Learner(ddp_train.make_model(), ddp_train.make_data(bs), metrics=[accuracy], lr=0.1, path=tmp_path,
                    opt_func=lambda p, lr: torch.optim.SGD(p, lr=lr))
    learn.remove_cb(learn.progress)
    return learn


def test_two_ranks_batch_b_equal_one_process_batch_2b(ddp_run):
    out, _ = ddp_run
    ddp_weights = torch.load(out / "weights_train.pt", weights_only=True)
    learn = single_process_learner(16, out)
    learn.fit(2)
    for name, value in learn.model.state_dict().items():
        assert torch.allclose(value, ddp_weights[name], atol=1e-5), name
    # and it really trained: the weights moved away from the initial ones
    init = ddp_train.make_model().state_dict()
    assert any(not torch.allclose(init[k], ddp_weights[k], atol=1e-3) for k in init)
    figures = json.loads((out / "figures_train.json").read_text())
    assert figures["world"] == 2
    assert figures["values"][-1][0] == pytest.approx(learn.recorder.values[-1][0], rel=1e-4)


def test_reported_validation_equals_single_process_evaluation(ddp_run):
    out, _ = ddp_run
    figures = json.loads((out / "figures_train.json").read_text())
    learn = single_process_learner(16, out)
    learn.model.load_state_dict(torch.load(out / "weights_train.pt", weights_only=True))
    valid_loss, acc = learn.validate()
    assert figures["values"][-1][1] == pytest.approx(valid_loss, rel=1e-5)
    assert figures["values"][-1][2] == pytest.approx(acc)


def test_only_rank_zero_prints_and_writes(ddp_run):
    out, proc = ddp_run
    assert proc.stdout.count("train_loss") == 1
    assert len([line for line in proc.stdout.splitlines() if line.split()[:1] in (["0"], ["1"])]) == 2
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch") and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert [p.name for p in (out / "models").iterdir()] == ["checkpoint_000001.pt"]


def test_export_from_distributed_run_loads_in_one_process(ddp_run):
    from deepfit.learner.export import load_learner

    out, _ = ddp_run
    inf = load_learner(out / "export")
    learn = single_process_learner(16, out)
    learn.model.load_state_dict(torch.load(out / "weights_train.pt", weights_only=True))
    x = learn.dls.valid.x[:5]
    expected = torch.softmax(learn.model.eval()(x), -1)
    got = torch.stack([inf.predict(item)[2] for item in x])
    assert torch.allclose(got, expected, atol=1e-6)


def test_distributed_checkpoint_resumes_in_distributed_run(tmp_path):
    first = torchrun(tmp_path, "first", bs=8)
    assert first.returncode == 0, first.stdout + first.stderr
    resumed = torchrun(tmp_path, "resume", bs=8)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    weights = torch.load(tmp_path / "weights_resume.pt", weights_only=True)
    learn = single_process_learner(16, tmp_path / "single")
    learn.fit(2)
    for name, value in learn.model.state_dict().items():
        assert torch.allclose(value, weights[name], atol=1e-5), name
    assert len(json.loads((tmp_path / "figures_resume.json").read_text())["values"]) == 2


def test_exception_on_one_rank_stops_both_with_message(tmp_path):
    proc = torchrun(tmp_path, "fail", bs=8)
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stdout + proc.stderr
    assert not (tmp_path / "weights_fail.pt").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_node_run(tmp_path: Path, rendezvous: str) -> list[tuple[int, str]]:
    """Two torchrun agents, `--nnodes=2 --nproc_per_node=1`, as on two machines (each with its own output
    folder `node<N>`): `(exit status, output)` of each agent."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[2])}
    port = free_port()
    procs = []
    for node in (0, 1):
        if rendezvous == "static":
            where = [f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}"]
        else:
            where = ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=deepfit-test"]
        out = tmp_path / f"node{node}"
        out.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", *where,
               str(SCRIPT), str(out), "train", "8"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                      cwd=out))
    results = []
    for p in procs:
        try:
            output, _ = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        results.append((p.returncode, output))
    return results


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_nodes_exit_cleanly_with_the_same_weights_on_both_ranks(tmp_path, rendezvous):
    """deepfit destroys the process group it created at exit (after a barrier): without that, rank 0 aborted
    (`terminate called without an active exception`) and node 0's agent exited 1."""
    results = two_node_run(tmp_path, rendezvous)
    for node, (rc, output) in enumerate(results):
        assert rc == 0, f"node {node} exited {rc}:\n{output[-3000:]}"
        assert "terminate called" not in output and "SIGABRT" not in output
        assert "process group still initialized at exit: False" in output  # deepfit destroyed the group it made
    files = sorted(tmp_path.glob("node*/weights_rank*_train.pt"))
    assert sorted(p.name for p in files) == ["weights_rank0_train.pt", "weights_rank1_train.pt"]
    ranks = [torch.load(p, weights_only=True) for p in files]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
    # the same model as one process with the batch of both ranks, and trained with world size 2
    learn = single_process_learner(16, tmp_path / "single")
    learn.fit(2)
    for name, value in learn.model.state_dict().items():
        assert torch.allclose(value, ranks[0][name], atol=1e-5), name
    figures = json.loads(next(tmp_path.glob("node*/figures_train.json")).read_text())
    assert figures["world"] == 2


def test_tensor_loader_shards_disjoint_and_cover_the_epoch():
    x, y = torch.zeros(11, 2), torch.arange(11)
    full = TensorLoader(x, y, bs=3, shuffle=True, seed=4, device="cpu")
    expected = torch.cat([yb for _, yb in full]).tolist()
    shards = []
    for r in range(2):
        dl = TensorLoader(x, y, bs=3, shuffle=True, seed=4, device="cpu")
        dl.shard(r, 2, pad=False)
        shards.append(torch.cat([yb for _, yb in dl]).tolist())
    assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == list(range(11))
    assert expected[0::2] == shards[0] and expected[1::2] == shards[1]
    padded = TensorLoader(x, y, bs=3, shuffle=True, seed=4, device="cpu")
    padded.shard(1, 2, pad=True)
    assert len(list(padded)) == len(padded) == 2 and padded.n == 6


def test_single_process_is_a_no_op(tiny_dls):
    assert not distributed.launched_by_torchrun() and distributed.is_main_process()
    learn = Learner(torch.nn.Linear(4, 3), tiny_dls)
    model = learn.model
    with learn.distrib_ctx():
        learn.fit(1)
    assert learn.model is model and len(tiny_dls.train) == 4


def test_lm_loader_shards_are_disjoint_and_cover_the_stream():
    from deepfit.text.loaders import LMLoader

    n_tokens, bs, world = 1003, 4, 2
    texts = [torch.arange(0, 500), torch.arange(500, n_tokens)]
    seen = []
    n_batches = []
    for r in range(world):
        dl = LMLoader(texts, bs=bs, bptt=7, shuffle=False, random_bptt=True, seed=3, device="cpu")
        dl.shard(r, world)
        xs = [(x, y) for x, y in dl]
        assert all(torch.equal(y, x + 1) for x, y in xs)  # y is x one token later (tokens are positions)
        seen.append(torch.cat([x for x, _ in xs], 1).flatten().tolist())
        n_batches.append(len(xs))
    assert n_batches[0] == n_batches[1] == len(dl.seq_lens(0))
    assert set(seen[0]).isdisjoint(seen[1])
    union = sorted(seen[0] + seen[1])
    assert len(union) == len(set(union))
    missing = set(range(n_tokens)) - set(union)
    assert len(missing) < world * (bs + 1)  # only the tails that cannot fill a row are left out
