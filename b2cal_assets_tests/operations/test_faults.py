"""Faults proved on real processes: the daemon killed mid-ingest, PostgreSQL restarted mid-calibration."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.registry import RunRegistry
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME
from b2cal_assets_tests.operations.processes import group_alive, start, stop, wait_for

REPO = Path(__file__).resolve().parents[2]
N_RUNS = 8


def _ingested(url: str) -> int:
    return len(RunRegistry(url).query(include_quarantined=True))


@pytest.mark.slow
def test_daemon_killed_mid_ingest_and_restarted_misses_no_run_and_ingests_none_twice(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    incoming = tmp_path / "incoming"
    generate(incoming, runs=N_RUNS, events_per_run=200, events_per_file=200, seed=3)
    url = f"sqlite:///{tmp_path / 'b2cal.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B2CAL_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), B2CAL_HOME=str(tmp_path / "state"), B2CAL_INCOMING=str(incoming),
               B2CAL_DATABASE_URL=url, PYTHONPATH=str(REPO))
    args = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "b2cal_assets_tests.operations.ingest_location"]
    daemons = [start(args, tmp_path / "daemon-1.log", env=env, cwd=REPO)]
    try:
        # Kill -9 once some runs are ingested and others are not yet: mid-ingest.
        wait_for(lambda: _ingested(url) >= 1, "the first run to be ingested", deadline_s=300)
        os.kill(daemons[0].pid, signal.SIGKILL)
        daemons[0].wait(30)
        done_at_kill = _ingested(url)
        assert done_at_kill < N_RUNS, "every run was ingested before the kill; nothing was proved"
        daemons.append(start(args, tmp_path / "daemon-2.log", env=env, cwd=REPO))

        with DagsterInstance.from_config(str(home)) as instance:
            def all_runs_finished() -> bool:
                runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": NEW_RUN_SENSOR_NAME}))
                finished = [r for r in runs if r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)]
                return _ingested(url) == N_RUNS and len(finished) == len(runs)

            wait_for(all_runs_finished, f"all {N_RUNS} runs ingested after the restart", deadline_s=300)
            runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": NEW_RUN_SENSOR_NAME}))
            partitions = collections.Counter(r.tags["dagster/partition"] for r in runs)
            run_keys = collections.Counter(r.tags["dagster/run_key"] for r in runs)
            statuses = collections.Counter(r.status for r in runs)
    finally:
        for daemon in daemons:
            stop(daemon, signal.SIGKILL)  # by its own pid: the group of each daemon, with its code server and run workers
    registry = RunRegistry(url).query(include_quarantined=True)
    assert sorted(r.run for r in registry) == list(range(1, N_RUNS + 1))  # none missed
    assert all(count == 1 for count in partitions.values()) and len(partitions) == N_RUNS  # none launched twice
    assert all(count == 1 for count in run_keys.values())
    assert statuses == {DagsterRunStatus.SUCCESS: N_RUNS}
    for daemon in daemons:
        assert not group_alive(daemon.pid)
