"""The maximum-age rule the proxy applies to the accounts set."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from b2cal_assets.accounts.errors import AccountsSettingsError
from b2cal_assets.accounts.freshness import Access, FreshnessPolicy, OnStale, evaluate, parse_duration
from b2cal_assets.accounts.store import SyncStatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _status(age: timedelta | None, reason: str | None = None) -> SyncStatus:
    synced = None if age is None else NOW - age
    return SyncStatus(
        generation=None if age is None else 3,
        source="diracx:https://diracx.belle2.org#belle",
        vo="belle",
        etag="abc",
        last_good_sync_at=synced,
        last_attempt_at=NOW,
        last_error="DiracX at https://diracx.belle2.org is unreachable" if reason else None,
        last_error_reason=reason,
        last_error_at=NOW if reason else None,
    )


def test_fresh_set_allows() -> None:
    verdict = evaluate(_status(timedelta(minutes=5)), FreshnessPolicy(timedelta(hours=1)), NOW)
    assert verdict.access is Access.ALLOW and verdict.reason is None


def test_stale_set_denies_and_says_why() -> None:
    verdict = evaluate(_status(timedelta(hours=3), "server_unavailable"), FreshnessPolicy(timedelta(hours=1)), NOW)
    assert verdict.access is Access.DENY
    assert "3h00m ago" in verdict.reason and "60m maximum" in verdict.reason
    assert "server_unavailable" in verdict.reason


def test_stale_set_degrades_to_viewer_when_configured() -> None:
    policy = FreshnessPolicy(timedelta(hours=1), OnStale.VIEWER)
    assert evaluate(_status(timedelta(hours=2)), policy, NOW).access is Access.VIEWER


def test_exactly_max_age_is_still_fresh() -> None:
    assert evaluate(_status(timedelta(hours=1)), FreshnessPolicy(timedelta(hours=1)), NOW).access is Access.ALLOW


def test_never_synced_store_is_stale() -> None:
    verdict = evaluate(_status(None), FreshnessPolicy(), NOW)
    assert verdict.access is Access.DENY and "never been synced" in verdict.reason


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("90m", 5400), ("2h", 7200), ("1d", 86400), ("45s", 45)])
def test_durations(text, seconds) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_policy_from_environment() -> None:
    policy = FreshnessPolicy.from_env({"B2CAL_ACCOUNTS_MAX_AGE": "30m", "B2CAL_ACCOUNTS_ON_STALE": "viewer"})
    assert policy == FreshnessPolicy(timedelta(minutes=30), OnStale.VIEWER)


def test_unknown_stale_mode_is_refused() -> None:
    with pytest.raises(AccountsSettingsError, match="deny, viewer"):
        FreshnessPolicy.from_env({"B2CAL_ACCOUNTS_ON_STALE": "admin"})
