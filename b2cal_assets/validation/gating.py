"""Promotion gating: every reason a bucket's staging tag may not be promoted yet. Pure Python.

The promotion asset gathers the facts (bucket row, latest calibration results, recorded check
evaluations) and this module decides; an empty list means the bucket may be signed off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["BucketFacts", "LatestResult", "RecordedCheck", "blocking_failures", "promotion_failures"]


@dataclass(frozen=True)
class RecordedCheck:
    """The latest recorded evaluation of one check on one bucket."""

    passed: bool
    summary: str
    calibration_run_id: str = ""


@dataclass(frozen=True)
class BucketFacts:
    """What gating needs to know about the bucket (None for an unknown bucket)."""

    closed: bool
    version: str  # the bucket version, as recorded with calibration results
    first_run: int | None


@dataclass(frozen=True)
class LatestResult:
    """A calibration's latest successful result on the bucket."""

    bucket_version: str
    dagster_run_id: str


def blocking_failures(
    expected: Mapping[str, Sequence[str]],
    recorded: Mapping[tuple[str, str], RecordedCheck | None],
    current_run_ids: Mapping[str, str | None],
) -> list[str]:
    """Every blocking check that does not allow promotion.

    ``expected``: calibration -> its blocking check names; ``recorded``: (calibration, check) ->
    latest evaluation; ``current_run_ids``: calibration -> run id of its latest successful
    result (None: no result). A check counts only if it passed on that latest result.
    """
    failures: list[str] = []
    for calibration, checks in sorted(expected.items()):
        current = current_run_ids.get(calibration)
        if current is None:
            failures.append(f"{calibration}: no successful calibration result for this bucket")
            continue
        for check in checks:
            record = recorded.get((calibration, check))
            if record is None:
                failures.append(f"{calibration}/{check}: never evaluated")
            elif record.calibration_run_id and current and record.calibration_run_id != current:
                failures.append(f"{calibration}/{check}: evaluated on an older result (run {record.calibration_run_id}, latest {current}); re-run the check")
            elif not record.passed:
                failures.append(f"{calibration}/{check}: FAILED: {record.summary}")
    return failures


def promotion_failures(
    bucket: str,
    facts: BucketFacts | None,
    latest: Mapping[str, LatestResult | None],
    blocking_checks: Sequence[str],
    recorded: Mapping[tuple[str, str], RecordedCheck | None],
) -> list[str]:
    """Every reason ``bucket`` may not be promoted: the bucket must be known, non-empty and
    closed, every calibration's latest result must be for the bucket's current version, and
    every blocking check must have passed on that result."""
    failures: list[str] = []
    if facts is None or facts.first_run is None:
        failures.append(f"bucket {bucket} is unknown or empty")
    elif not facts.closed:
        failures.append(f"bucket {bucket} is still open: close it (all runs in) and let the calibrations finish first")
    for name, result in latest.items():
        if result is not None and facts is not None and result.bucket_version != facts.version:
            failures.append(f"{name}: latest result is for bucket version {result.bucket_version}, the bucket is at {facts.version}")
    current = {name: (result.dagster_run_id if result is not None else None) for name, result in latest.items()}
    return failures + blocking_failures({name: blocking_checks for name in latest}, recorded, current)
