"""Reading what the checks look at from the bucket store and the conditions database.

Pure Python (SQL through the stores), no Dagster: the checks, the reports, the promotion and
the tests all load a calibration's payloads for a bucket the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from b2cal_assets.calibration.bucket_store import BucketStore
from b2cal_assets.calibration.framework.contract import Calibration
from b2cal_assets.conditions.errors import UnknownTagError
from b2cal_assets.conditions.iov import IoV
from b2cal_assets.conditions.store import ConditionsStore, TagEntry
from b2cal_assets.run_identity import ExpRun
from b2cal_assets.validation.errors import ValidationDomainError
from b2cal_assets.validation.rules import (
    CalibrationInputs,
    CheckOutcome,
    PayloadRecord,
    PreviousPayload,
    evaluate_calibration,
    missing_result_outcomes,
)
from b2cal_assets.validation.settings import validation_settings_for

__all__ = ["MissingCalibrationResult", "bucket_requested_iov", "evaluate_bucket", "evaluate_stored", "load_calibration_inputs", "previous_running_entry"]


class MissingCalibrationResult(ValidationDomainError, LookupError):
    """A calibration has no successful result for a bucket: nothing to validate."""


def bucket_requested_iov(buckets: BucketStore, bucket: str) -> IoV:
    """Open-ended from the bucket's first run, as prompt payloads are."""
    row = buckets.bucket(bucket)
    if row is None or row.first_run is None:
        raise MissingCalibrationResult(f"bucket {bucket} is unknown or has no run; nothing to validate")
    return IoV(row.exp, row.first_run, -1, -1)


def previous_running_entry(conditions: ConditionsStore, running_tag: str, name: str, before: IoV) -> TagEntry | None:
    """The running tag's entry of ``name`` with the latest start before ``before`` begins.

    It is what reconstruction would use for the bucket without this update; once the bucket is
    promoted it is still found (its IoV was only closed), so re-evaluating gives the same answer.
    """
    try:
        entries = conditions.tag_entries(running_tag)
    except UnknownTagError:
        return None  # no running tag yet: the first promotion creates it
    candidates = [e for e in entries if e.name == name and e.iov.first < before.first]
    return max(candidates, key=lambda e: e.iov.sort_key()) if candidates else None


def load_calibration_inputs(
    conditions: ConditionsStore,
    buckets: BucketStore,
    bucket: str,
    calibration: str,
    produced_payloads: list[str] | tuple[str, ...],
    running_tag: str,
) -> CalibrationInputs:
    """The latest successful result of ``calibration`` for ``bucket``, with previous payloads.

    Raises MissingCalibrationResult when the calibration has not succeeded for the bucket.
    """
    result = buckets.latest_calibration(bucket, calibration)
    if result is None:
        raise MissingCalibrationResult(f"{calibration} has no successful result for bucket {bucket}; materialise it (or read its failed run)")
    requested = bucket_requested_iov(buckets, bucket)
    records: list[PayloadRecord] = []
    by_name: dict[str, list[dict]] = {}
    for payload in result["payloads"]:
        by_name.setdefault(payload["name"], []).append(payload)
    for name, payloads in sorted(by_name.items()):
        ordered = sorted(payloads, key=lambda p: IoV.parse(p["iov"]).sort_key())
        running = previous_running_entry(conditions, running_tag, name, requested)
        previous: PreviousPayload | None = None
        if running is not None:
            previous = PreviousPayload(name, running.revision, running_tag, running.iov, conditions.read_payload(name, running.revision))
        for payload in ordered:
            constants = conditions.read_payload(name, int(payload["revision"]))
            iov = IoV.parse(payload["iov"])
            records.append(PayloadRecord(name, int(payload["revision"]), iov, tuple(payload["runs"]), constants, previous))
            # Within the bucket, the previous IoV is the bucket's own payload before this one.
            previous = PreviousPayload(name, int(payload["revision"]), "this bucket", iov, constants)
    return CalibrationInputs(
        calibration=calibration,
        bucket=bucket,
        bucket_version=str(result["bucket_version"]),
        requested=requested,
        produced_payloads=tuple(produced_payloads),
        payloads=tuple(records),
        calibration_run_id=str(result.get("dagster_run_id") or ""),
    )


def run_number(label: str) -> int:
    """12 from ``e0026.r00012``."""
    return ExpRun.parse(label).run


def evaluate_stored(
    conditions: ConditionsStore,
    buckets: BucketStore,
    bucket: str,
    calibration: str,
    produced_payloads: list[str] | tuple[str, ...],
    running_tag: str,
) -> tuple[CalibrationInputs | None, list[CheckOutcome]]:
    """Every check of ``calibration`` on ``bucket`` as stored now; all failed without a result."""
    try:
        inputs = load_calibration_inputs(conditions, buckets, bucket, calibration, produced_payloads, running_tag)
    except MissingCalibrationResult as missing:
        return None, missing_result_outcomes(calibration, bucket, str(missing))
    return inputs, evaluate_calibration(inputs, validation_settings_for(calibration))


def evaluate_bucket(
    conditions: ConditionsStore, buckets: BucketStore, bucket: str, calibrations: Mapping[str, Calibration], running_tag: str,
) -> dict[str, list[CheckOutcome]]:
    """Every check of every calibration on ``bucket`` as stored now, by calibration name."""
    return {name: evaluate_stored(conditions, buckets, bucket, name, calibration.settings.produced_payloads, running_tag)[1]
            for name, calibration in calibrations.items()}
