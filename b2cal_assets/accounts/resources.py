"""The Dagster resource that knows where the accounts come from and where they are stored.

Holds only locations, never secrets: the DiracX token stays in the diracx-client credentials
file (``DIRACX_CREDENTIALS_PATH``), so nothing sensitive reaches run config or the event log.
Unset fields fall back to the deployment's environment; the source is chosen by
``sources.accounts_source_from_environment``, the same route the schedule and the CLI take.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from b2cal_assets.accounts.diracx_source import DEFAULT_TIMEOUT_SECONDS, DEFAULT_VO
from b2cal_assets.accounts.sources import VO_SETTING, AccountsSource, DiracxSource, RegistryFileSource, accounts_source_from_environment
from b2cal_assets.accounts.store import AccountsStore
from b2cal_assets.config import database_url
from b2cal_assets.database import platform_database


class AccountsResource(dg.ConfigurableResource):
    """Accounts source settings and store; unset fields fall back to the environment."""

    url: str | None = Field(default=None, description="DiracX base URL (default: $DIRACX_URL).")
    credentials_path: str | None = Field(
        default=None, description="diracx-client credentials file (default: $DIRACX_CREDENTIALS_PATH)."
    )
    vo: str | None = Field(default=None, description=f"DIRAC VO to sync (default: $B2CAL_DIRAC_VO or {DEFAULT_VO}).")
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, description="Per-request timeout.")
    accounts_db: str | None = Field(
        default=None, description="Accounts store database URL (default: the platform database)."
    )
    registry_yaml: str | None = Field(
        default=None,
        description=(
            "Sites without DiracX: import this DiracX Registry YAML instead of calling DiracX "
            "(default: $B2CAL_ACCOUNTS_REGISTRY_YAML)."
        ),
    )

    def source(self) -> AccountsSource:
        """The configured source; ``AccountsSettingsError`` when there is none or it is broken."""
        # Fields set here override the environment, then the one factory decides.
        overrides = {
            DiracxSource.setting: self.url,
            RegistryFileSource.setting: self.registry_yaml,
            "DIRACX_CREDENTIALS_PATH": self.credentials_path,
            VO_SETTING: self.vo,
        }
        environ = {**os.environ, **{key: value for key, value in overrides.items() if value}}
        return accounts_source_from_environment(environ, timeout_seconds=self.timeout_seconds)

    def store(self) -> AccountsStore:
        return platform_database(self.accounts_db or database_url()).accounts()
