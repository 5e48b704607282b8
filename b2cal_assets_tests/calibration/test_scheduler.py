"""The bucket scheduler sensor and the calibration assets, end to end on real Dagster instances."""

import json
import uuid

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRun, DagsterRunStatus, build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from b2cal_assets.calibration.framework.buckets import BucketVersion, contiguous_segments
from b2cal_assets.calibration.sensors import BUCKET_SENSOR_NAME, BUCKET_TAG
from b2cal_assets.conditions.iov import IoV, find_gaps, find_overlaps
from b2cal_assets.conditions.staging import staging_tag_name
from b2cal_assets.database import platform_database
from b2cal_assets.definitions import build_definitions
from b2cal_assets.orchestration import CursorFile, run_sensor_tick
from b2cal_assets.resources import BucketPolicyResource
from b2cal_assets.run_identity import ExpRun
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.registry import STATUS_INGESTED, RegisteredRun
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME


def _defs(tmp_path, url, max_runs, expert_config=None):
    return build_definitions(
        incoming_root=str(tmp_path / "incoming"), database_url=url, work_dir=str(tmp_path / "work"),
        payload_dir=str(tmp_path / "payloads"),
        bucket_policy=BucketPolicyResource(max_runs=max_runs, max_luminosity_pb=None, max_age_hours=None),
        expert_config=expert_config,
    )


# The lineage test's three small runs (2,500 events each) are far below the shipped statistics
# thresholds, which follow the validation limits; this test is about order and lineage, not precision.
SMALL_BUCKET_EXPERT_CONFIG = {
    "BeamSpot": {"min_events": 200},
    "CollisionEnergy": {"min_events": 300},
    "ECLCrystalEnergy": {"min_hits_per_crystal": 1, "max_fraction_low_crystals": 1.0},
    "CDCTimeZero": {"min_hits_per_wire": 1},
}


def _registered(run):
    return RegisteredRun(
        exp=26, run=run, status=STATUS_INGESTED, reason="", run_type="physics", beam_energy="4S", magnet="On",
        data_quality="Good", data_tags=("mumu_tight_or_highm_calib",), integrated_luminosity_pb=10.0,
        start_time="2026-01-01T00:00:00+00:00", end_time="2026-01-01T01:00:00+00:00", her_energy_gev=7.0, ler_energy_gev=4.0,
    )


def _evaluate(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def(BUCKET_SENSOR_NAME)
    with build_sensor_context(instance=instance, cursor=cursor, resources=dict(defs.resources)) as context:
        return sensor(context)


def _collects(result):
    return [r for r in result.run_requests if r.tags.get("b2cal/step") == "collect"]


def _range(request):
    """(bucket, first run, last run) of a collector request: the ends of its partition range."""
    start, end = request.tags[ASSET_PARTITION_RANGE_START_TAG].split("|"), request.tags[ASSET_PARTITION_RANGE_END_TAG].split("|")
    assert start[0] == end[0]
    return start[0], start[1], end[1]


def _collector_names(request):
    return tuple(key.path[-1] for key in request.asset_selection)


def _launched(instance, request, status=DagsterRunStatus.STARTED):
    """``request`` as the daemon would have launched it: a run of this sensor in ``status``; its id."""
    run = DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=status,
                     tags={**request.tags, "dagster/sensor_name": BUCKET_SENSOR_NAME, "dagster/run_key": request.run_key})
    instance.add_run(run)
    return run.run_id


def _first_wave_collected(defs, instance, sqlite_url):
    """Runs 1 and 2 in the bucket, the first wave's collectors done: (store, registry, first tick, second tick)."""
    registry = platform_database(sqlite_url).runs()
    store = platform_database(sqlite_url).buckets()
    for run in (1, 2):
        registry.record_run(_registered(run))
    _run_partitions(instance, 1, 2)
    first = _evaluate(defs, instance)
    for collect in _collects(first):
        _record_outputs(store, collect, (1, 2))
    return store, registry, first, _evaluate(defs, instance, cursor=first.cursor)


def _run_partitions(instance, *runs):
    instance.add_dynamic_partitions("runs", [f"e0026.r{run:05d}" for run in runs])


def _record_outputs(store, request, runs):
    for key in request.asset_selection:
        for run in runs:
            store.record_collector_output(key.path[-1].removesuffix("_collector"), "e0026.b0001", f"e0026.r{run:05d}", "/dev/null", 1, "")


def test_contiguous_segments_split_where_another_run_lies_between():
    position = {"r1": 0, "r2": 1, "rq": 2, "r4": 3, "r5": 4}
    assert contiguous_segments(["r5", "r1", "r4", "r2"], position) == [["r1", "r2"], ["r4", "r5"]]
    assert contiguous_segments(["r1"], position) == [["r1"]]
    assert contiguous_segments(["r1", "unknown"], position) == [["unknown"], ["r1"]]
    assert contiguous_segments([], position) == []


def test_sensor_buckets_new_runs_and_requests_collectors_once_per_version(tmp_path, sqlite_url):
    defs = _defs(tmp_path, sqlite_url, max_runs=10)
    registry = platform_database(sqlite_url).runs()
    registry.record_run(_registered(1))
    registry.record_run(_registered(2))
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(instance, 1, 2)
        first = _evaluate(defs, instance)
        assert first.dynamic_partitions_requests[0].partition_keys == ["e0026.b0001"]
        # Each calibration's collectors run over the bucket's runs in one run (the partition range
        # of its runs), in the run worker's own process; the wave's two calibrations side by side.
        collects = _collects(first)
        assert {_collector_names(r): _range(r) for r in collects} == {
            ("BeamSpot_collector",): ("e0026.b0001", "e0026.r00001", "e0026.r00002"),
            ("CDCTimeZero_collector",): ("e0026.b0001", "e0026.r00001", "e0026.r00002"),
        }
        assert all(r.partition_key is None and r.run_config == {"execution": {"config": {"in_process": {}}}} for r in collects)
        assert {r.tags["b2cal/subsystem"] for r in collects} == {"beam", "cdc"}
        # Calibrations whose upstream is not calibrated yet (CollisionEnergy) are not collected.
        # Collectors of the independent calibrations are done: the reduce step of each is requested.
        store = platform_database(sqlite_url).buckets()
        for collect in collects:
            _record_outputs(store, collect, (1, 2))
        second = _evaluate(defs, instance, cursor=first.cursor)
        calibrate = [r for r in second.run_requests if r.partition_key == "e0026.b0001"]
        assert sorted(k.path[-1] for r in calibrate for k in r.asset_selection) == ["BeamSpot", "CDCTimeZero"]
        assert all(len(r.asset_selection) == 1 for r in calibrate)
        again = _evaluate(defs, instance, cursor=second.cursor).run_requests
        assert {r.run_key for r in calibrate} <= {r.run_key for r in again}  # same version, same keys
        # A new run lands in the open bucket: a new version, new run keys, its collectors requested.
        store.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(2, False), [], [])
        _run_partitions(instance, 3)
        registry.record_run(_registered(3))
        third = _evaluate(defs, instance, cursor=second.cursor)
        run3 = [r for r in _collects(third) if _range(r) == ("e0026.b0001", "e0026.r00003", "e0026.r00003")]
        assert run3 and "BeamSpot_collector" in [k.path[-1] for k in run3[0].asset_selection]
        assert store.bucket("e0026.b0001").n_runs == 3


def test_collector_ranges_never_span_a_run_outside_the_bucket(tmp_path, sqlite_url):
    defs = _defs(tmp_path, sqlite_url, max_runs=10)
    registry = platform_database(sqlite_url).runs()
    for run in (1, 3, 4):
        registry.record_run(_registered(run))
    registry.record_run(RegisteredRun(**{**_registered(2).__dict__, "status": "quarantined", "reason": "adler32"}))
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(instance, 1, 2, 3, 4)  # run 2 is a partition but quarantined: never in a bucket
        ranges = sorted({_range(r)[1:] for r in _collects(_evaluate(defs, instance))})  # the same for each calibration
    assert ranges == [("e0026.r00001", "e0026.r00001"), ("e0026.r00003", "e0026.r00004")]


def test_a_waves_collectors_are_split_into_one_run_per_core(tmp_path, sqlite_url, monkeypatch):
    """B2CAL_COLLECTOR_RUNS_PER_WAVE (the deployment's setting) cuts a closed 12-run bucket's wave
    into contiguous ranges collecting side by side; together they cover every run exactly once."""
    monkeypatch.setenv("B2CAL_COLLECTOR_RUNS_PER_WAVE", "2")
    defs = _defs(tmp_path, sqlite_url, max_runs=12)
    registry = platform_database(sqlite_url).runs()
    for run in range(1, 13):
        registry.record_run(_registered(run))
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(instance, *range(1, 13))
        collects = _collects(_evaluate(defs, instance))
    halves = [("e0026.b0001", "e0026.r00001", "e0026.r00006"), ("e0026.b0001", "e0026.r00007", "e0026.r00012")]
    assert sorted((_collector_names(r), _range(r)) for r in collects) == [
        (("BeamSpot_collector",), halves[0]), (("BeamSpot_collector",), halves[1]),
        (("CDCTimeZero_collector",), halves[0]), (("CDCTimeZero_collector",), halves[1]),
    ]
    assert len({r.run_key for r in collects}) == 4


def test_a_bad_collector_runs_per_wave_setting_names_itself(tmp_path, sqlite_url, monkeypatch):
    from b2cal_assets.config import SettingError

    monkeypatch.setenv("B2CAL_COLLECTOR_RUNS_PER_WAVE", "0")
    with pytest.raises(SettingError, match="B2CAL_COLLECTOR_RUNS_PER_WAVE=0 must be at least 1"):
        _defs(tmp_path, sqlite_url, max_runs=12)
    monkeypatch.setenv("B2CAL_COLLECTOR_RUNS_PER_WAVE", "two")
    with pytest.raises(SettingError, match="B2CAL_COLLECTOR_RUNS_PER_WAVE='two' is not a valid integer"):
        _defs(tmp_path, sqlite_url, max_runs=12)


def test_run_arriving_while_its_bucket_is_calibrating_is_not_lost(tmp_path, sqlite_url):
    defs = _defs(tmp_path, sqlite_url, max_runs=3)
    with DagsterInstance.ephemeral() as instance:
        store, registry, _, second = _first_wave_collected(defs, instance, sqlite_url)
        calibrate = next(r for r in second.run_requests if r.tags["b2cal/step"] == "calibrate")
        # A calibration run of the wave is in flight (as the daemon launched it) when run 3 is ingested.
        in_flight = instance.get_run_by_id(_launched(instance, calibrate))
        _run_partitions(instance, 3)
        registry.record_run(_registered(3))
        third = _evaluate(defs, instance, cursor=second.cursor)
        # Run 3 is in the bucket, which closes on it; nothing new is launched while the bucket's run is in flight.
        bucket = store.bucket("e0026.b0001")
        assert bucket.n_runs == 3 and bucket.closed and store.runs_of("e0026.b0001") == ["e0026.r00001", "e0026.r00002", "e0026.r00003"]
        assert third.run_requests == []
        # The calibration run ends (its result is for the open version): the closed bucket is planned again,
        # run 3's collectors are requested, then the calibrations of the closed version.
        store.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(2, False), [], [], in_flight.run_id)
        instance.delete_run(in_flight.run_id)
        instance.add_run(in_flight.with_status(DagsterRunStatus.SUCCESS))
        fourth = _evaluate(defs, instance, cursor=third.cursor)
        collects3 = _collects(fourth)
        assert {_range(r) for r in collects3} == {("e0026.b0001", "e0026.r00003", "e0026.r00003")}
        for collect3 in collects3:
            _record_outputs(store, collect3, (3,))
        fifth = _evaluate(defs, instance, cursor=fourth.cursor)
        finals = [r for r in fifth.run_requests if r.tags["b2cal/step"] == "calibrate"]
        assert finals and all(r.tags["b2cal/bucket_version"] == "3c" and r.tags[BUCKET_TAG] == "e0026.b0001" for r in finals)


def test_closing_cancels_the_buckets_previews_and_keeps_its_final_runs(tmp_path, sqlite_url):
    """The bucket closes while a preview (older version) runs: the scheduler asks the daemon's
    run coordinator to cancel it (CANCELING: termination requested) and plans nothing until it
    has stopped; a running run of the closed version is kept."""
    from dagster import instance_for_test

    defs = _defs(tmp_path, sqlite_url, max_runs=3)
    registry = platform_database(sqlite_url).runs()
    store = platform_database(sqlite_url).buckets()
    for run in (1, 2):
        registry.record_run(_registered(run))
    deployment = {
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "run_launcher": {"module": "dagster.core.launcher", "class": "DefaultRunLauncher"},
    }
    (tmp_path / "dagster").mkdir()
    with instance_for_test(overrides=deployment, temp_dir=str(tmp_path / "dagster")) as instance:
        _run_partitions(instance, 1, 2)
        first = _evaluate(defs, instance)
        preview = _launched(instance, _collects(first)[0])  # version 2o
        _run_partitions(instance, 3)
        registry.record_run(_registered(3))
        second = _evaluate(defs, instance, cursor=first.cursor)  # run 3 closes the bucket: version 3c
        assert store.bucket("e0026.b0001").closed and second.run_requests == []
        assert instance.get_run_by_id(preview).status is DagsterRunStatus.CANCELING
        # The preview has stopped: the closed version is planned; its own run is never cancelled.
        instance.report_run_canceled(instance.get_run_by_id(preview))
        collects = _collects(_evaluate(defs, instance, cursor=second.cursor))
        final = _launched(instance, collects[0])
        assert instance.get_run_by_id(final).tags["b2cal/bucket_version"] == "3c"
        # A run of the current version holds only its own calibration: the other's steps go on.
        later = _evaluate(defs, instance, cursor=second.cursor).run_requests
        assert [r.run_key for r in later] == [r.run_key for r in collects[1:]]
        assert instance.get_run_by_id(final).status is DagsterRunStatus.STARTED


def test_a_calibration_whose_upstream_is_done_starts_while_another_still_calibrates(tmp_path, sqlite_url):
    """BeamSpot is calibrated for the closed bucket while CDCTimeZero's calibration still runs:
    CollisionEnergy's collectors are requested at once, CDCTimeZero's steps are not requested again."""
    defs = _defs(tmp_path, sqlite_url, max_runs=2)
    with DagsterInstance.ephemeral() as instance:
        store, _, _, second = _first_wave_collected(defs, instance, sqlite_url)
        calibrate = {r.asset_selection[0].path[-1]: r for r in second.run_requests if r.tags["b2cal/step"] == "calibrate"}
        assert set(calibrate) == {"BeamSpot", "CDCTimeZero"} and calibrate["CDCTimeZero"].tags["b2cal/calibration"] == "CDCTimeZero"
        _launched(instance, calibrate["CDCTimeZero"])
        store.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(2, True), [], [])
        third = _evaluate(defs, instance, cursor=second.cursor)
        assert [_collector_names(r) for r in third.run_requests] == [("CollisionEnergy_collector",)]
        assert third.run_requests[0].tags["b2cal/bucket_version"] == "2c"


def test_sensor_skips_quarantined_runs(tmp_path, sqlite_url):
    defs = _defs(tmp_path, sqlite_url, max_runs=10)
    registry = platform_database(sqlite_url).runs()
    bad = _registered(1)
    registry.record_run(RegisteredRun(**{**bad.__dict__, "status": "quarantined", "reason": "adler32"}))
    with DagsterInstance.ephemeral() as instance:
        result = _evaluate(defs, instance)
    assert result.run_requests == [] and platform_database(sqlite_url).buckets().buckets() == []
    assert json.loads(result.cursor)["ingested_since"]


def test_bucket_is_calibrated_in_dependency_order_with_lineage(tmp_path, deployment):
    instance, url = deployment
    generate(tmp_path / "incoming", runs=3, events_per_run=2_500, seed=11)
    defs = _defs(tmp_path, url, max_runs=3, expert_config=SMALL_BUCKET_EXPERT_CONFIG)
    cursors = CursorFile(tmp_path / "cursors.json")
    for _ in range(2):
        run_sensor_tick(defs, instance, NEW_RUN_SENSOR_NAME, cursors, log_level="ERROR")
    for _ in range(12):
        outcome = run_sensor_tick(defs, instance, BUCKET_SENSOR_NAME, cursors, log_level="ERROR")
        if not outcome.launched:
            break
    store = platform_database(url).buckets()
    bucket = store.bucket("e0026.b0001")
    assert bucket.closed and bucket.n_runs == 3

    conditions = platform_database(url).conditions(tmp_path / "payloads")
    entries = conditions.tag_entries(staging_tag_name("e0026.b0001"))
    for payload in ("BeamSpot", "CollisionInvariantMass"):
        iovs = [e.iov for e in entries if e.name == payload]
        assert iovs, f"no {payload} payload"
        assert find_gaps(iovs, IoV(26, 1, -1, -1)) == [] and find_overlaps(iovs) == []

    def materializations(*path):
        return instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(list(path))), limit=100).records

    # Lineage: the collector cells materialised are exactly (its bucket, each run).
    collected = {r.partition_key for r in materializations("beam", "BeamSpot_collector")}
    assert collected == {f"e0026.b0001|e0026.r0000{i}" for i in (1, 2, 3)}
    beam = materializations("beam", "BeamSpot")
    ecms = materializations("beam", "CollisionEnergy")
    assert beam and ecms and min(r.storage_id for r in ecms) > max(r.storage_id for r in beam)
    metadata = ecms[0].asset_materialization.metadata
    assert "e0026.r00001" in metadata["runs_used"].value and metadata["staging_tag"].value == "staging_prompt_e0026.b0001"
    # A calibration that fails writes nothing: no payload of it in the tag, and the bucket stays active.
    failed_names = {name for name in ("ECLCrystalEnergy", "CDCTimeZero") if store.latest_calibration("e0026.b0001", name) is None}
    for name in failed_names:
        produced = {"ECLCrystalEnergy": "ECLCrystalEnergy", "CDCTimeZero": "CDCTimeZero"}[name]
        assert not [e for e in entries if e.name.startswith(produced)]
    assert platform_database(url).runs().get(ExpRun(26, 2)) is not None
