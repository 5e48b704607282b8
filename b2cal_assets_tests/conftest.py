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
from pathlib import Path

import pytest
import sqlalchemy as sa

from b2cal_assets.database import dispose_engine

POSTGRES_SERVER_URL = os.environ.get("B2CAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

TESTS_ROOT = Path(__file__).parent
# Folders whose test files share session-scoped worlds (real calibrations of real buckets, minutes
# to build): with pytest-xdist their files run on one worker, so each world is built once.
SHARED_WORLD_FOLDERS = ("validation",)


def _work_unit(nodeid: str) -> str:
    """The test file, or the shared-world folder holding it (node ids are relative to the root)."""
    path = nodeid.split("::", 1)[0]
    for folder in SHARED_WORLD_FOLDERS:
        if path.startswith(f"{TESTS_ROOT.name}/{folder}/"):
            return f"{TESTS_ROOT.name}/{folder}/"
    return path


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: plain pytest runs without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]  # noqa: ANN201
    """``--dist loadfile`` (the test command) with the shared-world folders as one work unit.

    xdist's own ``loadgroup`` does not group under pytest 9 (its ``@group`` suffix never reaches
    the node ids the workers report), so the grouping is the scheduler's."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedWorldScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return SharedWorldScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The shared worlds and the files marked ``slow`` first: work units go to the workers in this
    order (``--no-loadscope-reorder``), so the two workers do not end on one long file while the
    other idles."""
    def cost_rank(item: pytest.Item) -> int:
        if _work_unit(item.nodeid).endswith("/"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=cost_rank)  # stable: file order is kept within each rank


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
