"""The prompt calibrations: one module each (settings, collector, algorithm), found automatically.

A module of this package that defines a module-level ``CALIBRATION`` (a
:class:`~b2cal_assets.calibration.framework.contract.Calibration`) is a calibration; adding one is adding a
module. :func:`discover_calibrations` imports them all. Pure Python, no Dagster import.
"""

from __future__ import annotations

import importlib
import pkgutil

from b2cal_assets.calibration.framework.contract import Calibration, CalibrationPluginError, CollectorOutput

__all__ = ["Calibration", "CalibrationDiscoveryError", "CollectorOutput", "discover_calibrations"]


class CalibrationDiscoveryError(CalibrationPluginError, RuntimeError):
    """A calibration module is malformed (wrong CALIBRATION type, duplicate name)."""


def discover_calibrations() -> dict[str, Calibration]:
    """Calibration name -> Calibration for every module of this package defining ``CALIBRATION``.

    Sorted by name so asset definitions come out the same on every machine. Import errors of a
    module propagate: a broken calibration must fail loudly, not disappear from the plan.
    """
    found: dict[str, Calibration] = {}
    for module_info in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        if module_info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(module_info.name)
        calibration = getattr(module, "CALIBRATION", None)
        if calibration is None:
            continue  # helper module
        if not isinstance(calibration, Calibration):
            raise CalibrationDiscoveryError(
                f"{module_info.name}.CALIBRATION is a {type(calibration).__name__}; it must be a "
                "b2cal_assets.calibration.framework.contract.Calibration"
            )
        if calibration.name in found:
            raise CalibrationDiscoveryError(
                f"two modules define a calibration named {calibration.name!r} ({module_info.name} and another); "
                "calibration names must be unique"
            )
        found[calibration.name] = calibration
    return dict(sorted(found.items()))
