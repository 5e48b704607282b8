"""The accounts store on SQLite and PostgreSQL: import, atomic replacement, status, pruning."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from b2cal_assets.accounts.errors import AccountsStoreError, RegistryMalformedError
from b2cal_assets.accounts.freshness import Access, FreshnessPolicy, OnStale
from b2cal_assets.accounts.models import Account
from b2cal_assets.accounts.registry import RegistrySnapshot
from b2cal_assets.accounts.store import dns, generations, users
from b2cal_assets.accounts.sync import import_registry_yaml
from b2cal_assets.accounts.view import AccountsView
from b2cal_assets.database import DatabaseSchemaError, platform_database

DATA = Path(__file__).with_name("data")


def _snapshot(prefix: str, n: int) -> RegistrySnapshot:
    accounts = {
        f"{prefix}-{i}": Account(sub=f"{prefix}-{i}", username=f"{prefix}{i:04d}", dns=(f"/CN=user {i}",))
        for i in range(n)
    }
    return RegistrySnapshot(vo="belle", accounts=accounts)


def test_import_of_registry_yaml_fills_the_store(database_url) -> None:
    store = platform_database(database_url).accounts()

    outcome = import_registry_yaml(DATA / "registry.yml", "belle", store=store)

    assert (outcome.account_count, outcome.dn_count, outcome.suspended_count) == (3, 4, 1)
    assert outcome.etag is None and outcome.source.startswith("file:")
    bob = store.lookup_dn("/DC=org/DC=terena/DC=tcs/C=DE/O=KIT/CN=Bob Braun")
    assert bob.username == "bob" and bob.suspended
    assert store.lookup_username("alice").voms_roles == ("/belle", "/belle/Role=production")
    assert [a.username for a in store.accounts()] == ["alice", "bob", "carol"]
    status = store.status()
    assert (status.generation, status.account_count, status.dn_count, status.suspended_count) == (1, 3, 4, 1)


def test_import_accepts_an_accounts_db_url(database_url) -> None:
    import_registry_yaml(DATA / "registry.yml", "belle", accounts_db=database_url)
    assert platform_database(database_url).accounts().lookup_username("carol") is not None


def test_failed_import_keeps_last_good_set_and_records_reason(database_url, tmp_path) -> None:
    store = platform_database(database_url).accounts()
    import_registry_yaml(DATA / "registry.yml", "belle", store=store)
    (tmp_path / "broken.yml").write_text("Registry: {belle: {Users: {}}}\n")

    with pytest.raises(RegistryMalformedError):
        import_registry_yaml(tmp_path / "broken.yml", "belle", store=store)

    status = store.status()
    assert status.generation == 1 and status.last_error_reason == "malformed_registry"
    assert "lacks Users or Groups" in status.last_error
    assert len(store.accounts()) == 3


def test_second_replace_reports_the_diff(database_url) -> None:
    store = platform_database(database_url).accounts()
    store.replace(_snapshot("a", 3), source="test", etag="e1")
    changed = _snapshot("a", 4)
    del changed.accounts["a-0"]
    changed.accounts["a-1"] = Account(sub="a-1", username="a0001", dns=("/CN=user 1",), suspended=True)

    result = store.replace(changed, source="test", etag="e2")

    assert (result.diff.added, result.diff.removed, result.diff.changed) == (("a0003",), ("a0000",), ("a0001",))


def test_failed_replace_rolls_back_whole_generation(database_url) -> None:
    store = platform_database(database_url).accounts()
    store.replace(_snapshot("a", 10), source="test", etag="e1")
    # Two accounts with the same DN violate the (generation, dn) key halfway through the write.
    broken = _snapshot("b", 10)
    broken.accounts["b-9"] = Account(sub="b-9", username="b0009", dns=("/CN=user 0",))

    with pytest.raises(AccountsStoreError, match="cannot write"):
        store.replace(broken, source="test", etag="e2")

    assert store.generation() == 1 and store.status().etag == "e1"
    assert {a.username[0] for a in store.accounts()} == {"a"}
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(generations)).scalar() == 1


def test_old_generations_are_pruned_but_the_previous_one_is_kept(database_url) -> None:
    store = platform_database(database_url).accounts()
    for i in range(4):
        store.replace(_snapshot(f"g{i}", 5), source="test", etag=f"e{i}")

    with store.engine.connect() as conn:
        kept = sorted(conn.execute(sa.select(generations.c.id)).scalars())
        user_generations = sorted(set(conn.execute(sa.select(users.c.generation_id)).scalars()))
        dn_generations = sorted(set(conn.execute(sa.select(dns.c.generation_id)).scalars()))
    assert kept == user_generations == dn_generations == [3, 4]


@pytest.mark.slow
def test_readers_never_see_a_mix_of_two_sets(database_url) -> None:
    """Readers in other threads see set A or set B in full while a writer flips between them."""
    writer = platform_database(database_url).accounts()
    sets = {"a": _snapshot("a", 300), "b": _snapshot("b", 300)}
    writer.replace(sets["a"], source="test", etag="a")
    reader = platform_database(database_url).accounts()
    problems: list[str] = []
    stop = threading.Event()
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            accounts = reader.accounts()
            prefixes = {a.username[0] for a in accounts}
            if len(accounts) != 300 or len(prefixes) != 1:
                problems.append(f"{len(accounts)} accounts from sets {sorted(prefixes)}")
            generation, mapping = reader.dn_map()
            if len({a.username[0] for a in mapping.values()}) != 1 or len(mapping) != 300:
                problems.append(f"dn_map of generation {generation} mixes sets or is partial")
            account = reader.lookup_dn("/CN=user 7")
            if account is None:
                problems.append("DN present in both sets was missing during a switch")
            reads[0] += 1

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(20):
            writer.replace(sets["b" if i % 2 == 0 else "a"], source="test", etag=str(i))
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not problems, problems[:5]
    assert reads[0] > 10


def test_lookup_dn_uses_the_primary_key_index_on_sqlite(sqlite_url) -> None:
    store = platform_database(sqlite_url).accounts()
    store.replace(_snapshot("a", 50), source="test", etag="e")
    query = (
        "EXPLAIN QUERY PLAN SELECT sub FROM b2cal_accounts_dns WHERE generation_id = 1 AND dn = '/CN=user 3'"
    )
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(sa.text(query)))
    assert "USING" in plan and "INDEX" in plan, plan


def test_view_sees_a_new_generation_after_its_recheck_interval(database_url) -> None:
    store = platform_database(database_url).accounts()
    store.replace(_snapshot("a", 3), source="test", etag="e1")
    clock = [0.0]
    view = AccountsView(platform_database(database_url).accounts(), recheck_seconds=2.0, clock=lambda: clock[0])
    assert view.lookup_dn("/CN=user 1").username == "a0001"

    store.replace(_snapshot("b", 3), source="test", etag="e2")
    clock[0] = 1.0
    assert view.lookup_dn("/CN=user 1").username == "a0001"  # cached within the interval
    clock[0] = 2.5
    assert view.lookup_dn("/CN=user 1").username == "b0001"
    assert view.generation == 2


def test_empty_store_has_no_generation_and_finds_nothing(database_url) -> None:
    store = platform_database(database_url).accounts()
    assert store.generation() is None and store.lookup_dn("/CN=x") is None and store.accounts() == []
    status = store.status()
    assert status.last_good_sync_at is None and status.account_count == 0


def test_unreachable_database_is_a_schema_error(tmp_path) -> None:
    with pytest.raises(DatabaseSchemaError, match="cannot open the platform database"):
        platform_database(f"sqlite:///{tmp_path}/missing-dir/x.sqlite").accounts()


def test_error_messages_hide_the_database_password() -> None:
    url = "postgresql://b2cal:s3cret-pw@127.0.0.1:1/none"
    with pytest.raises(DatabaseSchemaError) as raised:
        platform_database(url).accounts()
    assert "s3cret-pw" not in str(raised.value)


def test_view_verdict_applies_max_age_to_the_stored_status(database_url) -> None:
    store = platform_database(database_url).accounts()
    never = AccountsView(store, recheck_seconds=0).verdict()
    assert never.access is Access.DENY and "never been synced" in never.reason

    store.replace(_snapshot("a", 2), source="test", etag="e1", now=datetime(2020, 1, 1, tzinfo=timezone.utc))
    store.record_failure(reason="server_unavailable", message="DiracX at https://x is unreachable")

    one_hour = FreshnessPolicy(timedelta(hours=1))
    deny = AccountsView(store, policy=one_hour, recheck_seconds=0).verdict()
    viewer = AccountsView(store, policy=FreshnessPolicy(timedelta(hours=1), OnStale.VIEWER), recheck_seconds=0).verdict()
    assert deny.access is Access.DENY and "2020-01-01 00:00:00Z" in deny.reason
    assert "last sync failed: server_unavailable" in deny.reason
    assert viewer.access is Access.VIEWER

    store.replace(_snapshot("b", 2), source="test", etag="e2")
    assert AccountsView(store, policy=one_hour, recheck_seconds=0).verdict().access is Access.ALLOW


def test_view_verdict_is_evaluated_once_per_status_read_and_follows_the_next_one(database_url) -> None:
    store = platform_database(database_url).accounts()
    store.replace(_snapshot("a", 2), source="test", etag="e1")
    clock = [0.0]
    one_hour = FreshnessPolicy(timedelta(hours=1))
    view = AccountsView(store, policy=one_hour, recheck_seconds=2.0, clock=lambda: clock[0])
    first = view.verdict()
    assert first.access is Access.ALLOW
    assert view.verdict() is first  # same status read: not evaluated again

    # The store now says the last good sync is old; the view notices at its next status read.
    store.replace(_snapshot("b", 2), source="test", etag="e2", now=datetime(2020, 1, 1, tzinfo=timezone.utc))
    clock[0] = 1.0
    assert view.verdict() is first
    clock[0] = 2.5
    assert view.verdict().access is Access.DENY
