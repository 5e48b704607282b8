"""The Dagster resource that knows where DiracX and the accounts store are.

Holds only locations, never secrets: the token stays in the diracx-client credentials file
(``DIRACX_CREDENTIALS_PATH``), so nothing sensitive reaches run config or the event log.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from b2cal_assets.config import database_url
from b2cal_assets.accounts.diracx_source import DEFAULT_TIMEOUT_SECONDS, DEFAULT_VO, DiracxSettings
from b2cal_assets.accounts.store import AccountsStore
from b2cal_assets.database import platform_database


class DiracxResource(dg.ConfigurableResource):
    """DiracX server and accounts-store settings; unset fields fall back to the environment."""

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

    def settings(self) -> DiracxSettings:
        return DiracxSettings.from_env(
            url=self.url,
            credentials_path=Path(self.credentials_path) if self.credentials_path else None,
            vo=self.vo,
            timeout_seconds=self.timeout_seconds,
        )

    def store(self) -> AccountsStore:
        return platform_database(self.accounts_db or database_url()).accounts()

    def resolved_vo(self) -> str:
        return self.vo or os.environ.get("B2CAL_DIRAC_VO") or DEFAULT_VO

    def registry_file(self) -> Path | None:
        configured = self.registry_yaml or os.environ.get("B2CAL_ACCOUNTS_REGISTRY_YAML")
        return Path(configured) if configured else None
