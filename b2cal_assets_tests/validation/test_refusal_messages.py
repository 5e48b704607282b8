"""Deliberate refusals of the sign-off steps reach the run view as messages with facts
(Dagster ``Failure`` description and metadata), not as a chained exception's stack trace."""

from __future__ import annotations

from b2cal_assets_tests.validation.conftest import REVIEWER_TAGS, Deployment


def _failure(result):  # type: ignore[no-untyped-def]
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data


def test_sign_off_refusal_is_a_message_with_the_run_tags(beam_deployment: Deployment) -> None:
    failure = _failure(beam_deployment.promote("e0026.b0002", tags={}))
    assert failure.user_failure_data is not None, "a deliberate refusal is a dagster Failure"
    assert "not promoted" in failure.user_failure_data.description and "no b2cal/user tag" in failure.user_failure_data.description
    assert "refused" in failure.user_failure_data.metadata
    assert failure.error.cause is None and failure.error.context is None, "no chained exception (its stack trace) in the run view"


def test_blocked_promotion_lists_the_failed_checks_without_a_chained_trace(beam_deployment: Deployment) -> None:
    failure = _failure(beam_deployment.promote("e0026.b0004", tags=REVIEWER_TAGS))
    assert failure.user_failure_data is not None
    metadata = failure.user_failure_data.metadata
    assert metadata["n_failed"].value >= 1 and "FAILED" in metadata["failed_checks"].value
    assert failure.error.cause is None and failure.error.context is None


def test_promotion_refusal_advice_follows_the_tag_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from b2cal_assets.conditions.iov import ExpRun
    from b2cal_assets.conditions.tags import TagState
    from b2cal_assets.database import platform_database
    from b2cal_assets.validation.signoff import Approver, PromotionRefused, promote_staging_tag

    store = platform_database(f"sqlite:///{tmp_path / 'b2cal.sqlite'}").conditions(tmp_path / "payloads")
    approver = Approver("reviewer", ("calibration_reviewer",))

    def refusal(tag: str, failures: list[str]) -> PromotionRefused:
        with pytest.raises(PromotionRefused) as refused:
            promote_staging_tag(store, bucket="e0026.b0001", staging_tag=tag, running_tag="running", valid_from=ExpRun(26, 1),
                                approver=approver, failures=failures)
        return refused.value

    assert "until they succeed" in refusal("staging_missing", ["ECL: no successful calibration result"]).advice
    store.create_tag("staging_done")
    store.set_tag_state("staging_done", TagState.TESTING, reason="test")
    assert "fix and recalibrate" in refusal("staging_done", ["BeamSpot/x: FAILED"]).advice
    store.set_tag_state("staging_done", TagState.VALIDATED, reason="signed off")
    already = refusal("staging_done", ["BeamSpot/x: evaluated on an older result"])
    assert "already signed off" in str(already) and "nothing to do" in already.advice and "fix and recalibrate" not in str(already)
