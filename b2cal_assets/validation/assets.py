"""Validation report assets (one per calibration, per bucket), the bucket promotion asset and
the reject job.

* ``validation/<subsystem>/<Calibration>_report``: figures and PDF on disk, small thumbnails
  embedded in the materialisation's markdown metadata, links to the full-resolution files.
  Requested by the ``validation_reports`` sensor after every new calibration result, in their
  own runs, so a failing (blocking) check never prevents the reviewer from seeing the plots.
* ``validation/bucket_promotion``: the reviewer's sign-off. Launched by hand (through the
  authenticating proxy, which tags the run with the user); refuses, listing the failed checks,
  unless every blocking check passed on the latest result of every calibration.
* job ``reject_bucket``: the staging tag -> INVALID with the reviewer's reason.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    DagsterInstance,
    Failure,
    JobDefinition,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    job,
    op,
)
from dagster._core.event_api import PartitionKeyFilter  # Private: no public API reads the latest check evaluation of one partition
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus  # Private: check-history status filter

from b2cal_assets.calibration.assets import calibration_key
from b2cal_assets.calibration.framework.contract import Calibration
from b2cal_assets.calibration.partitions import bucket_partitions
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.staging import current_staging_tag
from b2cal_assets.resources import CalibrationStorageResource, PlatformDatabaseResource
from b2cal_assets.validation.checks import CALIBRATION_RUN_ID_KEY
from b2cal_assets.validation.gating import BucketFacts, LatestResult, RecordedCheck, promotion_failures
from b2cal_assets.validation.inputs import evaluate_stored
from b2cal_assets.validation.resources import ValidationResource
from b2cal_assets.validation.rules import BLOCKING_CHECKS, CheckOutcome
from b2cal_assets.validation.settings import validation_settings_for
from b2cal_assets.validation.signoff import (
    PromotionRefused,
    SignOffRefused,
    approver_from_tags,
    promote_staging_tag,
    reject_staging_tag,
)
from b2cal_assets.web.links import bucket_page_url
from b2cal_assets.web.manifest import build_manifest, write_manifest

PROMOTION_KEY = AssetKey(["validation", "bucket_promotion"])
REJECT_JOB_NAME = "reject_bucket"
GROUP = "validation"


def _identity_tags(tags: dict[str, str]) -> dict[str, str]:
    """The run's b2cal/* identity tags, shown with a refused sign-off."""
    return {key: value for key, value in tags.items() if key.startswith("b2cal/")}


def report_key(calibration: Calibration) -> AssetKey:
    return AssetKey(["validation", calibration.settings.subsystem, f"{calibration.name}_report"])


def _file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()


def _checks_table(outcomes: list[CheckOutcome]) -> str:
    rows = [f"| {o.check} | {o.severity} | {'passed' if o.passed else 'FAILED'} | {o.summary.replace('|', '/')[:300]} |" for o in outcomes]
    return "| check | severity | result | summary |\n|---|---|---|---|\n" + "\n".join(rows)


def build_report_asset(calibration: Calibration) -> AssetsDefinition:
    @asset(
        key=report_key(calibration),
        partitions_def=bucket_partitions,
        deps=[calibration_key(calibration)],
        group_name=GROUP,
        kinds={"python", "pdf"},
        tags={"b2cal/step": "validation_report", "b2cal/calibration": calibration.name},
        description=f"Validation report of {calibration.name} for one bucket: checks, figures (embedded thumbnails; "
        "full-resolution PNGs and one PDF on disk, linked).",
    )
    def validation_report(
        context: AssetExecutionContext,
        platform_db: PlatformDatabaseResource,
        calibration_storage: CalibrationStorageResource,
        validation: ValidationResource,
    ) -> MaterializeResult:
        bucket = context.partition_key
        conditions = platform_db.conditions(calibration_storage.payload_dir)
        buckets = platform_db.buckets()
        inputs, outcomes = evaluate_stored(conditions, buckets, bucket, calibration.name, calibration.settings.produced_payloads, validation.running_tag)
        if inputs is None:
            raise Failure(description=f"{calibration.name} has no successful result for bucket {bucket}: nothing to report; {outcomes[0].summary}")
        row = buckets.bucket(bucket)
        last_run = row.last_run if row and row.last_run is not None else inputs.requested.first_run
        # Imported here: matplotlib (with fontTools for the PDF) is a quarter of the code location's
        # import time, paid by every run worker and step process, and only report steps draw.
        from b2cal_assets.validation.figures import write_report

        report = write_report(inputs, outcomes, validation.report_dir(bucket, calibration.name), last_run)
        # The review pages (b2cal_assets/web) read checks, limits and file names from this manifest.
        write_manifest(report.directory, build_manifest(inputs, outcomes, validation_settings_for(calibration.name),
                                                        [(f.name, f.title, f.png) for f in report.figures], report.pdf))
        review_page = bucket_page_url(bucket, calibration=calibration.name)
        metadata: dict = {
            "pdf_report": MetadataValue.url(_file_url(report.pdf)),
            "report_dir": MetadataValue.path(str(report.directory)),
            "checks": MetadataValue.md(_checks_table(outcomes)),
            "failed_blocking_checks": sum(1 for o in outcomes if o.blocking and not o.passed),
            "calibration_run_id": inputs.calibration_run_id,
            "bucket_version": inputs.bucket_version,
        }
        if review_page is not None:  # B2CAL_WEB_URL: plots at full size, PDF, checks and sign-off in the browser
            metadata["review_page"] = MetadataValue.url(review_page)
        for figure in report.figures:
            # Markdown with a data: URI is the only way to show an image in the UI; kept small.
            metadata[f"plot_{figure.name}"] = MetadataValue.md(
                f"**{figure.title}**\n\n![{figure.name}](data:image/png;base64,{figure.thumbnail_png_base64})\n\n"
                f"[full resolution]({_file_url(figure.png)})"
            )
            metadata[f"png_{figure.name}"] = MetadataValue.url(_file_url(figure.png))
        return MaterializeResult(metadata=metadata)

    return validation_report


def recorded_checks(instance: DagsterInstance, calibrations: dict[str, Calibration], bucket: str) -> dict[tuple[str, str], RecordedCheck | None]:
    """The latest completed evaluation of every blocking check of every calibration on ``bucket``."""
    recorded: dict[tuple[str, str], RecordedCheck | None] = {}
    for name, calibration in calibrations.items():
        for check in BLOCKING_CHECKS:
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(calibration_key(calibration), check),
                limit=1,
                status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED},
                partition_filter=PartitionKeyFilter(key=bucket),
            )
            if not history or history[0].event is None or history[0].event.dagster_event is None:
                recorded[(name, check)] = None
                continue
            evaluation = history[0].event.dagster_event.event_specific_data
            run_id_meta = evaluation.metadata.get(CALIBRATION_RUN_ID_KEY)
            recorded[(name, check)] = RecordedCheck(
                passed=bool(evaluation.passed),
                summary=evaluation.description or "",
                calibration_run_id=str(run_id_meta.value) if run_id_meta is not None else "",
            )
    return recorded


def build_promotion_asset(calibrations: dict[str, Calibration]) -> AssetsDefinition:
    @asset(
        key=PROMOTION_KEY,
        partitions_def=bucket_partitions,
        deps=[calibration_key(c) for c in calibrations.values()] + [report_key(c) for c in calibrations.values()],
        group_name=GROUP,
        kinds={"python"},
        tags={"b2cal/step": "promotion"},
        description="Reviewer sign-off of a bucket: staging tag TESTING -> VALIDATED (approver recorded) and the "
        "running-tag update into the RUNNING tag. Refused, with the failed checks listed, unless every blocking check "
        "passed on every calibration's latest result; refused for runs without the b2cal/user tag outside demo mode.",
    )
    def bucket_promotion(
        context: AssetExecutionContext,
        platform_db: PlatformDatabaseResource,
        calibration_storage: CalibrationStorageResource,
        validation: ValidationResource,
    ) -> MaterializeResult:
        bucket = context.partition_key
        try:
            approver = approver_from_tags(context.run.tags, demo_mode=validation.demo_mode, required_roles=validation.approver_roles)
        except SignOffRefused as refused:
            # A deliberate refusal: a message with facts, not a stack trace (no chained cause).
            raise Failure(description=f"bucket {bucket} not promoted: {refused}",
                          metadata={"refused": "sign-off", "run_tags": MetadataValue.json(_identity_tags(context.run.tags))}) from None
        buckets = platform_db.buckets()
        conditions = platform_db.conditions(calibration_storage.payload_dir)
        row = buckets.bucket(bucket)
        facts = BucketFacts(row.closed, str(row.version), row.first_run) if row is not None else None
        latest = {}
        for name in calibrations:
            result = buckets.latest_calibration(bucket, name)
            latest[name] = LatestResult(result["bucket_version"], str(result.get("dagster_run_id") or "")) if result else None
        failures = promotion_failures(bucket, facts, latest, BLOCKING_CHECKS, recorded_checks(context.instance, calibrations, bucket))
        staging = current_staging_tag(conditions, bucket)
        try:
            plan = promote_staging_tag(
                conditions,
                bucket=bucket,
                staging_tag=staging,
                running_tag=validation.running_tag,
                valid_from=ExpRun(row.exp, row.first_run) if row and row.first_run is not None else ExpRun(0, 0),
                approver=approver,
                failures=failures,
                context=f" (dagster run {context.run.run_id})",
            )
        except PromotionRefused as refused:
            context.log.error(str(refused))
            raise Failure(
                description=str(refused),
                metadata={"failed_checks": MetadataValue.md("\n".join(f"- {f}" for f in refused.failures)), "n_failed": len(refused.failures)},
            ) from None
        context.log.info(f"bucket {bucket} promoted by {approver.describe()}:\n{plan.summary()}")
        return MaterializeResult(
            metadata={
                "approver": approver.user,
                "approver_roles": ", ".join(approver.roles) or "none",
                "demo_sign_off": approver.demo,
                "staging_tag": staging,
                "running_tag": validation.running_tag,
                "valid_from": f"{plan.valid_from.exp},{plan.valid_from.run}",
                "running_update": MetadataValue.md("```\n" + plan.summary() + "\n```"),
                "payloads_added": len(plan.added),
            }
        )

    return bucket_promotion


class RejectConfig(Config):
    """Which bucket's staging tag to reject, and why (shown in the tag history)."""

    bucket: str
    reason: str


def build_reject_job() -> JobDefinition:
    @op(required_resource_keys={"platform_db", "calibration_storage", "validation"})
    def reject_staging(context: OpExecutionContext, config: RejectConfig) -> str:
        validation: ValidationResource = context.resources.validation
        try:
            approver = approver_from_tags(context.run.tags, demo_mode=validation.demo_mode, required_roles=validation.approver_roles)
        except SignOffRefused as refused:
            raise Failure(description=f"bucket {config.bucket} not rejected: {refused}",
                          metadata={"refused": "sign-off", "run_tags": MetadataValue.json(_identity_tags(context.run.tags))}) from None
        conditions = context.resources.platform_db.conditions(context.resources.calibration_storage.payload_dir)
        staging = current_staging_tag(conditions, config.bucket)
        reject_staging_tag(conditions, staging_tag=staging, reason=config.reason, approver=approver)
        context.log.info(
            f"{staging} is INVALID (rejected by {approver.describe()}: {config.reason}); re-materialise the bucket's "
            f"calibrations to recalibrate into {current_staging_tag(conditions, config.bucket)}"
        )
        return staging

    @job(name=REJECT_JOB_NAME, description="Reject a bucket: its staging tag -> INVALID with the reviewer's reason; the bucket can then be recalibrated.", tags={"b2cal/step": "reject"})
    def reject_bucket() -> None:
        reject_staging()

    return reject_bucket
