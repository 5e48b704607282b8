"""The Dagster resource that knows where the accounts come from and where they are stored.

Holds only locations, never secrets: the DiracX token stays in the diracx-client credentials
file (``DIRACX_CREDENTIALS_PATH``), so nothing sensitive reaches run config or the event log.
Unset fields fall back to the deployment's environment; the source is chosen by
``sources.accounts_source_from_environment``, the same route the schedule and the CLI take.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import Field

from b2cal_assets.accounts.diracx_source import DEFAULT_TIMEOUT_SECONDS
from b2cal_assets.accounts.sources import VO_SETTING, AccountsSource, DiracxSource, RegistryFileSource, accounts_source_from_environment
from b2cal_assets.accounts.store import AccountsStore
from b2cal_assets.config import database_url
from b2cal_assets.database import platform_database
from b2cal_assets.deployment_settings import DeploymentSettingsResource


class AccountsResource(DeploymentSettingsResource):
    """Accounts source settings and store; unset settings fall back to the environment.

    Where accounts come from and go to decides who the proxy lets in, so these are deployment
    settings (constructor keywords), not run config (b2cal_assets/deployment_settings.py):
    ``url`` (DiracX base URL, default $DIRACX_URL), ``credentials_path`` (diracx-client
    credentials file, default $DIRACX_CREDENTIALS_PATH), ``vo`` (default $B2CAL_DIRAC_VO or
    ``belle``), ``accounts_db`` (default: the platform database) and ``registry_yaml`` (sites
    without DiracX: a DiracX Registry YAML to import, default $B2CAL_ACCOUNTS_REGISTRY_YAML).
    """

    DEPLOYMENT: ClassVar[dict[str, Any]] = {name: lambda: None for name in ("url", "credentials_path", "vo", "accounts_db", "registry_yaml")}

    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, description="Per-request timeout.")

    url = property(lambda self: self.deployment_setting("url"))
    credentials_path = property(lambda self: self.deployment_setting("credentials_path"))
    vo = property(lambda self: self.deployment_setting("vo"))
    accounts_db = property(lambda self: self.deployment_setting("accounts_db"))
    registry_yaml = property(lambda self: self.deployment_setting("registry_yaml"))

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
