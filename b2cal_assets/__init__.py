"""b2cal-assets: Belle II prompt calibration as Dagster software-defined assets."""

__version__ = "0.1.0"
