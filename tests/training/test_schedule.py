"""The step count a time-budgeted run fits to its budget from its own pace (schedule.PaceFit), on a
clock the test moves by hand: no test here depends on how fast the machine is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from inference_service.training.references import ReferenceSet, load_reference_set
from inference_service.training.schedule import FIRST_TIMED_STEP, LAST_TIMED_STEP, PLANNED_SHARE, PaceFit
from inference_service.training.trainer import TrainConfig, TrainResult, train
from tests.training.test_trainer import CONFIG, TINY

CAP = 200  # the configured (epoch-capped) total that a fitted one never exceeds


class StepClock:
    """A clock that moves `seconds_per_step` at each reading after the first: PaceFit reads it
    once when made and once after each step, so step s ends at start + s * seconds_per_step."""

    def __init__(self, seconds_per_step: float) -> None:
        self.now = 1000.0
        self.seconds_per_step = seconds_per_step
        self.readings = 0

    def __call__(self) -> float:
        if self.readings:
            self.now += self.seconds_per_step
        self.readings += 1
        return self.now


def _fitted(seconds: float, seconds_per_step: float, total: int) -> int | None:
    fit = PaceFit(seconds, clock=StepClock(seconds_per_step))
    return [fit.after_step(step, total) for step in range(1, LAST_TIMED_STEP + 1)][-1]


def _expected(seconds: float, seconds_per_step: float) -> int:
    left = seconds - seconds_per_step * LAST_TIMED_STEP
    return LAST_TIMED_STEP + int(PLANNED_SHARE * left / seconds_per_step)


@pytest.fixture(scope="module")
def refs(tiny_zoo: Path) -> ReferenceSet:
    return load_reference_set(tiny_zoo, TINY.input_size, progress=False)


def _config() -> TrainConfig:
    return replace(CONFIG, head_steps=0, epochs=1000.0, max_steps=CAP, checkpoint_every=7)


def test_the_total_is_what_the_rest_of_the_budget_allows_at_the_timed_pace() -> None:
    fit = PaceFit(100.0, clock=StepClock(0.5))
    fitted = [fit.after_step(step, 1000) for step in range(1, LAST_TIMED_STEP + 2)]
    assert fitted[LAST_TIMED_STEP - 1] == _expected(100.0, 0.5) == 187
    assert fitted.count(None) == LAST_TIMED_STEP  # once, at the end of the window


def test_the_fitted_total_stays_between_the_steps_done_and_the_configured_total() -> None:
    assert _fitted(10_000.0, 0.5, CAP) == CAP  # time for more: the cap holds
    assert _fitted(1.0, 0.5, CAP) == LAST_TIMED_STEP  # already out of time: stop where it is


def test_the_first_steps_are_not_taken_as_the_pace() -> None:
    clock = StepClock(0.5)
    fit = PaceFit(100.0, clock=clock)
    for step in range(1, FIRST_TIMED_STEP + 1):
        clock.now += 5.0  # the first steps (allocations, caches) cost 10x the others
        assert fit.after_step(step, 1000) is None
    window = [fit.after_step(step, 1000) for step in range(FIRST_TIMED_STEP + 1, LAST_TIMED_STEP + 1)]
    left = 100.0 - (clock.now - 1000.0)
    assert window[-1] == LAST_TIMED_STEP + int(PLANNED_SHARE * left / 0.5)


def test_a_run_ends_at_the_total_it_fitted(tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path) -> None:
    fit = PaceFit(50.0, clock=StepClock(0.25))
    result = train(tiny_zoo, tmp_path / "e.safetensors", _config(), refs=refs, progress=False, fit=fit)
    assert result.steps == _expected(50.0, 0.25) == 187
    assert not result.stopped_early


def test_a_resumed_run_goes_on_to_the_total_it_fitted(
    tiny_zoo: Path, refs: ReferenceSet, tmp_path: Path
) -> None:
    def run(out: Path, seconds: float, stop: int | None = None) -> TrainResult:
        fit = PaceFit(seconds, clock=StepClock(0.25))
        return train(tiny_zoo, out, _config(), refs=refs, progress=False, fit=fit, stop_after_step=stop)

    straight = run(tmp_path / "a.safetensors", 30.0)
    assert straight.steps == _expected(30.0, 0.25) == 113
    interrupted = tmp_path / "b.safetensors"
    assert run(interrupted, 30.0, stop=LAST_TIMED_STEP + 3).stopped_early
    # The resumed run's own budget would fit the cap; it goes on to the total fitted before.
    resumed = run(interrupted, 10_000.0)
    assert resumed.steps == straight.steps
    assert resumed.losses == straight.losses
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(interrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)
