"""Sign-off: approver from run tags, refusals, recorded approver, reject path and recalibration,
and the staging-tag naming after a rejection (the deployment tests on SQLite and on PostgreSQL)."""

from __future__ import annotations

import pytest
from dagster import AssetKey, AssetRecordsFilter

from b2cal_assets.conditions.errors import TagNotUsableError
from b2cal_assets.conditions.staging import current_staging_tag, staging_tag_name
from b2cal_assets.conditions.tags import TagState
from b2cal_assets.database import platform_database
from b2cal_assets.validation.assets import REJECT_JOB_NAME
from b2cal_assets.validation.signoff import (
    ROLES_TAG,
    USER_TAG,
    RecordedCheck,
    SignOffRefused,
    approver_from_tags,
    blocking_failures,
)
from b2cal_assets_tests.validation.conftest import REVIEWER_TAGS, Deployment, deployments


def test_approver_is_read_from_the_run_tags():
    approver = approver_from_tags({USER_TAG: "alice", ROLES_TAG: "calibration_reviewer, belle"}, demo_mode=False, required_roles=["calibration_reviewer"])
    assert approver.user == "alice" and approver.roles == ("calibration_reviewer", "belle") and not approver.demo


def test_runs_without_the_user_tag_are_refused_outside_demo_mode():
    with pytest.raises(SignOffRefused, match="b2cal/user"):
        approver_from_tags({}, demo_mode=False)
    assert approver_from_tags({}, demo_mode=True).demo


def test_a_user_without_a_required_role_is_refused():
    with pytest.raises(SignOffRefused, match="needs one of"):
        approver_from_tags({USER_TAG: "bob", ROLES_TAG: "belle"}, demo_mode=False, required_roles=["calibration_reviewer"])


def test_blocking_failures_lists_failed_missing_and_stale_checks():
    failures = blocking_failures(
        {"A": ["x", "y"], "B": ["x"], "C": ["x"]},
        {("A", "x"): RecordedCheck(False, "too big", "r1"), ("A", "y"): None, ("B", "x"): RecordedCheck(True, "", "old")},
        {"A": "r1", "B": "new", "C": None},
    )
    assert failures == ["A/x: FAILED: too big", "A/y: never evaluated", "B/x: evaluated on an older result (run old, latest new); re-run the check", "C: no successful calibration result for this bucket"]


def test_current_staging_tag_moves_to_a_new_tag_after_a_rejection(sqlite_url, tmp_path):
    store = platform_database(sqlite_url).conditions(tmp_path / "payloads")
    assert current_staging_tag(store, "e0026.b0001") == "staging_prompt_e0026.b0001"
    store.create_tag("staging_prompt_e0026.b0001")
    assert current_staging_tag(store, "e0026.b0001") == "staging_prompt_e0026.b0001"
    store.set_tag_state("staging_prompt_e0026.b0001", TagState.INVALID, reason="rejected")
    assert current_staging_tag(store, "e0026.b0001") == "staging_prompt_e0026.b0001_v2"
    store.create_tag("staging_prompt_e0026.b0001_v2")
    store.set_tag_state("staging_prompt_e0026.b0001_v2", TagState.INVALID, reason="rejected again")
    assert current_staging_tag(store, "e0026.b0001") == "staging_prompt_e0026.b0001_v3"
    assert current_staging_tag(store, "e0026.b0002") == staging_tag_name("e0026.b0002")


@pytest.mark.parametrize("deployment_fixture", deployments("beam", "postgres"))
def test_promotion_without_user_tag_is_refused(deployment_fixture, request):
    result = request.getfixturevalue(deployment_fixture).promote("e0026.b0002", tags={})
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "no b2cal/user tag" in failure.step_failure_data.error.message


@pytest.mark.parametrize("deployment_fixture", deployments("beam", "postgres"))
def test_promotion_records_the_approver(deployment_fixture, request):
    deployment: Deployment = request.getfixturevalue(deployment_fixture)
    result = deployment.promotions["e0026.b0001"]
    assert result.success
    metadata = result.asset_materializations_for_node("validation__bucket_promotion")[0].metadata
    assert metadata["approver"].value == REVIEWER_TAGS[USER_TAG] and "calibration_reviewer" in metadata["approver_roles"].value
    history = deployment.conditions.tag_history(staging_tag_name("e0026.b0001"))
    validated = [h for h in history if h.to_state is TagState.VALIDATED]
    assert validated and REVIEWER_TAGS[USER_TAG] in validated[0].reason
    # What the instance stored (the event log), not only what the run returned.
    # (per partition: later buckets of the data set may be promoted too)
    records = deployment.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["validation", "bucket_promotion"]), asset_partitions=["e0026.b0001"]), limit=1
    ).records
    stored = records[0].event_log_entry if records else None
    assert stored is not None and stored.run_id == result.run_id
    assert stored.asset_materialization.metadata["approver"].value == REVIEWER_TAGS[USER_TAG]


@pytest.mark.parametrize(
    ("deployment_fixture", "bucket"),
    [pytest.param("beam_deployment", "e0026.b0004", id="beam"), pytest.param("postgres_deployment", "e0026.b0002", id="postgres", marks=pytest.mark.postgres)],
)
def test_reject_marks_the_staging_tag_invalid_and_the_bucket_can_be_recalibrated(deployment_fixture, bucket, request):
    deployment: Deployment = request.getfixturevalue(deployment_fixture)  # `bucket`: its beam-spot-jump bucket
    defs = deployment.defs()
    result = defs.resolve_job_def(REJECT_JOB_NAME).execute_in_process(
        instance=deployment.instance,
        tags=REVIEWER_TAGS,
        run_config={"ops": {"reject_staging": {"config": {"bucket": bucket, "reason": "beam spot jump not confirmed by the machine group"}}}},
    )
    assert result.success
    conditions = deployment.conditions
    old = staging_tag_name(bucket)
    assert conditions.tag(old).state is TagState.INVALID
    assert "beam spot jump not confirmed" in conditions.tag_history(old)[-1].reason
    assert REVIEWER_TAGS[USER_TAG] in conditions.tag_history(old)[-1].reason
    with pytest.raises(TagNotUsableError, match="INVALID"):  # its payloads are withdrawn from processing
        conditions.entries_for_processing(old)
    # Recalibrating the bucket writes a new staging tag; the invalid one is never touched again.
    recalibrated = deployment.materialise([AssetKey(["beam", "BeamSpot"])], bucket)
    assert recalibrated.asset_materializations_for_node("beam__BeamSpot")
    assert current_staging_tag(conditions, bucket) == staging_tag_name(bucket, 2)
    assert {e.name for e in conditions.tag_entries(staging_tag_name(bucket, 2))} == {"BeamSpot"}
    assert conditions.tag(staging_tag_name(bucket, 2)).state is TagState.OPEN
