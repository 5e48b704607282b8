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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from b2cal_assets import config


def _env_list(name: str) -> list[str]:
    return config.BY_NAME[name].get() or []


@dataclass(frozen=True)
class SignOffSettings:
    """Who may sign off: deployment settings, never run config."""

    demo_mode: bool
    approver_roles: tuple[str, ...]

    @classmethod
    def from_environment(cls) -> SignOffSettings:
        return cls(bool(config.DEMO_MODE.get()), tuple(_env_list("B2CAL_APPROVER_ROLES")))


class ValidationResource(ConfigurableResource):
    """Validation settings of the deployment.

    ``demo_mode`` and ``approver_roles`` are keyword arguments of the constructor, not config
    fields (see the module docstring); unset, they are read from the environment when used.
    """

    _sign_off: SignOffSettings | None = PrivateAttr(default=None)

    def __init__(self, *, demo_mode: bool | None = None, approver_roles: Sequence[str] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        if demo_mode is not None or approver_roles is not None:
            environment = SignOffSettings.from_environment()
            self._sign_off = SignOffSettings(
                environment.demo_mode if demo_mode is None else bool(demo_mode),
                environment.approver_roles if approver_roles is None else tuple(approver_roles),
            )

    reports_dir: str = Field(
        default_factory=lambda: str(config.reports_dir()),
        description="Directory of the validation reports (<reports_dir>/<bucket>/<calibration>/)",
    )
    running_tag: str = Field(default_factory=lambda: config.RUNNING_TAG.get(), description="The RUNNING global tag promotions update")
    webhook_url: str = Field(default_factory=lambda: config.VALIDATION_WEBHOOK.get() or "", description="Optional webhook for notifications")

    def _with_updated_values(self, values: Mapping[str, Any] | None) -> ValidationResource:
        # Dagster rebuilds the resource from its config fields at run time: keep the
        # deployment's sign-off settings given in Python (they are not fields).
        out = super()._with_updated_values(values)
        out._sign_off = self._sign_off
        return out  # type: ignore[return-value]

    @property
    def sign_off(self) -> SignOffSettings:
        return self._sign_off if self._sign_off is not None else SignOffSettings.from_environment()

    @property
    def demo_mode(self) -> bool:
        """Accept sign-offs without a user (demo only)."""
        return self.sign_off.demo_mode

    @property
    def approver_roles(self) -> list[str]:
        """Roles allowed to sign off (empty: any user)."""
        return list(self.sign_off.approver_roles)

    def report_dir(self, bucket: str, calibration: str) -> Path:
        return Path(self.reports_dir) / bucket / calibration
