"""Alembic environment: runs on the connection ``b2cal_assets.database.upgrade`` hands over.

That connection is already inside the transaction holding the migration lock, so Alembic
neither opens nor commits one. Without a handed-over connection (the ``alembic`` tool with
``-x url=...``) it opens the platform database itself.
"""

from __future__ import annotations

from alembic import context

from b2cal_assets.database import VERSION_TABLE, engine_for, is_platform_table, platform_metadata


def _include_name(name: str | None, type_: str, _parents: dict) -> bool:
    # Dagster's storage may share the database: only the platform's tables are ours.
    return type_ != "table" or is_platform_table(name)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=platform_metadata(),
        version_table=VERSION_TABLE,
        include_name=_include_name,
        render_as_batch=True,  # SQLite alters columns by rebuilding the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    with engine_for(url).connect() as own_connection:
        _run(own_connection)
        own_connection.commit()
