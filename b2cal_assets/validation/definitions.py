"""Everything of the validation domain, built from the calibrations it validates."""

from dagster import Definitions

from b2cal_assets.calibration.framework.contract import Calibration
from b2cal_assets.validation.assets import build_promotion_asset, build_reject_job, build_report_asset
from b2cal_assets.validation.checks import build_validation_checks
from b2cal_assets.validation.sensors import build_notification_sensor, build_report_sensor


def build_validation_definitions(calibrations: dict[str, Calibration]) -> Definitions:
    """Checks on every calibration asset, a report asset per calibration, the promotion asset,
    the reject job and the two validation sensors (resource ``validation``: ValidationResource)."""
    return Definitions(
        assets=[build_report_asset(c) for c in calibrations.values()] + [build_promotion_asset(calibrations)],
        asset_checks=build_validation_checks(calibrations),
        jobs=[build_reject_job()],
        sensors=[build_report_sensor(calibrations), build_notification_sensor(calibrations)],
    )
