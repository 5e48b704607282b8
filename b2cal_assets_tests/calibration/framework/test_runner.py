"""The bounded iteration loop and run_calibration."""

from __future__ import annotations

import pytest

from b2cal_assets.calibration.framework.results import AlgorithmResult
from b2cal_assets.calibration.framework.runner import (
    CalibrationFailedError,
    UndeclaredPayloadError,
    run_calibration,
    run_iterations,
)
from b2cal_assets.calibration.framework.settings import InvalidExpertConfigError
from b2cal_assets.calibration.framework.strategies import SequentialRunByRun, SingleIOV
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets_tests.calibration.framework.toys import EventCountAlgorithm, make_settings

RUNS = [ExpRun(26, 3), ExpRun(26, 4), ExpRun(26, 5)]
PROMPT = IoV(26, 3, -1, -1)


def toy(**kwargs) -> EventCountAlgorithm:
    return EventCountAlgorithm(dict.fromkeys(RUNS, 10), 10, payload_name="BeamSpot", **kwargs)


def test_ok_on_the_first_pass_stops_after_one_iteration() -> None:
    outcome = run_iterations(toy(), SingleIOV(), RUNS, PROMPT, max_iterations=3)
    assert outcome.succeeded and outcome.result is AlgorithmResult.ok
    assert len(outcome.iterations) == 1
    assert [(p.name, p.iov) for p in outcome.payloads()] == [("BeamSpot", PROMPT)]


def test_iterate_runs_again_with_the_previous_constants_until_ok() -> None:
    algorithm = toy(iterations_needed=2)
    outcome = run_iterations(algorithm, SingleIOV(), RUNS, PROMPT, max_iterations=5)
    assert outcome.succeeded
    assert [result.result for result in outcome.iterations] == [
        AlgorithmResult.iterate,
        AlgorithmResult.iterate,
        AlgorithmResult.ok,
    ]
    assert [iteration for _, iteration, _ in algorithm.calls] == [0, 1, 2]
    assert algorithm.calls[0][2] is None
    assert algorithm.calls[2][2] == outcome.iterations[1].executions[0].outcome
    assert outcome.payloads()[0].constants["iteration"] == 2


def test_still_iterating_after_max_iterations_is_a_failure() -> None:
    algorithm = toy(iterations_needed=10)
    outcome = run_iterations(algorithm, SingleIOV(), RUNS, PROMPT, max_iterations=2)
    assert outcome.result is AlgorithmResult.failure
    assert len(outcome.iterations) == 2 and len(algorithm.calls) == 2
    assert "still asked to iterate after max_iterations=2" in outcome.message
    assert outcome.payloads() == []
    with pytest.raises(CalibrationFailedError, match="ended with failure after 2 iteration"):
        outcome.raise_for_failure()


def test_a_failing_pass_ends_the_loop_with_its_result() -> None:
    algorithm = EventCountAlgorithm(dict.fromkeys(RUNS, 1), 10)
    outcome = run_iterations(algorithm, SequentialRunByRun(), RUNS, PROMPT, max_iterations=5)
    assert outcome.result is AlgorithmResult.not_enough_data
    assert len(outcome.iterations) == 1
    assert "not enough data in all 3 runs of experiment 26" in outcome.message


def test_runs_given_as_a_generator_are_reused_by_every_pass() -> None:
    algorithm = toy(iterations_needed=1)
    outcome = run_iterations(algorithm, SingleIOV(), (run for run in RUNS), PROMPT, max_iterations=3)
    assert outcome.succeeded
    assert [runs for runs, _, _ in algorithm.calls] == [tuple(RUNS), tuple(RUNS)]


@pytest.mark.parametrize("bad", [0, -2, 1.0])
def test_max_iterations_must_be_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="max_iterations"):
        run_iterations(toy(), SingleIOV(), RUNS, PROMPT, max_iterations=bad)  # type: ignore[arg-type]


def test_run_calibration_takes_max_iterations_from_the_merged_expert_config() -> None:
    settings = make_settings(expert_config={"max_iterations": 1, "min_events": 10})
    algorithm = toy(iterations_needed=1)
    assert not run_calibration(settings, algorithm, SingleIOV(), RUNS, PROMPT).succeeded
    outcome = run_calibration(settings, toy(iterations_needed=1), SingleIOV(), RUNS, PROMPT, {"max_iterations": 2})
    assert outcome.succeeded
    assert outcome.expert_config == {"max_iterations": 2, "min_events": 10}
    assert outcome.name == "BeamSpot"


def test_run_calibration_refuses_a_bad_runtime_config() -> None:
    with pytest.raises(InvalidExpertConfigError, match="max_iterations=0"):
        run_calibration(make_settings(), toy(), SingleIOV(), RUNS, PROMPT, {"max_iterations": 0})


def test_payload_not_declared_in_produced_payloads_is_a_programming_error() -> None:
    algorithm = EventCountAlgorithm(dict.fromkeys(RUNS, 10), 10, payload_name="BeamSpott")
    with pytest.raises(UndeclaredPayloadError, match=r"wrote payloads \['BeamSpott'\].*lists only \['BeamSpot'\]"):
        run_calibration(make_settings(), algorithm, SingleIOV(), RUNS, PROMPT)


def test_prompt_calibration_payloads_cover_the_bucket_open_ended() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 4): 4, ExpRun(26, 7): 7, ExpRun(26, 9): 3}
    algorithm = EventCountAlgorithm(events, 10, payload_name="BeamSpot")
    outcome = run_calibration(make_settings(), algorithm, SequentialRunByRun(), list(events), PROMPT)
    assert outcome.succeeded
    assert [str(p.iov) for p in outcome.payloads()] == ["26,3,26,3", "26,4,-1,-1"]
    assert outcome.final is not None and outcome.final.gaps() == []
