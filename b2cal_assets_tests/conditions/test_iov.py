"""IoV arithmetic: examples a physicist would check by hand, plus hypothesis laws.

The laws are checked pointwise: for a set operation, a run is in the result exactly when the
set-theoretic definition says so. Runs are drawn from a small grid (exp 0..5, run 0..8) while
IoV bounds stay inside exp 0..3, run 0..5, so open ends ("all runs of exp 2", "forever") are
exercised by runs beyond every finite bound.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.conditions.iov import ExpRun, InvalidIoVError, IoV, find_gaps, find_overlaps
from b2cal_assets.run_identity import InvalidRunError

GRID = [ExpRun(exp, run) for exp in range(6) for run in range(9)]


@st.composite
def iovs(draw: st.DrawFn, allow_empty: bool = True) -> IoV:
    if allow_empty and draw(st.integers(0, 15)) == 0:
        return IoV.empty()
    first_exp = draw(st.integers(0, 3))
    first_run = draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["finite", "all_runs", "forever"]))
    if kind == "forever":
        return IoV(first_exp, first_run, -1, -1)
    final_exp = draw(st.integers(first_exp, 3))
    if kind == "all_runs":
        return IoV(first_exp, first_run, final_exp, -1)
    low = first_run if final_exp == first_exp else 0
    return IoV(first_exp, first_run, final_exp, draw(st.integers(low, 5)))


def covered(iov_list: list[IoV]) -> set[ExpRun]:
    return {point for point in GRID if any(iov.contains(point) for iov in iov_list)}


# -- construction and validation ---------------------------------------------------------------


def test_always_and_empty_have_the_database_spelling() -> None:
    assert IoV.always().as_tuple() == (0, 0, -1, -1)
    assert IoV.empty().as_tuple() == (-1, -1, -1, -1)
    assert IoV.always().is_always and not IoV.always().is_empty
    assert IoV.empty().is_empty and not IoV.empty().is_always


def test_parse_reads_the_database_txt_spelling() -> None:
    assert IoV.parse("26,12,26,-1") == IoV(26, 12, 26, -1)
    assert IoV.parse(" 0, 0, -1, -1 ").is_always


@pytest.mark.parametrize("text", ["26,12,26", "a,b,c,d", "26,12,26,-1,0", ""])
def test_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(InvalidIoVError, match="cannot parse IoV"):
        IoV.parse(text)


@pytest.mark.parametrize(
    ("bounds", "hint"),
    [
        ((-1, 0, 26, -1), "first experiment and run must be >= 0"),
        ((26, -1, 26, -1), "first experiment and run must be >= 0"),
        ((26, 12, -1, 5), "needs final_run=-1 too"),
        ((26, 12, 25, -1), "ends \\(exp 25, all runs\\) before it starts"),
        ((26, 12, 26, 11), "ends \\(exp 26 run 11\\) before it starts"),
        ((26, 12, -2, -1), "or -1 for an open end"),
        ((26, 12, 26, -7), "or -1 for an open end"),
    ],
)
def test_invalid_iovs_are_rejected_with_an_actionable_message(bounds: tuple[int, ...], hint: str) -> None:
    with pytest.raises(InvalidIoVError, match=hint):
        IoV(*bounds)


def test_non_integer_bounds_are_rejected() -> None:
    with pytest.raises(InvalidIoVError, match="not an integer"):
        IoV(26, 1.5, 26, -1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRunError, match="not an integer"):
        ExpRun(True, 3)  # type: ignore[arg-type]


def test_exprun_rejects_negative_numbers() -> None:
    with pytest.raises(InvalidRunError, match=">= 0"):
        ExpRun(26, -1)


def test_exprun_orders_by_experiment_then_run_and_prints_like_a_file_path() -> None:
    assert ExpRun(25, 900) < ExpRun(26, 0) < ExpRun(26, 1)
    assert str(ExpRun(26, 12)) == "e0026.r00012"


def test_from_exprun_without_final_is_open_ended_like_prompt_payloads() -> None:
    assert IoV.from_exprun(ExpRun(26, 12)) == IoV(26, 12, -1, -1)
    assert IoV.from_exprun(ExpRun(26, 12), ExpRun(26, 40)) == IoV(26, 12, 26, 40)


def test_open_ended_means_final_run_minus_one_but_not_empty() -> None:
    assert IoV(26, 0, 26, -1).is_open_ended
    assert IoV(26, 0, -1, -1).is_open_ended
    assert not IoV(26, 0, 26, 5).is_open_ended
    assert not IoV.empty().is_open_ended


def test_first_of_empty_raises() -> None:
    assert IoV(26, 3, 27, -1).first == ExpRun(26, 3)
    with pytest.raises(InvalidIoVError, match="no first run"):
        _ = IoV.empty().first


# -- examples ----------------------------------------------------------------------------------


def test_all_runs_of_an_experiment_end_before_the_next_experiment() -> None:
    iov = IoV(26, 12, 26, -1)
    assert iov.contains(ExpRun(26, 99_999))  # the largest run a Belle II file name carries
    assert not iov.contains(ExpRun(27, 0))
    assert not iov.contains(ExpRun(26, 11))


def test_union_of_adjacent_runs_and_adjacent_experiments() -> None:
    assert IoV(26, 0, 26, 100).union(IoV(26, 101, 26, -1)) == IoV(26, 0, 26, -1)
    assert IoV(26, 0, 26, -1).union(IoV(27, 0, -1, -1)) == IoV(26, 0, -1, -1)
    assert IoV(27, 0, -1, -1).union(IoV(26, 0, 26, -1)) == IoV(26, 0, -1, -1)


def test_union_with_runs_in_between_raises_naming_the_gap() -> None:
    with pytest.raises(InvalidIoVError, match="runs 26,101,26,-1 would be covered by neither"):
        IoV(26, 0, 26, 100).union(IoV(27, 0, 27, 5))


def test_subtract_splits_around_the_hole() -> None:
    assert IoV.always().subtract(IoV(26, 5, 26, -1)) == [IoV(0, 0, 26, 4), IoV(27, 0, -1, -1)]
    assert IoV(26, 0, -1, -1).subtract(IoV(26, 0, 26, 9)) == [IoV(26, 10, -1, -1)]
    assert IoV(26, 5, 26, 9).subtract(IoV(26, 0, -1, -1)) == []


def test_subtracting_a_start_at_run_zero_ends_at_the_previous_experiment() -> None:
    assert IoV(25, 3, -1, -1).subtract(IoV(26, 0, -1, -1)) == [IoV(25, 3, 25, -1)]


def test_find_gaps_example() -> None:
    gaps = find_gaps([IoV(26, 0, 26, 10), IoV(26, 20, -1, -1)], IoV(25, 3, -1, -1))
    assert gaps == [IoV(25, 3, 25, -1), IoV(26, 11, 26, 19)]


def test_find_gaps_of_nothing_is_the_whole_range() -> None:
    assert find_gaps([], IoV(26, 0, -1, -1)) == [IoV(26, 0, -1, -1)]
    assert find_gaps([IoV.always()], IoV(26, 0, -1, -1)) == []
    assert find_gaps([IoV(26, 0, 26, 3)], IoV.empty()) == []


def test_find_overlaps_reports_pairs_in_input_order() -> None:
    a, b, c = IoV(26, 0, 26, 10), IoV(27, 0, -1, -1), IoV(26, 5, 26, -1)
    assert find_overlaps([a, b, c]) == [(a, c)]
    assert find_overlaps([a, b]) == []


# -- laws --------------------------------------------------------------------------------------


@given(iovs(allow_empty=False))
def test_str_and_parse_round_trip(iov: IoV) -> None:
    assert IoV.parse(str(iov)) == iov


@given(iovs(), iovs())
def test_intersection_contains_exactly_the_common_runs(a: IoV, b: IoV) -> None:
    both = a.intersection(b)
    assert covered([both]) == covered([a]) & covered([b])
    assert both == b.intersection(a)
    assert a.contains(both) and b.contains(both)
    assert both.is_empty == (not a.overlaps(b))


@given(iovs(), iovs())
def test_overlaps_is_symmetric_and_means_a_common_run(a: IoV, b: IoV) -> None:
    assert a.overlaps(b) == b.overlaps(a)
    if covered([a]) & covered([b]):
        assert a.overlaps(b)


@given(iovs(), iovs())
def test_union_covers_exactly_both_or_refuses(a: IoV, b: IoV) -> None:
    try:
        joined = a.union(b)
    except InvalidIoVError:
        # Refused only when some run lies strictly between the two.
        assert not a.overlaps(b) and not a.is_adjacent(b)
        low, high = sorted((a, b), key=IoV.sort_key)
        between = find_gaps([low, high], IoV(low.first_exp, low.first_run, high.final_exp, high.final_run))
        assert between
        return
    assert covered([joined]) == covered([a]) | covered([b])
    assert joined == b.union(a)
    assert joined.contains(a) and joined.contains(b)


@given(iovs(), iovs())
def test_subtract_leaves_exactly_the_runs_not_in_the_other(a: IoV, b: IoV) -> None:
    pieces = a.subtract(b)
    assert covered(pieces) == covered([a]) - covered([b])
    assert len(pieces) <= 2
    assert find_overlaps(pieces) == []
    assert all(a.contains(piece) and not piece.overlaps(b) for piece in pieces)
    assert pieces == sorted(pieces, key=IoV.sort_key)


@given(iovs(), iovs())
def test_subtract_then_add_back_rebuilds_the_original(a: IoV, b: IoV) -> None:
    # In start order, the pieces and the common part are adjacent, so they join back into a.
    parts = sorted([p for p in [a.intersection(b), *a.subtract(b)] if not p.is_empty], key=IoV.sort_key)
    rebuilt = IoV.empty()
    for part in parts:
        rebuilt = rebuilt.union(part)
    assert rebuilt == a


@given(st.lists(iovs(), max_size=6), iovs())
def test_gaps_cover_exactly_the_uncovered_part_of_within(iov_list: list[IoV], within: IoV) -> None:
    gaps = find_gaps(iov_list, within)
    assert covered(gaps) == covered([within]) - covered(iov_list)
    assert all(within.contains(gap) and not gap.is_empty for gap in gaps)
    assert find_overlaps(gaps) == []
    assert gaps == sorted(gaps, key=IoV.sort_key)
    # Consecutive gaps are separated by covered runs, otherwise they would be one gap.
    assert not any(x.is_adjacent(y) for x, y in itertools.pairwise(gaps))


@given(st.lists(iovs(), max_size=6), iovs(allow_empty=False))
def test_gaps_and_the_clipped_inputs_together_fill_within(iov_list: list[IoV], within: IoV) -> None:
    parts = find_gaps(iov_list, within) + [iov.intersection(within) for iov in iov_list]
    assert find_gaps(parts, within) == []


@given(st.lists(iovs(), max_size=7))
def test_find_overlaps_matches_all_pairs(iov_list: list[IoV]) -> None:
    expected = [
        (iov_list[i], iov_list[j])
        for i, j in itertools.combinations(range(len(iov_list)), 2)
        if iov_list[i].overlaps(iov_list[j])
    ]
    assert find_overlaps(iov_list) == expected


@given(iovs(), iovs())
def test_contains_iov_means_every_run_is_contained(a: IoV, b: IoV) -> None:
    if a.contains(b):
        assert covered([b]) <= covered([a])
    if not b.is_empty and covered([b]) - covered([a]):
        assert not a.contains(b)
