"""`b2cal db`: the platform database's schema revision (Alembic migrations in b2cal_assets/migrations)."""

from __future__ import annotations

import click

from b2cal_assets.command_line import database_url_option, resolve_database_url


@click.group("db")
def db() -> None:
    """Show and upgrade the platform database schema (runs, buckets, conditions, accounts)."""


def _describe(revision: str | None, head: str) -> str:
    if revision is None:
        return "no revision (empty or pre-migration database; `b2cal db upgrade` brings it to the head)"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head}; run `b2cal db upgrade`)"


@db.command("current")
@database_url_option
def current_command(database_url: str | None) -> None:
    """The schema revision the database is at."""
    from b2cal_assets.database import current_revision, engine_for, head_revision, safe_url

    engine = engine_for(resolve_database_url(database_url, must_exist=True))
    click.echo(f"{safe_url(engine)}: {_describe(current_revision(engine), head_revision())}")


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@database_url_option
def upgrade_command(database_url: str | None, revision: str) -> None:
    """Bring the schema to a revision (creates the tables of a new database; converts data as needed)."""
    from b2cal_assets.database import current_revision, engine_for, head_revision, safe_url, upgrade
    from b2cal_assets.migrations import REVISIONS

    if revision != "head" and revision not in REVISIONS:
        raise click.BadParameter(f"unknown revision {revision!r}; known: {', '.join(REVISIONS)} or head", param_hint="--revision")
    engine = engine_for(resolve_database_url(database_url, must_exist=False))
    before = current_revision(engine)
    after = upgrade(engine, revision)
    change = "already at" if before == after else f"{before or 'no revision'} ->"
    click.echo(f"{safe_url(engine)}: {change} {_describe(after, head_revision())}")
