"""A bucket of ingested runs ready for its collectors, and running its collector requests on Celery.

Shared by the Celery tests and bench/bench_celery.py: the run requests are the ones the bucket
scheduler makes, executed as Dagster runs whose steps go to Celery workers.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, DagsterInstance, MultiPartitionKey, RunRequest, build_sensor_context, execute_job

from b2cal_assets.calibration.sensors import BUCKET_SENSOR_NAME
from b2cal_assets.definitions import build_definitions
from b2cal_assets.operations.celery_jobs import reconstructable_asset_job
from b2cal_assets.orchestration import CursorFile, run_sensor_tick
from b2cal_assets.resources import BucketPolicyResource
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME


@dataclass
class PreparedBucket:
    root: Path
    instance_home: Path
    requests: list[RunRequest]  # the scheduler's collector run requests (partition ranges of the bucket's runs)

    @property
    def locations(self) -> dict[str, str]:
        return {
            "incoming_root": str(self.root / "incoming"),
            "database_url": f"sqlite:///{self.root / 'b2cal.sqlite'}",
            "work_dir": str(self.root / "work"),
            "payload_dir": str(self.root / "payloads"),
        }


def prepare_bucket(root: Path, runs: int, events_per_run: int, seed: int = 5) -> PreparedBucket:
    """Generate and ingest ``runs`` runs, let the scheduler bucket them; return its collector requests."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    generate(root / "incoming", runs=runs, events_per_run=events_per_run, seed=seed)
    prepared = PreparedBucket(root, home, [])
    policy = BucketPolicyResource(max_runs=1000, max_luminosity_pb=None, max_age_hours=None)
    defs = build_definitions(**prepared.locations, bucket_policy=policy)
    instance = DagsterInstance.from_config(str(home))
    try:
        cursors = CursorFile(root / "cursors.json")
        while run_sensor_tick(defs, instance, NEW_RUN_SENSOR_NAME, cursors, log_level="ERROR").requested:
            pass
        sensor = defs.resolve_sensor_def(BUCKET_SENSOR_NAME)
        with build_sensor_context(instance=instance, resources=dict(defs.resources)) as context:
            result = sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    finally:
        instance.dispose()
    prepared.requests = [r for r in result.run_requests if r.tags.get("b2cal/step") == "collect"]
    return prepared


def partition_tags(key: MultiPartitionKey | None) -> dict[str, str]:
    """The tags the daemon puts on a run of one bucket x run partition (none for a range: its tags say it)."""
    if key is None:
        return {}
    tags = {"dagster/partition": str(key)}
    tags.update({f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()})
    return tags


def execute_collector_run(instance_home: str, broker: str, locations: dict[str, str], tags: dict[str, str], asset_paths: list[list[str]]) -> tuple[str, bool]:
    """One collector run request as a Dagster run on Celery, in this process; (run id, success)."""
    job = reconstructable_asset_job("b2cal_assets.operations.celery_jobs", "celery_definitions", broker=broker, **locations)
    with DagsterInstance.from_config(instance_home) as instance:
        result = execute_job(job, instance, tags=tags, asset_selection=[AssetKey(path) for path in asset_paths])
        return result.run_id, result.success


def run_collectors_on_celery(prepared: PreparedBucket, broker: str) -> list[tuple[str, bool]]:
    """Execute every collector request of the bucket as a Dagster run on Celery; (run id, success) each.

    The runs are submitted together, one process each, as the daemon launches runs side by side
    (Dagster's in-process execution is not thread-safe: its log set-up reconfigures logging), so
    all their steps queue on the broker at once.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(prepared.requests), mp_context=context) as pool:
        futures = [
            pool.submit(
                execute_collector_run, str(prepared.instance_home), broker, prepared.locations,
                {**request.tags, **partition_tags(request.partition_key)}, [list(key.path) for key in request.asset_selection],
            )
            for request in prepared.requests
        ]
        return [future.result() for future in futures]


def local_definitions(**locations: str):  # type: ignore[no-untyped-def]
    """The code location with the default (multiprocess) executor, for runs executed from tests."""
    from dagster import multiprocess_executor

    from b2cal_assets.operations.celery_jobs import build_operations_definitions

    return build_operations_definitions(multiprocess_executor, **locations)


def execute_local_run(instance_home: str, locations: dict[str, str], tags: dict[str, str], asset_paths: list[list[str]],
                      retry_of: str | None = None) -> tuple[str, bool]:
    """One run (or, with ``retry_of``, its re-execution from failure) on the multiprocess executor; (run id, success)."""
    from dagster import ReexecutionOptions

    job = reconstructable_asset_job("b2cal_assets_tests.operations.scaleout", "local_definitions", **locations)
    with DagsterInstance.from_config(instance_home) as instance:
        if retry_of:
            # Tags again: execute_job does not carry the parent's partition tags over.
            result = execute_job(job, instance, tags=tags, reexecution_options=ReexecutionOptions.from_failure(retry_of, instance))
        else:
            result = execute_job(job, instance, tags=tags, asset_selection=[AssetKey(path) for path in asset_paths])
        return result.run_id, result.success
