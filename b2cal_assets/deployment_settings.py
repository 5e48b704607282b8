"""Resources whose guarding settings come from the deployment, never from run config.

Dagster exposes every field of a ``ConfigurableResource`` to run config, where a launcher's
``resources.<key>.config`` would override it (a database URL, a storage path, who may sign
off). A :class:`DeploymentSettingsResource` keeps such settings out of the config schema: they
are constructor keywords (the code location building the resource is the deployment) and,
when not given, read from the environment at the moment they are used. Dagster then refuses
them in run config as unknown entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from dagster import ConfigurableResource
from pydantic import PrivateAttr


class DeploymentSettingsResource(ConfigurableResource):
    """Base: ``DEPLOYMENT`` maps each deployment-only setting to its environment default."""

    DEPLOYMENT: ClassVar[Mapping[str, Callable[[], Any]]] = {}
    _deployment: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        given = {name: values.pop(name) for name in list(values) if name in type(self).DEPLOYMENT}
        super().__init__(**values)
        self._deployment = {name: value for name, value in given.items() if value is not None}

    def _with_updated_values(self, values: Mapping[str, Any] | None) -> DeploymentSettingsResource:
        # Dagster rebuilds a resource from its config fields when a run starts: carry the
        # deployment's settings over (they are not fields, so nothing in run config reaches them).
        out = super()._with_updated_values(values)
        out._deployment = dict(self._deployment)  # type: ignore[attr-defined]
        return out  # type: ignore[return-value]

    def deployment_setting(self, name: str) -> Any:
        """The setting given at construction, else its environment default, read now."""
        return self._deployment[name] if name in self._deployment else type(self).DEPLOYMENT[name]()
