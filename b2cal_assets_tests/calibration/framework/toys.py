"""Toy algorithms and settings shared by the calibration framework tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b2cal_assets.calibration.framework.results import AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.conditions.iov import ExpRun


@dataclass
class EventCountAlgorithm:
    """ok when the runs hold at least ``min_events`` events, else not_enough_data.

    ``fail_on`` runs make any execution containing them fail; ``iterations_needed`` makes the
    algorithm answer iterate until that iteration number is reached. Every call is recorded.
    """

    events: Mapping[ExpRun, int]
    min_events: int
    fail_on: frozenset[ExpRun] = frozenset()
    iterations_needed: int = 0
    payload_name: str = "Toy"
    name: str = "toy"
    calls: list[tuple[tuple[ExpRun, ...], int, AlgorithmOutcome | None]] = field(default_factory=list)

    def execute(
        self, runs: Sequence[ExpRun], iteration: int, previous: AlgorithmOutcome | None
    ) -> AlgorithmOutcome:
        self.calls.append((tuple(runs), iteration, previous))
        if self.fail_on & set(runs):
            return AlgorithmOutcome(AlgorithmResult.failure, message="bad run")
        total = sum(self.events.get(run, 0) for run in runs)
        if total < self.min_events:
            return AlgorithmOutcome(AlgorithmResult.not_enough_data, message=f"{total} < {self.min_events} events")
        result = AlgorithmResult.iterate if iteration < self.iterations_needed else AlgorithmResult.ok
        return AlgorithmOutcome(result, {self.payload_name: {"events": total, "iteration": iteration}})


def make_settings(name: str = "BeamSpot", **overrides: Any) -> CalibrationSettings:
    """Valid settings in the shape of the BeamSpot calibration; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "name": name,
        "expert_username": "jdoe",
        "subsystem": "beam",
        "description": "Interaction-region position and size from dimuon vertices",
        "input_data_formats": ["cdst"],
        "input_data_names": ["hlt_mumu_2trk"],
        "input_data_filters": {"hlt_mumu_2trk": ["mumu_tight_or_highm_calib", "physics", "Good", "On"]},
        "expert_config": {"max_iterations": 3, "min_events": 5000},
        "produced_payloads": ["BeamSpot"],
    }
    fields.update(overrides)
    return CalibrationSettings(**fields)
