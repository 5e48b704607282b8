"""Bucket policy, the bucket planner and the bucket store (SQLite and PostgreSQL)."""

from datetime import datetime, timedelta, timezone

import pytest

from b2cal_assets.calibration.bucket_store import CandidateRun
from b2cal_assets.calibration.framework.buckets import (
    MIN_RUNS_PER_COLLECTOR_RUN,
    BucketPolicy,
    BucketVersion,
    InFlightRun,
    InvalidBucketKeyError,
    InvalidBucketPolicyError,
    collector_batches,
    judge_in_flight,
    parse_bucket_key,
    plan_bucket,
)
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.database import platform_database

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _settings(name, depends_on=()):
    return CalibrationSettings(
        name=name, expert_username="expert", subsystem="beam", description=f"{name} test calibration",
        input_data_formats=["cdst"], input_data_names=["hlt_mumu_2trk"], depends_on=list(depends_on),
        produced_payloads=[name],
    )


def _run(run, lumi=10.0, exp=26):
    return CandidateRun(f"e{exp:04d}.r{run:05d}", exp, run, lumi)


def test_policy_closes_on_runs_luminosity_or_age_and_rejects_nonsense():
    assert BucketPolicy(max_runs=3, max_age=None).close_reason(3, 0, T0, T0) == "3 runs >= 3"
    assert "pb^-1" in BucketPolicy(max_runs=None, max_luminosity_pb=100, max_age=None).close_reason(2, 120.0, T0, T0)
    assert "open for" in BucketPolicy(max_runs=None, max_age=timedelta(days=1)).close_reason(1, 0, T0, T0 + timedelta(days=2))
    assert BucketPolicy(max_runs=5).close_reason(4, 0, T0, T0 + timedelta(hours=1)) is None
    with pytest.raises(InvalidBucketPolicyError, match="at least one"):
        BucketPolicy(max_runs=None, max_luminosity_pb=None, max_age=None)
    with pytest.raises(InvalidBucketPolicyError):
        BucketPolicy(max_runs=0)


def test_bucket_keys_round_trip():
    assert parse_bucket_key("e0026.b0003") == (26, 3)
    with pytest.raises(InvalidBucketKeyError):
        parse_bucket_key("e0026.r00003")


def test_plan_collects_first_then_calibrates_in_dependency_order():
    beam, ecms = _settings("BeamSpot"), None
    ecms = _settings("CollisionEnergy", [beam])
    ordered = [beam, ecms]
    version = BucketVersion(2, closed=False)
    runs = ["e0026.r00001", "e0026.r00002"]
    plan = plan_bucket(ordered, runs, version, {}, {})
    assert [(s.run_key, s.calibrations) for s in plan.collect] == [("e0026.r00001", ("BeamSpot",)), ("e0026.r00002", ("BeamSpot",))]
    assert plan.calibrate is None and plan.waiting == ("CollisionEnergy",)
    plan = plan_bucket(ordered, runs, version, {"BeamSpot": set(runs)}, {})
    assert plan.collect == () and plan.calibrate.calibrations == ("BeamSpot",)
    plan = plan_bucket(ordered, runs, version, {"BeamSpot": set(runs)}, {"BeamSpot": version})
    assert [s.calibrations for s in plan.collect] == [("CollisionEnergy",), ("CollisionEnergy",)]
    done = plan_bucket(ordered, runs, version, {"BeamSpot": set(runs), "CollisionEnergy": set(runs)}, {"BeamSpot": version, "CollisionEnergy": version})
    assert done.idle and done.waiting == ()


def test_new_run_or_closing_makes_every_calibration_due_again():
    beam = _settings("BeamSpot")
    runs = ["e0026.r00001", "e0026.r00002"]
    old = BucketVersion(1, closed=False)
    plan = plan_bucket([beam], runs, BucketVersion(2, False), {"BeamSpot": {"e0026.r00001"}}, {"BeamSpot": old})
    assert [s.run_key for s in plan.collect] == ["e0026.r00002"]
    closed = plan_bucket([beam], runs, BucketVersion(2, True), {"BeamSpot": set(runs)}, {"BeamSpot": BucketVersion(2, False)})
    assert closed.calibrate.calibrations == ("BeamSpot",)
    assert str(BucketVersion(2, True)) == "2c" and BucketVersion.parse("2c") == BucketVersion(2, True)


def test_store_assigns_runs_and_closes_by_policy(database_url):
    store = platform_database(database_url).buckets()
    policy = BucketPolicy(max_runs=3, max_age=None)
    report = store.assign([_run(1), _run(2)], policy, T0)
    assert report.opened == ["e0026.b0001"] and report.closed == []
    report = store.assign([_run(3), _run(4), _run(2)], policy, T0)  # run 2 again: re-ingestion, ignored
    assert report.closed == [("e0026.b0001", "3 runs >= 3")]
    assert report.opened == ["e0026.b0002"]
    assert store.runs_of("e0026.b0001") == ["e0026.r00001", "e0026.r00002", "e0026.r00003"]
    assert store.bucket_of("e0026.r00004") == "e0026.b0002"
    bucket = store.bucket("e0026.b0001")
    assert bucket.closed and (bucket.first_run, bucket.last_run, bucket.luminosity_pb) == (1, 3, 30.0)
    assert [b.key for b in store.active_buckets()] == ["e0026.b0001", "e0026.b0002"]


def test_store_never_mixes_experiments_and_reports_late_runs(database_url):
    store = platform_database(database_url).buckets()
    policy = BucketPolicy(max_runs=2, max_age=None)
    store.assign([_run(5), _run(6), _run(1, exp=27)], policy, T0)
    assert [b.key for b in store.buckets()] == ["e0026.b0001", "e0027.b0001"]
    late = store.assign([_run(4)], policy, T0)
    assert late.late == ["e0026.r00004"] and store.bucket_of("e0026.r00004") is None


def test_store_closes_old_buckets_by_age_on_a_tick_without_runs(database_url):
    store = platform_database(database_url).buckets()
    policy = BucketPolicy(max_runs=None, max_age=timedelta(days=14))
    store.assign([_run(1)], policy, T0)
    assert store.assign([], policy, T0 + timedelta(days=13)).closed == []
    assert store.assign([], policy, T0 + timedelta(days=15)).closed[0][0] == "e0026.b0001"


def test_store_tracks_collector_outputs_and_calibration_versions(database_url):
    store = platform_database(database_url).buckets()
    store.assign([_run(1)], BucketPolicy(max_runs=5), T0)
    store.record_collector_output("BeamSpot", "e0026.b0001", "e0026.r00001", "/x.npz", 100, "")
    store.record_collector_output("BeamSpot", "e0026.b0001", "e0026.r00001", "/y.npz", 120, "")  # re-collected
    assert store.collector_outputs("e0026.b0001") == {"BeamSpot": {"e0026.r00001": ("/y.npz", "")}}
    store.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(1, False), [{"name": "BeamSpot", "revision": 1}], ["e0026.r00001"])
    store.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(1, True), [{"name": "BeamSpot", "revision": 2}], ["e0026.r00001"])
    assert store.calibrated_versions("e0026.b0001") == {"BeamSpot": BucketVersion(1, True)}
    assert store.latest_calibration("e0026.b0001", "BeamSpot")["payloads"][0]["revision"] == 2
    store.close("e0026.b0001", "by hand")
    store.mark_finished("e0026.b0001", BucketVersion(1, True))
    assert store.active_buckets() == []


def _runs(first, last):
    return [f"r{run:03d}" for run in range(first, last + 1)]


@pytest.mark.parametrize(
    ("segment_lengths", "parallel_runs", "batch_lengths"),
    [
        ((20,), 2, [10, 10]),
        ((21,), 2, [11, 10]),
        ((80,), 2, [40, 40]),
        ((20,), 3, [7, 7, 6]),
        ((9,), 2, [9]),  # under 5 runs per batch: one run, as a small bucket always was
        ((4,), 8, [4]),
        ((1,), 2, [1]),
        ((20,), 1, [20]),
        ((3, 17), 2, [3, 9, 8]),  # a segment is cut, never joined with the next one
        ((10, 10), 2, [10, 10]),
        ((), 2, []),
    ],
)
def test_collector_batches_cut_a_wave_into_contiguous_parts_one_per_core(segment_lengths, parallel_runs, batch_lengths):
    segments, first = [], 1
    for length in segment_lengths:
        segments.append(_runs(first, first + length - 1))
        first += length + 1  # another bucket's run lies between two segments
    batches = collector_batches(segments, parallel_runs)
    assert [len(batch) for batch in batches] == batch_lengths
    # Every run exactly once, in order, and no batch spans two segments.
    assert [run for batch in batches for run in batch] == [run for segment in segments for run in segment]
    for batch in batches:
        assert any(batch == segment[segment.index(batch[0]):segment.index(batch[0]) + len(batch)] for segment in segments if batch[0] in segment)
    if sum(segment_lengths) >= 2 * MIN_RUNS_PER_COLLECTOR_RUN:
        assert len(batches) >= min(parallel_runs, len(segment_lengths) or 1)


def test_collector_batches_refuse_zero_parallel_runs():
    with pytest.raises(ValueError, match="at least 1"):
        collector_batches([["r001"]], 0)


@pytest.mark.parametrize(
    ("in_flight", "wait", "busy"),
    [
        ([], False, set()),
        ([InFlightRun("5c", "CDCTimeZero")], False, {"CDCTimeZero"}),  # holds only its calibration
        ([InFlightRun("5c", "CDCTimeZero"), InFlightRun("5c", "BeamSpot")], False, {"CDCTimeZero", "BeamSpot"}),
        ([InFlightRun("4o", "CDCTimeZero")], True, set()),  # an older version holds the bucket
        ([InFlightRun("5o", "BeamSpot")], True, set()),  # the preview of the same runs, before the closing
        ([InFlightRun("5c", "CDCTimeZero"), InFlightRun("4o", "BeamSpot")], True, set()),
        ([InFlightRun("5c", None)], True, set()),  # a run that does not name its calibration
    ],
)
def test_runs_in_flight_hold_the_bucket_or_only_their_calibration(in_flight, wait, busy):
    verdict = judge_in_flight(BucketVersion(5, True), in_flight)
    assert verdict.wait is wait
    assert verdict.busy == frozenset(busy)
