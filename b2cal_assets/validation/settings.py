"""Validation settings per calibration: the limits the blocking checks apply.

As basf2's ``ValidationSettings(name, description, download_files, expert_config)``, one per
calibration, named like it. ``expert_config`` holds every number a check compares with, so a
calibration expert can read (and change) in one place what blocks a bucket:

* ``max_error``: channel (or ``"*"`` for every good channel) -> largest allowed uncertainty;
* ``median_error_max``: largest allowed median uncertainty of the good channels;
* ``max_not_enough_data_fraction``: channels flagged NOT_ENOUGH_DATA, of all channels;
* ``range``: channel (or ``"*"``) -> [low, high] physical range of the value;
* ``change_sigmas``, ``change_abs``, ``change_rel``: a change vs the previous IoV's payload
  fails when it is both significant and physically relevant: beyond ``change_sigmas *
  sqrt(err^2 + err_prev^2)`` *and* beyond the physical floor ``abs + rel * |previous|``
  (channel or ``"*"`` -> floor). Limits in sigma keep the false-alarm rate fixed whatever the
  statistics; the floor keeps sub-threshold drifts of a very precise payload from blocking
  (``bench/study_false_alarms.py`` measures both);
* ``max_changed_fraction``: fraction of channels allowed beyond that (0 for few-channel payloads);
* ``max_dead_fraction`` / ``max_hot_fraction``: status DEAD / HOT channels, of all channels;
* ``max_not_converged_fraction``: good-or-failed channels whose fit did not converge.

Each calibration declares its limits in its own module (``Calibration.validation``); this
module only reads them. Channel names are the payload's ``attributes["channels"]`` when it has them (BeamSpot: x, y,
z, cov_xx, ...), else channel numbers. Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from b2cal_assets.validation.errors import ValidationDomainError

__all__ = ["DEFAULT_LIMITS", "UnknownCalibrationError", "ValidationSettings", "validation_settings_for"]


@dataclass(frozen=True)
class ValidationSettings:
    """Limits of one calibration's checks (see the module doc for the keys)."""

    name: str
    description: str
    expert_config: Mapping[str, Any] = field(default_factory=dict)

    def limit(self, key: str) -> Any:
        """A limit from expert_config, falling back on DEFAULT_LIMITS."""
        if key in self.expert_config:
            return self.expert_config[key]
        return DEFAULT_LIMITS[key]


# Documented defaults for the keys a calibration's declared limits leave out.
DEFAULT_LIMITS: Mapping[str, Any] = MappingProxyType(
    {
        "max_error": {},
        "median_error_max": None,
        "max_not_enough_data_fraction": 0.02,
        "range": {},
        "change_abs": {},
        "change_rel": {},
        "change_sigmas": 5.0,
        "max_changed_fraction": 0.0,
        "max_dead_fraction": 0.01,
        "max_hot_fraction": 0.001,
        "max_not_converged_fraction": 0.01,
        # WARN level: a human should look when more than this fraction moved by > warn_sigmas.
        "warn_sigmas": 3.0,
        "warn_changed_fraction": 0.01,
    }
)

class UnknownCalibrationError(ValidationDomainError, KeyError):
    """Validation settings asked for a calibration that declares none (no silent defaults)."""


def _declared() -> dict[str, ValidationSettings]:
    # Imported here: the calibration modules are plug-ins discovered at run time.
    from b2cal_assets.calibration.plugins import discover_calibrations

    return {
        name: ValidationSettings(name, calibration.validation.description, dict(calibration.validation.limits))
        for name, calibration in discover_calibrations().items()
    }


def validation_settings_for(calibration: str) -> ValidationSettings:
    """The settings ``calibration`` declares beside its algorithm (its module's ``validation``);
    keys it leaves out take :data:`DEFAULT_LIMITS`. A calibration that is not known is an error."""
    declared = _declared()
    if calibration not in declared:
        raise UnknownCalibrationError(f"no calibration {calibration!r} declares validation limits; known: {sorted(declared)}")
    return declared[calibration]
