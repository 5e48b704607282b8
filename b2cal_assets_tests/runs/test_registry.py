from b2cal_assets.database import platform_database
from b2cal_assets.run_identity import ExpRun
from b2cal_assets.runs.registry import STATUS_INGESTED, STATUS_QUARANTINED, RegisteredRun


def _run(run, status=STATUS_INGESTED, quality="Good", tags=("bhabha_all_calib",), exp=26):
    return RegisteredRun(
        exp=exp, run=run, status=status, reason="" if status == STATUS_INGESTED else "adler32", run_type="physics",
        beam_energy="4S", magnet="On", data_quality=quality, data_tags=tags, integrated_luminosity_pb=50.0,
        start_time="2026-01-01T00:00:00+00:00", end_time="2026-01-01T01:00:00+00:00", her_energy_gev=7.0,
        ler_energy_gev=4.0, events_per_stream={"hlt_bhabha": 10}, files=({"path": "a.root", "stream": "hlt_bhabha", "events": 10, "size": 1},),
    )


def test_registry_queries_by_range_tag_quality_and_status(database_url):
    registry = platform_database(database_url).runs()
    registry.record_run(_run(1))
    registry.record_run(_run(2, quality="Recoverable", tags=("hadron_calib", "bhabha_all_calib")))
    registry.record_run(_run(3, status=STATUS_QUARANTINED))
    registry.record_run(_run(1, exp=27))
    assert [r.run for r in registry.query(exp=26, first_run=2)] == [2, 3]
    assert [r.run for r in registry.query(exp=26, data_tag="hadron_calib")] == [2]
    assert [r.run for r in registry.query(exp=26, data_quality=["Good"])] == [1, 3]
    assert [r.run for r in registry.query(exp=26, include_quarantined=False)] == [1, 2]
    assert registry.get(ExpRun(26, 3)).quarantined
    assert registry.get(ExpRun(26, 2)).data_tags == ("bhabha_all_calib", "hadron_calib")
    assert registry.counts() == {STATUS_INGESTED: 3, STATUS_QUARANTINED: 1}


def test_reingesting_a_run_replaces_its_row_and_tags(database_url):
    registry = platform_database(database_url).runs()
    registry.record_run(_run(5, status=STATUS_QUARANTINED, tags=("a",)))
    registry.record_run(_run(5, tags=("b",)))
    run = registry.get(ExpRun(26, 5))
    assert not run.quarantined and run.data_tags == ("b",)
    assert len(registry.query()) == 1
    assert registry.get(ExpRun(26, 6)) is None
