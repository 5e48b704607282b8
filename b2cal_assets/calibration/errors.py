"""The root of the calibration framework's exceptions (buckets, settings, strategies, the CAF)."""


class CalibrationFrameworkError(Exception):
    """Base of every exception the calibration framework (b2cal_assets.calibration) raises; the
    plug-ins' own exceptions derive from b2cal_assets.calibrations.base.CalibrationPluginError."""
