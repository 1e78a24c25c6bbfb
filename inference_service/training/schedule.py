"""A training run's schedule: the learning rate at each step, and the step count that fits a
time budget, from the run's own pace.

A time-budgeted run (catalog adaptation) must fix its step count before the cosine schedule can
anneal to it, and a few probe steps on a copy of the model misjudge the sustained pace by up to
30 % either way (allocator warm-up, batch shapes, other work on the machine): too slow a probe
left a fifth of the budget unused, too fast a one has the run cut before its learning rate
reaches zero. So the run starts on its upper bound (the epoch cap) and, once it has timed a
window of its own steps (still inside the learning-rate warm-up, where the total barely matters),
sets the total that the rest of the budget allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# Steps timed: from the end of step FIRST (past the first steps' allocations) to the end of
# step LAST (before the 50-step warm-up ends).
FIRST_TIMED_STEP = 10
LAST_TIMED_STEP = 40
# Share of the remaining budget planned for steps: checkpoint writes and pace drift stay inside.
PLANNED_SHARE = 0.92


@dataclass
class PaceFit:
    """Budget: `seconds` from when it is made, for every step of the run."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _window_start: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def after_step(self, step: int, total: int) -> int | None:
        """Call after each step (`step` = steps done). Returns the fitted total once, at the end of
        the timed window; None otherwise. Never more than `total`, never fewer than `step`."""
        now = self.clock()
        if step == FIRST_TIMED_STEP:
            self._window_start = now
        if step != LAST_TIMED_STEP or self._window_start is None:
            return None
        pace = (now - self._window_start) / (LAST_TIMED_STEP - FIRST_TIMED_STEP)
        left = self.seconds - (now - self.started)
        return max(step, min(total, step + int(PLANNED_SHARE * left / pace)))


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
