"""Collector steps on Celery workers (dagster-celery, RabbitMQ), and a worker lost mid-step."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from dagster import DagsterEventType, DagsterInstance, execute_job

from b2cal_assets.operations.celery_jobs import reconstructable_asset_job
from b2cal_assets.operations.executors import ExecutorConfigurationError, executor_from_environment
from b2cal_assets_tests.operations.processes import wait_for

# dagster-celery is an optional dependency (pyproject: dagster-celery==0.29.27); without it only Celery sites miss out.
pytest.importorskip("dagster_celery", reason="dagster-celery is not installed: pip install dagster-celery==0.29.27")
from b2cal_assets.database import platform_database
from b2cal_assets_tests.operations.scaleout import prepare_bucket, run_collectors_on_celery


def _celery_hosts_by_step(instance: DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """step key -> the Celery workers that started it (from dagster-celery's engine events)."""
    hosts: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        metadata = event.event_specific_data.metadata if event.event_specific_data else {}
        if "Celery worker" in metadata:
            hosts.setdefault(event.step_key, []).append(metadata["Celery worker"].value)
    return hosts


def test_executor_is_multiprocess_by_default_and_celery_when_configured():
    assert executor_from_environment({}).name == "multi_or_in_process_executor"  # multiprocess unless a run asks in_process
    celery = executor_from_environment({"B2CAL_EXECUTOR": "celery", "B2CAL_CELERY_BROKER": "pyamqp://u:p@h:5672/v"})
    assert celery.name == "b2cal_celery"
    with pytest.raises(ExecutorConfigurationError, match="B2CAL_EXECUTOR='kubernetes'"):
        executor_from_environment({"B2CAL_EXECUTOR": "kubernetes"})


@pytest.mark.slow
def test_two_celery_workers_run_a_buckets_collectors(tmp_path, celery_workers):
    prepared = prepare_bucket(tmp_path / "site", runs=3, events_per_run=1_500)
    # One collector run per calibration of the first wave, each over the bucket's runs (a partition range).
    assert sorted(key.path[-1] for r in prepared.requests for key in r.asset_selection) == ["BeamSpot_collector", "CDCTimeZero_collector"]
    celery_workers.env.update({"B2CAL_HOME": str(tmp_path / "state")})
    for name in ("w1", "w2"):
        celery_workers.start(name)
    celery_workers.wait_ready("w1", "w2")

    results = run_collectors_on_celery(prepared, celery_workers.broker)

    assert all(success for _, success in results), results
    store = platform_database(prepared.locations["database_url"]).buckets()
    bucket = store.buckets()[0].key
    outputs = store.collector_outputs(bucket)
    expected_runs = set(store.runs_of(bucket))
    assert len(expected_runs) == 3
    for request in prepared.requests:
        for key in request.asset_selection:
            assert set(outputs[key.path[-1].removesuffix("_collector")]) == expected_runs
    with DagsterInstance.from_config(str(prepared.instance_home)) as instance:
        hosts = set()
        for run_id, _ in results:
            by_step = _celery_hosts_by_step(instance, run_id)
            assert by_step and all(len(h) == 1 for h in by_step.values())  # each step ran once, on a worker
            hosts |= {h[0].split("@")[0] for h in by_step.values()}
    assert hosts == {"w1", "w2"}  # both workers took steps


@pytest.mark.slow
def test_worker_killed_mid_step_the_step_is_retried_on_another_worker(tmp_path, celery_workers):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    attempts = tmp_path / "attempts"
    first = celery_workers.start("w1")
    second = celery_workers.start("w2")
    celery_workers.wait_ready("w1", "w2")
    job = reconstructable_asset_job(
        "b2cal_assets_tests.operations.gated", "gated_definitions", broker=celery_workers.broker, attempts_dir=str(attempts)
    )
    outcome: dict = {}

    def run() -> None:
        with DagsterInstance.from_config(str(home)) as instance:
            result = execute_job(job, instance)
            outcome.update(run_id=result.run_id, success=result.success)

    orchestrator = threading.Thread(target=run)
    orchestrator.start()
    try:
        wait_for(lambda: attempts.exists() and any(attempts.iterdir()), "the step's first attempt to start")
        (first_attempt,) = list(attempts.iterdir())
        busy_pid = int(first_attempt.name.split("-")[1])
        assert busy_pid in {first.pid, second.pid}  # --pool solo: the step runs in the worker process
        survivor = second if busy_pid == first.pid else first
        os.kill(busy_pid, signal.SIGKILL)  # the worker dies mid-step, its task unacknowledged
    finally:
        orchestrator.join()

    assert outcome["success"]
    pids = sorted(int(p.name.split("-")[1]) for p in sorted(attempts.iterdir()))
    assert sorted(p.name.split("-")[0] for p in attempts.iterdir()) == ["1", "2"]  # retried exactly once
    assert set(pids) == {busy_pid, survivor.pid}  # the retry ran on the other worker
    with DagsterInstance.from_config(str(home)) as instance:
        assert [run.run_id for run in instance.get_runs()] == [outcome["run_id"]]
        assert len(instance.all_logs(outcome["run_id"], of_type=DagsterEventType.STEP_SUCCESS)) == 1  # one success, no duplicate
