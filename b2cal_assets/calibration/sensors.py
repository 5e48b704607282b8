"""The bucket scheduler: assigns ingested runs to buckets and launches collectors and calibrations.

One sensor, running by default. Each tick:
1. reads the runs ingested since its cursor from the run registry (O(new runs)) and puts the
   good ones into the open bucket of their experiment, closing buckets by policy;
2. for every *active* bucket (open, or closed with calibrations due; never the finished
   history) asks ``plan_bucket`` for the ready steps and requests them: each calibration's
   collectors over partition ranges bucket|first run .. bucket|last run (one range per core
   for a large bucket, ``collector_batches``; never one run per run), then the calibrations whose
   collectors are complete and whose upstream calibrations are up to date.
   Every request is one calibration's step, run in the run worker's own process: a second
   calibration of the same wave is a second run beside it, not a step process the run worker
   spawns (a new interpreter importing the code location, then 10 s of the executor's wind-down
   for a 2-step collector run on the loaded stack).
Run keys carry the bucket version, so a step is launched once per version of its bucket: a new
run in an open bucket, or its closing, makes the calibrations due again, in dependency order.
A bucket with a scheduler run of an older version still queued or running is not planned
again until that run ends (its new runs are assigned all the same): previews of an open bucket
coalesce onto its newest version instead of queueing one wave per arriving run, and a closed
bucket's final steps never race an older version's results. When the bucket closes, its
previews still queued or running are cancelled (``cancel_superseded_runs``), so the final steps
start seconds later instead of after them. Runs of the current version hold only their own
calibration (``judge_in_flight``): CollisionEnergy starts once BeamSpot is done while
CDCTimeZero still calibrates.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import json
from datetime import timedelta

from dagster import (
    AssetSelection,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    MultiPartitionKey,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.tags import (  # Private: the tags of a run over a partition range, not exported
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_shared.check import CheckError

from b2cal_assets import config
from b2cal_assets.calibration.assets import calibration_key, collector_key
from b2cal_assets.calibration.bucket_store import CandidateRun
from b2cal_assets.calibration.framework.buckets import (
    BucketPolicy,
    InFlightRun,
    collector_batches,
    contiguous_segments,
    judge_in_flight,
    plan_bucket,
    upstream_version,
)
from b2cal_assets.calibration.framework.contract import Calibration
from b2cal_assets.calibration.framework.settings import topological_order
from b2cal_assets.calibration.partitions import BUCKET_DIMENSION, RUN_DIMENSION, bucket_partitions
from b2cal_assets.operations.executors import single_process_run_config
from b2cal_assets.operations.pacing import HANDOFF_SENSOR_INTERVAL_SECONDS
from b2cal_assets.resources import BucketPolicyResource, PlatformDatabaseResource
from b2cal_assets.runs.partitions import RUN_PARTITIONS_NAME

BUCKET_SENSOR_NAME = "calibration_buckets"
BUCKET_TAG = "b2cal/bucket"
VERSION_TAG = "b2cal/bucket_version"
CALIBRATION_TAG = "b2cal/calibration"
SENSOR_NAME_TAG = "dagster/sensor_name"
# Not NOT_STARTED: a run the daemon created but never submitted (killed in between) must not block its bucket forever.
IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def scheduler_runs_in_flight(instance: DagsterInstance, bucket: str) -> list[DagsterRun]:
    """The runs this sensor requested for ``bucket`` still queued or running (one indexed tag query)."""
    return list(instance.get_runs(RunsFilter(tags={SENSOR_NAME_TAG: BUCKET_SENSOR_NAME, BUCKET_TAG: bucket}, statuses=IN_FLIGHT)))


def cancel_superseded_runs(context: SensorEvaluationContext, bucket: str, version: str, in_flight: list[DagsterRun]) -> list[str]:
    """Cancel the bucket's queued or running scheduler runs of an older version; their run ids.

    Once a bucket closes, its open-bucket previews still in the queue or running compute results
    nobody will use, and its final steps wait for them (``judge_in_flight``). Cancelled, the
    closed version is planned once they have stopped, seconds later. A preview collector's runs
    finished before the cancel keep their outputs (each run's output is recorded as it is
    written), so only the unfinished part is computed again. A run still starting is left to
    start and cancelled on a later tick; one that will not stop is marked cancelled by run
    monitoring (dagster.yaml) and no longer holds its bucket.
    """
    cancelled = []
    for run in in_flight:
        old = run.tags.get(VERSION_TAG)
        if old == version or run.status not in (DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED):
            continue
        try:
            context.instance.run_coordinator.cancel_run(run.run_id)
        except CheckError as error:  # a run launcher that cannot terminate runs (in-process instances)
            context.log.warning(f"bucket {bucket} closed: run {run.run_id} of version {old} cannot be cancelled ({error}); its final steps wait for it")
            continue
        cancelled.append(run.run_id)
        context.log.info(f"bucket {bucket} closed (version {version}): cancelled run {run.run_id} of version {old}")
    return cancelled


def _partition_key(bucket: str, run: str) -> str:
    return str(MultiPartitionKey({BUCKET_DIMENSION: bucket, RUN_DIMENSION: run}))


def _step_tags(bucket: str, step: str, version: object, calibration: Calibration) -> dict[str, str]:
    return {BUCKET_TAG: bucket, "b2cal/step": step, VERSION_TAG: str(version), CALIBRATION_TAG: calibration.name,
            "b2cal/subsystem": calibration.settings.subsystem}


def build_bucket_scheduler_sensor(
    calibrations: dict[str, Calibration],
    *,
    minimum_interval_seconds: int = HANDOFF_SENSOR_INTERVAL_SECONDS,
    max_new_runs_per_tick: int = 1000,
    collector_runs_per_wave: int | None = None,
) -> SensorDefinition:
    """``collector_runs_per_wave``: at most this many collector runs per wave of a bucket
    (default ``B2CAL_COLLECTOR_RUNS_PER_WAVE``, read from the deployment when the code location loads)."""
    parallel_runs = collector_runs_per_wave if collector_runs_per_wave is not None else config.collector_runs_per_wave()
    ordered = topological_order([c.settings for c in calibrations.values()])
    keys = [collector_key(c) for c in calibrations.values()] + [calibration_key(c) for c in calibrations.values()]

    @sensor(
        name=BUCKET_SENSOR_NAME,
        asset_selection=AssetSelection.assets(*keys),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Assigns ingested runs to buckets (closing them by policy) and launches each bucket's "
        "collectors and calibrations in dependency order when a run lands in an open bucket or the bucket closes.",
    )
    def calibration_buckets(
        context: SensorEvaluationContext, platform_db: PlatformDatabaseResource, bucket_policy: BucketPolicyResource
    ):  # type: ignore[no-untyped-def]
        cursor = json.loads(context.cursor) if context.cursor else {}
        policy = BucketPolicy(
            max_runs=bucket_policy.max_runs,
            max_luminosity_pb=bucket_policy.max_luminosity_pb,
            max_age=timedelta(hours=bucket_policy.max_age_hours) if bucket_policy.max_age_hours else None,
        )
        registry = platform_db.runs()
        store = platform_db.buckets()
        new_runs = registry.ingested_since(cursor.get("ingested_since"), max_new_runs_per_tick)
        report = store.assign(
            [CandidateRun(str(r.key), r.exp, r.run, r.integrated_luminosity_pb) for r in new_runs if not r.quarantined], policy
        )
        for run_key, bucket in report.assigned:
            context.log.info(f"run {run_key} -> bucket {bucket}")
        for bucket, reason in report.closed:
            context.log.info(f"bucket {bucket} closed: {reason}")
        for run_key in report.late:
            context.log.warning(f"run {run_key} arrived after its bucket closed; not added (recalibrate by hand if it matters)")
        requests = []
        run_positions: dict[str, int] | None = None
        for bucket in store.active_buckets():
            version = bucket.version
            in_flight = scheduler_runs_in_flight(context.instance, bucket.key)
            verdict = judge_in_flight(version, (InFlightRun(r.tags.get(VERSION_TAG, ""), r.tags.get(CALIBRATION_TAG)) for r in in_flight))
            if verdict.wait:
                if bucket.closed:
                    cancel_superseded_runs(context, bucket.key, str(version), in_flight)
                continue  # planned again once the older version's runs end (see the module docstring)
            calibrated = store.calibrated_versions(bucket.key)
            outputs = store.collector_outputs(bucket.key)
            collected = {}
            for settings in ordered:
                # A collector that read upstream payloads counts only if they are this version's.
                expected = upstream_version(settings, {d.name: version for d in settings.depends_on})
                collected[settings.name] = {
                    run for run, (_, upstream) in outputs.get(settings.name, {}).items() if upstream == expected
                }
            plan = plan_bucket(ordered, store.runs_of(bucket.key), version, collected, calibrated)
            if plan.idle and not plan.waiting and not verdict.busy and bucket.closed:
                store.mark_finished(bucket.key, version)
                context.log.info(f"bucket {bucket.key}: every calibration is up to date with the closed bucket")
                continue
            runs_to_collect: dict[str, list[str]] = {}
            for step in plan.collect:
                for name in step.calibrations:
                    runs_to_collect.setdefault(name, []).append(step.run_key)
            for name, run_keys in runs_to_collect.items():
                if name in verdict.busy:
                    continue  # its collectors are running: their outputs count on a later tick
                if run_positions is None and len(run_keys) > 1:
                    # Dagster ranges follow the order of the run partition set (read in full, so only
                    # when several runs of a bucket are due at once: a closing or a new wave).
                    run_positions = {key: i for i, key in enumerate(context.instance.get_dynamic_partitions(RUN_PARTITIONS_NAME))}
                settings = calibrations[name].settings
                upstream = upstream_version(settings, {d.name: version for d in settings.depends_on})
                for batch in collector_batches(contiguous_segments(run_keys, run_positions or {}), parallel_runs):
                    first, last = _partition_key(bucket.key, batch[0]), _partition_key(bucket.key, batch[-1])
                    requests.append(
                        RunRequest(
                            run_key=f"collect:{bucket.key}:{batch[0]}..{batch[-1]}:{name}:{upstream}",
                            asset_selection=[collector_key(calibrations[name])],
                            tags={**_step_tags(bucket.key, "collect", version, calibrations[name]),
                                  ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                            run_config=single_process_run_config(),
                        )
                    )
            for name in plan.calibrate.calibrations if plan.calibrate else ():
                if name in verdict.busy:
                    continue
                requests.append(
                    RunRequest(
                        run_key=f"calibrate:{bucket.key}:{version}:{name}",
                        partition_key=bucket.key,
                        asset_selection=[calibration_key(calibrations[name])],
                        run_config=single_process_run_config(),  # the calibration then its checks: sequential anyway
                        tags=_step_tags(bucket.key, "calibrate", version, calibrations[name]),
                    )
                )
        new_cursor = json.dumps({"ingested_since": new_runs[-1].ingested_at if new_runs else cursor.get("ingested_since")})
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[bucket_partitions.build_add_request(report.opened)] if report.opened else [],
            cursor=new_cursor,
        )

    return calibration_buckets
