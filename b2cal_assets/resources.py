"""Resources shared across domains: the incoming-data root and the platform database.

The database URL and the storage paths are deployment settings (DeploymentSettingsResource):
constructor keywords or the environment, never run config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dagster import ConfigurableResource
from pydantic import Field

from b2cal_assets import config
from b2cal_assets.database import PlatformDatabase, platform_database
from b2cal_assets.deployment_settings import DeploymentSettingsResource

if TYPE_CHECKING:
    from b2cal_assets.accounts.store import AccountsStore
    from b2cal_assets.calibration.bucket_store import BucketStore
    from b2cal_assets.conditions.store import ConditionsStore
    from b2cal_assets.runs.registry import RunRegistry


class IncomingDataResource(DeploymentSettingsResource):
    """The incoming-data root: run directories, completion records and the arrival journal."""

    DEPLOYMENT: ClassVar[dict[str, Any]] = {"root": lambda: str(config.incoming_root())}

    @property
    def root(self) -> str:
        """Incoming-data root directory."""
        return str(self.deployment_setting("root"))

    @property
    def path(self) -> Path:
        return Path(self.root)


class PlatformDatabaseResource(DeploymentSettingsResource):
    """The platform database: every store the assets, checks and sensors use comes from here.

    The stores share one engine per URL and the schema is at the newest migration before the
    first one is handed out (``b2cal_assets.database.platform_database``).
    """

    DEPLOYMENT: ClassVar[dict[str, Any]] = {"url": config.database_url}

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the platform database."""
        return str(self.deployment_setting("url"))

    def database(self) -> PlatformDatabase:
        return platform_database(self.url)

    def runs(self) -> RunRegistry:
        return self.database().runs()

    def buckets(self) -> BucketStore:
        return self.database().buckets()

    def conditions(self, payload_dir: Path | str) -> ConditionsStore:
        return self.database().conditions(payload_dir)

    def accounts(self) -> AccountsStore:
        return self.database().accounts()


class CalibrationStorageResource(DeploymentSettingsResource):
    """Where calibrations keep collector outputs and payload files."""

    DEPLOYMENT: ClassVar[dict[str, Any]] = {"work_dir": lambda: str(config.work_dir()),
                                            "payload_dir": lambda: str(config.payload_dir())}

    @property
    def work_dir(self) -> str:
        """Collector outputs and other intermediate files."""
        return str(self.deployment_setting("work_dir"))

    @property
    def payload_dir(self) -> str:
        """Payload ROOT files of the conditions database."""
        return str(self.deployment_setting("payload_dir"))

    def collector_output_path(self, calibration: str, bucket: str, run_key: str) -> Path:
        return Path(self.work_dir) / "collector" / calibration / bucket / f"{run_key}.npz"


class BucketPolicyResource(ConfigurableResource):
    """When an open bucket closes: N runs, L pb^-1, or T hours open (whichever first)."""

    max_runs: int | None = Field(default_factory=lambda: config.bucket_policy_settings()["max_runs"])
    max_luminosity_pb: float | None = Field(default_factory=lambda: config.bucket_policy_settings()["max_luminosity_pb"])
    max_age_hours: float | None = Field(default_factory=lambda: config.bucket_policy_settings()["max_age_hours"])


class ExpertConfigOverridesResource(ConfigurableResource):
    """Run-time expert_config per calibration, merged over each calibration's defaults.

    JSON ``{"<calibration name>": {"<key>": value}}``; from ``B2CAL_EXPERT_CONFIG`` by default.
    Unknown keys are refused when merged, so a misspelt key fails loudly instead of being ignored.
    """

    expert_config_json: str = Field(default_factory=lambda: config.EXPERT_CONFIG.raw() or "{}")

    def for_calibration(self, name: str) -> dict:
        try:
            overrides = json.loads(self.expert_config_json or "{}")
        except json.JSONDecodeError as error:
            raise ValueError(f"B2CAL_EXPERT_CONFIG is not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(overrides, dict) or not isinstance(overrides.get(name, {}), dict):
            raise ValueError('B2CAL_EXPERT_CONFIG must be a JSON object {"<calibration>": {"<key>": value}}')
        return dict(overrides.get(name, {}))
