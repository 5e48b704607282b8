"""Celery glue: Definitions builders for Celery runs started outside the daemon (tests, benchmarks).

The code location itself (``b2cal_assets.definitions``) already takes its executor from
``B2CAL_EXECUTOR``; a site switches to Celery by setting that variable. Runs executed in
process hand Celery workers a pointer to ``celery_definitions`` here, so a worker rebuilds the
same job with the same locations without depending on its environment.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import Definitions, ExecutorDefinition
from dagster._core.code_pointer import CustomPointer, ModuleCodePointer  # Private: Celery workers rebuild the asset job from a code pointer; no public API does
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME  # Private: the implicit asset job's name, not exported
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository  # Private: as the code pointer above

from b2cal_assets.definitions import build_definitions
from b2cal_assets.operations.executors import CelerySettings, celery_executor_definition


def build_operations_definitions(executor: ExecutorDefinition | None = None, **locations: Any) -> Definitions:
    """``build_definitions(**locations)`` with ``executor`` (default: from the environment)."""
    return build_definitions(executor=executor, **locations)


def celery_definitions(broker: str, backend: str = "rpc://", **locations: Any) -> Definitions:
    """The code location on Celery, rebuilt from plain arguments (see ``reconstructable_asset_job``)."""
    executor = celery_executor_definition(CelerySettings(broker=broker, backend=backend))
    return build_operations_definitions(executor, **locations)


def reconstructable_asset_job(module: str, function: str, **kwargs: Any) -> ReconstructableJob:
    """The implicit asset job of the Definitions ``module.function(**kwargs)`` returns, reconstructable.

    Runs executed in process (tests, benchmarks) hand Celery workers this pointer: a worker
    calls the same function with the same arguments and so rebuilds the same job, with the
    same locations, without depending on its environment.
    """
    pointer = CustomPointer(ModuleCodePointer(module, function, working_directory=os.getcwd()), [], [[k, v] for k, v in kwargs.items()])
    return ReconstructableJob(repository=ReconstructableRepository(pointer), job_name=IMPLICIT_ASSET_JOB_NAME)

