"""Validation sensors, both running by default.

* ``validation_reports``: after every new calibration result requests that calibration's
  report for the bucket (run key = the calibration's run, so each result is reported once), and
  freezes a bucket's staging tag OPEN -> TESTING once the bucket is closed and every
  calibration has a result for its final version (see ``signoff`` for why then).
* ``validation_notifications``: failed check evaluations since its cursor and staging tags
  newly waiting for sign-off (TESTING), to the log and, if configured, to a webhook. If the
  webhook is down the cursor stays, so the same notifications are retried on the next tick.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import json

from dagster import (
    AssetCheckKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus  # Private: check-history status filter

from b2cal_assets.calibration.assets import calibration_key
from b2cal_assets.calibration.framework.contract import Calibration
from b2cal_assets.conditions.staging import current_attempt, parse_staging_tag
from b2cal_assets.conditions.tags import TagState
from b2cal_assets.operations.executors import single_process_run_config
from b2cal_assets.operations.pacing import HANDOFF_SENSOR_INTERVAL_SECONDS, REPORT_PRIORITY, priority_tags
from b2cal_assets.resources import CalibrationStorageResource, PlatformDatabaseResource
from b2cal_assets.validation.assets import report_key
from b2cal_assets.validation.notify import (
    KIND_FAILED_CHECK,
    KIND_PENDING_SIGNOFF,
    Notification,
    NotificationDeliveryError,
    post_webhook,
)
from b2cal_assets.validation.resources import ValidationResource
from b2cal_assets.validation.rules import CHECKS
from b2cal_assets.validation.signoff import freeze_staging_tag

REPORT_SENSOR_NAME = "validation_reports"
NOTIFICATION_SENSOR_NAME = "validation_notifications"
MAX_EVENTS_PER_TICK = 1000


def build_report_sensor(
    calibrations: dict[str, Calibration], *, minimum_interval_seconds: int = HANDOFF_SENSOR_INTERVAL_SECONDS
) -> SensorDefinition:
    @sensor(
        name=REPORT_SENSOR_NAME,
        asset_selection=AssetSelection.assets(*[report_key(c) for c in calibrations.values()]),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Requests each calibration's validation report after every new result and freezes a finished "
        "bucket's staging tag (OPEN -> TESTING) for sign-off.",
    )
    def validation_reports(
        context: SensorEvaluationContext, platform_db: PlatformDatabaseResource, calibration_storage: CalibrationStorageResource
    ):  # type: ignore[no-untyped-def]
        buckets = platform_db.buckets()
        conditions = platform_db.conditions(calibration_storage.payload_dir)
        states = {tag.name: tag.state for tag in conditions.tags()}
        requests = []
        for bucket in buckets.buckets():
            staging = current_attempt(bucket.key, states).name  # from the states read once, not a query per bucket
            state = states.get(staging)
            if state not in (None, TagState.OPEN, TagState.TESTING):
                continue  # signed off already: nothing new to report
            results = {name: buckets.latest_calibration(bucket.key, name) for name in calibrations}
            for name, result in results.items():
                if result is None:
                    continue
                requests.append(
                    RunRequest(
                        run_key=f"report:{bucket.key}:{name}:{result['dagster_run_id']}",
                        partition_key=bucket.key,
                        asset_selection=[report_key(calibrations[name])],
                        tags={"b2cal/bucket": bucket.key, "b2cal/step": "validation_report", **priority_tags(REPORT_PRIORITY)},
                        run_config=single_process_run_config(),  # one step: no second process
                    )
                )
            complete = all(r is not None and r["bucket_version"] == str(bucket.version) for r in results.values())
            if state is TagState.OPEN and bucket.closed and complete:
                freeze_staging_tag(conditions, staging, reason=f"bucket {bucket.key} closed and every calibration done (version {bucket.version}): frozen for validation")
                context.log.info(f"{staging} frozen (TESTING): bucket {bucket.key} awaits sign-off")
        return SensorResult(run_requests=requests)

    return validation_reports


def build_notification_sensor(calibrations: dict[str, Calibration], *, minimum_interval_seconds: int = 60) -> SensorDefinition:
    names_by_key = {calibration_key(c): name for name, c in calibrations.items()}

    @sensor(
        name=NOTIFICATION_SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Failed validation checks and pending sign-offs, to the log and the configured webhook.",
    )
    def validation_notifications(
        context: SensorEvaluationContext,
        platform_db: PlatformDatabaseResource,
        calibration_storage: CalibrationStorageResource,
        validation: ValidationResource,
    ):  # type: ignore[no-untyped-def]
        cursor = json.loads(context.cursor) if context.cursor else {"seen": {}, "announced": []}
        notifications: list[Notification] = []
        seen = dict(cursor["seen"])
        # Check evaluations live in their own table (the SQLite event log is run-sharded, so a
        # global event cursor is not available): read each check's history after its last id.
        for key, name in names_by_key.items():
            for check in CHECKS:
                label = f"{name}/{check}"
                history = context.instance.event_log_storage.get_asset_check_execution_history(
                    AssetCheckKey(key, check), limit=MAX_EVENTS_PER_TICK, status={AssetCheckExecutionRecordStatus.FAILED}
                )
                fresh = [r for r in history if r.id > seen.get(label, 0) and r.event is not None and r.event.dagster_event is not None]
                for record in sorted(fresh, key=lambda r: r.id):
                    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
                    bucket = evaluation.partition or record.partition or ""
                    severity = evaluation.severity.value if evaluation.severity else "ERROR"
                    notifications.append(
                        Notification(
                            KIND_FAILED_CHECK,
                            bucket,
                            f"bucket {bucket}: {name} check {check} {'FAILED' if severity == 'ERROR' else 'WARN'}: {evaluation.description or ''}",
                            calibration=name,
                            check=check,
                        )
                    )
                    seen[label] = record.id
        conditions = platform_db.conditions(calibration_storage.payload_dir)
        testing = sorted(t.name for t in conditions.tags() if t.state is TagState.TESTING and parse_staging_tag(t.name) is not None)
        for tag in testing:
            if tag not in cursor["announced"]:
                bucket = parse_staging_tag(tag).bucket  # type: ignore[union-attr]
                notifications.append(Notification(KIND_PENDING_SIGNOFF, bucket, f"bucket {bucket}: staging tag {tag} is frozen (TESTING) and awaits sign-off: materialise validation/bucket_promotion for {bucket}, or reject it"))
        new_cursor = json.dumps({"seen": seen, "announced": testing})
        for note in notifications:
            context.log.warning(note.text)
        if notifications and validation.webhook_url:
            try:
                post_webhook(validation.webhook_url, notifications)
            except NotificationDeliveryError as error:
                context.log.error(f"{error}; {len(notifications)} notification(s) will be retried next tick")
                return SensorResult(run_requests=[], cursor=context.cursor, skip_reason=SkipReason(str(error)))
        return SensorResult(run_requests=[], cursor=new_cursor, skip_reason=SkipReason(f"{len(notifications)} notification(s) sent"))

    return validation_notifications
