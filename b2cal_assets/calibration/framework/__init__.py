"""The calibration framework: plug-in contract, settings, results, IoV strategies, selection, buckets.

Pure Python (no Dagster, no database); the plug-ins in b2cal_assets.calibration.plugins and the
Dagster shells in b2cal_assets.calibration build on it. Modules: contract (Calibration,
CollectorOutput: what a plug-in declares), settings (CalibrationSettings and its rules),
results (AlgorithmResult, Algorithm), strategies (SingleIOV, SequentialRunByRun,
SimpleRunByRun, SequentialBoundaries), selection (select_runs over run metadata), buckets
(bucket policy and planning), runner (the bounded iteration loop), errors (the domain's root).
"""

from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.framework.runner import (
    CalibrationFailedError,
    CalibrationOutcome,
    UndeclaredPayloadError,
    run_calibration,
    run_iterations,
)
from b2cal_assets.calibration.framework.selection import ExcludedRun, RunMetadata, RunSelection, select_runs
from b2cal_assets.calibration.framework.settings import (
    INPUT_DATA_FILTERS,
    SUBSYSTEMS,
    CalibrationSettings,
    DependencyCycleError,
    InvalidCalibrationSettingsError,
    InvalidExpertConfigError,
    merge_expert_config,
    topological_order,
)
from b2cal_assets.calibration.framework.strategies import (
    Execution,
    IoVStrategy,
    NoRunsToCalibrateError,
    PayloadIoV,
    SequentialBoundaries,
    SequentialRunByRun,
    SimpleRunByRun,
    SingleIOV,
    StrategyError,
    StrategyResult,
)

__all__ = [
    "INPUT_DATA_FILTERS",
    "SUBSYSTEMS",
    "Algorithm",
    "AlgorithmOutcome",
    "AlgorithmResult",
    "CalibrationFailedError",
    "CalibrationOutcome",
    "CalibrationSettings",
    "DependencyCycleError",
    "ExcludedRun",
    "Execution",
    "InvalidCalibrationSettingsError",
    "InvalidExpertConfigError",
    "IoVStrategy",
    "NoRunsToCalibrateError",
    "PayloadIoV",
    "RunMetadata",
    "RunSelection",
    "SequentialBoundaries",
    "SequentialRunByRun",
    "SimpleRunByRun",
    "SingleIOV",
    "StrategyError",
    "StrategyResult",
    "UndeclaredPayloadError",
    "merge_expert_config",
    "run_calibration",
    "run_iterations",
    "select_runs",
    "topological_order",
]
