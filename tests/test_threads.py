"""Thread-count defaults: environment variables, the affinity mask and cgroup CPU quotas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepfit import threads
from deepfit.threads import ThreadChoice, cgroup_cpu_quota, choose_threads, set_threads


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_env(monkeypatch):
    for name in threads.ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def fake_cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "proc_self_cgroup"
    proc_file.write_text(proc)
    return root, proc_file


def use_cgroup(monkeypatch, root: Path, proc_file: Path) -> None:
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_CGROUP", proc_file)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: cgroup_cpu_quota(root, proc_file))


def test_v2_quota_smallest_along_the_path(tmp_path):
    root, proc = fake_cgroup(tmp_path, "0::/a/b\n", {"cpu.max": "max 100000", "a/cpu.max": "300000 100000",
                                                     "a/b/cpu.max": "150000 100000"})
    assert cgroup_cpu_quota(root, proc) == pytest.approx(1.5)


def test_v2_unlimited_is_none(tmp_path):
    root, proc = fake_cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000"})
    assert cgroup_cpu_quota(root, proc) is None


def test_v1_quota(tmp_path):
    root, proc = fake_cgroup(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/x\n",
                             {"cpu,cpuacct/x/cpu.cfs_quota_us": "200000", "cpu,cpuacct/x/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_quota(root, proc) == pytest.approx(2.0)


def test_v1_unlimited_quota_is_none(tmp_path):
    root, proc = fake_cgroup(tmp_path, "3:cpu,cpuacct:/\n",
                             {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_quota(root, proc) is None


def test_env_wins(monkeypatch, no_env):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(threads, "available_cpus", lambda: 16)
    assert choose_threads() == ThreadChoice(3, "OMP_NUM_THREADS=3")
    monkeypatch.setenv("DEEPFIT_THREADS", "2")
    assert choose_threads().threads == 2


def test_bad_env_value_is_ignored(monkeypatch, no_env, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")
    monkeypatch.setattr(threads, "available_cpus", lambda: 6)
    use_cgroup(monkeypatch, *fake_cgroup(tmp_path, "0::/\n", {}))
    assert choose_threads().threads == 6


def test_affinity_mask(monkeypatch, no_env, tmp_path):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    use_cgroup(monkeypatch, *fake_cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000"}))
    choice = choose_threads()
    assert choice.threads == 3
    assert "affinity" in choice.reason


def test_quota_caps_the_affinity_mask(monkeypatch, no_env, tmp_path):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    use_cgroup(monkeypatch, *fake_cgroup(tmp_path, "0::/job\n", {"job/cpu.max": "250000 100000"}))
    choice = choose_threads()
    assert choice.threads == 2
    assert "quota 2.5" in choice.reason


def test_tiny_quota_still_one_thread(monkeypatch, no_env, tmp_path):
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    use_cgroup(monkeypatch, *fake_cgroup(tmp_path, "0::/\n", {"cpu.max": "50000 100000"}))
    assert choose_threads().threads == 1


def test_set_threads_applies(restore_threads):
    choice = set_threads(2)
    assert torch.get_num_threads() == 2
    assert choice.as_dict() == {"threads": 2, "reason": "requested"}
    set_threads(1)
    assert torch.get_num_threads() == 1


def test_set_threads_default(monkeypatch, restore_threads, no_env):
    monkeypatch.setenv("DEEPFIT_THREADS", "1")
    assert set_threads().threads == 1
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_threads_rejects(bad, restore_threads):
    with pytest.raises(ValueError, match="whole number"):
        set_threads(bad)



def test_prefer_passive_wait(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert threads.prefer_passive_wait() is False  # the user's choice stays
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert threads.prefer_passive_wait() is True
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert threads.prefer_passive_wait() is False  # torch is already imported here: too late to matter
    assert "OMP_WAIT_POLICY" not in threads.os.environ
    monkeypatch.delitem(threads.sys.modules, "torch")
    monkeypatch.setattr(threads, "machine_busy", lambda: False)
    assert threads.prefer_passive_wait() is False  # an idle machine: spinning is faster
    assert threads.prefer_passive_wait("always") is True
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(threads, "machine_busy", lambda: True)
    assert threads.prefer_passive_wait() is True
    with pytest.raises(ValueError, match="busy"):
        threads.prefer_passive_wait("sometimes")


def test_machine_busy(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.5, 1.0, 1.0))
    assert threads.machine_busy()
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.3, 1.0, 1.0))
    assert not threads.machine_busy()
