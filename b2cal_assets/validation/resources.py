"""The validation resource: where reports go, the RUNNING tag, notifications, sign-off policy.

Defaults come from the environment so the deployed code location needs no code change:
``B2CAL_REPORTS_DIR`` (default ``<state>/reports``), ``B2CAL_RUNNING_TAG`` (``prompt_running``),
``B2CAL_VALIDATION_WEBHOOK`` (empty: log only), ``B2CAL_DEMO_MODE`` (``1``: sign-offs without
an authenticated user are accepted and marked as demo; never set it in production) and
``B2CAL_APPROVER_ROLES`` (comma-separated; empty: any authenticated user may sign off).

The sign-off settings (demo mode, approver roles) guard a decision, so they are not config
fields: run config cannot reach them (Dagster refuses ``resources.validation.config.demo_mode``
as an unknown entry). They come from the deployment: given in Python where the code location
builds the resource, else read from the environment when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from b2cal_assets import config
from b2cal_assets.deployment_settings import DeploymentSettingsResource


def _env_list(name: str) -> list[str]:
    return config.BY_NAME[name].get() or []


class ValidationResource(DeploymentSettingsResource):
    """Validation settings of the deployment.

    ``demo_mode`` and ``approver_roles`` are deployment settings (constructor keywords, else
    the environment when used), not config fields: see the module docstring.
    """

    DEPLOYMENT: ClassVar[dict[str, Any]] = {
        "demo_mode": lambda: bool(config.DEMO_MODE.get()),
        "approver_roles": lambda: _env_list("B2CAL_APPROVER_ROLES"),
    }

    reports_dir: str = Field(
        default_factory=lambda: str(config.reports_dir()),
        description="Directory of the validation reports (<reports_dir>/<bucket>/<calibration>/)",
    )
    running_tag: str = Field(default_factory=lambda: config.RUNNING_TAG.get(), description="The RUNNING global tag promotions update")
    webhook_url: str = Field(default_factory=lambda: config.VALIDATION_WEBHOOK.get() or "", description="Optional webhook for notifications")

    @property
    def demo_mode(self) -> bool:
        """Accept sign-offs without a user (demo only)."""
        return bool(self.deployment_setting("demo_mode"))

    @property
    def approver_roles(self) -> list[str]:
        """Roles allowed to sign off (empty: any user)."""
        return list(self.deployment_setting("approver_roles"))

    def report_dir(self, bucket: str, calibration: str) -> Path:
        return Path(self.reports_dir) / bucket / calibration
