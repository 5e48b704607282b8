"""The calibration loop: settings + algorithm + IoV strategy, iterated a bounded number of times.

``run_calibration`` is what the Dagster calibration asset calls for one bucket: it merges the
run-time expert_config over the settings' defaults, runs the strategy, and repeats while the
algorithm asks to ``iterate``, passing each iteration's outcomes to the next (CAF's database
chain). It stops with:

* ``ok``: every execution ok; the payloads of the last pass are the result.
* ``failure`` / ``not_enough_data``: a pass failed; no payload is returned.
* ``failure`` when the algorithm still says ``iterate`` after ``max_iterations`` passes: CAF
  would complete there with the last constants; prompt must not publish constants the
  algorithm itself considers unconverged, so here it is a failure the expert must look at
  (raise ``max_iterations`` in expert_config, or fix the convergence).

Pure Python; the Dagster layer only translates the outcome into asset materialisations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from b2cal_assets.calibration.framework.errors import CalibrationFrameworkError
from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmResult
from b2cal_assets.calibration.framework.settings import (
    CalibrationSettings,
    max_iterations_from_config,
    merge_expert_config,
)
from b2cal_assets.calibration.framework.strategies import IoVStrategy, PayloadIoV, StrategyResult
from b2cal_assets.conditions.iov import ExpRun, IoV

__all__ = [
    "CalibrationFailedError",
    "CalibrationOutcome",
    "UndeclaredPayloadError",
    "run_calibration",
    "run_iterations",
]


class CalibrationFailedError(CalibrationFrameworkError, RuntimeError):
    """Raised by :meth:`CalibrationOutcome.raise_for_failure` when a calibration produced no payloads."""

    def __init__(self, outcome: CalibrationOutcome) -> None:
        self.outcome = outcome
        super().__init__(
            f"calibration {outcome.name} for IoV {outcome.requested_iov} ended with "
            f"{outcome.result.value} after {len(outcome.iterations)} iteration(s): {outcome.message}"
        )


class UndeclaredPayloadError(CalibrationFrameworkError, RuntimeError):
    """The algorithm wrote a payload its settings do not list in ``produced_payloads``."""


@dataclass(frozen=True)
class CalibrationOutcome:
    """All passes of one calibration over one bucket."""

    name: str
    requested_iov: IoV
    result: AlgorithmResult
    iterations: tuple[StrategyResult, ...]
    message: str
    expert_config: Mapping[str, Any]

    @property
    def succeeded(self) -> bool:
        return self.result is AlgorithmResult.ok

    @property
    def final(self) -> StrategyResult | None:
        return self.iterations[-1] if self.iterations else None

    def payloads(self) -> list[PayloadIoV]:
        """Payloads of the last pass when the calibration succeeded; [] otherwise."""
        if not self.succeeded or self.final is None:
            return []
        return self.final.payloads()

    def raise_for_failure(self) -> None:
        if not self.succeeded:
            raise CalibrationFailedError(self)


def run_iterations(
    algorithm: Algorithm,
    strategy: IoVStrategy,
    runs: Iterable[ExpRun],
    requested_iov: IoV,
    max_iterations: int,
    *,
    name: str | None = None,
    expert_config: Mapping[str, Any] | None = None,
) -> CalibrationOutcome:
    """The bounded iteration loop, without settings (see module docstring for the end states)."""
    if not isinstance(max_iterations, int) or isinstance(max_iterations, bool) or max_iterations < 1:
        raise ValueError(f"max_iterations={max_iterations!r}; it must be an integer >= 1")
    label = name or getattr(algorithm, "name", type(algorithm).__name__)
    run_list = list(runs)  # may be a generator; every pass needs the same runs
    passes: list[StrategyResult] = []
    previous: StrategyResult | None = None
    for iteration in range(max_iterations):
        current = strategy.run(algorithm, run_list, requested_iov, iteration=iteration, previous=previous)
        passes.append(current)
        if not current.succeeded:
            return _outcome(label, requested_iov, current.result, passes, current.message, expert_config)
        if not current.needs_iteration:
            return _outcome(label, requested_iov, AlgorithmResult.ok, passes, "", expert_config)
        previous = current
    return _outcome(
        label,
        requested_iov,
        AlgorithmResult.failure,
        passes,
        f"the algorithm still asked to iterate after max_iterations={max_iterations} passes; "
        "check its convergence or raise max_iterations in expert_config",
        expert_config,
    )


def run_calibration(
    settings: CalibrationSettings,
    algorithm: Algorithm,
    strategy: IoVStrategy,
    runs: Iterable[ExpRun],
    requested_iov: IoV,
    runtime_config: Mapping[str, Any] | None = None,
) -> CalibrationOutcome:
    """Calibrate one bucket: merge config, iterate at most ``max_iterations`` times, check payloads.

    ``runs`` are the selected runs (see selection.select_runs); ``requested_iov`` is the bucket's
    IoV, ``(exp_low, run_low, -1, -1)`` in prompt. Raises UndeclaredPayloadError when the
    algorithm writes a payload not in ``settings.produced_payloads`` (a programming error).
    """
    config = merge_expert_config(settings, runtime_config)
    max_iterations = max_iterations_from_config(config, calibration=settings.name)
    outcome = run_iterations(
        algorithm,
        strategy,
        runs,
        requested_iov,
        max_iterations,
        name=settings.name,
        expert_config=config,
    )
    declared = set(settings.produced_payloads)
    for strategy_result in outcome.iterations:
        for execution in strategy_result.attempts:
            undeclared = sorted(set(execution.outcome.payloads) - declared)
            if undeclared:
                raise UndeclaredPayloadError(
                    f"calibration {settings.name}: the algorithm wrote payloads {undeclared} for runs "
                    f"{execution.runs[0]}...{execution.runs[-1]}, but produced_payloads lists only "
                    f"{sorted(declared)}; add them to the settings or stop writing them"
                )
    return outcome


def _outcome(
    name: str,
    requested_iov: IoV,
    result: AlgorithmResult,
    passes: list[StrategyResult],
    message: str,
    expert_config: Mapping[str, Any] | None,
) -> CalibrationOutcome:
    return CalibrationOutcome(
        name=name,
        requested_iov=requested_iov,
        result=result,
        iterations=tuple(passes),
        message=message,
        expert_config=dict(expert_config or {}),
    )
