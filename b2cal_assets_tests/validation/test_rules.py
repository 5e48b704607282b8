"""Each check on small hand-made payloads: passes when it should, fails with the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from b2cal_assets.calibration.plugins import discover_calibrations
from b2cal_assets.conditions.iov import IoV
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT, STATUS_NOT_ENOUGH_DATA, PayloadConstants
from b2cal_assets.validation.rules import (
    BLOCKING_CHECKS,
    CalibrationInputs,
    PayloadRecord,
    PreviousPayload,
    check_bad_channel_fraction,
    check_change_vs_previous,
    check_fit_converged,
    check_iov_coverage,
    check_needs_a_look,
    check_physical_range,
    check_statistical_precision,
    evaluate_calibration,
    missing_result_outcomes,
)
from b2cal_assets.validation.settings import UnknownCalibrationError, ValidationSettings, validation_settings_for

SETTINGS = ValidationSettings(
    "Toy",
    "toy",
    {
        "max_error": {"a": 0.1},
        "median_error_max": 0.5,
        "range": {"a": [0.0, 10.0], "*": [-5.0, 5.0]},
        "change_abs": {"*": 0.1},
        "change_sigmas": 3.0,
        "max_dead_fraction": 0.1,
        "max_hot_fraction": 0.0,
    },
)


def constants(values, errors=None, status=None, **attributes) -> PayloadConstants:  # type: ignore[no-untyped-def]
    values = np.asarray(values, dtype=float)
    return PayloadConstants(
        values, np.full(values.size, 0.01) if errors is None else np.asarray(errors, float),
        status=None if status is None else np.asarray(status, dtype=np.int32), attributes={"channels": ["a", "b", "c"][: values.size], **attributes} if values.size <= 3 else attributes,
    )


def record(c: PayloadConstants, iov: IoV = IoV(26, 1, -1, -1), previous: PayloadConstants | None = None, runs=("e0026.r00001",), revision: int = 2) -> PayloadRecord:  # type: ignore[no-untyped-def]
    prev = PreviousPayload("Toy", 1, "prompt_running", IoV(26, 0, -1, -1), previous) if previous is not None else None
    return PayloadRecord("Toy", revision, iov, tuple(runs), c, prev)


def inputs(*records: PayloadRecord, requested: IoV = IoV(26, 1, -1, -1)) -> CalibrationInputs:
    return CalibrationInputs("Toy", "e0026.b0001", "3:closed", requested, ("Toy",), tuple(records))


def test_fit_converged_passes_for_finite_good_channels():
    assert check_fit_converged(inputs(record(constants([1.0, 2.0]))), SETTINGS).passed


def test_fit_converged_fails_for_a_missing_payload_and_non_finite_good_channels():
    outcome = check_fit_converged(inputs(), SETTINGS)
    assert not outcome.passed and "no payload Toy" in outcome.failures[0]
    outcome = check_fit_converged(inputs(record(constants([1.0, np.nan]))), SETTINGS)
    assert not outcome.passed and "non-finite" in outcome.summary


def test_fit_converged_fails_when_too_many_channel_fits_did_not_converge():
    c = PayloadConstants(np.ones(200), np.full(200, 0.1), attributes={"not_converged_wires": list(range(5))})
    outcome = check_fit_converged(inputs(record(c)), SETTINGS)
    assert not outcome.passed and "5 channel fits did not converge" in outcome.failures[0]


def test_precision_fails_with_the_channel_its_error_and_the_limit():
    outcome = check_statistical_precision(inputs(record(constants([1.0, 2.0], [0.3, 0.01]))), SETTINGS)
    assert not outcome.passed
    assert "channel a: error 0.3 > limit 0.1" in outcome.failures[0] and "e0026.r00001" in outcome.failures[0]
    assert check_statistical_precision(inputs(record(constants([1.0, 2.0], [0.05, 0.01]))), SETTINGS).passed


def test_precision_fails_on_the_median_error_and_on_not_enough_data_channels():
    many = PayloadConstants(np.ones(100), np.full(100, 0.6))
    assert "median error" in check_statistical_precision(inputs(record(many)), SETTINGS).failures[0]
    status = np.where(np.arange(100) < 5, STATUS_NOT_ENOUGH_DATA, STATUS_GOOD)
    low = PayloadConstants(np.ones(100), np.full(100, 0.1), status=status.astype(np.int32))
    assert "NOT_ENOUGH_DATA" in check_statistical_precision(inputs(record(low)), SETTINGS).failures[0]


def test_physical_range_names_the_value_and_the_range():
    outcome = check_physical_range(inputs(record(constants([11.0, 2.0]))), SETTINGS)
    assert not outcome.passed and "channel a: 11 outside [0, 10]" in outcome.failures[0]
    assert check_physical_range(inputs(record(constants([9.0, 4.0]))), SETTINGS).passed


def test_physical_range_ignores_flagged_channels():
    c = constants([11.0, 2.0], status=[STATUS_DEAD, STATUS_GOOD])
    assert check_physical_range(inputs(record(c)), SETTINGS).passed


def test_change_vs_previous_names_the_revision_compared_with():
    outcome = check_change_vs_previous(inputs(record(constants([1.5, 2.0]), previous=constants([1.0, 2.0]))), SETTINGS)
    assert not outcome.passed
    assert "changed by 0.5 vs Toy rev 1 (prompt_running" in outcome.failures[0]
    assert outcome.numbers["compared_with"].startswith("Toy rev 2 (IoV 26,1,-1,-1) vs Toy rev 1")


def test_change_vs_previous_fails_only_beyond_both_the_sigmas_and_the_floor():
    # Errors 0.01 each: 3 sigma = 0.042 < floor 0.1, so the floor decides.
    assert check_change_vs_previous(inputs(record(constants([1.099, 2.0]), previous=constants([1.0, 2.0]))), SETTINGS).passed
    assert not check_change_vs_previous(inputs(record(constants([1.101, 2.0]), previous=constants([1.0, 2.0]))), SETTINGS).passed
    # Errors 0.1 each: 3 sigma = 0.424 > floor, so a 0.3 change is a fluctuation, 0.43 is not.
    wide = [0.1, 0.1]
    assert check_change_vs_previous(inputs(record(constants([1.3, 2.0], wide), previous=constants([1.0, 2.0], wide))), SETTINGS).passed
    assert not check_change_vs_previous(inputs(record(constants([1.43, 2.0], wide), previous=constants([1.0, 2.0], wide))), SETTINGS).passed


def test_change_vs_previous_passes_without_a_previous_payload():
    outcome = check_change_vs_previous(inputs(record(constants([1.0, 2.0]))), SETTINGS)
    assert outcome.passed and "first calibration" in outcome.summary


def test_change_vs_previous_allows_a_fraction_of_many_channels():
    settings = ValidationSettings("Toy", "", {"change_abs": {"*": 0.1}, "max_changed_fraction": 0.02})
    new = np.ones(100)
    new[0] = 5.0
    c, p = PayloadConstants(new, np.full(100, 0.01)), PayloadConstants(np.ones(100), np.full(100, 0.01))
    assert check_change_vs_previous(inputs(record(c, previous=p)), settings).passed
    new[:5] = 5.0
    assert not check_change_vs_previous(inputs(record(PayloadConstants(new, np.full(100, 0.01)), previous=p)), settings).passed


def test_iov_coverage_finds_gaps_and_overlaps():
    a = record(constants([1.0]), IoV(26, 1, 26, 2))
    b = record(constants([1.0]), IoV(26, 4, -1, -1))
    outcome = check_iov_coverage(inputs(a, b), SETTINGS)
    assert not outcome.passed and "gap 26,3,26,3" in outcome.failures[0]
    c = record(constants([1.0]), IoV(26, 2, -1, -1))
    assert "overlap" in check_iov_coverage(inputs(a, c), SETTINGS).failures[0]
    d = record(constants([1.0]), IoV(26, 3, -1, -1))
    assert check_iov_coverage(inputs(a, d), SETTINGS).passed
    closed = record(constants([1.0]), IoV(26, 1, 26, 9))
    assert "gap 26,10,-1,-1" in check_iov_coverage(inputs(closed), SETTINGS).failures[0]


def test_bad_channel_fraction_counts_dead_and_hot_channels():
    status = np.full(100, STATUS_GOOD, dtype=np.int32)
    status[:5] = STATUS_DEAD
    assert check_bad_channel_fraction(inputs(record(PayloadConstants(np.ones(100), np.ones(100), status=status))), SETTINGS).passed
    status[:20] = STATUS_DEAD
    outcome = check_bad_channel_fraction(inputs(record(PayloadConstants(np.ones(100), np.ones(100), status=status))), SETTINGS)
    assert not outcome.passed and "20 dead channels (20.000% > 10.000%)" in outcome.failures[0] and outcome.numbers["dead_fraction"] == 0.2
    status[:20] = STATUS_GOOD
    status[50] = STATUS_HOT
    outcome = check_bad_channel_fraction(inputs(record(PayloadConstants(np.ones(100), np.ones(100), status=status))), SETTINGS)
    assert not outcome.passed and "1 hot channels" in outcome.failures[0] and "channels 50" in outcome.failures[0]


def test_needs_a_look_is_a_warning_about_merged_runs_and_missing_data():
    merged = record(constants([1.0]), IoV(26, 1, 26, 2), runs=("e0026.r00001", "e0026.r00002"))
    last = record(constants([1.0]), IoV(26, 3, -1, -1), runs=("e0026.r00003",))
    outcome = check_needs_a_look(inputs(merged, last), SETTINGS)
    assert not outcome.passed and not outcome.blocking and "were merged" in outcome.failures[0]


def test_needs_a_look_shows_the_calibrations_own_review_notes_without_blocking():
    note = "edge shape of CDC superlayer 8 is the nominal one, not fitted: too few entries"
    outcome = check_needs_a_look(inputs(record(constants([1.0], review_notes=[note]))), SETTINGS)
    assert not outcome.passed and not outcome.blocking
    assert outcome.failures == (f"Toy rev 2 (IoV {IoV(26, 1, -1, -1)}): {note}",)
    assert check_needs_a_look(inputs(record(constants([1.0], review_notes=[]))), SETTINGS).passed


def test_evaluate_runs_every_check_and_missing_results_fail_them_all():
    outcomes = evaluate_calibration(inputs(record(constants([1.0, 2.0]))), SETTINGS)
    assert [o.check for o in outcomes if o.blocking] == list(BLOCKING_CHECKS) and all(o.passed for o in outcomes)
    missing = missing_result_outcomes("Toy", "e0026.b0001", "calibration failed")
    assert len(missing) == len(outcomes) and not any(o.passed for o in missing)


@pytest.mark.parametrize("name", sorted(discover_calibrations()))
def test_every_calibration_declares_limits_for_every_check(name):
    declared = discover_calibrations()[name].validation
    assert declared.description and declared.limits
    settings = validation_settings_for(name)
    assert settings.expert_config == dict(declared.limits)
    for key in ("change_abs", "change_sigmas", "max_dead_fraction", "max_hot_fraction"):
        assert key in declared.limits, f"{name} leaves {key} to the defaults"
    for key in ("max_error", "range", "median_error_max", "max_not_enough_data_fraction", "max_changed_fraction", "max_not_converged_fraction"):
        settings.limit(key)


def test_a_calibration_without_declared_limits_is_an_error_not_defaults():
    with pytest.raises(UnknownCalibrationError, match="SomethingNew"):
        validation_settings_for("SomethingNew")
