"""Staging-tag names: the global tag that receives a bucket's payloads, one per attempt.

``staging_prompt_<bucket>`` for the first attempt and ``staging_prompt_<bucket>_v<n>`` for the
n-th: a reviewer's rejection makes a tag INVALID, which is final, so recalibrating the bucket
writes a new tag instead of reopening the old one. The one place that formats and parses these
names (calibration assets, validation checks/sensors/promotion, the review pages); pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from b2cal_assets.conditions.errors import ConditionsError
from b2cal_assets.conditions.tags import TagState

__all__ = ["STAGING_TAG_PREFIX", "StagingTag", "current_staging_tag", "parse_staging_tag", "staging_tag_name"]

STAGING_TAG_PREFIX = "staging_prompt_"
# Bucket keys have no "_" (``e0026.b0001``), so the attempt suffix is never ambiguous.
_NAME = re.compile(rf"^{STAGING_TAG_PREFIX}(?P<bucket>[A-Za-z0-9.\-]+?)(?:_v(?P<attempt>[1-9][0-9]*))?$")


class InvalidStagingTagError(ConditionsError, ValueError):
    """A bucket key or attempt number that cannot make a staging-tag name."""


@dataclass(frozen=True, order=True)
class StagingTag:
    bucket: str
    attempt: int = 1

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+", self.bucket):
            raise InvalidStagingTagError(f"bucket key {self.bucket!r} cannot name a staging tag (letters, digits, '.', '-')")
        if self.attempt < 1:
            raise InvalidStagingTagError(f"staging-tag attempt must be at least 1, not {self.attempt}")

    @property
    def name(self) -> str:
        suffix = "" if self.attempt == 1 else f"_v{self.attempt}"
        return f"{STAGING_TAG_PREFIX}{self.bucket}{suffix}"

    def next(self) -> StagingTag:
        return StagingTag(self.bucket, self.attempt + 1)

    def __str__(self) -> str:
        return self.name


def staging_tag_name(bucket: str, attempt: int = 1) -> str:
    """``staging_prompt_e0026.b0001``; ``..._v2``, ``..._v3`` for recalibrations after a rejection."""
    return StagingTag(bucket, attempt).name


def parse_staging_tag(name: str) -> StagingTag | None:
    """The bucket and attempt a tag name stands for; None for a tag that is no staging tag."""
    match = _NAME.match(name)
    if match is None:
        return None
    return StagingTag(match["bucket"], int(match["attempt"] or 1))


def current_attempt(bucket: str, states: Mapping[str, TagState]) -> StagingTag:
    """The bucket's staging tag in use, given every tag's state: the latest attempt, or the
    next one if that was rejected (INVALID)."""
    attempts = [tag.attempt for tag in map(parse_staging_tag, states) if tag is not None and tag.bucket == bucket]
    latest = StagingTag(bucket, max(attempts, default=1))
    return latest.next() if states.get(latest.name) is TagState.INVALID else latest


class _TagLike(Protocol):
    name: str
    state: TagState


class _HasTags(Protocol):
    def tags(self) -> Iterable[_TagLike]: ...


def current_staging_tag(store: _HasTags, bucket: str) -> str:
    """The name of the bucket's staging tag in use in ``store`` (the conditions store)."""
    return current_attempt(bucket, {tag.name: tag.state for tag in store.tags()}).name
