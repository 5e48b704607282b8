"""Resources shared across domains: the incoming-data root and the platform database."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from b2cal_assets import config


class IncomingDataResource(ConfigurableResource):
    """The incoming-data root: run directories, completion records and the arrival journal."""

    root: str = Field(default_factory=lambda: str(config.incoming_root()), description="Incoming-data root directory")

    @property
    def path(self) -> Path:
        return Path(self.root)


class PlatformDatabaseResource(ConfigurableResource):
    """The platform database (run registry, conditions database, accounts)."""

    url: str = Field(default_factory=config.database_url, description="SQLAlchemy URL of the platform database")
