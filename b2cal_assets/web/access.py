"""Who may see and do what on the review pages, from the proxy's policy. Pure.

Pages need a permission of the policy (``console.PAGES``); review actions are shown exactly
when the proxy's decision on the very launch the button would send allows it. ``/b2cal/me``
explains a principal's identity, roles and what each role allows; the admin pages summarise
the accounts set and its freshness.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from b2cal_assets.proxy.permissions import Permission

from .actions import REJECT, SIGN_OFF

# The admin pages show every account's DNs and everybody's actions: the admin role's view.
ADMIN_PERMISSION = Permission.INSTANCE_INFO

PERMISSION_TEXT: dict[str, str] = {
    "none": "UI bookkeeping (dismiss dialogs)",
    "read": "see assets, runs, checks and these review pages",
    "launch": "materialise assets (outside the protected groups), in the role's asset groups",
    "promote": "materialise the protected groups (promotion, validation): sign off or reject a bucket",
    "terminate_own": "terminate runs you launched",
    "terminate_any": "terminate anybody's runs",
    "delete_own": "delete runs you launched",
    "delete_any": "delete anybody's runs",
    "backfill_manage": "cancel and resume backfills",
    "schedules": "start, stop and reset schedules",
    "sensors": "start, stop and reset sensors, set cursors",
    "partitions": "add and delete dynamic partitions",
    "wipe": "wipe asset materialisations",
    "code_locations": "reload code locations",
    "automation": "pause and resume automation",
    "report_events": "report asset events and check results by hand",
    "concurrency": "change concurrency limits and free slots",
    "components": "manage app-managed components",
    "instance_info": "read the instance configuration; the admin pages (accounts, audit log)",
    "captured_logs": "read every run's and tick's stdout/stderr",
    "run_config": "read run configuration",
    "debug_download": "download a run's debug file",
    "notebook": "open notebooks through the UI",
}


@dataclass(frozen=True)
class ActionView:
    """One review action on the bucket page: shown or not, and why."""

    action: str
    allowed: bool
    reason: str  # the proxy's short reason when refused; why it is unavailable otherwise
    nonce: str = ""

    def with_nonce(self, nonce: str) -> ActionView:
        return replace(self, nonce=nonce)


@dataclass(frozen=True)
class _Refusal:
    allowed: bool
    reason: str
    detail: str


def refused(reason: str, detail: str) -> Any:
    """A decision-like refusal for a launch the proxy could not even decide (upstream down)."""
    return _Refusal(False, reason, detail)


def action_view(action: str, decision: Any, page: Any) -> ActionView:
    """Whether to show ``action`` on the bucket ``page``: the proxy must allow the launch and the
    bucket must be in a state where the action means something (sign off what awaits sign-off;
    reject what is still undecided)."""
    if not decision.allowed:
        return ActionView(action, False, decision.reason)
    if action == SIGN_OFF and not page.awaiting_sign_off:
        return ActionView(action, False, "nothing awaits sign-off: every calibration must be closed, calibrated and pass its blocking checks")
    if action == REJECT and not page.rejectable:
        return ActionView(action, False, "the staging tag is already decided" if page.staging is not None else "no staging tag yet")
    return ActionView(action, True, "")


@dataclass(frozen=True)
class RoleView:
    role: str
    scope: str  # "all asset groups" or the groups
    source: str  # the binding that granted it
    permissions: tuple[tuple[str, str], ...]  # (permission, what it allows)


@dataclass(frozen=True)
class MeView:
    dn: str
    username: str
    role_source: str
    fqans: tuple[str, ...]
    dirac_groups: tuple[tuple[str, str], ...]  # (group, its VOMS role)
    email: str | None
    roles: tuple[RoleView, ...]
    missing: tuple[tuple[str, str], ...]  # permissions no role grants, with what they would allow
    note: str | None


def me_view(policy: Any, principal: Any, account: Any) -> MeView:
    roles = []
    granted: set[str] = set()
    for grant in principal.grants:
        permissions = sorted(p.value for p in policy.permissions(grant.role))
        granted |= set(permissions)
        scope = "all asset groups" if grant.asset_groups is None else "asset groups " + ", ".join(sorted(grant.asset_groups))
        roles.append(RoleView(grant.role, scope, grant.source, tuple((p, PERMISSION_TEXT.get(p, "")) for p in permissions)))
    missing = tuple((p.value, PERMISSION_TEXT.get(p.value, "")) for p in Permission if p.value not in granted and p is not Permission.NONE)
    groups = tuple((g.name, g.voms_role or "") for g in (account.groups if account is not None else ()))
    return MeView(principal.dn, principal.username, principal.role_source, tuple(principal.fqans), groups,
                  account.email if account is not None else None, tuple(roles), missing, principal.note)


@dataclass(frozen=True)
class AccountRow:
    username: str
    dns: tuple[str, ...]
    groups: tuple[str, ...]
    suspended: bool
    email: str | None


@dataclass(frozen=True)
class AccountsView:
    rows: tuple[AccountRow, ...]
    generation: int | None
    source: str | None
    last_good_sync_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    age: str
    stale: bool
    stale_rule: str
    counts: tuple[int, int, int]  # accounts, DNs, suspended


def accounts_view(accounts: Iterable[Any], status: Any, freshness: Any, now: datetime) -> AccountsView:
    rows = tuple(sorted((AccountRow(a.username, tuple(a.dns), tuple(a.group_names), bool(a.suspended), a.email) for a in accounts),
                        key=lambda r: r.username.lower()))
    age_s = status.age_seconds(now) if status.last_good_sync_at is not None else None
    max_age = getattr(freshness, "max_age", None)
    stale = age_s is None or (max_age is not None and age_s > max_age.total_seconds())
    rule = "no maximum age set (B2CAL_ACCOUNTS_MAX_AGE)" if max_age is None else (
        f"older than {max_age} counts as stale; then: {getattr(freshness, 'on_stale', 'deny')}")
    if age_s is None:
        age = "never synced"
    elif age_s >= 7200:
        age = f"{age_s / 3600:.1f} h"
    else:
        age = f"{age_s / 60:.0f} min"
    return AccountsView(rows, status.generation, status.source, status.last_good_sync_at, status.last_attempt_at, status.last_error,
                        status.last_error_at, age, stale if max_age is not None or age_s is None else False, rule,
                        (status.account_count, status.dn_count, status.suspended_count))


def sorted_unique(values: Sequence[str]) -> list[str]:
    return sorted(set(values))
