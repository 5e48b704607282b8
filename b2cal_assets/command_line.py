"""What every `b2cal` command shares: the platform-database options and the error boundary.

The boundary (``run_main``, used by the top-level group) turns every foreseeable failure into
one line on stderr saying what is wrong and what to do, exit status 1; usage errors are two
lines (the error, where to read the help), exit status 2. Foreseeable means: a refusal of this
project's code (an exception class defined under ``b2cal_assets``), a bad setting, a file that
cannot be read or written, a database URL that cannot be parsed or reached, a value that
cannot be parsed. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from b2cal_assets import config

F = TypeVar("F", bound=Callable[..., Any])

DATABASE_HINT = "check --database-url / B2CAL_DATABASE_URL"


class MissingDatabaseError(click.ClickException):
    """A read command was pointed at a platform database that does not exist (it creates none)."""


# --- shared options ----------------------------------------------------------------------------


def database_url_option(command: F) -> F:
    """``--database-url URL`` (default ``B2CAL_DATABASE_URL``, else the state directory's SQLite file).

    ``--accounts-db`` is the old spelling, accepted but hidden. The default is resolved when the
    command runs (``resolve_database_url``), never at import.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, database_url: str | None = None, accounts_db: str | None = None, **kwargs: Any) -> Any:
        return command(*args, database_url=database_url or accounts_db, **kwargs)

    wrapper = click.option("--accounts-db", "accounts_db", metavar="URL", default=None, hidden=True)(wrapper)
    wrapper = click.option(
        "--database-url",
        "database_url",
        metavar="URL",
        default=None,
        help="Platform database (SQLAlchemy URL) [default: B2CAL_DATABASE_URL, else <state>/b2cal.sqlite].",
    )(wrapper)
    return wrapper  # type: ignore[return-value]


def resolve_database_url(given: str | None, *, must_exist: bool) -> str:
    """The URL to use; with ``must_exist`` (read commands), refuse a database that is not there.

    A read command must never create the database it was asked to read: an SQLite file that
    does not exist is refused (with where to look), a server database is connected to once so a
    wrong URL fails here with one line.
    """
    url = given or config.database_url(create_state_dir=not must_exist)
    if must_exist:
        require_database(url)
    return url


def require_database(url: str) -> None:
    import sqlalchemy as sa

    from b2cal_assets.database import engine_for

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not Path(parsed.database).is_file():
            raise MissingDatabaseError(
                f"no platform database at {parsed.database}; {DATABASE_HINT} "
                "(after `b2cal demo`, run the `export` line it printed)"
            )
        return
    with engine_for(url).connect():
        pass


# --- the error boundary ------------------------------------------------------------------------


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def describe(error: BaseException) -> str | None:
    """One line for a foreseeable error (what is wrong, what to do); None for a bug."""
    try:
        import sqlalchemy.exc as sa_exc
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        sa_exc = None  # type: ignore[assignment]
    if sa_exc is not None and isinstance(error, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return (
            f"cannot use the database URL ({_first_line(error)}); write e.g. postgresql://b2cal@db.example.org/b2cal "
            f"or sqlite:////srv/b2cal/b2cal.sqlite; {DATABASE_HINT}"
        )
    if sa_exc is not None and isinstance(error, sa_exc.DBAPIError):
        reason = _first_line(error.orig if error.orig is not None else error)
        return f"the platform database is not usable: {reason}; {DATABASE_HINT} and that the server is running"
    if sa_exc is not None and isinstance(error, sa_exc.SQLAlchemyError):
        return f"database error: {_first_line(error)}; {DATABASE_HINT}"
    if isinstance(error, UnicodeDecodeError):
        return f"the input is not text ({error.reason} at byte {error.start}); give a text file (YAML, PEM, JSON)"
    if isinstance(error, OSError):
        if error.filename is not None:
            what = error.strerror or _first_line(error)
            return f"cannot use {error.filename}: {what}; check the path and its permissions"
        return f"{_first_line(error)}; check the paths and services the command uses"
    if isinstance(error, config.SettingError):
        return _first_line(error)
    if type(error).__module__.startswith("b2cal_assets.") or isinstance(error, ValueError):
        return _first_line(error) or type(error).__name__
    return None


def _usage_error(error: click.UsageError) -> None:
    click.echo(f"Error: {error.format_message()}", err=True)
    if error.ctx is not None:
        click.echo(f"Try '{error.ctx.command_path} --help'.", err=True)


def run_main(call: Callable[[], Any]) -> None:
    """Run a click command with ``standalone_mode=False`` and apply the boundary; exits."""
    try:
        result = call()
    except click.UsageError as error:
        _usage_error(error)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except Exception as error:  # the boundary: foreseeable errors become one line, bugs re-raise
        message = describe(error)
        if message is None:
            raise
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


# --- `b2cal config` ----------------------------------------------------------------------------


@click.group("config")
def config_command() -> None:
    """The platform's settings (environment variables), declared in b2cal_assets/config.py."""


@config_command.command("show")
def config_show() -> None:
    """Every setting with the value in effect here and where it comes from (secrets masked)."""
    import os

    for setting in config.SETTINGS:
        raw = setting.raw()
        if raw is None:
            default = setting.default_text.replace("`", "")
            click.echo(f"{setting.env}: default ({default})")
            continue
        shown = raw
        if "://" in raw and "@" in raw:  # a URL with credentials: hide the password
            scheme, _, rest = raw.partition("://")
            user_info, _, host = rest.rpartition("@")
            shown = f"{scheme}://{user_info.split(':')[0]}:***@{host}" if ":" in user_info else raw
        click.echo(f"{setting.env}={shown}")
    unknown = sorted(name for name in os.environ if name.startswith("B2CAL_") and name not in config.BY_NAME)
    for name in unknown:
        click.echo(f"warning: {name} is set but is no setting of this release (misspelt?)", err=True)


@config_command.command("table")
@click.option("--update", "document", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Replace the generated block of this Markdown file (docs/operations.md) instead of printing.")
def config_table(document: Path | None) -> None:
    """Print the settings table (Markdown) that docs/operations.md embeds."""
    if document is None:
        click.echo(config.markdown_table(), nl=False)
        return
    replace_generated_block(document, "config-table", config.markdown_table())
    click.echo(f"updated the settings table in {document}")


def replace_generated_block(document: Path, name: str, body: str) -> None:
    """Replace what lies between ``<!-- BEGIN name... -->`` and ``<!-- END name -->``."""
    import re

    text = document.read_text()
    pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)}:[^>]*-->\n)(.*?)(<!-- END {re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise click.UsageError(f"{document} has no generated block {name!r} (<!-- BEGIN {name}: ... --> ... <!-- END {name} -->)")
    document.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(3), text, count=1))


@config_command.command("roles")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Role policy file [default: the shipped VO belle policy].")
@click.option("--update", "document", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Replace the generated block of this Markdown file (docs/operations.md) instead of printing.")
def config_roles(policy: Path | None, document: Path | None) -> None:
    """Print the FQAN / DIRAC group -> role table (Markdown) of a role policy, as docs/operations.md shows it."""
    if document is None:
        click.echo(roles_table(policy), nl=False)
        return
    replace_generated_block(document, "roles-table", roles_table(policy))
    click.echo(f"updated the roles table in {document}")


def roles_table(policy: Path | None = None) -> str:
    """One row per role and scope: the FQANs and DIRAC groups granting it."""
    import yaml

    path = policy or Path(__file__).parent / "proxy" / "default_policy.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    rows: dict[tuple[str, tuple[str, ...]], tuple[list[str], list[str]]] = {}
    for binding in document.get("bindings", []):
        scope = tuple(binding.get("asset_groups") or ())
        fqans, groups = rows.setdefault((binding["role"], scope), ([], []))
        if binding.get("fqan"):
            fqans.append(f"`{binding['fqan']}`")
        if binding.get("dirac_group"):
            groups.append(f"`{binding['dirac_group']}`")
    lines = ["| VOMS FQAN | DIRAC group | role | asset groups |", "|---|---|---|---|"]
    for (role, scope), (fqans, groups) in rows.items():
        lines.append(f"| {', '.join(fqans) or '-'} | {', '.join(groups) or '-'} | {role} | {', '.join(scope) or 'all'} |")
    return "\n".join(lines) + "\n"
