"""Which automations (schedules, sensors) a deployment runs, and which wait for a setting.

A schedule or sensor that cannot work without some configuration declares the settings in its
metadata under ``NEEDS_ANY_OF`` (comma-separated; any one of them is enough) and skips its
ticks while none is set. ``b2cal serve`` prints ``describe`` of ``automation_states`` at
start-up, so an operator sees at once what runs and what is idle, and what would start it.

No Dagster import: ``automations_of`` reads the definitions by attribute, the rest is pure.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NEEDS_ANY_OF = "b2cal/needs_any_of"


@dataclass(frozen=True)
class Automation:
    """What the listing needs to know of one schedule or sensor."""

    name: str
    kind: str  # "schedule" or "sensor"
    running_by_default: bool
    needs_any_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class AutomationState:
    automation: Automation
    active: bool
    why: str  # empty when active

    def line(self) -> str:
        status = "active" if self.active else "idle"
        text = f"{status:<6} {self.automation.kind:<8} {self.automation.name}"
        return f"{text}  ({self.why})" if self.why else text


def _metadata_text(metadata: Mapping[str, Any] | None, key: str) -> str:
    value = (metadata or {}).get(key)
    # Dagster normalises metadata to MetadataValue objects; the raw text is their ``value``.
    return str(getattr(value, "value", value) or "")


def _running_by_default(definition: Any) -> bool:
    status = getattr(definition, "default_status", None)
    return getattr(status, "value", status) == "RUNNING"


def automations_of(definitions: Any) -> list[Automation]:
    """The schedules and sensors of a ``Definitions`` object, in name order."""
    repository = definitions.get_repository_def()
    found = []
    for kind, items in (("schedule", repository.schedule_defs), ("sensor", repository.sensor_defs)):
        for item in items:
            needs = _metadata_text(getattr(item, "metadata", None), NEEDS_ANY_OF)
            found.append(
                Automation(
                    name=item.name,
                    kind=kind,
                    running_by_default=_running_by_default(item),
                    needs_any_of=tuple(s.strip() for s in needs.split(",") if s.strip()),
                )
            )
    return sorted(found, key=lambda a: (a.kind, a.name))


def automation_states(automations: Iterable[Automation], environ: Mapping[str, str]) -> list[AutomationState]:
    """Active or idle, with the reason, for each automation under the environment ``environ``."""
    states = []
    for automation in automations:
        if not automation.running_by_default:
            states.append(AutomationState(automation, False, "stopped by default; start it in the UI"))
        elif automation.needs_any_of and not any((environ.get(s) or "").strip() for s in automation.needs_any_of):
            states.append(AutomationState(automation, False, "set " + " or ".join(automation.needs_any_of)))
        else:
            states.append(AutomationState(automation, True, ""))
    return states


def describe(states: Iterable[AutomationState]) -> str:
    """The start-up listing: one line per automation, active ones first."""
    ordered = sorted(states, key=lambda s: (not s.active, s.automation.kind, s.automation.name))
    active = sum(1 for s in ordered if s.active)
    lines = [f"automations: {active} active, {len(ordered) - active} idle"]
    lines += [f"  {state.line()}" for state in ordered]
    return "\n".join(lines)


def startup_listing(environ: Mapping[str, str], module: str = "b2cal_assets.definitions") -> str:
    """``describe`` for the code location ``module`` (its ``defs``) under ``environ``; one line if it cannot load.

    Loading the definitions here costs ``b2cal serve`` a few seconds once; the daemon's code
    server loads the same module, so a failure shows in its log as well.
    """
    try:
        definitions = importlib.import_module(module).defs
        return describe(automation_states(automations_of(definitions), environ))
    except Exception as error:  # noqa: BLE001 - the listing is advice; it must never stop serve
        return f"automations: not listed ({module} did not load: {type(error).__name__}: {error})"
