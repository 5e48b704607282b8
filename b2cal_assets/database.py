"""The platform database: one engine per URL, its schema at the newest migration, every store.

The run registry, the bucket store, the conditions database, the accounts store and the
proxy's audit table share the database named by ``B2CAL_DATABASE_URL``; each owns its tables
(prefixed ``b2cal_``). Nothing else builds a store: callers ask :func:`platform_database` (or
the Dagster resource ``PlatformDatabaseResource``, which calls it) for one, so every store of a
URL shares one connection pool and the schema is brought to the newest Alembic revision once
per process before the first store is handed out.

Schema changes are Alembic revisions in ``b2cal_assets/migrations`` (``b2cal db upgrade``).
The version table is ``b2cal_alembic_version``: production puts Dagster's own storage, which
has its own ``alembic_version``, in the same PostgreSQL database.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from b2cal_assets.accounts.store import AccountsStore
    from b2cal_assets.calibration.bucket_store import BucketStore
    from b2cal_assets.conditions.store import ConditionsStore
    from b2cal_assets.proxy.audit_store import AuditStore
    from b2cal_assets.runs.registry import RunRegistry

VERSION_TABLE = "b2cal_alembic_version"
TABLE_PREFIX = "b2cal_"
# Key of the PostgreSQL advisory lock held while the schema is migrated ("b2cal" in ASCII).
_MIGRATION_LOCK_KEY = 0x6232_6361_6C


class DatabaseSchemaError(Exception):
    """The platform database cannot be opened or migrated (the message is one line for operators)."""


class UtcDateTime(sa.types.TypeDecorator):
    """``DateTime(timezone=True)`` that always hands back timezone-aware UTC datetimes.

    Why: SQLite has no timestamp type; SQLAlchemy stores text without the offset and returns
    naive values. Binding converts to UTC (and drops the offset on SQLite), reading marks the
    value as UTC again, so both databases round-trip the same aware datetime. Naive datetimes
    are refused: their zone is unknown.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"timestamp {value!r} must be a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utc_from_iso(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without offset is taken as UTC)."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# -- engines ----------------------------------------------------------------------------------


def _enable_sqlite_foreign_keys_and_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the webserver read while a run writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(url: str) -> Engine:
    """A pooled engine for ``url`` (one pool per database per process)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _create_engine(url)
        return engine


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _enable_sqlite_foreign_keys_and_wal)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of ``url`` (tests drop their databases afterwards)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.pop(url, None)
        _DATABASES.pop(url, None)
    if engine is not None:
        engine.dispose()


def safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


# -- schema -----------------------------------------------------------------------------------


def platform_metadata() -> list[sa.MetaData]:
    """The table definitions of every store (what the newest migration must produce)."""
    from b2cal_assets.accounts import store as accounts_store
    from b2cal_assets.calibration import bucket_store
    from b2cal_assets.conditions import schema as conditions_schema
    from b2cal_assets.proxy import audit_store
    from b2cal_assets.runs import registry

    return [registry.metadata, bucket_store.metadata, conditions_schema.metadata, accounts_store.metadata, audit_store.metadata]


def is_platform_table(name: str | None) -> bool:
    """Tables the migrations own (Dagster's tables may share the database)."""
    return bool(name) and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE  # type: ignore[union-attr]


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` for the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "b2cal_assets:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from b2cal_assets.migrations import HEAD

    return HEAD


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty or pre-migration database."""
    with engine.connect() as conn:
        return _current_revision(conn)


def _current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision it is at afterwards.

    Race-safe: the work runs in one transaction under a database-wide lock (PostgreSQL
    advisory lock, SQLite exclusive transaction), and the revision is read again once the
    lock is held, so processes starting together on a fresh database migrate it once.

    A database with no platform tables at all is created from the table definitions and
    stamped at the head (what the revisions produce, checked by a test), which is much faster
    than replaying every revision for each new embedded SQLite file. A pre-migration
    database (tables but no version table) is adopted by the first revision, which creates
    only the tables it lacks.
    """
    from alembic import command

    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:
                # Rebuilding a table (SQLite cannot alter a column type) drops the old one;
                # with foreign keys on that would cascade into the run tags. Not settable
                # inside a transaction, so before it.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    if sqlite:
                        conn.exec_driver_sql("BEGIN EXCLUSIVE")
                    else:
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                    config = alembic_config(conn)
                    fresh = revision == "head" and not any(
                        is_platform_table(name) or name == VERSION_TABLE for name in sa.inspect(conn).get_table_names()
                    )
                    if fresh:
                        for metadata in platform_metadata():
                            metadata.create_all(conn)
                        _seed_rows(conn)
                        command.stamp(config, "head")
                    elif _current_revision(conn) != (head_revision() if revision == "head" else revision):
                        command.upgrade(config, revision)
                    return _current_revision(conn)
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()
    except sa.exc.DBAPIError as error:
        raise DatabaseSchemaError(
            f"cannot migrate the platform database {safe_url(engine)}: {str(error.orig).strip().splitlines()[0]}; "
            "check the database URL (B2CAL_DATABASE_URL) and that it is writable"
        ) from None


def _seed_rows(conn: Connection) -> None:
    from b2cal_assets.accounts.store import seed_rows

    seed_rows(conn)


# Per engine object, not per URL: a test that drops and recreates a database gets a new engine.
_SCHEMA_READY: weakref.WeakSet[Engine] = weakref.WeakSet()
_SCHEMA_LOCK = threading.Lock()


def ensure_schema(engine: Engine) -> None:
    """The schema at the head revision, checked once per engine per process.

    Why once: stores are opened on every asset run and sensor tick; after the first check the
    cost is a set lookup. A database at an unknown (newer) revision is refused rather than
    downgraded: an older release must not write to a schema it does not know.
    """
    if engine in _SCHEMA_READY:
        return
    with _SCHEMA_LOCK:
        if engine in _SCHEMA_READY:
            return
        try:
            current = current_revision(engine)
        except sa.exc.DBAPIError as error:
            raise DatabaseSchemaError(
                f"cannot open the platform database {safe_url(engine)}: {str(error.orig).strip().splitlines()[0]}; "
                "check the database URL (B2CAL_DATABASE_URL) and that it is reachable"
            ) from None
        if current != head_revision():
            from b2cal_assets.migrations import REVISIONS

            if current is not None and current not in REVISIONS:
                raise DatabaseSchemaError(
                    f"the platform database {safe_url(engine)} is at schema revision {current}, which this "
                    f"release does not know (newest here: {head_revision()}); upgrade b2cal-assets"
                )
            upgrade(engine)
        _SCHEMA_READY.add(engine)


# -- the one factory ----------------------------------------------------------------------------


class PlatformDatabase:
    """The platform database at one URL: its engine and every store on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)

    def __repr__(self) -> str:
        return f"PlatformDatabase({safe_url(self.engine)!r})"

    def _ready(self) -> Engine:
        ensure_schema(self.engine)
        return self.engine

    def runs(self) -> RunRegistry:
        from b2cal_assets.runs.registry import RunRegistry

        return RunRegistry(self._ready())

    def buckets(self) -> BucketStore:
        from b2cal_assets.calibration.bucket_store import BucketStore

        return BucketStore(self._ready())

    def conditions(self, payload_dir: Path | str) -> ConditionsStore:
        from b2cal_assets.conditions.store import ConditionsStore

        return ConditionsStore(self._ready(), payload_dir)

    def accounts(self) -> AccountsStore:
        from b2cal_assets.accounts.store import AccountsStore

        return AccountsStore(self._ready())

    def audit(self) -> AuditStore:
        from b2cal_assets.proxy.audit_store import AuditStore

        return AuditStore(self._ready())


_DATABASES: dict[str, PlatformDatabase] = {}


def platform_database(url: str | None = None) -> PlatformDatabase:
    """The platform database at ``url`` (default: ``B2CAL_DATABASE_URL`` or the embedded SQLite file)."""
    if url is None:
        from b2cal_assets import config

        url = config.database_url()
    with _ENGINES_LOCK:
        database = _DATABASES.get(url)
    if database is None:
        database = PlatformDatabase(url)
        with _ENGINES_LOCK:
            database = _DATABASES.setdefault(url, database)
    return database
