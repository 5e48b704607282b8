"""The maximum-age rule: how far the proxy trusts an accounts set that has not been refreshed.

DIRAC removes and suspends users; if the sync stops working, the store silently keeps
people who left. Past ``max_age`` since the last good sync the proxy either denies
everyone or degrades everyone to viewer, by configuration, and says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from b2cal_assets import config
from b2cal_assets.accounts.errors import AccountsSettingsError
from b2cal_assets.accounts.store import SyncStatus, utcnow

DEFAULT_MAX_AGE = timedelta(hours=1)


class OnStale(StrEnum):
    """What the proxy does once the accounts set is older than the maximum age."""

    DENY = "deny"
    VIEWER = "viewer"


class Access(StrEnum):
    ALLOW = "allow"  # use the accounts' own roles
    VIEWER = "viewer"  # everyone known is read-only
    DENY = "deny"


@dataclass(frozen=True)
class FreshnessPolicy:
    max_age: timedelta = DEFAULT_MAX_AGE
    on_stale: OnStale = OnStale.DENY

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FreshnessPolicy:
        """From ``B2CAL_ACCOUNTS_MAX_AGE`` (``3600``, ``90m``, ``2h``, ``1d``) and ``B2CAL_ACCOUNTS_ON_STALE``."""
        text = config.ACCOUNTS_MAX_AGE.raw(environ)
        max_age = parse_duration(text) if text else DEFAULT_MAX_AGE
        raw = (config.ACCOUNTS_ON_STALE.raw(environ) or OnStale.DENY.value).lower()
        try:
            on_stale = OnStale(raw)
        except ValueError:
            raise AccountsSettingsError(
                f"B2CAL_ACCOUNTS_ON_STALE={raw!r} is not one of: deny, viewer"
            ) from None
        return cls(max_age=max_age, on_stale=on_stale)


@dataclass(frozen=True)
class Verdict:
    """``access`` is the ceiling for every account; ``reason`` is set whenever it is not ALLOW."""

    access: Access
    reason: str | None = None
    age_seconds: float | None = None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> timedelta:
    """``3600``/``3600s``, ``90m``, ``2h``, ``1d`` -> timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise AccountsSettingsError(f"cannot read duration {text!r}; write e.g. 3600, 90m, 2h or 1d")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def evaluate(status: SyncStatus, policy: FreshnessPolicy, now: datetime | None = None) -> Verdict:
    """Apply the maximum-age rule to the store's status."""
    now = now or utcnow()
    stale_access = Access.DENY if policy.on_stale is OnStale.DENY else Access.VIEWER
    if status.generation is None or status.last_good_sync_at is None:
        return Verdict(stale_access, "the accounts store has never been synced from DIRAC; run `b2cal accounts sync`")
    age = status.age_seconds(now)
    assert age is not None
    if age <= policy.max_age.total_seconds():
        return Verdict(Access.ALLOW, None, age)
    reason = (
        f"accounts last synced from DIRAC at {status.last_good_sync_at:%Y-%m-%d %H:%M:%S}Z, "
        f"{_human(age)} ago, more than the {_human(policy.max_age.total_seconds())} maximum"
    )
    if status.last_error_reason:
        reason += f"; last sync failed: {status.last_error_reason}"
    return Verdict(stale_access, reason, age)


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
