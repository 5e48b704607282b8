"""Ingestion of runs as raw_run partitions, on SQLite and on PostgreSQL instances."""

from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance

from b2cal_assets.database import platform_database
from b2cal_assets.definitions import build_definitions
from b2cal_assets.orchestration import CursorFile, run_sensor_tick
from b2cal_assets.run_identity import ExpRun
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME


def _latest_materialization(instance, partition):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("raw_run"), asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization


def _ingest_all(defs, instance: DagsterInstance, cursors: CursorFile):
    outcomes = []
    while True:
        outcome = run_sensor_tick(defs, instance, NEW_RUN_SENSOR_NAME, cursors, log_level="ERROR")
        outcomes.append(outcome)
        if not outcome.requested:
            return outcomes


def test_sensor_ticks_ingest_runs_and_quarantine_the_corrupt_one(tmp_path, deployment):
    dagster_instance, database_url = deployment
    incoming = tmp_path / "incoming"
    generate(incoming, runs=4, events_per_run=600, faults=["corrupt-file:2", "missing-file:3"])
    defs = build_definitions(incoming_root=str(incoming), database_url=database_url)
    _ingest_all(defs, dagster_instance, CursorFile(tmp_path / "cursors.json"))

    assert set(dagster_instance.get_dynamic_partitions("runs")) == {f"e0026.r0000{i}" for i in range(1, 5)}
    registry = platform_database(database_url).runs()
    statuses = {str(r.key): r.status for r in registry.query()}
    assert statuses == {"e0026.r00001": "ingested", "e0026.r00002": "quarantined", "e0026.r00003": "quarantined", "e0026.r00004": "ingested"}
    assert "adler32 check failed" in registry.get(ExpRun(26, 2)).reason
    assert "missing" in registry.get(ExpRun(26, 3)).reason

    # The UI shows the status and the exact reason on the materialisation and on the failed check.
    metadata = _latest_materialization(dagster_instance, "e0026.r00002").metadata
    assert metadata["status"].value == "quarantined"
    assert "cdst.physics.0026.00002" in metadata["quarantine_reason"].value
    assert metadata["events/hlt_bhabha"].value > 0
    assert _latest_materialization(dagster_instance, "e0026.r00001").metadata["status"].value == "ingested"
    check_records = dagster_instance.event_log_storage.get_asset_check_execution_history(
        check_key=AssetCheckKey(AssetKey("raw_run"), "files_verified"), limit=10
    )
    assert sorted(r.status.value for r in check_records).count("FAILED") == 2


def test_a_run_is_never_ingested_twice_across_restarts(tmp_path, deployment):
    dagster_instance, database_url = deployment
    incoming = tmp_path / "incoming"
    generate(incoming, runs=2, events_per_run=300)
    defs = build_definitions(incoming_root=str(incoming), database_url=database_url)
    cursors = CursorFile(tmp_path / "cursors.json")
    _ingest_all(defs, dagster_instance, cursors)
    # "Restart" with the cursor lost: the sensor re-reads the journal, the run keys dedupe.
    (tmp_path / "cursors.json").unlink()
    replay = _ingest_all(defs, dagster_instance, cursors)
    assert replay[0].requested == 2 and replay[0].duplicates == 2 and replay[0].launched == []
    assert len(dagster_instance.get_runs()) == 2


def test_rematerialising_a_repaired_run_clears_its_quarantine(tmp_path, deployment):
    dagster_instance, sqlite_url = deployment
    incoming = tmp_path / "incoming"
    generate(incoming, runs=1, events_per_run=300, faults=["corrupt-file:1"])
    defs = build_definitions(incoming_root=str(incoming), database_url=sqlite_url)
    _ingest_all(defs, dagster_instance, CursorFile(tmp_path / "cursors.json"))
    assert platform_database(sqlite_url).runs().get(ExpRun(26, 1)).quarantined
    # The operator re-transfers the file (regenerated here) and re-materialises from the UI.
    generate(incoming, runs=1, events_per_run=300)
    job = defs.resolve_job_def("ingest_raw_runs")
    result = job.execute_in_process(instance=dagster_instance, partition_key="e0026.r00001", raise_on_error=False)
    assert result.success
    assert not platform_database(sqlite_url).runs().get(ExpRun(26, 1)).quarantined
