"""Everything of the calibration domain, built from the discovered calibrations."""

from dagster import Definitions

from b2cal_assets.calibration.assets import build_calibration_assets
from b2cal_assets.calibration.plugins import discover_calibrations
from b2cal_assets.calibration.sensors import build_bucket_scheduler_sensor


def build_calibration_definitions() -> Definitions:
    calibrations = discover_calibrations()
    return Definitions(assets=build_calibration_assets(calibrations), sensors=[build_bucket_scheduler_sensor(calibrations)])
