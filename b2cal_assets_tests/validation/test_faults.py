"""Faults proved: each generator fault fails the right blocking check and its bucket is not
promoted, while a clean bucket is (real calibrations, sensors, checks and promotion; the clean
bucket and the beam-spot jump on SQLite and on PostgreSQL)."""

from __future__ import annotations

import pytest
from dagster import AssetCheckKey, AssetKey

from b2cal_assets.conditions.staging import staging_tag_name
from b2cal_assets.conditions.tags import TagState
from b2cal_assets_tests.validation.conftest import Deployment, deployments


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


@pytest.mark.parametrize("deployment_fixture", deployments("full", "beam", "postgres"))
def test_clean_buckets_pass_every_blocking_check_and_are_promoted(deployment_fixture, request):
    deployment: Deployment = request.getfixturevalue(deployment_fixture)
    assert failed_checks(deployment, "e0026.b0001") == set()
    result = deployment.promotions["e0026.b0001"]
    assert result.success
    staging = staging_tag_name("e0026.b0001")
    conditions = deployment.conditions
    assert conditions.tag(staging).state is TagState.VALIDATED
    assert [(h.from_state, h.to_state) for h in conditions.tag_history(staging)][-2:] == [(TagState.OPEN, TagState.TESTING), (TagState.TESTING, TagState.VALIDATED)]
    # The running tag holds exactly the payloads of the promoted buckets: the clean one, and any
    # bucket whose fault is only a review note (beam's low-statistics run merged per CAF); the
    # blocked buckets never went in.
    assert conditions.tag("prompt_running").state is TagState.RUNNING
    running = {(e.name, e.revision) for e in conditions.tag_entries("prompt_running")}
    promoted = [bucket for bucket, outcome in deployment.promotions.items() if outcome.success]
    assert "e0026.b0001" in promoted
    assert running == {(e.name, e.revision) for bucket in promoted for e in conditions.tag_entries(staging_tag_name(bucket))}
    produced = {p for c in deployment.calibrations.values() for p in c.settings.produced_payloads}
    assert {name for name, _ in running} == produced


def test_dead_crystals_fail_bad_channel_fraction_and_block_promotion(full_deployment):
    assert failed_checks(full_deployment, "e0026.b0002") == {("ECLCrystalEnergy", "bad_channel_fraction")}
    evaluation = latest_check(full_deployment, ["ecl", "ECLCrystalEnergy"], "bad_channel_fraction", "e0026.b0002")
    assert evaluation.metadata["dead_fraction"].value > 0.005 and "3000" in evaluation.metadata["failures"].value
    assert_not_promoted(full_deployment, "e0026.b0002", "ECLCrystalEnergy/bad_channel_fraction")


def test_serve_demo_announces_a_blocked_bucket_with_its_failed_checks(full_deployment):
    """`b2cal serve --demo` tells a visitor which bucket awaits sign-off and which is blocked, and why."""
    from b2cal_assets.operations.serve import _bucket_states

    states = dict(_bucket_states(full_deployment.url, full_deployment.root / "payloads"))
    # This world runs no report sensor, so the blocked bucket's tag is still OPEN (serve freezes it: TESTING).
    assert states["e0026.b0002"] == "staging tag staging_prompt_e0026.b0002: OPEN, blocked, failed: ECLCrystalEnergy bad_channel_fraction"
    assert "blocked" not in states["e0026.b0001"] and "awaiting" not in states["e0026.b0001"], states  # signed off by the world


def test_low_statistics_run_is_merged_with_the_next_run_and_the_bucket_promoted(beam_deployment):
    # CAF: run 5 (225 pairs < min_events) joins run 6's payload; nothing blocks, a reviewer is told.
    assert failed_checks(beam_deployment, "e0026.b0002") == set()
    evaluation = latest_check(beam_deployment, ["beam", "BeamSpot"], "needs_a_look", "e0026.b0002")
    notes = evaluation.metadata["failures"].value
    assert not evaluation.passed and "were merged" in notes and "e0026.r00005" in notes and "e0026.r00006" in notes
    assert beam_deployment.promotions["e0026.b0002"].success


def test_hot_wires_fail_bad_channel_fraction_and_block_promotion(beam_deployment):
    assert failed_checks(beam_deployment, "e0026.b0003") == {("CDCTimeZero", "bad_channel_fraction")}
    evaluation = latest_check(beam_deployment, ["cdc", "CDCTimeZero"], "bad_channel_fraction", "e0026.b0003")
    assert "7000" in evaluation.metadata["failures"].value and evaluation.metadata["hot_fraction"].value > 0.0005
    assert_not_promoted(beam_deployment, "e0026.b0003", "CDCTimeZero/bad_channel_fraction")


@pytest.mark.parametrize(
    ("deployment_fixture", "bucket", "run"),
    [
        pytest.param("beam_deployment", "e0026.b0004", 11, id="beam"),
        pytest.param("postgres_deployment", "e0026.b0002", 5, id="postgres", marks=pytest.mark.postgres),
    ],
)
def test_beam_spot_jump_inside_a_bucket_fails_change_vs_previous_naming_the_revision(deployment_fixture, bucket, run, request):
    deployment: Deployment = request.getfixturevalue(deployment_fixture)
    assert failed_checks(deployment, bucket) == {("BeamSpot", "change_vs_previous")}
    evaluation = latest_check(deployment, ["beam", "BeamSpot"], "change_vs_previous", bucket)
    failures = evaluation.metadata["failures"].value
    # The jump is at `run`: its payload is compared with the previous run's, named by revision.
    assert f"IoV 26,{run},26,{run}" in failures and "channel x" in failures and "vs BeamSpot rev" in failures
    assert_not_promoted(deployment, bucket, "BeamSpot/change_vs_previous")
