"""Blocking asset checks on every calibration asset, partitioned by bucket like the asset.

One ``multi_asset_check`` per calibration with one spec per check of ``rules.CHECKS``: ERROR
checks are ``blocking`` (a failure fails the run and stops anything downstream in it), the
WARN check is not. Dagster includes the checks of the selected assets in every run that
materialises them, so they run automatically right after each calibration, in the bucket
scheduler's runs as in a manual "Materialize". The check asset is owned by the calibration
module; these definitions only attach to its key.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import warnings
from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from b2cal_assets.calibration.assets import calibration_key
from b2cal_assets.calibration.framework.contract import Calibration
from b2cal_assets.calibration.partitions import bucket_partitions
from b2cal_assets.conditions.staging import current_staging_tag
from b2cal_assets.resources import CalibrationStorageResource, PlatformDatabaseResource
from b2cal_assets.validation.inputs import evaluate_stored
from b2cal_assets.validation.resources import ValidationResource
from b2cal_assets.validation.rules import CHECKS, SEVERITY_ERROR, CheckOutcome

CALIBRATION_RUN_ID_KEY = "calibration_run_id"



def check_result(calibration: Calibration, outcome: CheckOutcome, calibration_run_id: str, staging_tag: str) -> AssetCheckResult:
    """The Dagster form of one outcome: the numbers as metadata, failures as a markdown list."""
    metadata: dict = {key: value for key, value in outcome.numbers.items() if isinstance(value, (int, float, str))}
    metadata["failures"] = MetadataValue.md("\n".join(f"- {line}" for line in outcome.failures) or "none")
    metadata[CALIBRATION_RUN_ID_KEY] = calibration_run_id
    metadata["staging_tag"] = staging_tag
    return AssetCheckResult(
        asset_key=calibration_key(calibration),
        check_name=outcome.check,
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR if outcome.severity == SEVERITY_ERROR else AssetCheckSeverity.WARN,
        description=outcome.summary[:1000],
        metadata=metadata,
    )


def build_calibration_checks(calibration: Calibration) -> AssetChecksDefinition:
    # Partitioned checks are "preview" in 1.13 but the only way to check each bucket on its own
    # (a check's partitions_def must equal its asset's); verified end to end in the tests. The
    # warning is silenced while they are built, not for every importer.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")
        return _build_calibration_checks(calibration)


def _build_calibration_checks(calibration: Calibration) -> AssetChecksDefinition:
    key = calibration_key(calibration)
    specs = [
        AssetCheckSpec(name, asset=key, blocking=severity == SEVERITY_ERROR, partitions_def=bucket_partitions, description=description)
        for name, (severity, _, description) in CHECKS.items()
    ]

    @multi_asset_check(
        name=f"{calibration.name}_validation",
        specs=specs,
        description=f"Validation of {calibration.name} constants of one bucket (b2cal_assets.validation.rules).",
    )
    def calibration_checks(
        context: AssetCheckExecutionContext,
        platform_db: PlatformDatabaseResource,
        calibration_storage: CalibrationStorageResource,
        validation: ValidationResource,
    ) -> Iterator[AssetCheckResult]:
        bucket = context.partition_key
        conditions = platform_db.conditions(calibration_storage.payload_dir)
        buckets = platform_db.buckets()
        inputs, outcomes = evaluate_stored(
            conditions, buckets, bucket, calibration.name, calibration.settings.produced_payloads, validation.running_tag
        )
        run_id = inputs.calibration_run_id if inputs else ""
        staging = current_staging_tag(conditions, bucket)
        for outcome in outcomes:
            if not outcome.passed:
                context.log.warning(f"{calibration.name} {bucket}: {outcome.describe()}")
            yield check_result(calibration, outcome, run_id, staging)

    return calibration_checks


def build_validation_checks(calibrations: dict[str, Calibration]) -> list[AssetChecksDefinition]:
    return [build_calibration_checks(calibration) for calibration in calibrations.values()]
