"""Annealing functions and the schedules built from them.

A *schedule* is a function `pos -> value` of the training position `pos` in `[0, 1]` (the Learner's
`pct_train`). It holds no state, so a run resumed at a given epoch and iteration sees exactly the
values it would have seen without the interruption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

Schedule = Callable[[float], float]


def sched_lin(start: float, end: float, pos: float) -> float:
    """Linear from `start` (pos 0) to `end` (pos 1)."""
    return start + pos * (end - start)


def sched_cos(start: float, end: float, pos: float) -> float:
    """Half a cosine from `start` to `end`: flat at both ends, steepest in the middle."""
    return start + (1 - math.cos(math.pi * pos)) * (end - start) / 2


def sched_exp(start: float, end: float, pos: float) -> float:
    """Geometric from `start` to `end` (both must be positive)."""
    return start * (end / start) ** pos


def sched_no(start: float, end: float, pos: float) -> float:
    """Constant `start`."""
    return start


ANNEALERS: dict[str, Callable[[float, float, float], float]] = {
    "linear": sched_lin, "cos": sched_cos, "exp": sched_exp, "no": sched_no,
}


def annealer(kind: str, start: float, end: float) -> Schedule:
    """The schedule `pos -> value` annealing from `start` to `end` with `kind` (linear, cos, exp, no)."""
    try:
        f = ANNEALERS[kind]
    except KeyError:
        raise ValueError(f"unknown annealing {kind!r}; use one of {', '.join(ANNEALERS)}") from None
    if kind == "exp" and (start <= 0 or end <= 0):
        raise ValueError(f"exponential annealing needs positive bounds, got {start} and {end}")
    return partial(f, start, end)


def SchedLin(start: float, end: float) -> Schedule:
    return annealer("linear", start, end)


def SchedCos(start: float, end: float) -> Schedule:
    return annealer("cos", start, end)


def SchedExp(start: float, end: float) -> Schedule:
    return annealer("exp", start, end)


def SchedNo(start: float, end: float | None = None) -> Schedule:
    return annealer("no", start, start if end is None else end)


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Schedule]) -> Schedule:
    """Run `scheds[i]` over a share `pcts[i]` of training, each seeing its own position from 0 to 1."""
    if len(pcts) != len(scheds) or not pcts:
        raise ValueError(f"combine_scheds: {len(pcts)} shares for {len(scheds)} schedules")
    if any(p < 0 for p in pcts) or not math.isclose(sum(pcts), 1.0, abs_tol=1e-6):
        raise ValueError(f"combine_scheds: shares must be >= 0 and sum to 1, got {list(pcts)}")
    bounds = [0.0]
    for p in pcts:
        bounds.append(bounds[-1] + p)
    phases = [(bounds[i], pcts[i], scheds[i]) for i in range(len(pcts)) if pcts[i] > 0]
    return partial(_combined, tuple(phases))


_EPS = 1e-9  # positions this close below a phase end count as the next phase (float sums of shares)


def _combined(phases: tuple, pos: float) -> float:
    pos = min(max(pos, 0.0), 1.0)
    for start, length, sched in phases:
        if pos < start + length - _EPS:
            return sched(max(pos - start, 0.0) / length)
    start, length, sched = phases[-1]
    return sched(min(max(pos - start, 0.0) / length, 1.0))


# ---------------------------------------------------------------------------------------------- recipes
def one_cycle_lr(lr_max: float, div: float = 25.0, div_final: float = 1e5, pct_start: float = 0.25) -> Schedule:
    """Cosine warm-up from `lr_max/div` to `lr_max` over `pct_start`, then cosine down to `lr_max/div_final`."""
    _check_pct(pct_start)
    return combine_scheds([pct_start, 1 - pct_start],
                          [SchedCos(lr_max / div, lr_max), SchedCos(lr_max, lr_max / div_final)])


def one_cycle_mom(moms: Sequence[float] = (0.95, 0.85, 0.95), pct_start: float = 0.25) -> Schedule:
    """Momentum going the other way: cosine from `moms[0]` to `moms[1]`, then back to `moms[2]`."""
    _check_pct(pct_start)
    if len(moms) != 3:
        raise ValueError(f"moms needs three values (start, middle, end), got {moms}")
    return combine_scheds([pct_start, 1 - pct_start], [SchedCos(moms[0], moms[1]), SchedCos(moms[1], moms[2])])


def flat_cos_lr(lr: float, pct_start: float = 0.75, div_final: float = 1e5) -> Schedule:
    """Constant `lr` for `pct_start` of training, then cosine down to `lr/div_final`."""
    _check_pct(pct_start)
    return combine_scheds([pct_start, 1 - pct_start], [SchedNo(lr), SchedCos(lr, lr / div_final)])


def sgdr_cycle_epochs(n_cycles: int, cycle_len: int, cycle_mult: int = 1) -> list[int]:
    """Length in epochs of each SGDR cycle: `cycle_len * cycle_mult**i`."""
    if n_cycles < 1 or cycle_len < 1 or cycle_mult < 1:
        raise ValueError(f"SGDR needs n_cycles, cycle_len, cycle_mult >= 1, got {n_cycles}, {cycle_len}, {cycle_mult}")
    if not all(isinstance(v, int) for v in (n_cycles, cycle_len, cycle_mult)):
        raise TypeError("SGDR n_cycles, cycle_len and cycle_mult must be integers (cycles end on epoch boundaries)")
    return [cycle_len * cycle_mult**i for i in range(n_cycles)]


def sgdr_lr(lr_max: float, n_cycles: int, cycle_len: int, cycle_mult: int = 1, lr_min: float = 0.0) -> Schedule:
    """Cosine restarts: each cycle anneals from `lr_max` to `lr_min` and lasts `cycle_len*cycle_mult**i` epochs."""
    lengths = sgdr_cycle_epochs(n_cycles, cycle_len, cycle_mult)
    total = sum(lengths)
    return combine_scheds([n / total for n in lengths], [SchedCos(lr_max, lr_min)] * n_cycles)


def _check_pct(pct_start: float) -> None:
    if not 0 <= pct_start <= 1:
        raise ValueError(f"pct_start must be in [0, 1], got {pct_start}")
