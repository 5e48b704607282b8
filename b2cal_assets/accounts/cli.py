"""`b2cal accounts`: sync, import and inspect the accounts store.

Every command takes ``--database-url URL`` (default: the platform database,
B2CAL_DATABASE_URL; ``--accounts-db`` is the old spelling), as the proxy does; ``list`` and
``show`` only read and refuse a database that does not exist. No Dagster import here: these
commands start fast and work without an instance.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from b2cal_assets.accounts.diracx_source import DEFAULT_VO, DiracxSettings
from b2cal_assets.accounts.errors import AccountsError, AccountsSyncError
from b2cal_assets.accounts.freshness import FreshnessPolicy, evaluate
from b2cal_assets.accounts.models import Account
from b2cal_assets.accounts.sources import (
    VO_SETTING,
    AccountsSource,
    DiracxSource,
    accounts_source_from_environment,
)
from b2cal_assets.accounts.store import AccountsStore
from b2cal_assets.accounts.sync import SyncOutcome, import_registry_yaml, sync_accounts
from b2cal_assets.command_line import database_url_option, resolve_database_url
from b2cal_assets.database import platform_database


def _store(database_url: str | None, *, must_exist: bool = False) -> AccountsStore:
    try:
        return platform_database(resolve_database_url(database_url, must_exist=must_exist)).accounts()
    except AccountsError as error:
        raise click.ClickException(str(error)) from None


def _print_outcome(outcome: SyncOutcome, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        return
    if not outcome.changed:
        click.echo(
            f"unchanged (ETag {outcome.etag}): generation {outcome.generation}, "
            f"{outcome.account_count} accounts, {outcome.dn_count} DNs"
        )
        return
    diff = outcome.diff
    click.echo(
        f"generation {outcome.generation} from {outcome.source}: {outcome.account_count} accounts, "
        f"{outcome.dn_count} DNs, {outcome.suspended_count} suspended; "
        f"+{len(diff.added)} -{len(diff.removed)} ~{len(diff.changed)}"
    )
    for label, names in (("added", diff.added), ("removed", diff.removed), ("changed", diff.changed)):
        if names:
            click.echo(f"  {label}: {', '.join(names)}")
    for warning in outcome.warnings:
        click.echo(f"  warning: {warning}", err=True)


def _fail(error: AccountsSyncError, store: AccountsStore) -> None:
    status = store.status()
    kept = f"generation {status.generation}" if status.generation is not None else "no accounts (never synced)"
    click.echo(f"error: sync failed ({error.reason}): {error}", err=True)
    click.echo(f"the accounts store keeps {kept}", err=True)
    sys.exit(1)


@click.group()
def accounts() -> None:
    """Sync, import and inspect the accounts store (from DIRAC / DiracX)."""
    # The commands print what matters themselves; without this, Python's last-resort handler
    # would repeat every warning on stderr.
    logging.getLogger("b2cal_assets.accounts").addHandler(logging.NullHandler())


@accounts.command()
@database_url_option
@click.option("--url", help="DiracX URL (default: $DIRACX_URL).")
@click.option("--credentials", type=click.Path(path_type=Path), help="Credentials file (default: $DIRACX_CREDENTIALS_PATH).")
@click.option("--vo", help=f"DIRAC VO (default: $B2CAL_DIRAC_VO or {DEFAULT_VO}).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Per-request timeout in seconds.")
@click.option("--force", is_flag=True, help="Fetch in full (ignore the ETag) and accept an empty registry.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def sync(
    database_url: str | None,
    url: str | None,
    credentials: Path | None,
    vo: str | None,
    timeout: float,
    force: bool,
    as_json: bool,
) -> None:
    """Sync the accounts from the configured source, as the schedule does.

    The source is DiracX (--url or DIRACX_URL; conditional on the config ETag) or the Registry
    YAML file B2CAL_ACCOUNTS_REGISTRY_YAML names; --url always means DiracX.
    """
    store = _store(database_url)
    try:
        source: AccountsSource
        if url:
            source = DiracxSource(DiracxSettings.from_env(url=url, credentials_path=credentials, vo=vo, timeout_seconds=timeout))
        else:
            given = {"DIRACX_CREDENTIALS_PATH": str(credentials) if credentials else None, VO_SETTING: vo}
            environ = {**os.environ, **{key: value for key, value in given.items() if value}}
            source = accounts_source_from_environment(environ, timeout_seconds=timeout)
        outcome = sync_accounts(store, source, force=force)
    except AccountsSyncError as error:
        _fail(error, store)
        return
    except AccountsError as error:
        raise click.ClickException(str(error)) from None
    _print_outcome(outcome, as_json)


@accounts.command(name="import")
@database_url_option
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--vo", default=DEFAULT_VO, show_default=True, help="VO whose Registry section to import.")
@click.option("--force", is_flag=True, help="Accept a registry with no users.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def import_(database_url: str | None, file: Path, vo: str, force: bool, as_json: bool) -> None:
    """Replace the accounts with those of a DiracX Registry YAML FILE."""
    try:
        file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        # A .p12/.pfx certificate is the usual mistake: it belongs in a browser, not here.
        raise click.BadParameter(
            f"{file} is binary, not a Registry YAML file (a PKCS#12 certificate is imported into a browser)",
            param_hint="FILE",
        ) from None
    store = _store(database_url)
    try:
        outcome = import_registry_yaml(file, vo, store=store, force=force)
    except AccountsSyncError as error:
        _fail(error, store)
        return
    _print_outcome(outcome, as_json)


@accounts.command(name="list")
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print accounts and status as JSON.")
def list_(database_url: str | None, as_json: bool) -> None:
    """List the current accounts and the sync status."""
    store = _store(database_url, must_exist=True)
    rows = store.accounts()
    status = store.status()
    if as_json:
        click.echo(json.dumps({"status": status.to_json(), "accounts": [a.to_json() for a in rows]}, indent=2))
        return
    synced = status.last_good_sync_at.isoformat(timespec="seconds") if status.last_good_sync_at else "never"
    click.echo(f"generation {status.generation}, {len(rows)} accounts, last good sync {synced}, source {status.source}")
    if status.last_error:
        click.echo(f"last error ({status.last_error_reason}): {status.last_error}")
    try:
        verdict = evaluate(status, FreshnessPolicy.from_env())
        click.echo(f"proxy access ceiling: {verdict.access.value}" + (f" ({verdict.reason})" if verdict.reason else ""))
    except AccountsError as error:  # a bad B2CAL_ACCOUNTS_* setting must not hide the list
        click.echo(f"max-age rule not evaluated: {error}", err=True)
    for account in rows:
        flag = " SUSPENDED" if account.suspended else ""
        click.echo(f"{account.username:<20} {len(account.dns)} DN  {','.join(account.group_names)}{flag}")


@accounts.command()
@database_url_option
@click.argument("dn")
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
def show(database_url: str | None, dn: str, as_json: bool) -> None:
    """Show the account that owns certificate subject DN (slash form: /C=.../CN=...)."""
    account = _store(database_url, must_exist=True).lookup_dn(dn)
    if account is None:
        click.echo(f"no account has DN {dn!r} (check the slash form, /C=.../CN=...)", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(account.to_json(), indent=2))
        return
    click.echo(_describe(account))


def _describe(account: Account) -> str:
    lines = [
        f"username:  {account.username}",
        f"sub:       {account.sub}",
        f"email:     {account.email or '-'}",
        f"suspended: {'yes' if account.suspended else 'no'}",
        "DNs:",
        *(f"  {dn}" for dn in account.dns),
        "groups:",
        *(f"  {g.name} (VOMS role {g.voms_role or '-'}; {', '.join(g.properties)})" for g in account.groups),
    ]
    return "\n".join(lines)
