"""From an authentication result and an account to a principal (or a refusal)."""

from __future__ import annotations

import pytest

from b2cal_assets.accounts.freshness import Access, Verdict
from b2cal_assets.accounts.models import Account, GroupMembership
from b2cal_assets.auth import AuthResult, Identity
from b2cal_assets.auth.errors import ACSignatureError, UntrustedIssuerError
from b2cal_assets.proxy.errors import ForbiddenError, NotAuthenticatedError
from b2cal_assets.proxy.policy import load_policy
from b2cal_assets.proxy.who import resolve_principal

POLICY = load_policy()
DN = "/C=JP/O=KEK/OU=CRC/CN=Alice Example"
IDENTITY = Identity(subject=DN, subject_rfc4514="CN=Alice Example,OU=CRC,O=KEK,C=JP", issuer="/C=JP/CN=CA", serial_number=7)
ACCOUNT = Account(sub="s", username="alice", dns=(DN,), groups=(
    GroupMembership("belle", "/belle"), GroupMembership("belle_production", "/belle/Role=production")))
FRESH = Verdict(Access.ALLOW)


def test_valid_ac_roles_replace_dirac_groups() -> None:
    auth = AuthResult(authenticated=True, identity=IDENTITY, fqans=("/belle",))
    principal = resolve_principal(auth, ACCOUNT, POLICY, FRESH)
    assert principal.role_source == "voms" and principal.roles_tag == "viewer"


def test_without_ac_the_dirac_groups_decide() -> None:
    auth = AuthResult(authenticated=True, identity=IDENTITY)
    assert resolve_principal(auth, ACCOUNT, POLICY, FRESH).roles_tag == "launcher,viewer"


def test_refused_ac_falls_back_to_dirac_groups_and_says_so() -> None:
    auth = AuthResult(authenticated=True, identity=IDENTITY, voms_errors=(ACSignatureError("bad AC signature"),))
    principal = resolve_principal(auth, ACCOUNT, POLICY, FRESH)
    assert principal.role_source == "dirac" and "bad AC signature" in (principal.note or "")


def test_stale_accounts_degrade_to_viewer_or_deny() -> None:
    auth = AuthResult(authenticated=True, identity=IDENTITY)
    degraded = resolve_principal(auth, ACCOUNT, POLICY, Verdict(Access.VIEWER, "old"))
    assert degraded.roles_tag == "viewer" and "old" in (degraded.note or "")
    with pytest.raises(ForbiddenError):
        resolve_principal(auth, ACCOUNT, POLICY, Verdict(Access.DENY, "never synced"))


def test_unknown_suspended_and_roleless_accounts_are_refused() -> None:
    auth = AuthResult(authenticated=True, identity=IDENTITY)
    with pytest.raises(ForbiddenError, match="no account"):
        resolve_principal(auth, None, POLICY, FRESH)
    suspended = Account(sub="s", username="alice", dns=(DN,), suspended=True, groups=ACCOUNT.groups)
    with pytest.raises(ForbiddenError) as caught:
        resolve_principal(auth, suspended, POLICY, FRESH)
    assert caught.value.reason == "account suspended"
    roleless = Account(sub="s", username="alice", dns=(DN,), groups=(GroupMembership("lhcb_user", "/lhcb"),))
    with pytest.raises(ForbiddenError, match="no policy binding"):
        resolve_principal(auth, roleless, POLICY, FRESH)


def test_refused_chain_is_401_with_the_library_reason() -> None:
    auth = AuthResult(authenticated=False, errors=(UntrustedIssuerError("EEC issuer /C=XX not in CA dir"),))
    with pytest.raises(NotAuthenticatedError) as caught:
        resolve_principal(auth, ACCOUNT, POLICY, FRESH)
    assert caught.value.reason == "certificate not issued by a trusted CA" and "/C=XX" in caught.value.message
