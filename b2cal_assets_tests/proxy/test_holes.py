"""Regression tests for the holes of the attacker's review (H1-H6), pure where possible."""

from __future__ import annotations

import pytest

from b2cal_assets.proxy import graphql_ops
from b2cal_assets.proxy.errors import GraphQLSyntaxError
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.permissions import Permission


def _doubling(n: int, root: str, leaf: str) -> str:
    """A document whose fragment F_i spreads F_{i+1} twice: 2^n leaves once expanded."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n))
    return f"query Q {{ {root} }} {chain} fragment F{n} on Query {{ {leaf} }}"


def _count_walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    walks: list[int] = []
    original = graphql_ops._Walker.fields

    def counting(self, selection_set):  # type: ignore[no-untyped-def]
        walks.append(1)
        return original(self, selection_set)

    monkeypatch.setattr(graphql_ops._Walker, "fields", counting)
    return walks


def test_h1_doubling_fragments_are_refused_without_expanding(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _count_walks(monkeypatch)
    for root in ("...F0", "runsOrError { ...F0 }"):
        with pytest.raises(GraphQLSyntaxError, match="expands to"):
            classify_operation(_doubling(40, root, "__typename"), None)
    assert walks == []  # refused by the (memoised) size check before any walk


def test_h1_fragment_reuse_is_walked_once_per_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the budget (2^10 leaves), a sensitive field at the bottom is still found, and the
    # walk is linear in the number of fragments, not in the expansion.
    walks = _count_walks(monkeypatch)
    query = _doubling(10, "instigationStateOrError { ...F0 }", "logEvents { events { message } }").replace(
        "on Query", "on InstigationState"
    )
    operation = classify_operation(query, None)
    assert [f.name for f in operation.root_fields] == ["instigationStateOrError"]
    assert Permission.CAPTURED_LOGS in operation.root_fields[0].sensitive
    assert len(walks) < 50


def test_h1_fragment_cycle_through_a_field_is_refused() -> None:
    query = "query Q { runsOrError { ...A } } fragment A on Query { runsOrError { ...A } }"
    with pytest.raises(GraphQLSyntaxError, match="spreads itself"):
        classify_operation(query, None)


def test_h1_long_fragment_chain_is_refused_as_too_deep() -> None:
    n = 2000
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(n))
    with pytest.raises(GraphQLSyntaxError, match="deeper"):
        classify_operation(f"query Q {{ ...F0 }} {chain} fragment F{n} on Query {{ __typename }}", None)


@pytest.mark.parametrize(
    "query",
    [
        # Schedule.futureTicks / futureTick / scheduleState.nextTick, Sensor.nextTick: each
        # evaluates the schedule or sensor in the code server, like a dry run.
        'query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
        " futureTicks(limit: 1) { results { evaluationResult { skipReason } } } } } }",
        'query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
        " scheduleState { nextTick { evaluationResult { skipReason } } } } } }",
        'query S($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {'
        " nextTick { ...E } } } } fragment E on DryRunInstigationTick { evaluationResult { runRequests { runKey } } }",
    ],
)
def test_h2_tick_evaluation_needs_the_dry_run_permission(query: str) -> None:
    assert Permission.SCHEDULES in classify_operation(query, None).root_fields[0].sensitive


def test_h2_next_tick_timestamp_stays_readable() -> None:
    query = ('query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
             " futureTicks(limit: 3) { results { timestamp } } scheduleState { nextTick { timestamp } } } } }")
    assert classify_operation(query, None).root_fields[0].sensitive == frozenset()


def test_h2_partition_tags_evaluation_needs_run_config() -> None:
    query = ('query P($s: PartitionSetSelector!) { partitionSetOrError(partitionSetSelector: $s) {'
             ' ... on PartitionSet { partition(partitionName: "e0026.b0001") { tagsOrError { __typename } } } } }')
    assert Permission.RUN_CONFIG in classify_operation(query, None).root_fields[0].sensitive
