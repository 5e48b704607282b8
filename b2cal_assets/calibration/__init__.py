"""The calibration framework: settings, algorithm results, IoV strategies, input selection.

Pure Python (no Dagster); the Dagster assets in b2cal_assets.calibrations build on it.
Modules: settings (CalibrationSettings and its rules), results (AlgorithmResult, Algorithm),
strategies (SingleIOV, SequentialRunByRun, SimpleRunByRun, SequentialBoundaries),
selection (select_runs over run metadata), framework (the bounded iteration loop).
"""

from b2cal_assets.calibration.framework import (
    CalibrationFailedError,
    CalibrationOutcome,
    UndeclaredPayloadError,
    run_calibration,
    run_iterations,
)
from b2cal_assets.calibration.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.selection import ExcludedRun, RunMetadata, RunSelection, select_runs
from b2cal_assets.calibration.settings import (
    INPUT_DATA_FILTERS,
    SUBSYSTEMS,
    CalibrationSettings,
    DependencyCycleError,
    InvalidCalibrationSettingsError,
    InvalidExpertConfigError,
    merge_expert_config,
    topological_order,
)
from b2cal_assets.calibration.strategies import (
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
