"""The platform's automations ticked as dagster-daemon ticks them (issue 17).

The code location is ``b2cal_assets.definitions``, served by a real gRPC code server as the
daemon starts it; the instance has run retries on as the shipped dagster.yaml has them.
Ticks go through the daemon's own iteration functions (``launch_scheduled_runs``,
``execute_sensor_iteration``, ``consume_new_runs_for_automatic_reexecution``; private Dagster
APIs: a move breaks these tests at import, which is the signal to follow them). Schedule
ticks are given their times explicitly, so several 10-minute ticks take seconds, not minutes.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.events import RunFailureReason
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import RETRY_ON_ASSET_OR_OP_FAILURE_TAG, RUN_FAILURE_REASON_TAG, WILL_RETRY_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._scheduler.scheduler import launch_scheduled_runs

from b2cal_assets.accounts.sources import NOT_CONFIGURED
from b2cal_assets.database import dispose_engine, platform_database
from b2cal_assets_tests.accounts.registries import baseline

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).with_name("data")
SCHEDULE = "dirac_accounts_every_10_minutes"
JOB = "dirac_accounts_sync"
log = logging.getLogger("b2cal.test.daemon")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh deployment environment with no accounts source, inherited by the code server."""
    for name in ("DIRACX_URL", "DIRACX_CREDENTIALS_PATH", "DIRACX_CA_PATH", "B2CAL_ACCOUNTS_REGISTRY_YAML", "B2CAL_DIRAC_VO"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "incoming").mkdir()
    url = f"sqlite:///{tmp_path / 'b2cal.sqlite'}"
    settings = {"B2CAL_HOME": str(tmp_path / "state"), "B2CAL_DATABASE_URL": url, "B2CAL_INCOMING": str(tmp_path / "incoming"),
                "B2CAL_EXECUTOR": "in_process"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    yield settings
    dispose_engine(url)


def _shipped_run_retries() -> dict:
    return {"run_retries": yaml.safe_load((REPO / "dagster.yaml").read_text())["run_retries"]}


def _workspace(instance: DagsterInstance):  # type: ignore[no-untyped-def]
    target = ModuleTarget(module_name="b2cal_assets.definitions", attribute=None, working_directory=str(REPO),
                          location_name="b2cal")
    return create_test_daemon_workspace_context(target, instance)


def _schedule_ticks(context: WorkspaceProcessContext, start: datetime.datetime, ticks: int) -> None:
    """``ticks`` schedule iterations 10 minutes apart, from ``start`` (the first only registers the schedule)."""
    iteration_times: dict = {}
    for step in range(ticks + 1):
        end = start + datetime.timedelta(minutes=10 * step, seconds=1)
        list(launch_scheduled_runs(context, log, end_datetime_utc=end, iteration_times=iteration_times))


def _next_ten_minutes() -> datetime.datetime:
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    return now + datetime.timedelta(minutes=10 - now.minute % 10)


def _run_queue_until_finished(context: WorkspaceProcessContext, deadline_s: float = 240) -> list:
    """Dequeue and launch queued runs as the daemon's run queue does, until every run has finished."""
    instance = context.instance
    until = time.monotonic() + deadline_s
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as queue:
        while time.monotonic() < until:
            list(queue.run_iteration(context))
            runs = instance.get_runs()
            if all(run.is_finished for run in runs):
                return runs
            time.sleep(0.5)
    raise AssertionError(f"runs not finished in {deadline_s} s: {[(r.run_id, r.status) for r in instance.get_runs()]}")


def _errors(instance: DagsterInstance, run_id: str) -> list[str]:
    """What a run's failure events say, for assertion messages."""
    return [str(entry.dagster_event.event_specific_data) for entry in instance.all_logs(run_id)
            if entry.dagster_event is not None and entry.dagster_event.is_failure]


def _schedule_ticks_of(instance: DagsterInstance) -> list:
    (state,) = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE) if s.instigator_name == SCHEDULE]
    return instance.get_ticks(state.instigator_origin_id, state.selector_id)


def test_without_a_source_no_schedule_or_sensor_launches_a_failing_run(site) -> None:
    with instance_for_test(overrides=_shipped_run_retries()) as instance, _workspace(instance) as context:
        _schedule_ticks(context, _next_ten_minutes(), ticks=4)
        list(execute_sensor_iteration(context, log, None, None))

        ticks = _schedule_ticks_of(instance)
        assert len(ticks) == 4
        assert {tick.status for tick in ticks} == {TickStatus.SKIPPED}
        assert {tick.skip_reason for tick in ticks} == {NOT_CONFIGURED}
        sensor_ticks = {
            state.instigator_name: [t.status for t in instance.get_ticks(state.instigator_origin_id, state.selector_id)]
            for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        }
        assert set(sensor_ticks) == {"new_run_files", "calibration_buckets", "validation_reports", "validation_notifications"}
        assert all(statuses and TickStatus.FAILURE not in statuses for statuses in sensor_ticks.values()), sensor_ticks
        runs = _run_queue_until_finished(context)
        assert [r for r in runs if r.status is DagsterRunStatus.FAILURE] == []
        assert instance.get_runs(RunsFilter(job_name=JOB)) == []


def test_with_a_registry_file_the_schedule_syncs(site, monkeypatch) -> None:
    monkeypatch.setenv("B2CAL_ACCOUNTS_REGISTRY_YAML", str(DATA / "registry.yml"))
    with instance_for_test(overrides=_shipped_run_retries()) as instance, _workspace(instance) as context:
        _schedule_ticks(context, _next_ten_minutes(), ticks=1)

        (run,) = _run_queue_until_finished(context)
        assert run.job_name == JOB and run.status is DagsterRunStatus.SUCCESS, _errors(instance, run.run_id)
        assert [t.status for t in _schedule_ticks_of(instance)] == [TickStatus.SUCCESS]
    store = platform_database(site["B2CAL_DATABASE_URL"]).accounts()
    assert store.status().source == f"file:{(DATA / 'registry.yml').resolve()}#belle"
    assert store.lookup_username("alice") is not None


@pytest.mark.slow
def test_with_diracx_the_schedule_syncs(site, monkeypatch, diracx_server, diracx_credentials, publish) -> None:
    users, groups = baseline()
    etag = publish(users, groups, "baseline")
    monkeypatch.setenv("DIRACX_URL", diracx_server.url)
    monkeypatch.setenv("DIRACX_CREDENTIALS_PATH", str(diracx_credentials))
    with instance_for_test(overrides=_shipped_run_retries()) as instance, _workspace(instance) as context:
        _schedule_ticks(context, _next_ten_minutes(), ticks=1)

        (run,) = _run_queue_until_finished(context)
        assert run.status is DagsterRunStatus.SUCCESS, _errors(instance, run.run_id)
    status = platform_database(site["B2CAL_DATABASE_URL"]).accounts().status()
    assert (status.source, status.etag) == (f"diracx:{diracx_server.url.rstrip('/')}#belle", etag)


def test_a_failed_sync_is_not_retried_by_run_retries(site, monkeypatch, tmp_path) -> None:
    # A source that is configured but cannot work (nothing listens there): every tick's run fails.
    from b2cal_assets_tests.accounts.diracx_server import free_port

    credentials = tmp_path / "credentials.json"
    credentials.write_text("{}")
    monkeypatch.setenv("DIRACX_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("DIRACX_CREDENTIALS_PATH", str(credentials))
    with instance_for_test(overrides=_shipped_run_retries()) as instance, _workspace(instance) as context:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        _schedule_ticks(context, _next_ten_minutes(), ticks=1)
        (failed,) = _run_queue_until_finished(context)
        assert failed.status is DagsterRunStatus.FAILURE
        assert failed.tags[RUN_FAILURE_REASON_TAG] == RunFailureReason.STEP_FAILURE.value

        # The daemon's retry pass over the failed run launches nothing.
        records = instance.get_run_records(RunsFilter(run_ids=[failed.run_id]))
        list(consume_new_runs_for_automatic_reexecution(context, records, log))

        assert instance.get_run_by_id(failed.run_id).tags[WILL_RETRY_TAG] == "false"
        assert [r.run_id for r in instance.get_runs()] == [failed.run_id]
        # Control: the same failed run without the job's tag is one this instance retries.
        untagged = failed.with_tags({k: v for k, v in failed.tags.items() if k != RETRY_ON_ASSET_OR_OP_FAILURE_TAG})
        assert failed.tags[RETRY_ON_ASSET_OR_OP_FAILURE_TAG] == "false"
        assert auto_reexecution_should_retry_run(instance, untagged, RunFailureReason.STEP_FAILURE)
        assert platform_database(site["B2CAL_DATABASE_URL"]).accounts().status().last_error_reason == "server_unavailable"
