"""Staging-tag names: format and parse round-trip, and which attempt is current."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.calibration.framework.buckets import BucketVersion, upstream_version
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.conditions.staging import (
    InvalidStagingTagError,
    StagingTag,
    current_attempt,
    parse_staging_tag,
    staging_tag_name,
)
from b2cal_assets.conditions.tags import TagState

buckets = st.builds(lambda exp, n: f"e{exp:04d}.b{n:04d}", st.integers(0, 9999), st.integers(1, 9999))


@given(buckets, st.integers(1, 10_000))
def test_names_round_trip(bucket: str, attempt: int) -> None:
    assert parse_staging_tag(staging_tag_name(bucket, attempt)) == StagingTag(bucket, attempt)


def test_the_first_attempt_has_no_suffix() -> None:
    assert staging_tag_name("e0026.b0001") == "staging_prompt_e0026.b0001"
    assert staging_tag_name("e0026.b0001", 3) == "staging_prompt_e0026.b0001_v3"


@pytest.mark.parametrize("name", ["running", "staging_prompt_", "staging_prompt_e0026.b0001_v0", "staging_prompt_e0026.b0001_v",
                                  "staging_prompt_e0026_b0001", "other_staging_prompt_e0026.b0001"])
def test_other_tags_are_not_staging_tags(name: str) -> None:
    assert parse_staging_tag(name) is None


@pytest.mark.parametrize(("bucket", "attempt"), [("e0026_b0001", 1), ("", 1), ("e0026.b0001", 0)])
def test_a_name_that_would_not_parse_back_is_refused(bucket: str, attempt: int) -> None:
    with pytest.raises(InvalidStagingTagError):
        staging_tag_name(bucket, attempt)


def test_current_attempt_moves_on_only_after_a_rejection() -> None:
    bucket = "e0026.b0001"
    assert current_attempt(bucket, {}).name == staging_tag_name(bucket)
    assert current_attempt(bucket, {staging_tag_name(bucket): TagState.TESTING}).attempt == 1
    states = {staging_tag_name(bucket): TagState.INVALID, staging_tag_name("e0026.b0002", 5): TagState.INVALID}
    assert current_attempt(bucket, states).attempt == 2
    states[staging_tag_name(bucket, 2)] = TagState.OPEN
    assert current_attempt(bucket, states).attempt == 2
    states[staging_tag_name(bucket, 2)] = TagState.INVALID
    assert current_attempt(bucket, states).attempt == 3


def _settings(name: str, depends_on=()) -> CalibrationSettings:  # type: ignore[no-untyped-def]
    return CalibrationSettings(
        name=name, expert_username="expert", subsystem="beam", description=f"{name} test calibration",
        input_data_formats=["cdst"], input_data_names=["hlt_mumu_2trk"], depends_on=list(depends_on), produced_payloads=[name],
    )


def test_upstream_version_lists_each_dependency_version_in_order() -> None:
    beam, cdc = _settings("BeamSpot"), _settings("CDCTimeZero")
    assert upstream_version(beam, {}) == ""
    both = _settings("ECMS", [beam, cdc])
    assert upstream_version(both, {"BeamSpot": BucketVersion(3, True)}) == f"{BucketVersion(3, True)},"
    assert upstream_version(both, {"CDCTimeZero": BucketVersion(2, False), "BeamSpot": BucketVersion(3, True)}) == (
        f"{BucketVersion(3, True)},{BucketVersion(2, False)}"
    )
