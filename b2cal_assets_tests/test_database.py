"""The platform database: one factory for every store, schema by Alembic migrations, one timestamp type.

Migrations are tested on both databases from the pre-migration schema with data (tables made
the way the stores made them before migrations existed, no version table), and the models are
checked against what the migrations produce (``alembic check``).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from b2cal_assets import migrations
from b2cal_assets.calibration.framework.buckets import BucketPolicy, BucketVersion
from b2cal_assets.database import (
    VERSION_TABLE,
    DatabaseSchemaError,
    UtcDateTime,
    alembic_config,
    current_revision,
    engine_for,
    platform_database,
    platform_metadata,
    upgrade,
)
from b2cal_assets.proxy.audit_store import AuditQuery
from b2cal_assets.run_identity import ExpRun

PRE_MIGRATION = importlib.import_module("b2cal_assets.migrations.versions.0001_pre_migration")
# The proxy's audit table before 0003: the audit store made it itself (create_all), with or without migrations.
PROXY_AUDIT = importlib.import_module("b2cal_assets.migrations.versions.0003_proxy_audit")


def _timestamp_columns(engine: sa.Engine, table: str) -> dict[str, str]:
    return {c["name"]: str(c["type"]) for c in sa.inspect(engine).get_columns(table)}


# -- the factory --------------------------------------------------------------------------------


def test_every_store_of_a_url_shares_one_engine_and_a_new_database_is_at_head(database_url, tmp_path) -> None:
    database = platform_database(database_url)
    stores = [database.runs(), database.buckets(), database.conditions(tmp_path / "payloads"), database.accounts(), database.audit()]
    assert len({id(store.engine) for store in stores}) == 1
    assert platform_database(database_url) is database
    assert current_revision(database.engine) == migrations.HEAD
    tables = set(sa.inspect(database.engine).get_table_names())
    assert {name for metadata in platform_metadata() for name in metadata.tables} <= tables


def test_stores_no_longer_create_tables_when_constructed(sqlite_url) -> None:
    database = platform_database(sqlite_url)
    database.runs()  # the schema is made once, here
    statements: list[str] = []
    sa.event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    database.runs(), database.buckets(), database.accounts(), database.audit()
    assert statements == []


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    with pytest.raises(DatabaseSchemaError) as raised:
        platform_database("postgresql://b2cal:s3cret-pw@127.0.0.1:1/none").runs()
    assert "s3cret-pw" not in str(raised.value) and "\n" not in str(raised.value)


def test_a_database_at_a_newer_revision_is_refused(sqlite_url) -> None:
    engine = engine_for(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} VALUES ('9999_from_the_future')"))
    with pytest.raises(DatabaseSchemaError, match="9999_from_the_future, which this release does not know"):
        platform_database(sqlite_url).runs()


# -- one timestamp type ---------------------------------------------------------------------------


def test_timestamps_round_trip_as_aware_utc_on_both_databases(database_url) -> None:
    metadata = sa.MetaData()
    table = sa.Table("b2cal_test_times", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UtcDateTime))
    engine = engine_for(database_url)
    metadata.create_all(engine)
    tokyo = datetime(2026, 11, 29, 9, 30, 1, 123456, tzinfo=timezone(timedelta(hours=9)))
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "at": tokyo}, {"id": 2, "at": None}])
        rows = dict(conn.execute(sa.select(table.c.id, table.c.at)).all())
    assert rows[1] == tokyo and rows[1].tzinfo == timezone.utc and rows[1].hour == 0
    assert rows[2] is None
    with pytest.raises(sa.exc.StatementError, match="must be a timezone-aware datetime"), engine.begin() as conn:
        conn.execute(table.insert().values(id=3, at=datetime(2026, 1, 1)))


def test_no_platform_table_keeps_a_text_timestamp() -> None:
    for metadata in platform_metadata():
        for table in metadata.tables.values():
            for column in table.columns:
                assert not (column.name.endswith(("_at", "_time")) and isinstance(column.type, sa.String)), (table.name, column.name)
                if isinstance(column.type, sa.DateTime):
                    pytest.fail(f"{table.name}.{column.name}: use UtcDateTime, not DateTime")


# -- migrations -------------------------------------------------------------------------------------


def test_head_constant_matches_the_migration_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == migrations.HEAD
    assert [rev.revision for rev in reversed(list(script.walk_revisions()))] == list(migrations.REVISIONS)


def test_models_and_migrations_agree(database_url) -> None:
    """``alembic check`` on a database built by replaying every revision from empty."""
    engine = engine_for(database_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    with engine.begin() as conn:
        command.check(alembic_config(conn))  # raises AutogenerateDiffsDetected on any difference


def _pre_migration_database(url: str) -> None:
    """Tables made as the stores made them before migrations (create_all, no version table), with rows."""
    engine = engine_for(url)
    PRE_MIGRATION.tables().create_all(engine)
    with engine.begin() as conn:
        run = {
            "exp": 26, "status": "ingested", "reason": "", "run_type": "physics", "beam_energy": "4S",
            "magnet": "on", "data_quality": "good", "integrated_luminosity_pb": 10.5, "her_energy_gev": 7.0,
            "ler_energy_gev": 4.0, "events_per_stream": json.dumps({"hlt_mumu": 100}), "files": "[]",
            "record_path": "/data/r.json", "record_digest": "ab" * 32, "dagster_run_id": "",
        }
        conn.execute(sa.text(
            "INSERT INTO b2cal_runs (run_key, run, start_time, end_time, ingested_at, exp, status, reason, run_type, beam_energy, "
            "magnet, data_quality, integrated_luminosity_pb, her_energy_gev, ler_energy_gev, events_per_stream, files, "
            "record_path, record_digest, dagster_run_id) VALUES (:run_key, :run, :start_time, :end_time, :ingested_at, :exp, "
            ":status, :reason, :run_type, :beam_energy, :magnet, :data_quality, :integrated_luminosity_pb, :her_energy_gev, "
            ":ler_energy_gev, :events_per_stream, :files, :record_path, :record_digest, :dagster_run_id)"
        ), [
            {**run, "run_key": "e0026.r00001", "run": 1, "start_time": "2026-01-01T00:00:00+00:00",
             "end_time": "2026-01-01T01:00:00+00:00", "ingested_at": "2026-11-29T06:00:00.250000+00:00"},
            # an offset other than UTC, and a time without any (the stores always meant UTC)
            {**run, "run_key": "e0026.r00002", "run": 2, "start_time": "2026-01-01T10:00:00+09:00",
             "end_time": "2026-01-01T02:00:00", "ingested_at": "2026-11-29T06:00:01.500000+00:00"},
        ])
        conn.execute(sa.text("INSERT INTO b2cal_run_tags (run_key, tag) VALUES ('e0026.r00001', 'prompt'), ('e0026.r00002', 'prompt')"))
        conn.execute(sa.text(
            "INSERT INTO b2cal_buckets (bucket_key, exp, number, state, opened_at, closed_at, close_reason, n_runs, luminosity_pb, "
            "first_run, last_run, finished) VALUES ('e0026.b0001', 26, 1, 'closed', '2026-11-29T05:00:00+00:00', "
            "'2026-11-29T07:00:00+00:00', 'by hand', 2, 21.0, 1, 2, :f), ('e0026.b0002', 26, 2, 'open', "
            "'2026-11-29T07:00:00+00:00', NULL, '', 0, 0.0, NULL, NULL, :f)"
        ), {"f": False})
        conn.execute(sa.text(
            "INSERT INTO b2cal_bucket_runs (run_key, bucket_key, exp, run, luminosity_pb, assigned_at) VALUES "
            "('e0026.r00001', 'e0026.b0001', 26, 1, 10.5, '2026-11-29T06:00:00+00:00'), "
            "('e0026.r00002', 'e0026.b0001', 26, 2, 10.5, '2026-11-29T06:00:02+00:00')"
        ))
        conn.execute(sa.text(
            "INSERT INTO b2cal_bucket_collector_outputs (calibration, bucket_key, run_key, path, events, upstream_version, created_at) "
            "VALUES ('BeamSpot', 'e0026.b0001', 'e0026.r00001', '/w/c.npz', 100, '2c', '2026-11-29T06:30:00+00:00')"
        ))
        conn.execute(sa.text(
            "INSERT INTO b2cal_bucket_calibrations (calibration, bucket_key, bucket_version, payloads, runs, dagster_run_id, created_at) "
            "VALUES ('BeamSpot', 'e0026.b0001', '2c', '[]', '[\"e0026.r00001\"]', 'run-1', '2026-11-29T07:30:00+00:00')"
        ))
        conn.execute(sa.text("INSERT INTO b2cal_accounts_state (id) VALUES (1)"))
    _old_audit_table_with_rows(engine)


def _old_audit_table_with_rows(engine: sa.Engine) -> None:
    """The proxy audit table as the audit store made it before revision 0003, with two lines."""
    PROXY_AUDIT.tables().create_all(engine)
    table = PROXY_AUDIT.tables().tables["b2cal_proxy_audit"]
    common = {"dn": "/CN=alice", "roles": "launcher[cdc,ecl]", "peer": "127.0.0.1", "method": "POST", "path": "/graphql",
              "operation": "mutation launchRun", "status": 403}
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {**common, "time": datetime(2026, 11, 29, 6, tzinfo=timezone.utc), "user": "alice", "decision": "allow", "reason": "launcher"},
            {**common, "time": datetime(2026, 11, 29, 7, tzinfo=timezone.utc), "user": "bob", "decision": "deny", "reason": "viewer"},
        ])


def _assert_audit_rows_kept(database) -> None:  # type: ignore[no-untyped-def]
    audit = database.audit()
    rows, total = audit.query(AuditQuery())
    assert total == 2 and [(r.user, r.decision, r.time) for r in rows] == [
        ("bob", "deny", datetime(2026, 11, 29, 7, tzinfo=timezone.utc)),
        ("alice", "allow", datetime(2026, 11, 29, 6, tzinfo=timezone.utc)),
    ]
    since = datetime(2026, 11, 29, 15, 30, tzinfo=timezone(timedelta(hours=9)))  # 06:30 UTC
    assert [r.user for r in audit.query(AuditQuery(since=since))[0]] == ["bob"]


def _assert_migrated_data(url: str) -> None:
    database = platform_database(url)
    registry = database.runs()  # the first store opened upgrades the database
    assert current_revision(database.engine) == migrations.HEAD
    first, second = registry.get(ExpRun(26, 1)), registry.get(ExpRun(26, 2))
    assert (first.start_time, first.end_time) == ("2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00")
    assert (second.start_time, second.end_time) == ("2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00")
    assert first.ingested_at == "2026-11-29T06:00:00.250000+00:00" and first.data_tags == ("prompt",)
    assert second.data_tags == ("prompt",)  # rebuilding b2cal_runs on SQLite must not cascade into the tags
    assert [run.key for run in registry.ingested_since("2026-11-29T06:00:01+00:00", 10)] == [ExpRun(26, 2)]

    buckets = database.buckets()
    closed, still_open = buckets.buckets()
    assert closed.opened_at == datetime(2026, 11, 29, 5, tzinfo=timezone.utc)
    assert closed.closed_at == datetime(2026, 11, 29, 7, tzinfo=timezone.utc) and still_open.closed_at is None
    assert buckets.runs_of("e0026.b0001") == ["e0026.r00001", "e0026.r00002"]
    assert buckets.collector_outputs("e0026.b0001") == {"BeamSpot": {"e0026.r00001": ("/w/c.npz", "2c")}}
    latest = buckets.latest_calibration("e0026.b0001", "BeamSpot")
    assert latest["created_at"] == datetime(2026, 11, 29, 7, 30, tzinfo=timezone.utc) and latest["runs"] == ["e0026.r00001"]
    assert buckets.calibrated_versions("e0026.b0001") == {"BeamSpot": BucketVersion(2, True)}
    # the converted times still drive the bucket policy (opened 07:00, max age 1 h, now 08:30)
    policy = BucketPolicy(max_runs=None, max_luminosity_pb=None, max_age=timedelta(hours=1))
    report = buckets.assign([], policy, now=datetime(2026, 11, 29, 8, 30, tzinfo=timezone.utc))
    assert report.closed == []  # the open bucket has no runs, so age does not close it

    assert database.accounts().status().generation is None
    _assert_audit_rows_kept(database)
    engine = database.engine
    for table, columns in {"b2cal_runs": ("start_time", "end_time", "ingested_at"), "b2cal_buckets": ("opened_at", "closed_at"),
                           "b2cal_bucket_runs": ("assigned_at",)}.items():
        types = _timestamp_columns(engine, table)
        for column in columns:
            assert types[column] in ("TIMESTAMP", "DATETIME"), (table, column, types[column])
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # switched back on after the upgrade


def test_pre_migration_database_with_data_upgrades_on_sqlite(sqlite_url) -> None:
    _pre_migration_database(sqlite_url)
    _assert_migrated_data(sqlite_url)


@pytest.mark.postgres
def test_pre_migration_database_with_data_upgrades_on_postgresql(postgres_url) -> None:
    _pre_migration_database(postgres_url)
    with engine_for(postgres_url).begin() as conn:  # Dagster's storage shares production databases
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('dagster-revision')"))
    _assert_migrated_data(postgres_url)
    with engine_for(postgres_url).connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "dagster-revision"
        kinds = dict(conn.execute(sa.text(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'b2cal_runs'"
        )).all())
    assert kinds["ingested_at"] == kinds["start_time"] == "timestamp with time zone"


def test_a_partial_pre_migration_database_gets_its_missing_tables(database_url) -> None:
    """Before migrations each store made its own tables, so a database may hold only some."""
    engine = engine_for(database_url)
    PRE_MIGRATION.tables().tables["b2cal_runs"].create(engine)
    assert current_revision(engine) is None
    platform_database(database_url).accounts()
    assert current_revision(engine) == migrations.HEAD
    assert platform_database(database_url).accounts().status().generation is None  # the state row exists


def test_an_audit_table_made_by_the_old_audit_store_is_adopted_with_its_rows(database_url) -> None:
    """A database at 0002 whose audit table the proxy made itself (create_all) before 0003 existed."""
    engine = engine_for(database_url)
    assert upgrade(engine, "0002_utc_timestamps") == "0002_utc_timestamps"
    _old_audit_table_with_rows(engine)
    database = platform_database(database_url)
    _assert_audit_rows_kept(database)
    assert current_revision(engine) == migrations.HEAD


def test_downgrade_to_the_pre_migration_schema_gives_back_the_text_times(database_url) -> None:
    _pre_migration_database(database_url)
    engine = engine_for(database_url)
    upgrade(engine)
    upgrade_to = upgrade
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            command.downgrade(alembic_config(conn), migrations.REVISIONS[0])
    assert current_revision(engine) == migrations.REVISIONS[0]
    with engine.connect() as conn:
        opened = conn.execute(sa.text("SELECT opened_at FROM b2cal_buckets WHERE number = 1")).scalar()
    assert datetime.fromisoformat(opened) == datetime(2026, 11, 29, 5, tzinfo=timezone.utc)
    assert upgrade_to(engine) == migrations.HEAD


_RACER = textwrap.dedent(
    """
    import sys
    from b2cal_assets.database import platform_database
    registry = platform_database(sys.argv[1]).runs()
    print(len(registry.query()))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fresh", "pre-migration"])
def test_processes_opening_a_database_together_migrate_it_once(database_url, start) -> None:
    if start == "pre-migration":
        _pre_migration_database(database_url)
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, database_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(3)]
    results = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0], [err for _, err in results]
    assert {out.strip() for out, _ in results} == {"2" if start == "pre-migration" else "0"}
    assert current_revision(engine_for(database_url)) == migrations.HEAD


def _b2cal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "b2cal_assets", *args], capture_output=True, text=True, timeout=120)


def test_db_commands_upgrade_a_pre_migration_database_and_show_the_revision(sqlite_url) -> None:
    _pre_migration_database(sqlite_url)
    before = _b2cal("db", "current", "--database-url", sqlite_url)
    assert before.returncode == 0 and "no revision" in before.stdout
    upgraded = _b2cal("db", "upgrade", "--database-url", sqlite_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"no revision -> {migrations.HEAD} (head)" in upgraded.stdout
    assert platform_database(sqlite_url).runs().get(ExpRun(26, 1)).start_time == "2026-01-01T00:00:00+00:00"
    after = _b2cal("db", "current", "--database-url", sqlite_url)
    assert after.stdout.strip().endswith(f"{migrations.HEAD} (head)")


def test_db_upgrade_refuses_an_unknown_revision_in_one_line(sqlite_url) -> None:
    refused = _b2cal("db", "upgrade", "--database-url", sqlite_url, "--revision", "0099_nope")
    assert refused.returncode == 2 and "unknown revision '0099_nope'" in refused.stderr
    assert "Traceback" not in refused.stderr
