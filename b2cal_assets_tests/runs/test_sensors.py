"""The new-run sensor, evaluated with build_sensor_context as the daemon would."""

import json
import logging
import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from dagster import SensorResult, build_sensor_context

from b2cal_assets.definitions import build_definitions
from b2cal_assets.runs.discovery import DiscoveryCursor, InvalidCursorError, discover
from b2cal_assets.runs.journal import append_arrival
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME, build_new_run_sensor


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _tick(incoming, cursor=None, instance=None, sensor=None):
    """One evaluation; returns the result and the messages the sensor logged."""
    defs = build_definitions(incoming_root=str(incoming), database_url="sqlite://")
    sensor = sensor or defs.resolve_sensor_def(NEW_RUN_SENSOR_NAME)
    collected = _Collect()
    with build_sensor_context(instance=instance, cursor=cursor, resources=dict(defs.resources)) as context:
        context.log.addHandler(collected)
        return sensor(context), collected.messages


def _requested(result):
    return [r.partition_key for r in result.run_requests] if isinstance(result, SensorResult) and result.run_requests else []


def test_new_runs_are_requested_with_partitions_and_run_keys(incoming):
    result, _ = _tick(incoming)
    assert _requested(result) == ["e0026.r00001", "e0026.r00002", "e0026.r00003"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["e0026.r00001", "e0026.r00002", "e0026.r00003"]
    run_keys = [r.run_key for r in result.run_requests]
    assert all(key.startswith("e0026.r0000") and "@" in key for key in run_keys)
    assert result.run_requests[0].tags["b2cal/record_path"] == "e0026/4S/r00001/runinfo.0026.00001.json"
    # Ingestion is dequeued before queued calibration work: everything downstream waits for it.
    assert {r.tags["dagster/priority"] for r in result.run_requests} == {"1"}


def test_second_tick_with_cursor_requests_nothing(incoming):
    first, _ = _tick(incoming)
    second, _ = _tick(incoming, cursor=first.cursor)
    assert _requested(second) == []
    assert "no new complete runs" in second.skip_reason.skip_message


def test_partial_run_without_record_is_not_requested(incoming):
    shutil.copytree(incoming / "e0026/4S/r00003", incoming / "e0026/4S/r00004")
    (incoming / "e0026/4S/r00004/runinfo.0026.00003.json").unlink()  # files arrived, record not yet
    result, _ = _tick(incoming)
    assert "e0026.r00004" not in _requested(result)


def test_restart_with_persisted_cursor_sees_only_later_runs(incoming):
    first, _ = _tick(incoming)
    from b2cal_assets.runs.generator import generate

    generate(incoming, first_run=4, runs=1, events_per_run=200, seed=7)
    # A restarted daemon evaluates the sensor afresh with the stored cursor string.
    second, _ = _tick(incoming, cursor=json.loads(json.dumps(first.cursor)))
    assert _requested(second) == ["e0026.r00004"]


def test_replayed_tick_after_lost_cursor_yields_the_same_run_keys(incoming):
    first, _ = _tick(incoming)
    replay, _ = _tick(incoming, cursor=None)
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in replay.run_requests]


def test_duplicate_journal_entry_is_requested_once(incoming):
    append_arrival(incoming, "e0026/4S/r00002/runinfo.0026.00002.json")
    result, _ = _tick(incoming)
    assert _requested(result).count("e0026.r00002") == 1


def test_corrected_record_gets_a_new_run_key(incoming):
    first, _ = _tick(incoming)
    path = incoming / "e0026/4S/r00002/runinfo.0026.00002.json"
    data = json.loads(path.read_text())
    data["data_quality"] = "Recoverable"
    path.write_text(json.dumps(data))
    append_arrival(incoming, "e0026/4S/r00002/runinfo.0026.00002.json")
    second, _ = _tick(incoming, cursor=first.cursor)
    old = {r.run_key for r in first.run_requests}
    assert len(second.run_requests) == 1 and second.run_requests[0].run_key not in old


def test_garbled_record_is_reported_once_and_skipped(incoming):
    (incoming / "e0026/4S/r00002/runinfo.0026.00002.json").write_text('{"exp": 26, "run": ')
    result, messages = _tick(incoming)
    assert _requested(result) == ["e0026.r00001", "e0026.r00003"]
    assert sum("garbled-record" in m and "not valid JSON" in m for m in messages) == 1
    _, later = _tick(incoming, cursor=result.cursor)
    assert not any("garbled-record" in m for m in later)


def test_record_listing_missing_or_non_root_files_is_reported_and_sent_to_quarantine(incoming):
    from b2cal_assets.runs.records import read_record

    record = read_record(incoming / "e0026/4S/r00001/runinfo.0026.00001.json")
    (incoming / record.files[0].path).unlink()
    (incoming / record.files[1].path).write_text("not root")
    result, logged = _tick(incoming)
    assert "e0026.r00001" in _requested(result)
    messages = [m for m in logged if "file-problem" in m]
    assert len(messages) == 2
    assert any("missing" in m for m in messages) and any("not a ROOT file" in m for m in messages)


def test_unreadable_record_is_retried_silently_then_given_up(incoming):
    path = "e0026/4S/r00002/runinfo.0026.00002.json"
    moved = incoming / "hidden.json"
    (incoming / path).rename(moved)  # the record is journalled but not readable yet
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    first = discover(incoming, DiscoveryCursor(), max_runs=100, now=t0)
    assert [r.kind for r in first.reports] == ["unreadable-record"]
    assert path in first.cursor.retry
    second = discover(incoming, first.cursor, max_runs=100, now=t0 + timedelta(hours=1))
    assert second.reports == [] and second.ready == []
    moved.rename(incoming / path)
    third = discover(incoming, second.cursor, max_runs=100, now=t0 + timedelta(hours=2))
    assert [str(r.key) for r in third.ready] == ["e0026.r00002"] and third.cursor.retry == {}
    (incoming / path).rename(moved)
    fourth = discover(incoming, first.cursor, max_runs=100, now=t0 + timedelta(days=2))
    assert [r.kind for r in fourth.reports if r.where == path] == ["gave-up"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable directories")
def test_unreadable_directory_does_not_crash_the_sensor(incoming):
    directory = incoming / "e0026/4S/r00002"
    os.chmod(directory, 0)
    try:
        result = discover(incoming, DiscoveryCursor(), max_runs=100)
    finally:
        os.chmod(directory, 0o755)
    assert [r.kind for r in result.reports] == ["unreadable-record"]


def test_permission_denied_record_is_reported_as_unreadable(incoming, monkeypatch):
    # As root, chmod cannot make a file unreadable: make reading it refuse instead.
    from pathlib import Path

    real_read_text = Path.read_text
    target = incoming / "e0026/4S/r00003/runinfo.0026.00003.json"

    def refusing_read_text(self, *args, **kwargs):
        if self == target:
            raise PermissionError(13, "Permission denied", str(target))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refusing_read_text)
    result = discover(incoming, DiscoveryCursor(), max_runs=100)
    assert [(r.kind, "Permission denied" in r.reason) for r in result.reports] == [("unreadable-record", True)]
    assert [str(r.key) for r in result.ready] == ["e0026.r00001", "e0026.r00002"]


def test_record_whose_content_names_another_run_is_garbled(incoming):
    source = incoming / "e0026/4S/r00001/runinfo.0026.00001.json"
    target = incoming / "e0026/4S/r00001/runinfo.0026.00009.json"
    shutil.copy(source, target)
    append_arrival(incoming, "e0026/4S/r00001/runinfo.0026.00009.json")
    result = discover(incoming, DiscoveryCursor(), max_runs=100)
    assert any(r.kind == "garbled-record" and "describes run e0026.r00001" in r.reason for r in result.reports)


def test_ten_thousand_new_runs_are_requested_in_batches(tmp_path):
    template = None
    from b2cal_assets.runs.generator import generate

    generate(tmp_path, runs=1, events_per_run=30, events_per_file=30, seed=3)
    template = json.loads((tmp_path / "e0026/4S/r00001/runinfo.0026.00001.json").read_text())
    for run in range(2, 10_001):
        folder = tmp_path / f"e0026/4S/r{run:05d}"
        folder.mkdir(parents=True)
        record = dict(template, run=run)
        (folder / f"runinfo.0026.{run:05d}.json").write_text(json.dumps(record))
        append_arrival(tmp_path, f"e0026/4S/r{run:05d}/runinfo.0026.{run:05d}.json")
    sensor = build_new_run_sensor("ingest_raw_runs", max_runs_per_tick=2_500)
    cursor, seen, ticks = None, [], 0
    while True:
        result, _ = _tick(tmp_path, cursor=cursor, sensor=sensor)
        ticks += 1
        cursor = result.cursor
        if not _requested(result):
            break
        assert len(result.run_requests) <= 2_500
        seen.extend(_requested(result))
    assert ticks == 5
    assert len(seen) == len(set(seen)) == 10_000


def test_bad_cursor_is_a_clear_error():
    with pytest.raises(InvalidCursorError, match="reset the sensor cursor"):
        DiscoveryCursor.from_json("not json")
