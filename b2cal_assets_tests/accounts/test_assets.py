"""The Dagster layer: dirac_accounts materialises from DiracX or a file; the schedule runs by default."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from b2cal_assets.accounts.assets import dirac_accounts
from b2cal_assets.accounts.definitions import accounts_defs
from b2cal_assets.accounts.resources import AccountsResource
from b2cal_assets.database import platform_database
from b2cal_assets_tests.accounts.diracx_server import free_port
from b2cal_assets_tests.accounts.registries import baseline

DATA = Path(__file__).with_name("data")


def _metadata(result: dg.ExecuteInJobResult) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node("dirac_accounts")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_definitions_load_and_schedule_runs_every_10_minutes_by_default() -> None:
    merged = dg.Definitions.merge(dg.Definitions(), accounts_defs)
    repository = merged.get_repository_def()
    repository.load_all_definitions()
    schedule = repository.get_schedule_def("dirac_accounts_every_10_minutes")
    assert schedule.cron_schedule == "*/10 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert repository.get_job("dirac_accounts_sync") is not None
    assert dg.AssetKey("dirac_accounts") in {spec.key for spec in merged.resolve_all_asset_specs()}


def test_materialise_from_registry_file_reports_counts(database_url) -> None:
    resource = AccountsResource(registry_yaml=str(DATA / "registry.yml"), accounts_db=database_url)

    result = dg.materialize([dirac_accounts], resources={"accounts": resource}, instance=dg.DagsterInstance.ephemeral())

    assert result.success
    metadata = _metadata(result)
    assert (metadata["accounts"], metadata["dns"], metadata["suspended"]) == (3, 4, 1)
    assert metadata["added"] == "alice, bob, carol" and metadata["removed"] == "-"
    assert platform_database(database_url).accounts().lookup_username("alice") is not None


@pytest.mark.slow
def test_materialise_from_diracx_shows_diff_and_no_secret(
    database_url, diracx_server, diracx_credentials, publish
) -> None:
    users, groups = baseline()
    publish(users, groups, "baseline")
    resource = AccountsResource(
        url=diracx_server.url, credentials_path=str(diracx_credentials), accounts_db=database_url
    )
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([dirac_accounts], resources={"accounts": resource}, instance=instance)
    users["sub-carol"]["Suspended"] = ["belle"]
    del users["sub-bob"]
    groups["belle"]["Users"].remove("sub-bob")
    etag = publish(users, groups, "bob leaves, carol suspended")

    result = dg.materialize([dirac_accounts], resources={"accounts": resource}, instance=instance)

    metadata = _metadata(result)
    assert metadata["removed"] == "bob" and metadata["changed_users"] == "carol"
    assert (metadata["accounts"], metadata["suspended"], metadata["etag"]) == (2, 1, etag)
    # Everything the run wrote to the event log (metadata, logs, step events) is token-free.
    logged = " ".join(str(entry) for entry in instance.all_logs(result.run_id))
    credentials = json.loads(diracx_credentials.read_text())
    for secret in (credentials["access_token"], credentials["refresh_token"]):
        assert secret not in logged and secret[-40:] not in logged


def test_failed_sync_fails_the_run_and_keeps_the_set(sqlite_url, tmp_path) -> None:
    store = platform_database(sqlite_url).accounts()
    from b2cal_assets.accounts.sync import import_registry_yaml

    import_registry_yaml(DATA / "registry.yml", "belle", store=store)
    credentials = tmp_path / "credentials.json"
    credentials.write_text("{}")
    resource = AccountsResource(
        url=f"http://127.0.0.1:{free_port()}", credentials_path=str(credentials), accounts_db=sqlite_url
    )

    result = dg.materialize(
        [dirac_accounts], resources={"accounts": resource}, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )

    assert not result.success
    failure = result.failure_data_for_node("dirac_accounts")
    assert "server_unavailable" in str(failure.error)
    assert store.generation() == 1 and store.status().last_error_reason == "server_unavailable"


def test_without_a_source_the_run_fails_with_the_reason_and_records_nothing(sqlite_url, monkeypatch) -> None:
    monkeypatch.delenv("DIRACX_URL", raising=False)
    monkeypatch.delenv("B2CAL_ACCOUNTS_REGISTRY_YAML", raising=False)

    result = dg.materialize(
        [dirac_accounts], resources={"accounts": AccountsResource(accounts_db=sqlite_url)},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )

    assert not result.success
    failure = result.failure_data_for_node("dirac_accounts")
    assert failure.user_failure_data.description == (
        "accounts sync not started: no accounts source configured: set B2CAL_ACCOUNTS_REGISTRY_YAML or DIRACX_URL"
    )
    assert platform_database(sqlite_url).accounts().status().last_error is None


def test_a_run_launched_by_hand_that_fails_deliberately_is_not_retried(sqlite_url, monkeypatch) -> None:
    """Run retries on as the shipped dagster.yaml has them; the ad-hoc asset run has no job tag of its own."""
    from dagster._core.storage.tags import WILL_RETRY_TAG
    from dagster._core.test_utils import instance_for_test

    monkeypatch.delenv("DIRACX_URL", raising=False)
    monkeypatch.delenv("B2CAL_ACCOUNTS_REGISTRY_YAML", raising=False)
    shipped = yaml.safe_load((Path(__file__).parents[2] / "dagster.yaml").read_text())["run_retries"]
    with instance_for_test(overrides={"run_retries": shipped}) as instance:
        result = dg.materialize(
            [dirac_accounts], resources={"accounts": AccountsResource(accounts_db=sqlite_url)}, instance=instance, raise_on_error=False
        )
        run = instance.get_run_by_id(result.run_id)
    assert instance.run_retries_enabled and not result.success
    assert run.tags["dagster/retry_on_asset_or_op_failure"] == "false" and run.tags[WILL_RETRY_TAG] == "false"
