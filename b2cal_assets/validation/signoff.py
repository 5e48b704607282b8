"""Reviewer sign-off: who approves, what blocks a promotion, and the tag transitions.

Identity: the authorising proxy puts the authenticated user on every run it launches as run
tags :data:`USER_TAG` (the user name / DN) and :data:`ROLES_TAG` (its grants, possibly scoped
to asset groups: ``launcher[cdc,ecl],reviewer``). Their format has one owner,
:mod:`b2cal_assets.auth.run_tags`; this module reads them through it.

Staging-tag life cycle of a bucket (decided here):

* OPEN while calibrations write into it;
* OPEN -> TESTING ("frozen") as soon as the bucket is closed and every calibration has a
  successful result for the closed bucket's final version: the content the checks and reports
  saw can no longer change (a late write fails loudly instead of slipping past validation).
  The validation sensor does this; the promotion does it too if the sensor has not yet;
* TESTING -> VALIDATED by the promotion, only when every blocking check passed, recording the
  approver in the transition's reason; then the running-tag update copies it into RUNNING;
* -> INVALID by a reviewer's rejection with the reason; recalibrating the bucket then writes a
  new staging tag ``..._v2`` (INVALID is final).

Pure Python over the conditions store, no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from b2cal_assets.auth.run_tags import TAG_ROLES, TAG_USER, IdentityTagError, parse_identity_tags
from b2cal_assets.conditions.errors import UnknownTagError
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.running_update import RunningUpdatePlan, plan_running_update, update_running_tag
from b2cal_assets.conditions.store import ConditionsStore
from b2cal_assets.conditions.tags import TagState
from b2cal_assets.validation.errors import ValidationDomainError
from b2cal_assets.validation.gating import RecordedCheck, blocking_failures  # re-exported: they lived here

__all__ = [
    "ROLES_TAG",
    "USER_TAG",
    "Approver",
    "PromotionRefused",
    "RecordedCheck",
    "SignOffRefused",
    "approver_from_tags",
    "blocking_failures",
    "ensure_running_tag",
    "freeze_staging_tag",
    "promote_staging_tag",
    "reject_staging_tag",
]

USER_TAG = TAG_USER
ROLES_TAG = TAG_ROLES
DEMO_USER = "demo (no authenticated user: demo mode)"


class SignOffRefused(ValidationDomainError, PermissionError):
    """The run carries no usable identity for a sign-off (or lacks a required role)."""


class PromotionRefused(ValidationDomainError, RuntimeError):
    """A bucket cannot be promoted; ``failures`` lists every reason (failed or missing checks)."""

    def __init__(self, bucket: str, failures: Sequence[str],
                 advice: str = "fix and recalibrate the bucket (or reject it with a reason)") -> None:
        self.bucket = bucket
        self.failures = list(failures)
        self.advice = advice
        listed = "\n".join(f"  - {failure}" for failure in self.failures)
        super().__init__(f"bucket {bucket} not promoted: {len(self.failures)} blocking problem(s):\n{listed}\n{advice}; nothing was changed")


@dataclass(frozen=True)
class Approver:
    """Who signed off, as recorded in the tag history and on the materialisation."""

    user: str
    roles: tuple[str, ...]
    demo: bool = False

    def describe(self) -> str:
        roles = f" (roles {', '.join(self.roles)})" if self.roles else ""
        return f"{self.user}{roles}{' [DEMO SIGN-OFF]' if self.demo else ''}"


def approver_from_tags(tags: Mapping[str, str], *, demo_mode: bool, required_roles: Sequence[str] = ()) -> Approver:
    """The approver from a run's tags; SignOffRefused without a user outside demo mode, or
    without one of ``required_roles`` when those are configured."""
    try:
        identity = parse_identity_tags(tags)
    except IdentityTagError as error:
        raise SignOffRefused(f"run tag {ROLES_TAG} is malformed ({error}): refusing to guess who signs off") from None
    user = identity.user
    roles = tuple(grant.describe() for grant in identity.grants)
    # A role counts for a sign-off only unscoped: a grant limited to asset groups is no reviewer.
    unscoped = {grant.role for grant in identity.grants if grant.groups is None}
    if not user:
        if demo_mode:
            return Approver(DEMO_USER, roles, demo=True)
        raise SignOffRefused(
            f"run has no {USER_TAG} tag: sign-offs must be launched through the authenticating proxy, which "
            f"tags runs with {USER_TAG} and {ROLES_TAG} (only `b2cal demo` may sign off without one)"
        )
    if required_roles and not set(required_roles) & unscoped:
        raise SignOffRefused(
            f"user {user!r} has roles {list(roles) or 'none'}; signing off needs one of {list(required_roles)}"
        )
    return Approver(user, roles)


def _state(store: ConditionsStore, tag: str) -> TagState | None:
    try:
        return store.tag(tag).state
    except UnknownTagError:
        return None


def freeze_staging_tag(store: ConditionsStore, tag: str, reason: str) -> bool:
    """OPEN -> TESTING; False if the tag was not OPEN (already frozen, or missing)."""
    if _state(store, tag) is not TagState.OPEN:
        return False
    store.set_tag_state(tag, TagState.TESTING, reason=reason)
    return True


def ensure_running_tag(store: ConditionsStore, name: str) -> None:
    """Create the RUNNING tag on first use (an empty tag walked OPEN -> ... -> RUNNING)."""
    state = _state(store, name)
    if state is TagState.RUNNING:
        return
    if state is not None:
        raise PromotionRefused("-", [f"running tag {name!r} exists but is {state}; configure the RUNNING tag's name"])
    store.create_tag(name, description="prompt running tag: validated prompt calibrations, appended by promotions")
    for step in (TagState.TESTING, TagState.VALIDATED, TagState.RUNNING):
        store.set_tag_state(name, step, reason="created empty by the first bucket promotion")


def promote_staging_tag(
    store: ConditionsStore,
    *,
    bucket: str,
    staging_tag: str,
    running_tag: str,
    valid_from: ExpRun,
    approver: Approver,
    failures: Sequence[str],
    context: str = "",
) -> RunningUpdatePlan:
    """TESTING -> VALIDATED with the approver recorded, then the running-tag update.

    Refuses (PromotionRefused, nothing changed) with ``failures`` non-empty, a staging tag that
    is not OPEN/TESTING, or content the running-tag update would reject (checked first).
    """
    # The tag's state first: its advice differs from that for failed checks.
    state = _state(store, staging_tag)
    if state in (TagState.VALIDATED, TagState.PUBLISHED, TagState.RUNNING):
        raise PromotionRefused(bucket, [f"staging tag {staging_tag!r} is {state}: the bucket is already signed off"],
                               advice="nothing to do: its payloads are already in the running tag (to replace them, "
                               "recalibrate the bucket into a new staging tag and sign that off)")
    if state is None:
        raise PromotionRefused(bucket, [f"staging tag {staging_tag!r} does not exist yet (no calibration of the bucket "
                                        "succeeded since it was opened or rejected)", *failures],
                               advice="materialise the bucket's calibrations until they succeed, then sign off")
    if failures:
        raise PromotionRefused(bucket, failures)
    if state not in (TagState.OPEN, TagState.TESTING):
        raise PromotionRefused(bucket, [f"staging tag {staging_tag!r} is {state}; only an OPEN or TESTING tag can be promoted"],
                               advice="recalibrate the bucket into a new staging tag")
    ensure_running_tag(store, running_tag)
    # The update's content rules first, so a refusal leaves the staging tag where it was.
    plan_running_update(running_tag, store.tag_entries(running_tag), staging_tag, store.tag_entries(staging_tag), valid_from)
    freeze_staging_tag(store, staging_tag, reason=f"frozen for sign-off by {approver.describe()}")
    store.set_tag_state(staging_tag, TagState.VALIDATED, reason=f"validated by {approver.describe()}: every blocking check passed{context}")
    return update_running_tag(store, running_tag=running_tag, staging_tag=staging_tag, valid_from=valid_from)


def reject_staging_tag(store: ConditionsStore, *, staging_tag: str, reason: str, approver: Approver) -> None:
    """Mark the staging tag INVALID with the reviewer's reason (final)."""
    if not reason.strip():
        raise ValueError("a rejection needs a reason the calibration expert can act on")
    state = _state(store, staging_tag)
    if state is None:
        raise UnknownTagError(staging_tag)
    store.set_tag_state(staging_tag, TagState.INVALID, reason=f"rejected by {approver.describe()}: {reason.strip()}")
