"""`b2cal accounts ...` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from b2cal_assets.cli import main
from b2cal_assets_tests.accounts.diracx_server import free_port
from b2cal_assets_tests.accounts.registries import ALICE_DN, baseline

DATA = Path(__file__).with_name("data")
BOB_DN = "/C=DE/O=GermanGrid/OU=KIT/CN=Bob Braun"


def _run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["accounts", *args], env=env, catch_exceptions=False)


def test_import_list_and_show(database_url) -> None:
    imported = _run("import", str(DATA / "registry.yml"), "--accounts-db", database_url)
    assert imported.exit_code == 0, imported.output
    assert "3 accounts, 4 DNs, 1 suspended; +3 -0 ~0" in imported.output

    listed = _run("list", "--accounts-db", database_url)
    assert listed.exit_code == 0
    assert "generation 1, 3 accounts" in listed.output and "SUSPENDED" in listed.output
    assert "proxy access ceiling: allow" in listed.output

    shown = _run("show", BOB_DN, "--accounts-db", database_url, "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.output)["username"] == "bob"


def test_list_of_a_stale_store_says_why_the_proxy_denies(sqlite_url) -> None:
    _run("import", str(DATA / "registry.yml"), "--accounts-db", sqlite_url)
    listed = _run("list", "--accounts-db", sqlite_url, env={"B2CAL_ACCOUNTS_MAX_AGE": "0"})
    assert "proxy access ceiling: deny (accounts last synced from DIRAC at" in listed.output


def test_show_unknown_dn_exits_1(sqlite_url) -> None:
    _run("import", str(DATA / "registry.yml"), "--accounts-db", sqlite_url)
    result = _run("show", "/CN=nobody", "--accounts-db", sqlite_url)
    assert result.exit_code == 1 and "no account has DN" in result.output


def test_default_database_is_the_platform_database(tmp_path) -> None:
    env = {"B2CAL_DATABASE_URL": f"sqlite:///{tmp_path / 'platform.sqlite'}"}
    assert _run("import", str(DATA / "registry.yml"), env=env).exit_code == 0
    listed = _run("list", "--json", env=env)
    assert [a["username"] for a in json.loads(listed.output)["accounts"]] == ["alice", "bob", "carol"]


def test_sync_without_a_source_says_what_to_do(sqlite_url, monkeypatch) -> None:
    monkeypatch.delenv("DIRACX_URL", raising=False)
    monkeypatch.delenv("B2CAL_ACCOUNTS_REGISTRY_YAML", raising=False)
    result = _run("sync", "--accounts-db", sqlite_url)
    assert result.exit_code == 1
    assert result.output == "Error: no accounts source configured: set B2CAL_ACCOUNTS_REGISTRY_YAML or DIRACX_URL\n"


def test_sync_uses_the_configured_registry_file_like_the_schedule(sqlite_url, monkeypatch) -> None:
    monkeypatch.delenv("DIRACX_URL", raising=False)
    env = {"B2CAL_ACCOUNTS_REGISTRY_YAML": str(DATA / "registry.yml")}
    result = _run("sync", "--accounts-db", sqlite_url, "--json", env=env)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output)
    assert outcome["source"] == f"file:{(DATA / 'registry.yml').resolve()}#belle" and outcome["accounts"] == 3


def test_sync_with_a_missing_registry_file_names_the_setting(sqlite_url, tmp_path) -> None:
    result = _run("sync", "--accounts-db", sqlite_url, env={"B2CAL_ACCOUNTS_REGISTRY_YAML": str(tmp_path / "none.yml")})
    assert result.exit_code == 1
    assert result.output == f"Error: B2CAL_ACCOUNTS_REGISTRY_YAML={tmp_path / 'none.yml'} is not a readable file; fix the path or unset it\n"


@pytest.mark.slow
def test_sync_from_diracx_then_unchanged(sqlite_url, diracx_server, diracx_credentials, publish) -> None:
    users, groups = baseline()
    etag = publish(users, groups, "baseline")
    args = ("sync", "--accounts-db", sqlite_url, "--url", diracx_server.url, "--credentials", str(diracx_credentials))

    first = _run(*args, "--json")
    second = _run(*args)

    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["etag"] == etag
    assert second.exit_code == 0 and second.output.startswith(f"unchanged (ETag {etag})")
    assert _run("show", ALICE_DN, "--accounts-db", sqlite_url).output.startswith("username:  alice")


def test_failed_sync_exits_1_and_keeps_the_set(sqlite_url, tmp_path) -> None:
    _run("import", str(DATA / "registry.yml"), "--accounts-db", sqlite_url)
    credentials = tmp_path / "credentials.json"
    credentials.write_text("{}")
    result = _run(
        "sync", "--accounts-db", sqlite_url, "--url", f"http://127.0.0.1:{free_port()}",
        "--credentials", str(credentials), "--timeout", "2",
    )
    assert result.exit_code == 1
    assert "sync failed (server_unavailable)" in result.output
    assert "keeps generation 1" in result.output
