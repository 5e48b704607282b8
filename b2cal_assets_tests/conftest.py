"""Shared fixtures: fresh platform databases on SQLite and on the machine's PostgreSQL.

PostgreSQL tests create a database of their own (``b2cal_test_<random>``) on the server at
127.0.0.1:5432 (trust auth, maintenance database ``test``) and drop it at teardown, so
nothing is left behind and tests do not depend on each other's order.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from b2cal_assets.database import dispose_engine

POSTGRES_SERVER_URL = os.environ.get("B2CAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _server_engine() -> sa.engine.Engine:
    return sa.create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


@contextlib.contextmanager
def new_postgres_database() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database; its engine disposed and the database dropped on exit.

    For fixtures of any scope (the session-scoped validation deployment on PostgreSQL uses it too).
    """
    name = f"b2cal_test_{uuid.uuid4().hex[:12]}"
    server = _server_engine()
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:  # pragma: no cover - environment problem
        pytest.fail(
            f"PostgreSQL at {POSTGRES_SERVER_URL} is not reachable ({error.orig}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    url = sa.engine.make_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> Iterator[str]:
    """URL of a new SQLite platform database in the test's temporary directory."""
    url = f"sqlite:///{tmp_path / 'b2cal.sqlite'}"
    yield url
    dispose_engine(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> str:
    """The platform database URL, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def deployment(request, tmp_path):
    """(Dagster instance, platform database URL): all SQLite, or all PostgreSQL via dagster-postgres.

    The PostgreSQL variant puts the Dagster storage and the platform tables in one fresh
    database, as production does.
    """
    from dagster import instance_for_test

    if request.param == "sqlite":
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with instance_for_test(temp_dir=str(home)) as instance:
            yield instance, request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
        overrides = {"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}}
        with instance_for_test(overrides=overrides) as instance:
            yield instance, url
