"""Who is asking: authentication result + account + policy -> :class:`Principal`.

Pure: the server passes the :class:`AuthResult` of the presented chain, the account found
for its DN (or None) and the accounts-freshness verdict.
"""

from __future__ import annotations

from b2cal_assets.accounts.freshness import Access, Verdict
from b2cal_assets.accounts.models import Account
from b2cal_assets.auth import AuthResult

from .decide import Principal
from .errors import ForbiddenError, NotAuthenticatedError
from .policy import Grant, Policy


def resolve_principal(auth: AuthResult, account: Account | None, policy: Policy, verdict: Verdict) -> Principal:
    """The principal for a validated chain; raises 401/403 errors with log detail and short reason."""
    if not auth.authenticated or auth.identity is None:
        detail = "; ".join(str(e) for e in auth.errors) or "no certificate"
        short = auth.errors[0].reason if auth.errors else "client certificate required"
        raise NotAuthenticatedError(f"certificate chain refused: {detail}", reason=short)
    dn = auth.identity.subject
    if verdict.access is Access.DENY:
        raise ForbiddenError(f"{dn}: accounts store not trusted: {verdict.reason}", reason="accounts database out of date; try later")
    if account is None:
        raise ForbiddenError(f"{dn}: no account with this DN in the accounts store (synced from DIRAC)", reason="unknown certificate DN: no Belle II DIRAC account")
    if account.suspended:
        raise ForbiddenError(f"{dn}: account {account.username} is suspended in DIRAC", reason="account suspended")
    if auth.fqans:
        # A valid AC: the roles the user selected with voms-proxy-init, nothing more.
        source, fqans = "voms", tuple(auth.fqans)
        grants = policy.grants_for(fqans=fqans)
    else:
        source, fqans = "dirac", account.voms_roles
        grants = policy.grants_for(fqans=fqans, dirac_groups=account.group_names)
    note = None
    if auth.voms_errors:
        note = "VOMS AC refused (" + "; ".join(str(e) for e in auth.voms_errors) + "); roles from DIRAC groups"
    if verdict.access is Access.VIEWER:
        grants = tuple(Grant("viewer", None, "accounts store stale") for _ in grants[:1])
        note = f"degraded to viewer: {verdict.reason}"
    if not grants:
        raise ForbiddenError(
            f"{dn} ({account.username}): no policy binding matches FQANs {list(fqans)} / DIRAC groups {list(account.group_names)}",
            reason="no platform role for your VOMS roles or DIRAC groups",
        )
    return Principal(dn=dn, username=account.username, grants=grants, role_source=source, fqans=tuple(fqans), note=note)
