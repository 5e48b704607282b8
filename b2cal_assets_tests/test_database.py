"""Schema creation shared by the platform stores: safe when processes race to create tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from b2cal_assets.database import create_tables, engine_for


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    for name in ("b2cal_race_a", "b2cal_race_b", "b2cal_race_c"):
        sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))
    return metadata


def test_tables_created_by_another_process_meanwhile_are_not_an_error(database_url) -> None:
    """Between create_all's check and its CREATE, a rival creates each table first (what two
    step processes on a fresh database do to each other)."""
    ours, rivals = _metadata(), _metadata()
    rival_engine = sa.create_engine(database_url)  # a separate pool: the other process
    try:
        for table in ours.sorted_tables:
            def rival_creates_it_first(target, connection, _table=table, **_):  # type: ignore[no-untyped-def]
                rivals.tables[_table.name].create(rival_engine, checkfirst=True)

            sa.event.listen(table, "before_create", rival_creates_it_first)
        create_tables(ours, engine_for(database_url))
        assert {"b2cal_race_a", "b2cal_race_b", "b2cal_race_c"} <= set(sa.inspect(engine_for(database_url)).get_table_names())
    finally:
        rival_engine.dispose()


def test_other_database_errors_still_raise(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/missing-dir/x.sqlite"
    with pytest.raises(sa.exc.OperationalError):
        create_tables(_metadata(), sa.create_engine(url))
