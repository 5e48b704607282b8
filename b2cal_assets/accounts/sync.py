"""The one accounts sync: fetch (conditionally), validate, replace atomically, or record why not.

``sync_accounts`` works on any ``sources.AccountsSource``; the Dagster asset, the CLI, the
demo and the benchmark all go through it. A failed sync leaves the current set untouched,
records the reason in the store and re-raises the specific error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from b2cal_assets.accounts.diracx_source import DEFAULT_VO, DiracxSettings
from b2cal_assets.accounts.errors import AccountsSyncError, RegistryMalformedError
from b2cal_assets.accounts.models import AccountsDiff
from b2cal_assets.accounts.sources import AccountsSource, DiracxSource, RegistryFileSource
from b2cal_assets.accounts.store import AccountsStore, utcnow

# Annotations only: the registry module (DiracX's schema) loads when a source fetches (sources.py).
if TYPE_CHECKING:
    from b2cal_assets.accounts.registry import RegistrySnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncOutcome:
    """What a sync did. ``changed`` is False for a 304 (the set was confirmed, not rewritten)."""

    changed: bool
    generation: int | None
    source: str
    etag: str | None
    account_count: int
    dn_count: int
    suspended_count: int
    diff: AccountsDiff = field(default_factory=AccountsDiff)
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "changed": self.changed,
            "generation": self.generation,
            "source": self.source,
            "etag": self.etag,
            "accounts": self.account_count,
            "dns": self.dn_count,
            "suspended": self.suspended_count,
            "added": list(self.diff.added),
            "removed": list(self.diff.removed),
            "changed_users": list(self.diff.changed),
            "warnings": list(self.warnings),
        }


def sync_accounts(
    store: AccountsStore, source: AccountsSource, *, force: bool = False, now: datetime | None = None
) -> SyncOutcome:
    """The one sync: fetch from ``source``, validate, store a new generation, record freshness.

    Sends the stored ETag unless ``force`` or the source changed, so an unchanged DiracX
    registry costs one 304. Raises an ``AccountsSyncError`` subclass on failure after
    recording it; the last good set stays current.
    """
    now = now or utcnow()
    status = store.status()
    # The ETag names a config commit; it only means "nothing to do" for the same source.
    etag = status.etag if (not force and status.generation is not None and status.source == source.source) else None
    try:
        fetched = source.fetch(etag)
        if fetched.snapshot is None:
            store.record_unchanged(source=source.source, etag=etag, now=now)
            log.info("accounts unchanged (ETag %s, generation %s)", etag, status.generation)
            return SyncOutcome(
                changed=False,
                generation=status.generation,
                source=source.source,
                etag=etag,
                account_count=status.account_count,
                dn_count=status.dn_count,
                suspended_count=status.suspended_count,
            )
        _refuse_emptying(fetched.snapshot, status.account_count, force, source.source)
    except AccountsSyncError as error:
        store.record_failure(reason=error.reason, message=str(error), now=now)
        log.warning("accounts sync failed (%s): %s; keeping generation %s", error.reason, error, status.generation)
        raise
    return _replace(store, fetched.snapshot, source=source.source, etag=fetched.etag, now=now)


def sync_from_diracx(
    store: AccountsStore, settings: DiracxSettings, *, force: bool = False, now: datetime | None = None
) -> SyncOutcome:
    """``sync_accounts`` from DiracX (``b2cal accounts sync``, tests, the benchmark)."""
    return sync_accounts(store, DiracxSource(settings), force=force, now=now)


def import_registry_yaml(
    path: Path | str,
    vo: str = DEFAULT_VO,
    *,
    store: AccountsStore | None = None,
    accounts_db: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> SyncOutcome:
    """``sync_accounts`` from a DiracX Registry YAML file (``b2cal accounts import``, the demo, tests).

    ``store`` defaults to the platform database (``accounts_db`` or ``b2cal_assets.config.database_url()``).
    """
    if store is None:
        from b2cal_assets.config import database_url
        from b2cal_assets.database import platform_database

        store = platform_database(accounts_db or database_url()).accounts()
    return sync_accounts(store, RegistryFileSource(Path(path), vo), force=force, now=now)


def _refuse_emptying(snapshot: RegistrySnapshot, current_count: int, force: bool, source: str) -> None:
    # An empty user list where there were users is far likelier a broken config than everyone leaving.
    if not snapshot.accounts and current_count and not force:
        raise RegistryMalformedError(
            f"Registry[{snapshot.vo!r}] from {source} has no users, the current set has {current_count}; "
            "refusing to empty the accounts store (rerun with --force if this is intended)"
        )


def _replace(store: AccountsStore, snapshot: RegistrySnapshot, *, source: str, etag: str | None, now: datetime) -> SyncOutcome:
    result = store.replace(snapshot, source=source, etag=etag, now=now)
    for warning in snapshot.warnings:
        log.warning("registry %s: %s", source, warning)
    log.info(
        "accounts generation %s from %s: %d users, %d DNs (+%d -%d ~%d)",
        result.generation,
        source,
        result.account_count,
        result.dn_count,
        len(result.diff.added),
        len(result.diff.removed),
        len(result.diff.changed),
    )
    return SyncOutcome(
        changed=True,
        generation=result.generation,
        source=source,
        etag=etag,
        account_count=result.account_count,
        dn_count=result.dn_count,
        suspended_count=result.suspended_count,
        diff=result.diff,
        warnings=snapshot.warnings,
    )
