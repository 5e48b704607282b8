"""`b2cal conditions`: inspect global tags and export basf2 local databases.

Every command takes ``--database-url`` (default: B2CAL_DATABASE_URL, else the state
directory's database) and ``--payload-dir`` (default: B2CAL_PAYLOAD_DIR, else
``<state>/payloads``). The commands only read the platform database: one that does not exist
is refused, never created. Refusals of the conditions database are one error line (exit 1,
from the `b2cal` boundary), not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from b2cal_assets import config
from b2cal_assets.command_line import database_url_option, resolve_database_url

F = TypeVar("F", bound=Callable[..., Any])


def _store_options(command: F) -> F:
    """--database-url and --payload-dir; defaults are resolved when the command runs, not at import."""
    command = click.option(
        "--payload-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory of the payload files [default: B2CAL_PAYLOAD_DIR, else <state>/payloads].",
    )(command)
    return database_url_option(command)


def _open_store(database_url: str | None, payload_dir: Path | None) -> Any:
    # Imported here so `b2cal conditions --help` does not load uproot and SQLAlchemy.
    from b2cal_assets.database import platform_database

    url = resolve_database_url(database_url, must_exist=True)
    return platform_database(url).conditions(payload_dir or config.payload_dir(create_state_dir=False))


@click.group()
def conditions() -> None:
    """Inspect global tags and export basf2 local conditions databases."""


@conditions.command("tags")
@_store_options
def tags_command(database_url: str | None, payload_dir: Path | None) -> None:
    """List the global tags with their state and number of IoVs."""
    store = _open_store(database_url, payload_dir)
    tags = store.tags()
    if not tags:
        click.echo("no global tags")
        return
    width = max(len("NAME"), *(len(tag.name) for tag in tags))
    click.echo(f"{'NAME':<{width}}  {'STATE':<9}  {'IOVS':>5}  UPDATED")
    for tag in tags:
        updated = tag.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{tag.name:<{width}}  {tag.state.value:<9}  {tag.iov_count:>5}  {updated}")


@conditions.command("show")
@click.argument("tag")
@_store_options
def show_command(tag: str, database_url: str | None, payload_dir: Path | None) -> None:
    """Show TAG: its state, history and every payload with its revision, IoV and md5."""
    store = _open_store(database_url, payload_dir)
    info = store.tag(tag)
    click.echo(f"global tag {info.name}: {info.state.value}")
    if info.description:
        click.echo(f"description: {info.description}")
    for change in store.tag_history(tag):
        origin = change.from_state.value if change.from_state else "-"
        reason = f"  ({change.reason})" if change.reason else ""
        click.echo(f"  {change.changed_at:%Y-%m-%d %H:%M:%S}  {origin} -> {change.to_state.value}{reason}")
    entries = store.tag_entries(tag)
    if not entries:
        click.echo("no payloads")
        return
    width = max(len("PAYLOAD"), *(len(entry.name) for entry in entries))
    click.echo(f"{'PAYLOAD':<{width}}  {'REV':>4}  {'IOV':<22}  MD5")
    for entry in entries:
        click.echo(f"{entry.name:<{width}}  {entry.revision:>4}  {entry.iov!s:<22}  {entry.checksum}")


@conditions.command("export")
@click.option("--tag", required=True, help="Global tag to export.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory.")
@click.option("--force", is_flag=True, help="Replace an existing database.txt in the output directory.")
@_store_options
def export_command(tag: str, out_dir: Path, force: bool, database_url: str | None, payload_dir: Path | None) -> None:
    """Write TAG as a basf2 local database (database.txt + dbstore_<Name>_rev_<rev>.root)."""
    from b2cal_assets.conditions.export import export_local_database
    from b2cal_assets.conditions.tags import TagState

    store = _open_store(database_url, payload_dir)
    result = export_local_database(store, tag, out_dir, overwrite=force)
    if result.tag_state in (TagState.OPEN, TagState.INVALID):
        click.echo(f"warning: {tag} is {result.tag_state.value}; use this local database for tests only", err=True)
    click.echo(f"exported {tag} ({result.tag_state.value}): {len(result.lines)} IoVs, {len(result.files)} payload files")
    click.echo(f"local database: {result.directory / 'database.txt'}")
