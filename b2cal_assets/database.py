"""One SQLAlchemy engine factory for every store in the platform database.

The run registry, the conditions database and the accounts store share the database
named by ``B2CAL_DATABASE_URL``; each owns its tables (prefixed ``b2cal_``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def _enable_sqlite_foreign_keys_and_wal(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets the webserver read while a run writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """A pooled engine for ``url`` (one pool per database per process)."""
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
    engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


def create_tables(metadata: sa.MetaData, engine: Engine) -> None:
    """``metadata.create_all``, safe when several processes create the same tables at once.

    Why: step processes on different workers open the stores of a fresh database together;
    create_all checks and then creates table by table, so another process can create a table
    between the two ("table ... already exists"). Each failed attempt means someone else made
    progress, so trying again at most once per table always ends with every table present.
    """
    for attempt in range(len(metadata.tables) + 1):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.DatabaseError:
            if attempt == len(metadata.tables):
                raise
