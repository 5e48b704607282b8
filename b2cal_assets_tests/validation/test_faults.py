"""Faults proved: each generator fault fails the right blocking check and its bucket is not
promoted, while a clean bucket is (real calibrations, sensors, checks and promotion)."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey

from b2cal_assets.calibration.assets import staging_tag_name
from b2cal_assets.conditions.tags import TagState
from b2cal_assets_tests.validation.conftest import Deployment


def latest_check(deployment: Deployment, calibration_path: list[str], check: str, bucket: str):  # type: ignore[no-untyped-def]
    from dagster._core.event_api import PartitionKeyFilter

    history = deployment.instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(calibration_path), check), limit=1, partition_filter=PartitionKeyFilter(key=bucket)
    )
    assert history, f"{calibration_path} {check} never ran for {bucket}"
    return history[0].event.dagster_event.event_specific_data


def failed_checks(deployment: Deployment, bucket: str) -> set[tuple[str, str]]:
    from b2cal_assets.calibration.assets import calibration_key
    from b2cal_assets.validation.rules import CHECKS

    failed = set()
    for name, calibration in deployment.calibrations.items():
        for check in CHECKS:
            evaluation = latest_check(deployment, list(calibration_key(calibration).path), check, bucket)
            if not evaluation.passed and evaluation.severity.value == "ERROR":
                failed.add((name, check))
    return failed


def assert_not_promoted(deployment: Deployment, bucket: str, expected_failure: str) -> None:
    result = deployment.promotions[bucket]
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert expected_failure in failure.step_failure_data.error.message, failure.step_failure_data.error.message
    assert deployment.conditions.tag(staging_tag_name(bucket)).state is not TagState.VALIDATED


def test_clean_buckets_pass_every_blocking_check_and_are_promoted(full_deployment, beam_deployment):
    for deployment in (full_deployment, beam_deployment):
        assert failed_checks(deployment, "e0026.b0001") == set()
        result = deployment.promotions["e0026.b0001"]
        assert result.success
        assert deployment.conditions.tag(staging_tag_name("e0026.b0001")).state is TagState.VALIDATED
        running = {e.name for e in deployment.conditions.tag_entries("prompt_running")}
        produced = {p for c in deployment.calibrations.values() for p in c.settings.produced_payloads}
        assert running == produced


def test_dead_crystals_fail_bad_channel_fraction_and_block_promotion(full_deployment):
    assert failed_checks(full_deployment, "e0026.b0002") == {("ECLCrystalEnergy", "bad_channel_fraction")}
    evaluation = latest_check(full_deployment, ["ecl", "ECLCrystalEnergy"], "bad_channel_fraction", "e0026.b0002")
    assert evaluation.metadata["dead_fraction"].value > 0.005 and "3000" in evaluation.metadata["failures"].value
    assert_not_promoted(full_deployment, "e0026.b0002", "ECLCrystalEnergy/bad_channel_fraction")


def test_low_statistics_fails_statistical_precision_and_blocks_promotion(beam_deployment):
    assert failed_checks(beam_deployment, "e0026.b0002") == {("BeamSpot", "statistical_precision")}
    evaluation = latest_check(beam_deployment, ["beam", "BeamSpot"], "statistical_precision", "e0026.b0002")
    assert "e0026.r00005" in evaluation.metadata["failures"].value
    assert_not_promoted(beam_deployment, "e0026.b0002", "BeamSpot/statistical_precision")


def test_hot_wires_fail_bad_channel_fraction_and_block_promotion(beam_deployment):
    assert failed_checks(beam_deployment, "e0026.b0003") == {("CDCTimeZero", "bad_channel_fraction")}
    evaluation = latest_check(beam_deployment, ["cdc", "CDCTimeZero"], "bad_channel_fraction", "e0026.b0003")
    assert "7000" in evaluation.metadata["failures"].value and evaluation.metadata["hot_fraction"].value > 0.0005
    assert_not_promoted(beam_deployment, "e0026.b0003", "CDCTimeZero/bad_channel_fraction")


def test_beam_spot_jump_inside_a_bucket_fails_change_vs_previous_naming_the_revision(beam_deployment):
    assert failed_checks(beam_deployment, "e0026.b0004") == {("BeamSpot", "change_vs_previous")}
    evaluation = latest_check(beam_deployment, ["beam", "BeamSpot"], "change_vs_previous", "e0026.b0004")
    failures = evaluation.metadata["failures"].value
    # The jump is at run 11: its payload is compared with run 10's, named by revision.
    assert "IoV 26,11,26,11" in failures and "channel x" in failures and "vs BeamSpot rev" in failures
    assert_not_promoted(beam_deployment, "e0026.b0004", "BeamSpot/change_vs_previous")
