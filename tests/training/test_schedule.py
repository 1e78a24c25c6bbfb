"""The step count a time-budgeted run fits to its budget from its own pace (schedule.PaceFit), on a
clock the test moves by hand: no test here depends on how fast the machine is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from inference_service.training.references import ReferenceSet, load_reference_set
from inference_service.training.schedule import FIRST_FIT_STEP, FIRST_TIMED_STEP, PLANNED_SHARE, PaceFit
from inference_service.training.trainer import TrainConfig, TrainResult, train
from tests.training.test_trainer import CONFIG, TINY

CAP = 200  # the configured (epoch-capped) total that a fitted one never exceeds


class StepClock:
    """A clock that moves `seconds_per_step` (plus any `extra` seconds set for a step) at each
    reading after the first: PaceFit reads it once when made and once after each step, so the
    steps' end times are what the test says."""

    def __init__(self, seconds_per_step: float, extra: dict[int, float] | None = None) -> None:
        self.now = 1000.0
        self.seconds_per_step = seconds_per_step
        self.extra = extra or {}
        self.readings = 0

    def __call__(self) -> float:
        if self.readings:
            self.now += self.seconds_per_step + self.extra.get(self.readings, 0.0)
        self.readings += 1
        return self.now


def _fits(fit: PaceFit, steps: int, cap: int = 10_000) -> dict[int, int]:
    """The totals a run of `steps` steps would be given, by the step they came at."""
    out = {}
    for step in range(1, steps + 1):
        fitted = fit.after_step(step, cap)
        if fitted is not None:
            out[step] = fitted
    return out


def _planned(step: int, elapsed: float, seconds: float, pace: float) -> int:
    return step + int(PLANNED_SHARE * (seconds - elapsed) / pace)


@pytest.fixture(scope="module")
def refs(tiny_zoo: Path) -> ReferenceSet:
    return load_reference_set(tiny_zoo, TINY.input_size, progress=False)


def _config() -> TrainConfig:
    return replace(CONFIG, head_steps=0, epochs=1000.0, max_steps=CAP, checkpoint_every=7)


def test_fits_come_at_40_then_each_doubling_and_close_in_on_the_budget() -> None:
    fits = _fits(PaceFit(100.0, clock=StepClock(0.5)), 400)  # 0.5 s a step: 200 steps fill 100 s
    assert list(fits) == [FIRST_FIT_STEP, 2 * FIRST_FIT_STEP, 4 * FIRST_FIT_STEP, 8 * FIRST_FIT_STEP]
    assert fits[40] == _planned(40, 20.0, 100.0, 0.5) == 187
    assert fits[80] == _planned(80, 40.0, 100.0, 0.5) == 190
    assert fits[160] == _planned(160, 80.0, 100.0, 0.5) == 196
    assert fits[320] == 320  # past the budget: stop where it is


def test_a_fit_stays_between_the_steps_done_and_the_cap() -> None:
    assert _fits(PaceFit(10_000.0, clock=StepClock(0.5)), FIRST_FIT_STEP, cap=CAP)[FIRST_FIT_STEP] == CAP
    assert _fits(PaceFit(1.0, clock=StepClock(0.5)), FIRST_FIT_STEP)[FIRST_FIT_STEP] == FIRST_FIT_STEP


def test_the_pace_is_the_stretch_since_the_last_fit() -> None:
    # The first steps are slow (allocations) and steps 41-80 meet a burst of other work: neither
    # is taken as the pace once it is over.
    slow = {reading: 5.0 for reading in range(1, FIRST_TIMED_STEP + 1)}
    burst = {reading: 1.0 for reading in range(41, 81)}
    clock = StepClock(0.5, {**slow, **burst})
    fits = _fits(PaceFit(400.0, clock=clock), 160)
    assert fits[40] == _planned(40, 50.0 + 20.0, 400.0, 0.5)  # 10 slow steps, 30 at the pace
    assert fits[80] == _planned(80, 70.0 + 60.0, 400.0, 1.5)  # the burst: fewer steps fit
    assert fits[160] == _planned(160, 130.0 + 40.0, 400.0, 0.5)  # over: back to the pace


def test_a_run_ends_at_the_last_total_it_fitted(tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path) -> None:
    fit = PaceFit(50.0, clock=StepClock(0.25))  # 200 steps would fill 50 s: the cap is 200
    result = train(tiny_zoo, tmp_path / "e.safetensors", _config(), refs=refs, progress=False, fit=fit)
    fits = _fits(PaceFit(50.0, clock=StepClock(0.25)), CAP, cap=CAP)
    assert list(fits) == [40, 80, 160]
    assert result.steps == fits[160] == 196
    assert not result.stopped_early


def test_a_resumed_run_goes_on_to_the_last_total_fitted(
    tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path
) -> None:
    def run(out: Path, seconds: float, stop: int | None = None) -> TrainResult:
        fit = PaceFit(seconds, clock=StepClock(0.25))
        return train(tiny_zoo, out, _config(), refs=refs, progress=False, fit=fit, stop_after_step=stop)

    straight = run(tmp_path / "a.safetensors", 30.0)
    assert straight.steps == _planned(80, 20.0, 30.0, 0.25) == 116  # the fit at 160 never comes
    interrupted = tmp_path / "b.safetensors"
    assert run(interrupted, 30.0, stop=2 * FIRST_FIT_STEP + 3).stopped_early
    # The resumed run's own budget would fit the cap; it goes on to the total fitted before.
    resumed = run(interrupted, 10_000.0)
    assert resumed.steps == straight.steps
    assert resumed.losses == straight.losses
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(interrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)
