"""How many CPU threads torch should use: `set_threads(n)` and a default that avoids oversubscription.

torch's own default is the number of cores it sees, which ignores CPU quotas: in a container
limited to 2 CPUs on a 64-core host it starts 64 OpenMP threads that wait on each other at every
barrier. The default here (`choose_threads()`) is, in order of precedence:

1. `DEEPFIT_THREADS`, then `OMP_NUM_THREADS`, when set to a positive whole number;
2. otherwise the CPUs this process may run on (`os.sched_getaffinity`, else `os.cpu_count()`),
   capped by the cgroup CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`,
   the smallest along the process's cgroup path), rounded down, at least 1.

`set_threads(None)` applies that default; `set_threads(n)` applies `n`. Both return a `ThreadChoice`
saying how many threads and why, for logs and run configs (`choice.as_dict()`).

On a machine shared with other busy processes, OpenMP's default of spinning while it waits for the
other threads burns the time slices the busy cores have left: on a loaded 2-core machine two
threads ran 3× slower than one. `OMP_WAIT_POLICY=PASSIVE` (waiting threads sleep) removes most of
that (but costs about 20% on an idle machine); it must be in the environment before torch is first
imported, which `prefer_passive_wait()` does for a program that calls it first, when the machine is
busy (or always), unless the user chose a policy.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ENV_VARS = ("DEEPFIT_THREADS", "OMP_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class ThreadChoice:
    """`threads` torch threads, and `reason`: where the number came from."""

    threads: int
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def available_cpus() -> int:
    """CPUs this process may run on: the affinity mask where the OS has one, else `os.cpu_count()`."""
    getaff = getattr(os, "sched_getaffinity", None)
    if getaff is not None:
        try:
            return max(1, len(getaff(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_quota(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = float(quota), float(period)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def _ancestors(root: Path, rel: str) -> list[Path]:
    """`root/rel` and each folder above it up to `root` itself."""
    parts = [p for p in rel.strip("/").split("/") if p and p != ".."]
    return [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_quota(root: Path | str = CGROUP_ROOT, proc_cgroup: Path | str = PROC_CGROUP) -> float | None:
    """The CPU quota (in CPUs, e.g. 1.5) of this process's cgroup, or None when there is none.

    Reads `/proc/self/cgroup` for the process's cgroup path, then `cpu.max` (cgroup v2) or
    `cpu.cfs_quota_us`/`cpu.cfs_period_us` (v1) in that folder and each one above it; the smallest wins.
    """
    root = Path(root)
    lines = (_read(Path(proc_cgroup)) or "").splitlines()
    quotas: list[float] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, rel = fields
        if controllers == "":  # cgroup v2 unified hierarchy
            quotas += [q for d in _ancestors(root, rel) if (q := _v2_quota(d)) is not None]
        elif "cpu" in controllers.split(","):
            for mount in (controllers, "cpu,cpuacct", "cpu"):
                base = root / mount
                if base.is_dir():
                    quotas += [q for d in _ancestors(base, rel) if (q := _v1_quota(d)) is not None]
                    break
    if not lines:  # no /proc/self/cgroup: look at the root only
        quotas += [q for q in (_v2_quota(root), _v1_quota(root / "cpu")) if q is not None]
    return min(quotas) if quotas else None


def _env_threads() -> tuple[int, str] | None:
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        try:
            n = int(value)
        except ValueError:
            continue  # e.g. OMP_NUM_THREADS="4,2" (nested levels): not ours to interpret
        if n >= 1:
            return n, f"{name}={n}"
    return None


def choose_threads() -> ThreadChoice:
    """The default thread count and why (see the module docstring)."""
    env = _env_threads()
    if env is not None:
        return ThreadChoice(env[0], env[1])
    cpus = available_cpus()
    quota = cgroup_cpu_quota()
    if quota is not None and quota < cpus:
        n = max(1, math.floor(quota))
        return ThreadChoice(n, f"cgroup CPU quota {quota:g} CPUs (of {cpus} in the affinity mask)")
    return ThreadChoice(cpus, f"{cpus} CPUs in the affinity mask" + ("" if quota is None else f", quota {quota:g}"))


def default_threads() -> int:
    """The number of threads `set_threads()` uses when given none."""
    return choose_threads().threads


def machine_busy() -> bool:
    """Whether the last minute's load average reaches the number of CPUs this process may use."""
    try:
        return os.getloadavg()[0] >= available_cpus()
    except (OSError, AttributeError):
        return False


def prefer_passive_wait(when: str = "busy") -> bool:
    """Make OpenMP threads sleep rather than spin while they wait (`OMP_WAIT_POLICY=PASSIVE`).

    `when='busy'` does it only when `machine_busy()` (measured on 2 cores: on an idle machine passive
    waiting cost 20% at two threads, 1.37× instead of 1.69× over one; on a loaded one it made two threads
    1.7× faster than one instead of 2.6-3× slower); `when='always'` does it regardless. Only possible
    before torch is imported (its OpenMP runtime reads the variable once); a policy the user set is kept.
    Returns whether waiting threads will be passive.
    """
    if when not in ("busy", "always"):
        raise ValueError(f"prefer_passive_wait: when must be 'busy' or 'always', got {when!r}")
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"].strip().upper() == "PASSIVE"
    if "torch" in sys.modules or (when == "busy" and not machine_busy()):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def set_threads(n: int | None = None) -> ThreadChoice:
    """Set torch's intra-op thread count to `n` (None: `choose_threads()`); return what was set and why."""
    import torch

    if n is None:
        choice = choose_threads()
    else:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_threads: the thread count must be a whole number >= 1, got {n!r}")
        choice = ThreadChoice(n, "requested")
    torch.set_num_threads(choice.threads)
    return choice


__all__ = ["ThreadChoice", "available_cpus", "cgroup_cpu_quota", "choose_threads", "default_threads",
           "machine_busy", "prefer_passive_wait", "set_threads"]
