"""The validation resource: where reports go, the RUNNING tag, notifications, sign-off policy.

Defaults come from the environment so the deployed code location needs no code change:
``B2CAL_REPORTS_DIR`` (default ``<state>/reports``), ``B2CAL_RUNNING_TAG`` (``prompt_running``),
``B2CAL_VALIDATION_WEBHOOK`` (empty: log only), ``B2CAL_DEMO_MODE`` (``1``: sign-offs without
an authenticated user are accepted and marked as demo; never set it in production) and
``B2CAL_APPROVER_ROLES`` (comma-separated; empty: any authenticated user may sign off).
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from b2cal_assets import config


def _env_list(name: str) -> list[str]:
    return config.BY_NAME[name].get() or []


class ValidationResource(ConfigurableResource):
    """Validation settings of the deployment."""

    reports_dir: str = Field(
        default_factory=lambda: str(config.reports_dir()),
        description="Directory of the validation reports (<reports_dir>/<bucket>/<calibration>/)",
    )
    running_tag: str = Field(default_factory=lambda: config.RUNNING_TAG.get(), description="The RUNNING global tag promotions update")
    webhook_url: str = Field(default_factory=lambda: config.VALIDATION_WEBHOOK.get() or "", description="Optional webhook for notifications")
    demo_mode: bool = Field(default_factory=lambda: bool(config.DEMO_MODE.get()), description="Accept sign-offs without a user (demo only)")
    approver_roles: list[str] = Field(default_factory=lambda: _env_list("B2CAL_APPROVER_ROLES"), description="Roles allowed to sign off (empty: any user)")

    def report_dir(self, bucket: str, calibration: str) -> Path:
        return Path(self.reports_dir) / bucket / calibration
