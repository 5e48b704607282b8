"""The `b2cal` command line: one entry point, one subcommand per domain.

Subcommands are imported only when used, so `b2cal --help` and light commands
(`b2cal auth check`) start without loading Dagster. Every command runs inside one error
boundary (``command_line.run_main``): a foreseeable failure is one line on stderr, exit 1
(usage errors: two lines, exit 2), never a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> (module:attribute, one-line help shown by `b2cal --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("b2cal_assets.runs.cli:generate", "Write synthetic Belle II run data (ROOT files, run records, truth)."),
    "runs": ("b2cal_assets.runs.cli:runs", "Query the run registry (ingested and quarantined runs)."),
    "demo": ("b2cal_assets.demo:demo", "Generate data and run the platform end to end on the embedded instance."),
    "auth": ("b2cal_assets.auth.cli:auth", "Validate X.509 certificate chains and VOMS attributes."),
    "pki": ("b2cal_assets.auth.cli:pki", "Make a test PKI: CA, CRL, user/host certificates, VOMS AA and proxies."),
    "accounts": ("b2cal_assets.accounts.cli:accounts", "Sync, import and inspect the accounts store (from DIRAC / DiracX)."),
    "conditions": ("b2cal_assets.conditions.cli:conditions", "Inspect global tags and export local conditions databases."),
    "serve": ("b2cal_assets.operations.serve:serve", "Run dagster-webserver, dagster-daemon and the proxy together."),
    "proxy": ("b2cal_assets.proxy.cli:proxy", "Serve the Dagster UI behind X.509/VOMS role checks."),
    "db": ("b2cal_assets.db_cli:db", "Show and upgrade the platform database schema (Alembic migrations)."),
    "config": ("b2cal_assets.command_line:config_command", "Show the settings in effect, or print the settings table of docs/operations.md."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        target, _ = SUBCOMMANDS[cmd_name]
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from b2cal_assets.command_line import run_main

        run_main(lambda: super(LazyGroup, self).main(args, prog_name, complete_var, standalone_mode=False, **extra))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="b2cal-assets", prog_name="b2cal")
def main() -> None:
    """b2cal: Belle II prompt calibration on Dagster.

    Raw runs, calibration constants and validation reports are Dagster assets;
    this command generates data, runs the demo, and administers the platform.
    """
