"""IoV strategies: which runs each execution uses and which IoV its payloads get (CAF rules)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.calibration.framework.results import AlgorithmResult
from b2cal_assets.calibration.framework.strategies import (
    NoRunsToCalibrateError,
    SequentialBoundaries,
    SequentialRunByRun,
    SimpleRunByRun,
    SingleIOV,
    StrategyError,
    StrategyResult,
)
from b2cal_assets.conditions.iov import ExpRun, IoV, find_gaps, find_overlaps
from b2cal_assets_tests.calibration.framework.toys import EventCountAlgorithm

PROMPT = IoV(26, 3, -1, -1)


def runs_of(exp: int, *numbers: int) -> list[ExpRun]:
    return [ExpRun(exp, number) for number in numbers]


def layout(result: StrategyResult) -> list[tuple[list[int], str, AlgorithmResult]]:
    """(run numbers, IoV, result) per reported execution: compact to compare against CAF."""
    return [([run.run for run in e.runs], str(e.iov), e.result) for e in result.executions]


OK, NED, FAIL = AlgorithmResult.ok, AlgorithmResult.not_enough_data, AlgorithmResult.failure


# -- SingleIOV ---------------------------------------------------------------------------------


def test_single_iov_runs_once_over_all_runs_with_the_requested_iov() -> None:
    runs = runs_of(26, 9, 3, 5)
    algorithm = EventCountAlgorithm(dict.fromkeys(runs, 10), min_events=20)
    result = SingleIOV().run(algorithm, runs, PROMPT)
    assert layout(result) == [([3, 5, 9], "26,3,-1,-1", OK)]
    assert result.succeeded and result.gaps() == []


def test_single_iov_ignores_runs_outside_the_requested_iov() -> None:
    runs = runs_of(26, 1, 3, 5) + runs_of(27, 0)
    algorithm = EventCountAlgorithm(dict.fromkeys(runs, 10), min_events=1)
    result = SingleIOV().run(algorithm, runs, IoV(26, 3, 26, -1))
    assert layout(result) == [([3, 5], "26,3,26,-1", OK)]


def test_single_iov_not_enough_data_fails_the_strategy() -> None:
    runs = runs_of(26, 3, 4)
    result = SingleIOV().run(EventCountAlgorithm(dict.fromkeys(runs, 1), min_events=10), runs, PROMPT)
    assert not result.succeeded
    assert result.result is NED
    assert result.payloads() == []
    assert "not_enough_data over all 2 runs: 2 < 10 events" in result.message


def test_no_runs_in_the_requested_iov_is_an_error_not_an_empty_success() -> None:
    with pytest.raises(NoRunsToCalibrateError, match="no input run lies in the requested IoV 26,3,-1,-1"):
        SingleIOV().run(EventCountAlgorithm({}, 1), runs_of(25, 1, 2), PROMPT)


def test_empty_requested_iov_is_refused() -> None:
    with pytest.raises(StrategyError, match="requested IoV is empty"):
        SingleIOV().run(EventCountAlgorithm({}, 1), runs_of(26, 3), IoV.empty())


# -- SequentialRunByRun ------------------------------------------------------------------------


def test_sequential_gives_one_payload_per_run_when_every_run_has_enough_data() -> None:
    runs = runs_of(26, 3, 4, 5)
    result = SequentialRunByRun().run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert layout(result) == [([3], "26,3,26,3", OK), ([4], "26,4,26,4", OK), ([5], "26,5,-1,-1", OK)]


def test_sequential_merges_low_statistics_runs_with_the_next() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 4): 3, ExpRun(26, 5): 4, ExpRun(26, 6): 5, ExpRun(26, 7): 12}
    result = SequentialRunByRun().run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    assert layout(result) == [([3], "26,3,26,3", OK), ([4, 5, 6], "26,4,26,6", OK), ([7], "26,7,-1,-1", OK)]
    # Attempts show the merging: 4 alone, 4+5, then 4+5+6.
    assert [[run.run for run in a.runs] for a in result.attempts] == [[3], [4], [4, 5], [4, 5, 6], [7]]


def test_sequential_merges_a_low_statistics_tail_into_the_previous_payload() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 4): 11, ExpRun(26, 5): 2, ExpRun(26, 6): 3}
    algorithm = EventCountAlgorithm(events, 10)
    result = SequentialRunByRun().run(algorithm, list(events), PROMPT)
    # As CAF: runs 5 and 6 never reach 10 events, so they join run 4's execution, re-run with
    # run 4's start and the end of the requested IoV; run 4's own payload is dropped.
    assert layout(result) == [([3], "26,3,26,3", OK), ([4, 5, 6], "26,4,-1,-1", OK)]
    assert [a.runs for a in result.attempts][-1] == tuple(runs_of(26, 4, 5, 6))
    assert result.gaps() == []


def test_sequential_payload_iovs_bridge_runs_missing_from_the_input() -> None:
    runs = runs_of(26, 3, 10, 20)
    result = SequentialRunByRun().run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert layout(result) == [([3], "26,3,26,9", OK), ([10], "26,10,26,19", OK), ([20], "26,20,-1,-1", OK)]


def test_sequential_first_payload_starts_at_the_requested_start() -> None:
    runs = runs_of(26, 8, 9)
    result = SequentialRunByRun().run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert str(result.executions[0].iov) == "26,3,26,8"


def test_sequential_never_crosses_an_experiment_boundary() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 4): 2, ExpRun(27, 0): 3, ExpRun(27, 1): 9}
    result = SequentialRunByRun().run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    # 26.4 merges back into 26.3 rather than forward into experiment 27.
    assert layout(result) == [([3, 4], "26,3,26,-1", OK), ([0, 1], "27,0,-1,-1", OK)]
    assert result.gaps() == []


def test_sequential_fails_when_an_experiment_never_has_enough_data() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(27, 0): 3, ExpRun(27, 1): 2}
    result = SequentialRunByRun().run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    assert not result.succeeded
    assert result.result is NED
    assert "not enough data in all 2 runs of experiment 27" in result.message
    assert layout(result)[-1] == ([0, 1], "27,0,-1,-1", NED)


def test_sequential_stops_at_a_failure() -> None:
    runs = runs_of(26, 3, 4, 5)
    algorithm = EventCountAlgorithm(dict.fromkeys(runs, 10), 10, fail_on=frozenset({ExpRun(26, 4)}))
    result = SequentialRunByRun().run(algorithm, runs, PROMPT)
    assert result.result is FAIL and not result.succeeded
    # As CAF: run 3's success was held back until a later success, so it is never committed.
    assert layout(result) == [([4], "26,4,26,4", FAIL)]
    assert [a.result for a in result.attempts] == [OK, FAIL]
    assert len(algorithm.calls) == 2  # run 5 never executed


def test_sequential_step_size_adds_several_runs_at_a_time() -> None:
    runs = runs_of(26, 3, 4, 5, 6, 7)
    result = SequentialRunByRun(step_size=2).run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert layout(result) == [([3, 4], "26,3,26,4", OK), ([5, 6], "26,5,26,6", OK), ([7], "26,7,-1,-1", OK)]


@pytest.mark.parametrize("step", [0, -1, 1.5, True])
def test_sequential_step_size_must_be_a_positive_integer(step: object) -> None:
    with pytest.raises(StrategyError, match="step_size"):
        SequentialRunByRun(step_size=step)  # type: ignore[arg-type]


@st.composite
def bucket(draw: st.DrawFn) -> tuple[dict[ExpRun, int], int, IoV]:
    experiments = draw(st.lists(st.integers(20, 24), min_size=1, max_size=3, unique=True))
    runs = []
    for exp in sorted(experiments):
        numbers = draw(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True))
        runs.extend(ExpRun(exp, number) for number in sorted(numbers))
    events = {run: draw(st.integers(0, 12)) for run in runs}
    first = runs[0]
    requested = draw(st.sampled_from([IoV(first.exp, first.run, -1, -1), IoV(first.exp, 0, -1, -1)]))
    return events, draw(st.integers(1, 25)), requested


@given(bucket())
def test_sequential_properties_over_random_buckets(case: tuple[dict[ExpRun, int], int, IoV]) -> None:
    events, need, requested = case
    result = SequentialRunByRun().run(EventCountAlgorithm(events, need), list(events), requested)
    totals = {exp: sum(n for run, n in events.items() if run.exp == exp) for exp in {r.exp for r in events}}
    # Succeeds exactly when every experiment holds enough data in total.
    assert result.succeeded == all(total >= need for total in totals.values())
    if not result.succeeded:
        return
    executions = result.executions
    # Every run is used exactly once, in order, and an execution stays in one experiment.
    assert [run for e in executions for run in e.runs] == sorted(events)
    assert all(len({run.exp for run in e.runs}) == 1 for e in executions)
    assert all(sum(events[run] for run in e.runs) >= need for e in executions)
    # IoVs: disjoint, each contains its runs, never spans experiments (except the open end).
    iovs = [e.iov for e in executions]
    assert find_overlaps(iovs) == []
    assert all(all(e.iov.contains(run) for run in e.runs) for e in executions)
    assert all(e.iov.final_exp in (e.iov.first_exp, -1) for e in executions)
    assert iovs[0].first == requested.first and iovs[-1].as_tuple()[2:] == (-1, -1)
    # No gaps, except whole experiments without any run (as CAF).
    present = set(totals)
    for gap in find_gaps(iovs, requested):
        assert gap.first_run == 0 and gap.final_run == -1
        assert not any(exp in present for exp in range(gap.first_exp, gap.final_exp + 1))
    # Merging stops as soon as there is enough data: dropping the last run of any execution
    # that is not an experiment's last leaves too little.
    last_of_exp = {max(range(len(executions)), key=lambda i: (executions[i].runs[0].exp == exp, i)) for exp in present}
    for index, execution in enumerate(executions):
        if index not in last_of_exp:
            assert sum(events[run] for run in execution.runs[:-1]) < need


# -- SimpleRunByRun ----------------------------------------------------------------------------


def test_simple_run_by_run_never_merges_and_keeps_going_after_problems() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 4): 2, ExpRun(26, 5): 10, ExpRun(26, 7): 10}
    algorithm = EventCountAlgorithm(events, 10, fail_on=frozenset({ExpRun(26, 5)}))
    result = SimpleRunByRun().run(algorithm, list(events), PROMPT)
    assert layout(result) == [
        ([3], "26,3,26,3", OK),
        ([4], "26,4,26,4", NED),
        ([5], "26,5,26,5", FAIL),
        ([7], "26,7,-1,-1", OK),
    ]
    assert not result.succeeded and result.result is FAIL
    assert "e0026.r00004: not_enough_data" in result.message
    assert [p.iov for p in result.payloads()] == [IoV(26, 3, 26, 3), IoV(26, 7, -1, -1)]
    assert result.gaps() == [IoV(26, 4, 26, 6)]


def test_simple_run_by_run_succeeds_when_every_run_is_ok() -> None:
    runs = runs_of(26, 3, 4)
    result = SimpleRunByRun().run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert result.succeeded
    assert layout(result) == [([3], "26,3,26,3", OK), ([4], "26,4,-1,-1", OK)]


# -- SequentialBoundaries ----------------------------------------------------------------------


def test_boundaries_give_one_payload_per_segment() -> None:
    runs = runs_of(26, 3, 4, 10, 11, 20)
    boundaries = [ExpRun(26, 10), (26, 20)]
    result = SequentialBoundaries(boundaries).run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert layout(result) == [([3, 4], "26,3,26,9", OK), ([10, 11], "26,10,26,19", OK), ([20], "26,20,-1,-1", OK)]


def test_no_boundaries_give_one_payload_per_experiment() -> None:
    runs = runs_of(26, 3, 4) + runs_of(27, 1)
    result = SequentialBoundaries([]).run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    assert layout(result) == [([3, 4], "26,3,26,-1", OK), ([1], "27,0,-1,-1", OK)]


def test_a_segment_without_runs_is_absorbed_by_the_previous_one() -> None:
    runs = runs_of(26, 3, 30)
    result = SequentialBoundaries([(26, 10), (26, 20)]).run(
        EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT
    )
    # Nothing in [26.10, 26.19]: the first payload stretches up to the next boundary holding
    # runs (26.20), whose payload starts at the boundary rather than at its first run.
    assert layout(result) == [([3], "26,3,26,19", OK), ([30], "26,20,-1,-1", OK)]


def test_low_statistics_segment_merges_with_the_next_segment() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 10): 4, ExpRun(26, 20): 7, ExpRun(26, 30): 10}
    result = SequentialBoundaries([(26, 10), (26, 20), (26, 30)]).run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    assert layout(result) == [([3], "26,3,26,9", OK), ([10, 20], "26,10,26,29", OK), ([30], "26,30,-1,-1", OK)]


def test_low_statistics_last_segment_merges_with_the_previous_success() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 10): 10, ExpRun(26, 20): 1}
    result = SequentialBoundaries([(26, 10), (26, 20)]).run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    assert layout(result) == [([3], "26,3,26,9", OK), ([10, 20], "26,10,-1,-1", OK)]


def test_boundaries_never_cross_experiments_even_when_data_is_short() -> None:
    events = {ExpRun(26, 3): 10, ExpRun(26, 9): 1, ExpRun(27, 2): 10}
    result = SequentialBoundaries([(26, 9)]).run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    assert layout(result) == [([3, 9], "26,3,26,-1", OK), ([2], "27,0,-1,-1", OK)]


def test_boundaries_fail_when_no_merge_has_enough_data() -> None:
    events = {ExpRun(26, 3): 1, ExpRun(26, 9): 1}
    result = SequentialBoundaries([(26, 9)]).run(EventCountAlgorithm(events, 10), list(events), PROMPT)
    assert result.result is NED and not result.succeeded
    assert "not enough data in any merge of the boundaries of experiment 26" in result.message


def test_boundaries_stop_at_a_failure() -> None:
    runs = runs_of(26, 3, 9, 15)
    algorithm = EventCountAlgorithm(dict.fromkeys(runs, 10), 10, fail_on=frozenset({ExpRun(26, 9)}))
    result = SequentialBoundaries([(26, 9), (26, 15)]).run(algorithm, runs, PROMPT)
    assert result.result is FAIL
    assert layout(result)[-1] == ([9], "26,9,26,14", FAIL)


@pytest.mark.parametrize("boundary", [(26,), (26, -1), "26,5"])
def test_malformed_boundaries_are_rejected(boundary: object) -> None:
    with pytest.raises(StrategyError, match="payload boundary"):
        SequentialBoundaries([boundary])  # type: ignore[list-item]


@given(bucket(), st.lists(st.tuples(st.integers(20, 24), st.integers(0, 30)), max_size=6))
def test_boundaries_properties_over_random_buckets(case, boundaries) -> None:
    events, need, requested = case
    result = SequentialBoundaries(boundaries).run(EventCountAlgorithm(events, need), list(events), requested)
    totals = {exp: sum(n for run, n in events.items() if run.exp == exp) for exp in {r.exp for r in events}}
    assert result.succeeded == all(total >= need for total in totals.values())
    if not result.succeeded:
        return
    executions = result.executions
    assert [run for e in executions for run in e.runs] == sorted(events)
    assert all(len({run.exp for run in e.runs}) == 1 for e in executions)
    iovs = [e.iov for e in executions]
    assert find_overlaps(iovs) == []
    assert all(all(e.iov.contains(run) for run in e.runs) for e in executions)
    # Payloads only start at the requested start, at a caller boundary or at an experiment start.
    starts = {ExpRun(*b) for b in boundaries} | {ExpRun(exp, 0) for exp in totals} | {requested.first}
    assert all(iov.first in starts for iov in iovs)
    for gap in find_gaps(iovs, requested):
        assert gap.first_run == 0 and gap.final_run == -1


# -- iteration plumbing ------------------------------------------------------------------------


def test_each_execution_receives_the_previous_iteration_outcome_for_its_runs() -> None:
    runs = runs_of(26, 3, 4)
    algorithm = EventCountAlgorithm(dict.fromkeys(runs, 10), 10, iterations_needed=1)
    first = SequentialRunByRun().run(algorithm, runs, PROMPT)
    assert first.needs_iteration and first.result is AlgorithmResult.iterate
    second = SequentialRunByRun().run(algorithm, runs, PROMPT, iteration=1, previous=first)
    assert second.result is OK
    received = [previous for _, iteration, previous in algorithm.calls if iteration == 1]
    assert received == [first.executions[0].outcome, first.executions[1].outcome]


def test_payloads_are_listed_with_their_iovs_and_source_runs() -> None:
    runs = runs_of(26, 3, 4)
    result = SequentialRunByRun().run(EventCountAlgorithm(dict.fromkeys(runs, 10), 10), runs, PROMPT)
    payloads = result.payloads()
    assert [(p.name, str(p.iov), p.runs) for p in payloads] == [
        ("Toy", "26,3,26,3", (ExpRun(26, 3),)),
        ("Toy", "26,4,-1,-1", (ExpRun(26, 4),)),
    ]
    assert all(p.iov == e.outcome.iov for p, e in zip(payloads, result.executions, strict=True))


def test_algorithm_returning_something_else_is_a_strategy_error() -> None:
    class Broken:
        name = "broken"

        def execute(self, runs, iteration, previous):
            return "ok"

    with pytest.raises(StrategyError, match="broken.execute returned str"):
        SingleIOV().run(Broken(), runs_of(26, 3), PROMPT)


def test_runs_are_sorted_and_deduplicated_before_execution() -> None:
    runs = runs_of(26, 5, 3, 5, 4)
    algorithm = EventCountAlgorithm(dict.fromkeys(runs, 10), 10)
    result = SequentialRunByRun().run(algorithm, runs, PROMPT)
    assert [list(itertools.chain(e.runs)) for e in result.executions] == [[r] for r in runs_of(26, 3, 4, 5)]
