"""What a principal may see: /me from the shipped policy, review buttons from the proxy's
decision and the bucket's state, the accounts summary; the templates render them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jinja2

from b2cal_assets.accounts.freshness import FreshnessPolicy
from b2cal_assets.accounts.models import Account, GroupMembership
from b2cal_assets.accounts.store import SyncStatus
from b2cal_assets.proxy.decide import Principal
from b2cal_assets.proxy.policy import load_policy
from b2cal_assets.web.access import accounts_view, action_view, me_view
from b2cal_assets.web.review import Links

NOW = datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)
POLICY = load_policy()
ACCOUNT = Account("sub-r", "rita", ("/DC=org/CN=Rita",), "rita@belle2.org", False,
                  (GroupMembership("belle", "/belle"), GroupMembership("belle_calib_reviewer", "/belle/calibration/Role=reviewer")))


def principal() -> Principal:
    grants = POLICY.grants_for(fqans=ACCOUNT.voms_roles, dirac_groups=ACCOUNT.group_names)
    return Principal(dn=ACCOUNT.dns[0], username="rita", grants=grants, role_source="dirac", fqans=ACCOUNT.voms_roles)


def env() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.PackageLoader("b2cal_assets.web", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M UTC") if d else "-"
    return environment


def test_me_lists_roles_with_their_permissions_and_what_is_missing():
    view = me_view(POLICY, principal(), ACCOUNT)
    roles = {r.role: dict(r.permissions) for r in view.roles}
    assert set(roles) == {"viewer", "reviewer"} and "promote" in roles["reviewer"] and "sign off" in roles["reviewer"]["promote"]
    assert "launch" in dict(view.missing) and "promote" not in dict(view.missing)
    html = env().get_template("me.html").render(me=view, links=Links(), principal=principal(), is_admin=False, dagster_home="/", csrf_token="t")
    assert "/belle/calibration/Role=reviewer" in html and "belle_calib_reviewer" in html


@dataclass
class Decision:
    allowed: bool
    reason: str = ""


@dataclass
class Page:
    awaiting_sign_off: bool
    rejectable: bool
    staging: object = None


def test_buttons_need_the_proxy_decision_and_a_bucket_state_they_fit():
    assert not action_view("sign-off", Decision(False, "launchRun: needs promote"), Page(True, True)).allowed
    assert not action_view("sign-off", Decision(True), Page(False, True)).allowed
    assert action_view("sign-off", Decision(True), Page(True, True)).allowed
    assert not action_view("reject", Decision(True), Page(True, False, staging="x")).allowed


def test_accounts_summary_marks_a_stale_set():
    status = SyncStatus(generation=7, source="diracx", vo="belle", etag=None, last_good_sync_at=NOW - timedelta(hours=5),
                        last_attempt_at=NOW, last_error="timeout", last_error_reason="timeout", last_error_at=NOW,
                        account_count=1, dn_count=1, suspended_count=0)
    view = accounts_view([ACCOUNT], status, FreshnessPolicy(max_age=timedelta(hours=2)), NOW)
    assert view.stale and view.age == "5.0 h" and view.rows[0].groups == ("belle", "belle_calib_reviewer")
    html = env().get_template("admin_accounts.html").render(a=view, links=Links(), principal=principal(), is_admin=True,
                                                            dagster_home="/", csrf_token="t")
    assert "STALE" in html and "/DC=org/CN=Rita" in html
