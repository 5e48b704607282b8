"""The accounts store in the platform database (SQLite or PostgreSQL).

Layout (all tables prefixed ``b2cal_accounts_``):

- ``generations``: one row per accepted accounts set (source, ETag, counts).
- ``users`` / ``dns``: the rows of each generation; ``dns`` has primary key
  (generation_id, dn), which is the index ``lookup_dn`` uses.
- ``state``: a single row pointing at the current generation, plus the sync status
  (last good sync, ETag, last error and its reason).

Why generations: a sync writes a whole new generation and switches the pointer in the same
transaction, so a reader sees the old set or the new one, never a mix. Every read is one
SQL statement joined through the pointer, which gives it one consistent snapshot on both
SQLite (WAL) and PostgreSQL (READ COMMITTED takes a snapshot per statement). The previous
generation is kept one more round so a reader that fetched the old pointer a moment ago
still finds its rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from b2cal_assets.accounts.errors import AccountsStoreError
from b2cal_assets.accounts.models import Account, AccountsDiff, GroupMembership
from b2cal_assets.database import UtcDateTime, safe_url

if TYPE_CHECKING:
    # Typing only: the proxy imports this module and must not pay for diracx-core's schema.
    from b2cal_assets.accounts.registry import RegistrySnapshot

metadata = sa.MetaData()

generations = sa.Table(
    "b2cal_accounts_generations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("vo", sa.String(255), nullable=False),
    sa.Column("etag", sa.String(255)),
    sa.Column("account_count", sa.Integer, nullable=False),
    sa.Column("dn_count", sa.Integer, nullable=False),
    sa.Column("suspended_count", sa.Integer, nullable=False),
)

users = sa.Table(
    "b2cal_accounts_users",
    metadata,
    sa.Column("generation_id", sa.Integer, sa.ForeignKey(generations.c.id), primary_key=True),
    sa.Column("sub", sa.String(255), primary_key=True),
    sa.Column("username", sa.String(255), nullable=False),
    sa.Column("email", sa.String(512)),
    sa.Column("suspended", sa.Boolean, nullable=False),
    # Denormalised so a lookup returns the whole account in one statement.
    sa.Column("dns_json", sa.Text, nullable=False),
    sa.Column("groups_json", sa.Text, nullable=False),
)

dns = sa.Table(
    "b2cal_accounts_dns",
    metadata,
    sa.Column("generation_id", sa.Integer, sa.ForeignKey(generations.c.id), primary_key=True),
    sa.Column("dn", sa.String(2048), primary_key=True),
    sa.Column("sub", sa.String(255), nullable=False),
)

state = sa.Table(
    "b2cal_accounts_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation_id", sa.Integer, sa.ForeignKey(generations.c.id)),
    sa.Column("source", sa.String(1024)),
    sa.Column("vo", sa.String(255)),
    sa.Column("etag", sa.String(255)),
    sa.Column("last_good_sync_at", UtcDateTime),
    sa.Column("last_attempt_at", UtcDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_reason", sa.String(64)),
    sa.Column("last_error_at", UtcDateTime),
)

_STATE_ID = 1


@dataclass(frozen=True)
class SyncStatus:
    """What the proxy and operators need to judge the accounts set."""

    generation: int | None
    source: str | None
    vo: str | None
    etag: str | None
    last_good_sync_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    last_error_reason: str | None
    last_error_at: datetime | None
    account_count: int = 0
    dn_count: int = 0
    suspended_count: int = 0

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since the last good sync (or import), None if there never was one."""
        if self.last_good_sync_at is None:
            return None
        return ((now or utcnow()) - self.last_good_sync_at).total_seconds()

    def to_json(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "generation": self.generation,
            "source": self.source,
            "vo": self.vo,
            "etag": self.etag,
            "last_good_sync_at": iso(self.last_good_sync_at),
            "last_attempt_at": iso(self.last_attempt_at),
            "last_error": self.last_error,
            "last_error_reason": self.last_error_reason,
            "last_error_at": iso(self.last_error_at),
            "account_count": self.account_count,
            "dn_count": self.dn_count,
            "suspended_count": self.suspended_count,
        }


@dataclass(frozen=True)
class ReplaceResult:
    generation: int
    diff: AccountsDiff
    account_count: int
    dn_count: int
    suspended_count: int


def utcnow() -> datetime:
    return datetime.now(tz=timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; they were written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def seed_rows(conn: Connection) -> None:
    """The single state row, made with the tables (a new database has no sync status yet)."""
    if conn.execute(sa.select(state.c.id).where(state.c.id == _STATE_ID)).first() is None:
        conn.execute(state.insert().values(id=_STATE_ID))


class AccountsStore:
    """Read and replace the accounts set in the platform database (``platform_database(url).accounts()``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _safe_url(self) -> str:
        return safe_url(self.engine)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as error:
            raise AccountsStoreError(f"cannot read the accounts store at {self._safe_url()}: {error.orig}") from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as error:
            # Any database error rolls the whole transaction back: the current set is untouched.
            raise AccountsStoreError(f"cannot write the accounts store at {self._safe_url()}: {error.orig}") from None

    # ---- readers (the proxy's path) -------------------------------------------------------

    def generation(self) -> int | None:
        """The current generation number: a cheap primary-key read to notice a new sync."""
        with self._read() as conn:
            return conn.execute(sa.select(state.c.generation_id).where(state.c.id == _STATE_ID)).scalar()

    def lookup_dn(self, slash_dn: str) -> Account | None:
        """The account owning certificate subject ``slash_dn`` in the current set, or None.

        One indexed statement (primary key of ``dns``). Suspended accounts are returned with
        ``suspended=True``: the caller decides (deny), and can say why.
        """
        query = (
            sa.select(users)
            .select_from(state)
            .join(dns, sa.and_(dns.c.generation_id == state.c.generation_id, dns.c.dn == slash_dn.strip()))
            .join(users, sa.and_(users.c.generation_id == dns.c.generation_id, users.c.sub == dns.c.sub))
            .where(state.c.id == _STATE_ID)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return _account(row) if row is not None else None

    def lookup_username(self, username: str) -> Account | None:
        """The account with DIRAC login ``username`` in the current set, or None."""
        with self._read() as conn:
            row = conn.execute(self._current_users().where(users.c.username == username).limit(1)).first()
        return _account(row) if row is not None else None

    def accounts(self) -> list[Account]:
        """All accounts of the current set, sorted by username."""
        with self._read() as conn:
            rows = conn.execute(self._current_users().order_by(users.c.username)).all()
        return [_account(row) for row in rows]

    def dn_map(self) -> tuple[int | None, dict[str, Account]]:
        """(generation, {dn: account}) read in one statement, for an in-memory cache."""
        query = (
            sa.select(state.c.generation_id.label("current_generation"), users)
            .select_from(state)
            .join(users, users.c.generation_id == state.c.generation_id)
            .where(state.c.id == _STATE_ID)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return self.generation(), {}
        generation = rows[0].current_generation
        mapping: dict[str, Account] = {}
        for row in rows:
            account = _account(row)
            for dn in account.dns:
                mapping[dn] = account
        return generation, mapping

    def _current_users(self) -> sa.Select:
        return (
            sa.select(users)
            .select_from(state)
            .join(users, users.c.generation_id == state.c.generation_id)
            .where(state.c.id == _STATE_ID)
        )

    def status(self) -> SyncStatus:
        """The sync status: current generation, last good sync, ETag and last error."""
        query = (
            sa.select(state, generations.c.account_count, generations.c.dn_count, generations.c.suspended_count)
            .select_from(state.outerjoin(generations, generations.c.id == state.c.generation_id))
            .where(state.c.id == _STATE_ID)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return SyncStatus(None, None, None, None, None, None, None, None, None)
        return SyncStatus(
            generation=row.generation_id,
            source=row.source,
            vo=row.vo,
            etag=row.etag,
            last_good_sync_at=_aware(row.last_good_sync_at),
            last_attempt_at=_aware(row.last_attempt_at),
            last_error=row.last_error,
            last_error_reason=row.last_error_reason,
            last_error_at=_aware(row.last_error_at),
            account_count=row.account_count or 0,
            dn_count=row.dn_count or 0,
            suspended_count=row.suspended_count or 0,
        )

    # ---- writers (the sync's path) --------------------------------------------------------

    def replace(
        self,
        snapshot: RegistrySnapshot,
        *,
        source: str,
        etag: str | None,
        now: datetime | None = None,
    ) -> ReplaceResult:
        """Make ``snapshot`` the current set, atomically, and record a good sync."""
        now = now or utcnow()
        account_rows = []
        dn_rows = []
        for account in snapshot.accounts.values():
            account_rows.append(
                {
                    "sub": account.sub,
                    "username": account.username,
                    "email": account.email,
                    "suspended": account.suspended,
                    "dns_json": json.dumps(list(account.dns)),
                    "groups_json": json.dumps([g.to_json() for g in account.groups]),
                }
            )
            dn_rows.extend({"dn": dn, "sub": account.sub} for dn in account.dns)

        suspended_count = sum(1 for a in snapshot.accounts.values() if a.suspended)
        with self._write() as conn:
            # Writing the state row first takes the write lock (SQLite) / row lock (PostgreSQL),
            # so two concurrent syncs serialise instead of both switching the pointer.
            conn.execute(state.update().where(state.c.id == _STATE_ID).values(last_attempt_at=now))
            previous = conn.execute(sa.select(state.c.generation_id).where(state.c.id == _STATE_ID)).scalar()
            # Diff on the stored column values (no JSON decoding): equal rows are equal accounts.
            old: dict[str, tuple[object, ...]] = {}
            if previous is not None:
                columns = [users.c[name] for name in _COMPARED]
                old_rows = conn.execute(sa.select(users.c.sub, *columns).where(users.c.generation_id == previous))
                old = {row[0]: tuple(row[1:]) for row in old_rows}
            generation = conn.execute(
                generations.insert().values(
                    created_at=now,
                    source=source,
                    vo=snapshot.vo,
                    etag=etag,
                    account_count=len(account_rows),
                    dn_count=len(dn_rows),
                    suspended_count=suspended_count,
                )
            ).inserted_primary_key[0]
            if account_rows:
                conn.execute(users.insert(), [dict(row, generation_id=generation) for row in account_rows])
            if dn_rows:
                conn.execute(dns.insert(), [dict(row, generation_id=generation) for row in dn_rows])
            conn.execute(
                state.update()
                .where(state.c.id == _STATE_ID)
                .values(
                    generation_id=generation,
                    source=source,
                    vo=snapshot.vo,
                    etag=etag,
                    last_good_sync_at=now,
                    last_error=None,
                    last_error_reason=None,
                    last_error_at=None,
                )
            )
            if previous is not None:
                # Keep ``previous`` for readers that read the old pointer a moment ago.
                stale = sa.select(generations.c.id).where(generations.c.id < previous)
                conn.execute(dns.delete().where(dns.c.generation_id.in_(stale)))
                conn.execute(users.delete().where(users.c.generation_id.in_(stale)))
                conn.execute(generations.delete().where(generations.c.id < previous))
        return ReplaceResult(
            generation=generation,
            diff=_diff(old, {row["sub"]: tuple(row[name] for name in _COMPARED) for row in account_rows}),
            account_count=len(account_rows),
            dn_count=len(dn_rows),
            suspended_count=suspended_count,
        )

    def record_unchanged(self, *, source: str, etag: str | None, now: datetime | None = None) -> None:
        """A 304: the current set is confirmed up to date (it counts as a good sync for max-age)."""
        now = now or utcnow()
        with self._write() as conn:
            conn.execute(
                state.update()
                .where(state.c.id == _STATE_ID)
                .values(
                    etag=etag,
                    last_good_sync_at=now,
                    last_attempt_at=now,
                    last_error=None,
                    last_error_reason=None,
                    last_error_at=None,
                )
            )

    def record_failure(self, *, reason: str, message: str, now: datetime | None = None) -> None:
        """A failed sync: keep the current set, remember why (shown by the proxy and the CLI)."""
        now = now or utcnow()
        with self._write() as conn:
            conn.execute(
                state.update()
                .where(state.c.id == _STATE_ID)
                .values(last_attempt_at=now, last_error=message[:4000], last_error_reason=reason, last_error_at=now)
            )


_COMPARED = ("username", "email", "suspended", "dns_json", "groups_json")


def _diff(old: dict[str, tuple[object, ...]], new: dict[str, tuple[object, ...]]) -> AccountsDiff:
    # Column 0 is the username; booleans come back from SQLite as 0/1, hence the normalisation.
    def norm(values: tuple[object, ...]) -> tuple[object, ...]:
        return (values[0], values[1], bool(values[2]), values[3], values[4])

    added = sorted(str(new[s][0]) for s in new.keys() - old.keys())
    removed = sorted(str(old[s][0]) for s in old.keys() - new.keys())
    changed = sorted(str(new[s][0]) for s in new.keys() & old.keys() if norm(new[s]) != norm(old[s]))
    return AccountsDiff(tuple(added), tuple(removed), tuple(changed))


def _account(row: sa.Row) -> Account:
    return Account(
        sub=row.sub,
        username=row.username,
        dns=tuple(json.loads(row.dns_json)),
        email=row.email,
        suspended=bool(row.suspended),
        groups=tuple(GroupMembership.from_json(g) for g in json.loads(row.groups_json)),
    )
