"""The bucket scheduler sensor and the calibration assets, end to end on real Dagster instances."""

import json

from dagster import AssetKey, AssetRecordsFilter, MultiPartitionKey, build_sensor_context

from b2cal_assets.calibration.assets import staging_tag_name
from b2cal_assets.calibration.buckets import BucketVersion
from b2cal_assets.calibration.sensors import BUCKET_SENSOR_NAME
from b2cal_assets.conditions.iov import IoV, find_gaps, find_overlaps
from b2cal_assets.definitions import build_definitions
from b2cal_assets.orchestration import CursorFile, run_sensor_tick
from b2cal_assets.resources import BucketPolicyResource
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.naming import RunKey
from b2cal_assets.runs.registry import STATUS_INGESTED, RegisteredRun
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME
from b2cal_assets.database import platform_database


def _defs(tmp_path, url, max_runs):
    return build_definitions(
        incoming_root=str(tmp_path / "incoming"), database_url=url, work_dir=str(tmp_path / "work"),
        payload_dir=str(tmp_path / "payloads"),
        bucket_policy=BucketPolicyResource(max_runs=max_runs, max_luminosity_pb=None, max_age_hours=None),
    )


def _registered(run):
    return RegisteredRun(
        exp=26, run=run, status=STATUS_INGESTED, reason="", run_type="physics", beam_energy="4S", magnet="On",
        data_quality="Good", data_tags=("mumu_tight_or_highm_calib",), integrated_luminosity_pb=10.0,
        start_time="2026-01-01T00:00:00+00:00", end_time="2026-01-01T01:00:00+00:00", her_energy_gev=7.0, ler_energy_gev=4.0,
    )


def _evaluate(defs, cursor=None):
    sensor = defs.resolve_sensor_def(BUCKET_SENSOR_NAME)
    with build_sensor_context(cursor=cursor, resources=dict(defs.resources)) as context:
        return sensor(context)


def _requests(result):
    return [(r.partition_key, sorted(k.path[-1] for k in r.asset_selection)) for r in result.run_requests]


def test_sensor_buckets_new_runs_and_requests_collectors_once_per_version(tmp_path, sqlite_url):
    defs = _defs(tmp_path, sqlite_url, max_runs=10)
    registry = platform_database(sqlite_url).runs()
    registry.record_run(_registered(1))
    registry.record_run(_registered(2))
    first = _evaluate(defs)
    assert first.dynamic_partitions_requests[0].partition_keys == ["e0026.b0001"]
    collects = [r for r in first.run_requests if isinstance(r.partition_key, MultiPartitionKey)]
    assert sorted(r.partition_key.keys_by_dimension["run"] for r in collects) == ["e0026.r00001", "e0026.r00002"]
    # Calibrations whose upstream is not calibrated yet are not collected.
    assert all("CollisionEnergy_collector" not in [k.path[-1] for k in r.asset_selection] for r in collects)
    # Collectors of the independent calibrations are done: the reduce step of those is requested.
    store = platform_database(sqlite_url).buckets()
    for request in collects:
        for key in request.asset_selection:
            name = key.path[-1].removesuffix("_collector")
            store.record_collector_output(name, "e0026.b0001", request.partition_key.keys_by_dimension["run"], "/dev/null", 1, "")
    second = _evaluate(defs, cursor=first.cursor)
    calibrate = [r for r in second.run_requests if r.partition_key == "e0026.b0001"]
    assert len(calibrate) == 1 and "BeamSpot" in [k.path[-1] for k in calibrate[0].asset_selection]
    assert calibrate[0].run_key == _evaluate(defs, cursor=second.cursor).run_requests[-1].run_key  # same version, same key
    # A new run lands in the open bucket: a new version, new run keys, its collectors requested.
    store.record_calibration("BeamSpot", "e0026.b0001", BucketVersion(2, False), [], [])
    registry.record_run(_registered(3))
    third = _evaluate(defs, cursor=second.cursor)
    run3 = [r for r in third.run_requests if isinstance(r.partition_key, MultiPartitionKey) and r.partition_key.keys_by_dimension["run"] == "e0026.r00003"]
    assert run3 and "BeamSpot_collector" in [k.path[-1] for k in run3[0].asset_selection]
    assert store.bucket("e0026.b0001").n_runs == 3


def test_sensor_skips_quarantined_runs(tmp_path, sqlite_url):
    defs = _defs(tmp_path, sqlite_url, max_runs=10)
    registry = platform_database(sqlite_url).runs()
    bad = _registered(1)
    registry.record_run(RegisteredRun(**{**bad.__dict__, "status": "quarantined", "reason": "adler32"}))
    result = _evaluate(defs)
    assert result.run_requests == [] and platform_database(sqlite_url).buckets().buckets() == []
    assert json.loads(result.cursor)["ingested_since"]


def test_bucket_is_calibrated_in_dependency_order_with_lineage(tmp_path, deployment):
    instance, url = deployment
    generate(tmp_path / "incoming", runs=3, events_per_run=2_500, seed=11)
    defs = _defs(tmp_path, url, max_runs=3)
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
    assert platform_database(url).runs().get(RunKey(26, 2)) is not None
