"""One timestamp type: the String(40) ISO times of runs and buckets become DateTime(timezone=True).

Data are converted, not dropped: an ISO 8601 text with an offset becomes that instant; one
without an offset is taken as UTC (the stores always wrote UTC). PostgreSQL converts in
place (``ALTER ... USING``). SQLite cannot change a column type, so each table is rebuilt:
a new table is filled with the converted rows, the old one dropped and the new one renamed
(foreign keys are off during the migration: see ``database.upgrade``).

Revision ID: 0002_utc_timestamps
Revises: 0001_pre_migration
Create Date: 2026-11-29
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002_utc_timestamps"
down_revision = "0001_pre_migration"
branch_labels = None
depends_on = None

COLUMNS = {
    "b2cal_runs": ("start_time", "end_time", "ingested_at"),
    "b2cal_buckets": ("opened_at", "closed_at"),
    "b2cal_bucket_runs": ("assigned_at",),
    "b2cal_bucket_collector_outputs": ("created_at",),
    "b2cal_bucket_calibrations": ("created_at",),
}
TEXT = sa.String(40)
TIMESTAMP = sa.DateTime(timezone=True)


def _before() -> sa.MetaData:
    return importlib.import_module("b2cal_assets.migrations.versions.0001_pre_migration").tables()


def _after() -> sa.MetaData:
    metadata = _before()
    for table, columns in COLUMNS.items():
        for column in columns:
            metadata.tables[table].c[column].type = TIMESTAMP
    return metadata


def _text_to_utc(table: str, column: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{table}.{column}: {value!r} is not an ISO 8601 time; correct the row and upgrade again") from None
    parsed = parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    return parsed.replace(tzinfo=None)  # SQLite keeps no offset: stored as UTC


def _utc_to_text(_table: str, _column: str, value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc).isoformat() if value.tzinfo is None else value.astimezone(timezone.utc).isoformat()


def _rebuild_sqlite(name: str, source: sa.Table, target: sa.Table, convert: Callable[[str, str, Any], Any]) -> None:
    """SQLite's documented way to change a column's type: new table, copy, drop, rename."""
    bind = op.get_bind()
    # In the target's own MetaData so its foreign keys resolve (they name the real tables).
    staging = target.to_metadata(target.metadata, name=f"_b2cal_new_{name}")
    staging.indexes.clear()  # index names are global in SQLite: made after the rename
    staging.create(bind)
    columns = COLUMNS[name]
    rows = [
        {key: (convert(name, key, value) if key in columns else value) for key, value in row._mapping.items()}
        for row in bind.execute(sa.select(source))
    ]
    if rows:
        bind.execute(staging.insert(), rows)
    op.drop_table(name)
    op.rename_table(staging.name, name)
    for index in target.indexes:
        index.create(bind)


def upgrade() -> None:
    bind = op.get_bind()
    before, after = _before(), _after()
    if bind.dialect.name == "postgresql":
        op.execute("SET LOCAL timezone = 'UTC'")  # a time without offset is UTC
        for table, columns in COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=TIMESTAMP, existing_type=TEXT,
                                postgresql_using=f"{column}::timestamptz")
    else:
        for table in COLUMNS:
            _rebuild_sqlite(table, before.tables[table], after.tables[table], _text_to_utc)


def downgrade() -> None:
    bind = op.get_bind()
    before, after = _before(), _after()
    if bind.dialect.name == "postgresql":
        for table, columns in COLUMNS.items():
            for column in columns:
                op.alter_column(
                    table, column, type_=TEXT, existing_type=TIMESTAMP,
                    postgresql_using=f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'""",
                )
    else:
        for table in COLUMNS:
            _rebuild_sqlite(table, after.tables[table], before.tables[table], _utc_to_text)
