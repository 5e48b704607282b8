"""Promotion gating (pure): every reason a bucket may not be signed off, without Dagster."""

from __future__ import annotations

from b2cal_assets.validation.gating import BucketFacts, LatestResult, RecordedCheck, promotion_failures

CHECKS = ("fit_converged", "physical_range")
CLOSED = BucketFacts(closed=True, version="3c", first_run=1)


def _passed(run_id: str) -> dict[tuple[str, str], RecordedCheck]:
    return {("BeamSpot", check): RecordedCheck(True, "ok", run_id) for check in CHECKS}


def test_a_closed_bucket_with_every_check_passed_on_the_latest_result_may_be_promoted() -> None:
    assert promotion_failures("e0026.b0001", CLOSED, {"BeamSpot": LatestResult("3c", "run-2")}, CHECKS, _passed("run-2")) == []


def test_unknown_open_and_outdated_buckets_are_refused_with_the_reason() -> None:
    latest = {"BeamSpot": LatestResult("3c", "run-2")}
    assert promotion_failures("e0026.b0009", None, latest, CHECKS, _passed("run-2")) == ["bucket e0026.b0009 is unknown or empty"]
    opened = BucketFacts(closed=False, version="3o", first_run=1)
    refused = promotion_failures("e0026.b0001", opened, latest, CHECKS, _passed("run-2"))
    assert refused[0].startswith("bucket e0026.b0001 is still open")
    assert refused[1] == "BeamSpot: latest result is for bucket version 3c, the bucket is at 3o"


def test_checks_must_have_passed_on_the_latest_result() -> None:
    recorded = _passed("run-1") | {("BeamSpot", "physical_range"): RecordedCheck(False, "x out of range", "run-2")}
    refused = promotion_failures("e0026.b0001", CLOSED, {"BeamSpot": LatestResult("3c", "run-2")}, CHECKS, recorded)
    assert refused == [
        "BeamSpot/fit_converged: evaluated on an older result (run run-1, latest run-2); re-run the check",
        "BeamSpot/physical_range: FAILED: x out of range",
    ]
    missing = promotion_failures("e0026.b0001", CLOSED, {"BeamSpot": None}, CHECKS, {})
    assert missing == ["BeamSpot: no successful calibration result for this bucket"]
