"""The roots of the calibration domain's exceptions.

``CalibrationError`` is the domain's one root; below it the framework's refusals (buckets,
settings, strategies, the iteration loop) and the plug-ins' (their inputs, collector outputs,
discovery) have a root each, so a caller can tell "the framework refused" from "a plug-in did".
"""


class CalibrationError(Exception):
    """Base of every exception the calibration domain (b2cal_assets.calibration) raises."""


class CalibrationFrameworkError(CalibrationError):
    """Base of every exception the calibration framework (b2cal_assets.calibration.framework) raises."""


class CalibrationPluginError(CalibrationError):
    """Base of every exception the calibration plug-ins (b2cal_assets.calibration.plugins) and
    the plug-in contract's helpers (framework.contract) raise."""
