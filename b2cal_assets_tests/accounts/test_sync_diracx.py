"""Accounts sync against a real DiracX 0.7.0 server, on SQLite and on PostgreSQL.

Each test publishes the registry it needs (a commit in the server's config repository,
waited for until served) and syncs into a fresh platform database.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from pathlib import Path

import pytest

from b2cal_assets.accounts.diracx_source import DiracxSettings, fetch_config
from b2cal_assets.accounts.errors import (
    DiracxAuthError,
    DiracxTimeoutError,
    DiracxUnavailableError,
    RegistryMalformedError,
    VoMissingError,
)
from b2cal_assets.accounts.store import AccountsStore
from b2cal_assets.accounts.sync import sync_from_diracx
from b2cal_assets.database import platform_database
from b2cal_assets_tests.accounts.diracx_server import DiracxTestServer, free_port
from b2cal_assets_tests.accounts.registries import ALICE_DN, BOB_DN, BOB_DN_2, CAROL_DN, baseline

pytestmark = pytest.mark.slow


def _requests(server: DiracxTestServer) -> list[str]:
    """``METHOD path status`` of every request in the server's access log but health probes."""
    seen = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "uvicorn.access" in line and "/api/health/" not in line:
            request = line.split('"')[1]  # GET /api/config/ HTTP/1.1
            method, path, _ = request.split(" ")
            seen.append(f"{method} {path} {line.rsplit(' ', 1)[-1]}")
    return seen


def test_first_sync_maps_registry_to_accounts(database_url, diracx_settings, publish) -> None:
    users, groups = baseline()
    etag = publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()

    outcome = sync_from_diracx(store, diracx_settings)

    assert outcome.changed and outcome.etag == etag
    assert (outcome.account_count, outcome.dn_count, outcome.suspended_count) == (3, 4, 0)
    assert outcome.diff.added == ("alice", "bob", "carol")
    alice = store.lookup_dn(ALICE_DN)
    assert alice is not None
    assert (alice.username, alice.email, alice.suspended) == ("alice", "alice@belle2.org", False)
    assert alice.group_names == ("belle", "belle_production")
    assert alice.voms_roles == ("/belle", "/belle/Role=production")
    assert "ProductionManagement" in alice.properties
    assert store.lookup_dn(BOB_DN_2).username == "bob"
    assert store.lookup_dn(CAROL_DN).voms_roles == ("/belle", "/belle/Role=lcgadmin")
    assert store.lookup_dn("/C=XX/CN=Nobody") is None
    status = store.status()
    assert status.etag == etag and status.last_error is None and status.source == diracx_settings.source


def test_unchanged_registry_costs_one_304(database_url, diracx_server, diracx_settings, publish) -> None:
    users, groups = baseline()
    etag = publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()
    first = sync_from_diracx(store, diracx_settings)
    before = store.status()
    seen = len(_requests(diracx_server))

    second = sync_from_diracx(store, diracx_settings)

    assert not second.changed
    assert second.generation == first.generation == store.generation()
    # One 304 for the configuration; diracx-client's constructor also reads the (small)
    # OpenID discovery document, which it needs to know where to refresh the token.
    assert _requests(diracx_server)[seen:] == [
        "GET /.well-known/openid-configuration 200",
        "GET /api/config/ 304",
    ]
    after = store.status()
    assert after.etag == etag
    # A 304 confirms the set: it counts as a good sync for the max-age rule.
    assert after.last_good_sync_at > before.last_good_sync_at


def test_repository_change_is_picked_up_with_new_etag(database_url, diracx_settings, publish) -> None:
    users, groups = baseline()
    old_etag = publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()
    sync_from_diracx(store, diracx_settings)

    users["sub-carol"]["Email"] = "carol.conti@belle2.org"
    users["sub-dave"] = {"PreferedUsername": "dave", "DNs": ["/C=US/O=PNNL/CN=Dave Diaz"]}
    groups["belle"]["Users"].append("sub-dave")
    new_etag = publish(users, groups, "add dave, new email for carol")
    outcome = sync_from_diracx(store, diracx_settings)

    assert outcome.changed and outcome.etag == new_etag != old_etag
    assert outcome.diff.added == ("dave",) and outcome.diff.changed == ("carol",) and outcome.diff.removed == ()
    assert store.lookup_dn("/C=US/O=PNNL/CN=Dave Diaz").username == "dave"
    assert store.lookup_dn(CAROL_DN).email == "carol.conti@belle2.org"
    assert store.status().etag == new_etag


def test_user_removed_from_dirac_loses_access(database_url, diracx_settings, publish) -> None:
    users, groups = baseline()
    publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()
    sync_from_diracx(store, diracx_settings)
    assert store.lookup_dn(BOB_DN) is not None

    del users["sub-bob"]
    groups["belle"]["Users"].remove("sub-bob")
    publish(users, groups, "bob left Belle II")
    outcome = sync_from_diracx(store, diracx_settings)

    assert outcome.diff.removed == ("bob",)
    assert store.lookup_dn(BOB_DN) is None and store.lookup_dn(BOB_DN_2) is None
    assert store.lookup_username("bob") is None


def test_user_suspended_in_dirac_is_flagged(database_url, diracx_settings, publish) -> None:
    users, groups = baseline()
    publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()
    sync_from_diracx(store, diracx_settings)

    users["sub-carol"]["Suspended"] = ["belle"]
    publish(users, groups, "suspend carol")
    outcome = sync_from_diracx(store, diracx_settings)

    assert outcome.diff.changed == ("carol",) and outcome.suspended_count == 1
    assert store.lookup_dn(CAROL_DN).suspended is True
    assert store.lookup_dn(ALICE_DN).suspended is False


def _synced_baseline(database_url: str, settings: DiracxSettings, publish) -> AccountsStore:  # type: ignore[no-untyped-def]
    users, groups = baseline()
    publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()
    sync_from_diracx(store, settings)
    return store


def _assert_last_good_set_kept(store: AccountsStore, generation: int, reason: str) -> None:
    status = store.status()
    assert status.generation == generation == store.generation()
    assert status.last_error_reason == reason and status.last_error
    assert store.lookup_dn(ALICE_DN).username == "alice"
    assert len(store.accounts()) == 3


def test_server_down_keeps_last_good_set(database_url, diracx_settings, publish) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    down = dataclasses.replace(diracx_settings, url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(DiracxUnavailableError, match="unreachable"):
        sync_from_diracx(store, down)

    _assert_last_good_set_kept(store, generation, "server_unavailable")


def test_server_that_never_answers_is_a_timeout(database_url, diracx_settings, publish) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    # A listening socket nobody accepts from: the TCP handshake succeeds, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hung = dataclasses.replace(
            diracx_settings, url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_seconds=1, retries=0
        )
        with pytest.raises(DiracxTimeoutError, match="did not answer"):
            sync_from_diracx(store, hung)

    _assert_last_good_set_kept(store, generation, "timeout")


def test_bad_token_is_refused_and_keeps_last_good_set(
    database_url, diracx_settings, diracx_credentials, publish, tmp_path
) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    credentials = json.loads(diracx_credentials.read_text())
    # Same claims, broken signature: the server must reject it.
    credentials["access_token"] = credentials["access_token"][:-6] + "AAAAAA"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(credentials))

    with pytest.raises(DiracxAuthError, match="HTTP 401") as raised:
        sync_from_diracx(store, dataclasses.replace(diracx_settings, credentials_path=forged))

    assert credentials["access_token"] not in str(raised.value)
    _assert_last_good_set_kept(store, generation, "unauthorized")


def test_refused_token_refresh_is_an_auth_failure(database_url, diracx_server, diracx_settings, publish, tmp_path) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    # The access token expires within the client's 300 s margin, so it tries to refresh;
    # the server does not know the refresh token (a revoked session) and refuses.
    expiring = diracx_server.mint_credentials(
        tmp_path / "expiring.json", lifetime_seconds=120, refresh_lifetime_seconds=3600
    )

    with pytest.raises(DiracxAuthError, match="refused to refresh"):
        sync_from_diracx(store, dataclasses.replace(diracx_settings, credentials_path=expiring))

    _assert_last_good_set_kept(store, generation, "unauthorized")


def test_expiring_token_is_refreshed_by_the_client(sqlite_url, diracx_server, diracx_settings, publish, tmp_path) -> None:
    users, groups = baseline()
    # The sync account itself must be a DIRAC user for DiracX to issue it new tokens.
    users["b2cal-sync"] = {"PreferedUsername": "b2cal-sync"}
    groups["belle"]["Users"].append("b2cal-sync")
    publish(users, groups, "baseline with the sync account")
    expiring = diracx_server.mint_credentials(
        tmp_path / "expiring.json", lifetime_seconds=120, refresh_lifetime_seconds=3600, refresh_known_to_server=True
    )
    before = json.loads(expiring.read_text())

    outcome = sync_from_diracx(platform_database(sqlite_url).accounts(), dataclasses.replace(diracx_settings, credentials_path=expiring))

    after = json.loads(expiring.read_text())
    assert outcome.account_count == 4
    assert after["access_token"] != before["access_token"] and after["expires_on"] > before["expires_on"]


def test_missing_credentials_file_is_an_auth_failure(database_url, diracx_settings, publish, tmp_path) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()

    with pytest.raises(DiracxAuthError, match="dirac login"):
        sync_from_diracx(store, dataclasses.replace(diracx_settings, credentials_path=tmp_path / "none.json"))

    _assert_last_good_set_kept(store, generation, "unauthorized")


def test_malformed_registry_keeps_last_good_set(database_url, diracx_settings, publish) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    users, groups = baseline()
    # DiracX accepts any string; the proxy matches slash-form subjects, so this is unusable.
    users["sub-bob"]["DNs"] = ["CN=Bob Braun,OU=KIT,O=GermanGrid,C=DE"]
    publish(users, groups, "DN in RFC 2253 form")

    with pytest.raises(RegistryMalformedError, match="slash form"):
        sync_from_diracx(store, diracx_settings)

    _assert_last_good_set_kept(store, generation, "malformed_registry")
    assert store.lookup_dn(BOB_DN).username == "bob"


def test_commit_that_diracx_rejects_is_never_served(sqlite_url, diracx_server, diracx_settings, publish) -> None:
    store = _synced_baseline(sqlite_url, diracx_settings, publish)
    generation, etag = store.generation(), store.status().etag
    failures_before = diracx_server.log_path.read_text(errors="replace").count("Failed to populate cache key")
    config = diracx_server.default_yml()
    config["Registry"]["belle"]["Users"] = ["not", "a", "mapping"]
    diracx_server.commit_config(config, "broken registry")
    # DiracX validates each revision before serving it, in the background of a config
    # request once its revision cache is 5 s old: ask until it has tried this one.
    deadline = time.monotonic() + 30
    while diracx_server.log_path.read_text(errors="replace").count("Failed to populate cache key") == failures_before:
        assert time.monotonic() < deadline, "DiracX never tried the broken revision"
        fetch_config(diracx_settings, etag)
        time.sleep(0.25)

    outcome = sync_from_diracx(store, diracx_settings)

    # It keeps serving the last valid revision: for us an unchanged registry.
    assert not outcome.changed and outcome.etag == etag
    assert store.generation() == generation and len(store.accounts()) == 3


def test_partial_registry_without_users_is_refused(database_url, diracx_settings, publish) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    _, groups = baseline()
    for group in groups.values():
        group["Users"] = []
    publish({}, groups, "registry lost its users")

    with pytest.raises(RegistryMalformedError, match="refusing to empty"):
        sync_from_diracx(store, diracx_settings)

    _assert_last_good_set_kept(store, generation, "malformed_registry")


def test_vo_missing_from_registry_keeps_last_good_set(
    database_url, diracx_server, diracx_credentials, diracx_settings, publish
) -> None:
    store = _synced_baseline(database_url, diracx_settings, publish)
    generation = store.generation()
    config = diracx_server.default_yml()
    config["Registry"] = {"belle2": config["Registry"]["belle"]}
    etag = diracx_server.commit_config(config, "VO renamed")
    diracx_server.wait_served(etag, diracx_credentials)

    with pytest.raises(VoMissingError, match="'belle' is not in the DIRAC Registry"):
        sync_from_diracx(store, diracx_settings)

    _assert_last_good_set_kept(store, generation, "vo_missing")


def test_no_token_in_logs_status_or_outcome(sqlite_url, diracx_settings, diracx_credentials, publish, caplog, tmp_path) -> None:
    credentials = json.loads(diracx_credentials.read_text())
    secrets = [credentials["access_token"], credentials["refresh_token"]]
    users, groups = baseline()
    publish(users, groups, "baseline")
    store = platform_database(sqlite_url).accounts()
    caplog.set_level(logging.DEBUG)  # every logger, including azure-core's and httpx's

    outcome = sync_from_diracx(store, diracx_settings, force=True)
    broken = dict(credentials, access_token=credentials["access_token"][:-6] + "AAAAAA")
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(broken))
    with pytest.raises(DiracxAuthError):
        sync_from_diracx(store, dataclasses.replace(diracx_settings, credentials_path=forged), force=True)

    exposed = caplog.text + json.dumps(outcome.to_json()) + json.dumps(store.status().to_json())
    for secret in secrets + [broken["access_token"]]:
        assert secret not in exposed
        assert secret[-40:] not in exposed  # not even a tail of the signature
    assert "Bearer" not in caplog.text


def test_new_sync_is_visible_to_an_open_reader_without_restart(sqlite_url, diracx_settings, publish) -> None:
    from b2cal_assets.accounts.view import AccountsView

    users, groups = baseline()
    publish(users, groups, "baseline")
    writer = platform_database(sqlite_url).accounts()
    sync_from_diracx(writer, diracx_settings)
    view = AccountsView(platform_database(sqlite_url).accounts(), recheck_seconds=0)
    assert view.lookup_dn(BOB_DN) is not None
    generation = view.generation

    del users["sub-bob"]
    groups["belle"]["Users"].remove("sub-bob")
    publish(users, groups, "bob left Belle II")
    sync_from_diracx(writer, diracx_settings)

    assert view.generation == generation + 1
    assert view.lookup_dn(BOB_DN) is None


def test_sync_uses_diracx_environment_settings(sqlite_url, diracx_server, diracx_credentials, publish, monkeypatch) -> None:
    users, groups = baseline()
    publish(users, groups, "baseline")
    monkeypatch.setenv("DIRACX_URL", diracx_server.url)
    monkeypatch.setenv("DIRACX_CREDENTIALS_PATH", str(diracx_credentials))
    settings = DiracxSettings.from_env()

    outcome = sync_from_diracx(platform_database(sqlite_url).accounts(), settings)

    assert settings.credentials_path == Path(diracx_credentials) and settings.vo == "belle"
    assert outcome.account_count == 3
