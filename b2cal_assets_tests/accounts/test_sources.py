"""The AccountsSource seam: each source through the one sync routine, and the deployment's choice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from b2cal_assets.accounts.errors import AccountsSettingsError, RegistryMalformedError
from b2cal_assets.accounts.models import Account
from b2cal_assets.accounts.registry import RegistrySnapshot
from b2cal_assets.accounts.sources import (
    NOT_CONFIGURED,
    AccountsSourceNotConfiguredError,
    DiracxSource,
    Fetched,
    RegistryFileSource,
    accounts_source_from_environment,
)
from b2cal_assets.accounts.sync import sync_accounts
from b2cal_assets.database import platform_database
from b2cal_assets_tests.accounts.registries import ALICE_DN, baseline

DATA = Path(__file__).with_name("data")
REGISTRY = DATA / "registry.yml"


def test_no_source_setting_is_not_configured() -> None:
    with pytest.raises(AccountsSourceNotConfiguredError) as raised:
        accounts_source_from_environment({"DIRACX_URL": " ", "B2CAL_ACCOUNTS_REGISTRY_YAML": ""})
    assert str(raised.value) == NOT_CONFIGURED
    assert NOT_CONFIGURED == "no accounts source configured: set B2CAL_ACCOUNTS_REGISTRY_YAML or DIRACX_URL"


def test_the_environment_picks_the_source(tmp_path) -> None:
    diracx = accounts_source_from_environment(
        {"DIRACX_URL": "https://diracx.example:8000/", "DIRACX_CREDENTIALS_PATH": str(tmp_path / "c.json"), "B2CAL_DIRAC_VO": "belle2"}
    )
    assert isinstance(diracx, DiracxSource)
    assert (diracx.source, diracx.settings.credentials_path) == ("diracx:https://diracx.example:8000#belle2", tmp_path / "c.json")

    # A registry file named explicitly wins over a DiracX URL left in the environment.
    chosen = accounts_source_from_environment({"DIRACX_URL": "https://diracx.example", "B2CAL_ACCOUNTS_REGISTRY_YAML": str(REGISTRY)})
    assert chosen == RegistryFileSource(REGISTRY, "belle")
    assert chosen.source == f"file:{REGISTRY.resolve()}#belle"


def test_a_registry_file_that_is_not_there_is_a_settings_error(tmp_path) -> None:
    with pytest.raises(AccountsSettingsError) as raised:
        accounts_source_from_environment({"B2CAL_ACCOUNTS_REGISTRY_YAML": str(tmp_path / "gone.yml")})
    assert not isinstance(raised.value, AccountsSourceNotConfiguredError)
    assert str(raised.value) == f"B2CAL_ACCOUNTS_REGISTRY_YAML={tmp_path / 'gone.yml'} is not a readable file; fix the path or unset it"


def test_registry_file_through_the_sync_routine(database_url) -> None:
    store = platform_database(database_url).accounts()
    source = RegistryFileSource(REGISTRY, "belle")

    first = sync_accounts(store, source)
    again = sync_accounts(store, source)

    assert (first.changed, first.generation, first.account_count, first.etag) == (True, 1, 3, None)
    # No ETag for a file: every sync reads it in full and writes a generation.
    assert (again.changed, again.generation, again.diff.added) == (True, 2, ())
    assert store.status().source == source.source and store.status().last_good_sync_at is not None


def test_a_broken_registry_file_is_recorded_and_the_set_kept(sqlite_url, tmp_path) -> None:
    store = platform_database(sqlite_url).accounts()
    sync_accounts(store, RegistryFileSource(REGISTRY))
    broken = tmp_path / "broken.yml"
    broken.write_text("Registry: [not, a, mapping\n")

    with pytest.raises(RegistryMalformedError):
        sync_accounts(store, RegistryFileSource(broken))

    status = store.status()
    assert (status.generation, status.last_error_reason, status.source) == (1, "malformed_registry", RegistryFileSource(REGISTRY).source)


@pytest.mark.slow
def test_diracx_through_the_sync_routine_then_a_file_then_diracx_again(database_url, diracx_settings, publish) -> None:
    users, groups = baseline()
    etag = publish(users, groups, "baseline")
    store = platform_database(database_url).accounts()
    diracx = DiracxSource(diracx_settings)

    first = sync_accounts(store, diracx)
    unchanged = sync_accounts(store, diracx)
    from_file = sync_accounts(store, RegistryFileSource(REGISTRY))
    back = sync_accounts(store, diracx)

    assert (first.changed, first.etag, first.account_count) == (True, etag, 3)
    assert (unchanged.changed, unchanged.generation) == (False, first.generation)  # a 304
    assert from_file.changed and from_file.source.startswith("file:")
    # The stored ETag belongs to DiracX; after a file import the next DiracX sync fetches in full.
    assert back.changed and back.etag == etag and back.generation == from_file.generation + 1
    assert store.lookup_dn(ALICE_DN) is not None


@dataclass(frozen=True)
class _ListSource:
    """A source written in a test: adding a source is one class with ``source`` and ``fetch``."""

    accounts: tuple[Account, ...]
    setting: ClassVar[str] = "B2CAL_TEST_ACCOUNTS"

    @property
    def source(self) -> str:
        return "list:test"

    def fetch(self, etag: str | None) -> Fetched:
        return Fetched(RegistrySnapshot("belle", {a.sub: a for a in self.accounts}), "v1")


def test_a_new_source_is_one_class(sqlite_url) -> None:
    store = platform_database(sqlite_url).accounts()
    outcome = sync_accounts(store, _ListSource((Account(sub="sub-dave", username="dave", dns=("/CN=Dave",)),)))
    assert (outcome.account_count, outcome.etag, outcome.source) == (1, "v1", "list:test")
    assert store.lookup_dn("/CN=Dave").username == "dave"  # type: ignore[union-attr]


def test_emptying_the_set_is_refused_for_every_source(sqlite_url) -> None:
    store = platform_database(sqlite_url).accounts()
    sync_accounts(store, RegistryFileSource(REGISTRY))
    with pytest.raises(RegistryMalformedError, match="refusing to empty the accounts store"):
        sync_accounts(store, _ListSource(()))
    assert sync_accounts(store, _ListSource(()), force=True).account_count == 0
