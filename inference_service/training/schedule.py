"""A training run's schedule: the learning rate at each step, and the step count that fits a
time budget, from the run's own pace.

A time-budgeted run (catalog adaptation) must fix its step count before the cosine schedule can
anneal to it, and a few probe steps on a copy of the model misjudge the sustained pace by up to
30 % either way (allocator warm-up, batch shapes, other work on the machine): too slow a probe
left a fifth of the budget unused, too fast a one has the run cut before its learning rate
reaches zero. So the run starts on its upper bound (the epoch cap) and sets its total from its
own pace: first at step 40 from steps 10-40 (inside the learning-rate warm-up, where the total
barely matters), then each time the steps done double, from the steps since the last fit, so a
burst of other work on the machine during one stretch neither starves nor overruns the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# Pace timed from the end of this step on (past the first steps' allocations).
FIRST_TIMED_STEP = 10
# The first fit (before the 50-step warm-up ends); then at 2x, 4x, ... these steps.
FIRST_FIT_STEP = 40
# Share of the time left that a fit plans steps for: checkpoint writes and pace drift stay inside.
PLANNED_SHARE = 0.92


@dataclass
class PaceFit:
    """Budget: `seconds` from when it is made, for every step of the run."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _timed_from: tuple[int, float] | None = field(default=None, init=False)  # (step, time)
    _next_fit: int = field(default=FIRST_FIT_STEP, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def after_step(self, step: int, cap: int) -> int | None:
        """Call after each step (`step` = steps done; `cap` = the most the run may do). At the fit
        steps returns the total that the time left allows at the pace since the last fit (the
        first: since step 10), never more than `cap` nor fewer than `step`; None otherwise."""
        now = self.clock()
        if step == FIRST_TIMED_STEP:
            self._timed_from = (step, now)
        if step != self._next_fit or self._timed_from is None:
            return None
        pace = (now - self._timed_from[1]) / (step - self._timed_from[0])
        self._timed_from, self._next_fit = (step, now), 2 * step
        left = self.seconds - (now - self.started)
        return max(step, min(cap, step + int(PLANNED_SHARE * left / pace)))


def cosine(lr: float, step: int, total: int) -> float:
    """Cosine decay from `lr` to 0 over `total` steps."""
    return lr * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))


def warm_cosine(lr: float, schedule: Literal["cosine", "constant"], step: int, total: int) -> float:
    """Linear warm-up over the first min(50, total / 10) steps, then cosine decay to 0; or constant."""
    if schedule == "constant":
        return lr
    warmup = min(50, total // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))
