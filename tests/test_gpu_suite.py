"""benchmarks/gpu_suite.py: its CPU smoke run covers every stage and ends with one JSON line of figures; packing
Fashion-MNIST for the GPU machine copies the four files into an ignored folder."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the smoke run is what a machine without CUDA runs")
def test_cpu_smoke_run_prints_one_json_line_of_figures(tmp_path):
    out = tmp_path / "figures.json"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(SUITE), "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert "no CUDA GPU here: running the smoke version" in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]
    figures = json.loads(lines[0])
    assert figures == json.loads(out.read_text())
    assert figures["smoke"] is True and figures["cuda"] is False
    stages = figures["stages"]
    assert list(stages) == ["tests", "throughput", "fmnist", "compile"]
    assert stages["tests"]["status"] == "skipped: no CUDA" and stages["tests"]["skipped"] >= 9
    assert stages["tests"]["failed"] == 0
    assert stages["throughput"]["xresnet50_128px"]["fp32"]["images_per_s"] > 0
    assert stages["throughput"]["awd_lstm_lm"]["fp32"]["tokens_per_s"] > 0
    fm = stages["fmnist"]
    assert fm["data"] in ("fashion-mnist", "synthetic") and len(fm["epochs"]) == fm["planned_epochs"] == 1
    assert 0 <= fm["epochs"][0]["accuracy"] <= 1 and fm["target"] == 0.94
    assert stages["compile"]["eager"]["items_per_s"] > 0 and stages["compile"]["compiled"]["items_per_s"] > 0
    assert all("error" not in s for s in stages.values())


def test_pack_data_copies_fashion_mnist_into_an_ignored_folder(tmp_path, monkeypatch):
    suite = load_suite()
    src = tmp_path / "src" / "fashion-mnist"
    src.mkdir(parents=True)
    for i, name in enumerate(suite.FMNIST_FILES):
        (src / name).write_bytes(bytes([i]) * 10)
    monkeypatch.setenv("DEEPFIT_DATA", str(tmp_path / "src"))
    monkeypatch.setattr(suite, "ROOT", tmp_path)
    out = suite.pack_data(tmp_path / "gpu_data")
    assert sorted(p.name for p in out.iterdir()) == sorted(suite.FMNIST_FILES)
    assert (out / suite.FMNIST_FILES[2]).read_bytes() == bytes([2]) * 10
    assert (tmp_path / "gpu_data" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_budget_shares_out_the_time_left():
    suite = load_suite()
    budget = suite.Budget(100.0)
    first = budget.for_stage("tests", list(suite.STAGES))
    assert first == pytest.approx(30.0, abs=0.5)
    assert budget.for_stage("compile", ["compile"]) == pytest.approx(100.0, abs=0.5)
