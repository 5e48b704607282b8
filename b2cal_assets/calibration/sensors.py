"""The bucket scheduler: assigns ingested runs to buckets and launches collectors and calibrations.

One sensor, running by default. Each tick:
1. reads the runs ingested since its cursor from the run registry (O(new runs)) and puts the
   good ones into the open bucket of their experiment, closing buckets by policy;
2. for every *active* bucket (open, or closed with calibrations due; never the finished
   history) asks ``plan_bucket`` for the ready steps and requests them: the collectors of a run
   (one run request per run, partition bucket|run), then the calibrations whose collectors are
   complete and whose upstream calibrations are up to date (one run request per bucket).
Run keys carry the bucket version, so a step is launched once per version of its bucket: a new
run in an open bucket, or its closing, makes the calibrations due again, in dependency order.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import json
from datetime import timedelta

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    MultiPartitionKey,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from b2cal_assets.calibration.assets import calibration_key, collector_key
from b2cal_assets.calibration.bucket_store import CandidateRun
from b2cal_assets.calibration.buckets import BucketPolicy, plan_bucket, upstream_version
from b2cal_assets.calibration.partitions import BUCKET_DIMENSION, RUN_DIMENSION, bucket_partitions
from b2cal_assets.calibration.settings import topological_order
from b2cal_assets.calibrations.base import Calibration
from b2cal_assets.resources import BucketPolicyResource, PlatformDatabaseResource

BUCKET_SENSOR_NAME = "calibration_buckets"


def build_bucket_scheduler_sensor(
    calibrations: dict[str, Calibration], *, minimum_interval_seconds: int = 30, max_new_runs_per_tick: int = 1000
) -> SensorDefinition:
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
        for bucket in store.active_buckets():
            version = bucket.version
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
            if plan.idle and not plan.waiting and bucket.closed:
                store.mark_finished(bucket.key, version)
                context.log.info(f"bucket {bucket.key}: every calibration is up to date with the closed bucket")
                continue
            for step in plan.collect:
                upstream_tag = ";".join(
                    f"{name}:{upstream_version(calibrations[name].settings, {d.name: version for d in calibrations[name].settings.depends_on})}"
                    for name in step.calibrations
                )
                requests.append(
                    RunRequest(
                        run_key=f"collect:{bucket.key}:{step.run_key}:{upstream_tag}",
                        partition_key=MultiPartitionKey({BUCKET_DIMENSION: bucket.key, RUN_DIMENSION: step.run_key}),
                        asset_selection=[collector_key(calibrations[name]) for name in step.calibrations],
                        tags={"b2cal/bucket": bucket.key, "b2cal/step": "collect", "b2cal/subsystem": ",".join(sorted({calibrations[n].settings.subsystem for n in step.calibrations}))},
                    )
                )
            if plan.calibrate:
                names = plan.calibrate.calibrations
                requests.append(
                    RunRequest(
                        run_key=f"calibrate:{bucket.key}:{version}:{','.join(names)}",
                        partition_key=bucket.key,
                        asset_selection=[calibration_key(calibrations[name]) for name in names],
                        tags={"b2cal/bucket": bucket.key, "b2cal/step": "calibrate", "b2cal/bucket_version": str(version), "b2cal/subsystem": ",".join(sorted({calibrations[n].settings.subsystem for n in names}))},
                    )
                )
        new_cursor = json.dumps({"ingested_since": new_runs[-1].ingested_at if new_runs else cursor.get("ingested_since")})
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[bucket_partitions.build_add_request(report.opened)] if report.opened else [],
            cursor=new_cursor,
        )

    return calibration_buckets
