"""Validation settings per calibration: the limits the blocking checks apply.

As basf2's ``ValidationSettings(name, description, download_files, expert_config)``, one per
calibration, named like it. ``expert_config`` holds every number a check compares with, so a
calibration expert can read (and change) in one place what blocks a bucket:

* ``max_error``: channel (or ``"*"`` for every good channel) -> largest allowed uncertainty;
* ``median_error_max``: largest allowed median uncertainty of the good channels;
* ``max_not_enough_data_fraction``: channels flagged NOT_ENOUGH_DATA, of all channels;
* ``range``: channel (or ``"*"``) -> [low, high] physical range of the value;
* ``change_abs``: channel (or ``"*"``) -> allowed absolute change vs the previous IoV's payload;
  ``change_rel``: channel -> allowed relative change; the allowed change is
  ``abs + rel * |previous| + change_sigmas * sqrt(err^2 + err_prev^2)``;
* ``max_changed_fraction``: fraction of channels allowed beyond that (0 for few-channel payloads);
* ``max_dead_fraction`` / ``max_hot_fraction``: status DEAD / HOT channels, of all channels;
* ``max_not_converged_fraction``: good-or-failed channels whose fit did not converge.

Channel names are the payload's ``attributes["channels"]`` when it has them (BeamSpot: x, y,
z, cov_xx, ...), else channel numbers. Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["DEFAULT_LIMITS", "VALIDATION_SETTINGS", "ValidationSettings", "validation_settings_for"]


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


# Conservative defaults: a calibration added without validation settings is still checked.
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

VALIDATION_SETTINGS: dict[str, ValidationSettings] = {
    "BeamSpot": ValidationSettings(
        name="BeamSpot",
        description="Beam spot position and size: precision, physical range, run-to-run stability",
        expert_config={
            # Vertex-position precision reconstruction needs (cm): 0.5 um in x and y, 10 um in z.
            "max_error": {"x": 5e-5, "y": 5e-5, "z": 1e-3},
            "range": {
                "x": [-0.2, 0.2],
                "y": [-0.2, 0.2],
                "z": [-1.0, 1.0],
                "cov_xx": [0.0, 1e-4],  # sigma_x up to 100 um
                "cov_yy": [-1e-7, 1e-6],  # measured below the resolution: slightly negative is honest
                "cov_zz": [0.0, 1e-2],  # sigma_z up to 1 mm
            },
            # Orbit drifts move the spot by a few um per run; a jump of 20 um in x or 200 um in z
            # is an orbit correction the machine group must confirm before it enters the tag.
            "change_abs": {"x": 0.002, "y": 0.0005, "z": 0.02, "cov_xx": 5e-7, "cov_yy": 1e-7, "cov_zz": 5e-4, "*": 5e-6},
            "change_sigmas": 5.0,
            "max_changed_fraction": 0.0,
            "max_dead_fraction": 0.0,
            "max_hot_fraction": 0.0,
        },
    ),
    "CollisionEnergy": ValidationSettings(
        name="CollisionEnergy",
        description="Collision energy: fit converged, precision, range, stability",
        expert_config={
            "max_error": {"*": 0.0015},  # GeV
            "range": {"*": [10.40, 11.10]},  # GeV: Y(4S), off-resonance and scan points
            "change_abs": {"*": 0.005},  # GeV; the machine drifts by ~2 MeV
            "max_changed_fraction": 0.0,
            "max_dead_fraction": 0.0,
            "max_hot_fraction": 0.0,
        },
    ),
    "ECLCrystalEnergy": ValidationSettings(
        name="ECLCrystalEnergy",
        description="ECL crystal gains: dead crystals, precision, range, stability",
        expert_config={
            "median_error_max": 0.03,
            "max_not_enough_data_fraction": 0.05,
            "range": {"*": [0.5, 1.5]},
            "change_abs": {"*": 0.02},
            "max_changed_fraction": 0.002,
            # 44 crystals: more means a board or crate is off and must be understood first.
            "max_dead_fraction": 0.005,
            "max_hot_fraction": 0.0,
        },
    ),
    "CDCTimeZero": ValidationSettings(
        name="CDCTimeZero",
        description="CDC wire t0: hot and dead wires, fit convergence, precision, range, stability",
        expert_config={
            "median_error_max": 1.0,  # ns
            "max_not_enough_data_fraction": 0.02,
            "range": {"*": [40.0, 200.0]},  # ns: the edge window
            "change_abs": {"*": 1.0},
            "max_changed_fraction": 0.002,
            "max_dead_fraction": 0.005,
            # 7 wires: a noisy front-end board (16 wires) must be masked by the CDC group first.
            "max_hot_fraction": 0.0005,
            "max_not_converged_fraction": 0.01,
        },
    ),
}


def validation_settings_for(calibration: str) -> ValidationSettings:
    """The settings of ``calibration``; defaults for one without its own (still fully checked)."""
    return VALIDATION_SETTINGS.get(calibration) or ValidationSettings(calibration, f"{calibration}: default limits")
