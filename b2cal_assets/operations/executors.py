"""Which Dagster executor runs the steps of a run, chosen by configuration.

``B2CAL_EXECUTOR``:
- ``multiprocess`` (default): one process per step on the machine running the run; runs whose
  steps are sequential anyway (ingestion, a calibration and its checks, a report, a single
  collector) are requested by the sensors with ``in_process`` run config (see
  :func:`single_process_run_config`): one process start per run instead of one per step;
- ``celery``: every step is a Celery task on the broker ``B2CAL_CELERY_BROKER``; worker
  processes (``celery -A b2cal_assets.operations.celery_app worker``) on any machine
  sharing the Dagster instance, the platform database and the data directories run them.
- ``in_process``: one process for the whole run (debugging).

Celery settings (environment):
- ``B2CAL_CELERY_BROKER`` (default ``pyamqp://guest:guest@127.0.0.1:5672//``);
- ``B2CAL_CELERY_BACKEND`` (default ``rpc://``: results travel back over the broker).
Steps go to dagster-celery's queue ``dagster``; deployments sharing one RabbitMQ keep apart by
using a virtual host each (the last part of the broker URL), as the tests do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import ExecutorDefinition, in_process_executor, multi_or_in_process_executor

from b2cal_assets import config

EXECUTOR_ENV = config.EXECUTOR.env
BROKER_ENV = config.CELERY_BROKER.env
BACKEND_ENV = config.CELERY_BACKEND.env
DEFAULT_BROKER = config.CELERY_BROKER.fallback
DEFAULT_BACKEND = config.CELERY_BACKEND.fallback
EXECUTOR_NAMES = ("multiprocess", "celery", "in_process")


class ExecutorConfigurationError(ValueError):
    """The executor configuration in the environment is not usable."""


@dataclass(frozen=True)
class CelerySettings:
    """Where runs send their steps: broker and result backend."""

    broker: str = DEFAULT_BROKER
    backend: str = DEFAULT_BACKEND

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CelerySettings:
        return cls(
            broker=config.CELERY_BROKER.get(environ),
            backend=config.CELERY_BACKEND.get(environ),
        )

    def config_source(self) -> dict[str, Any]:
        """Celery app settings shared by the submitting run and the workers.

        acks_late + reject_on_worker_lost: a task is acknowledged only when its step is done,
        so a worker that dies mid-step (killed, machine lost) leaves the message on the broker
        and another worker runs the step again. Steps must therefore be idempotent; the
        collectors are (they write ``.part`` files and rename them, and upsert their record).
        prefetch 1: a worker holds at most one waiting step, so idle workers get the next one.
        """
        return {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
        }

    def executor_config(self) -> dict[str, Any]:
        """Config of ``dagster_celery.celery_executor`` for these settings."""
        return {"broker": self.broker, "backend": self.backend, "config_source": self.config_source()}


def executor_name_from_environment(environ: Mapping[str, str] | None = None) -> str:
    name = config.EXECUTOR.get(environ).strip().lower()
    if name not in EXECUTOR_NAMES:
        raise ExecutorConfigurationError(
            f"{EXECUTOR_ENV}={name!r} is not an executor this platform knows; use one of {', '.join(EXECUTOR_NAMES)}"
        )
    return name


def celery_executor_definition(settings: CelerySettings) -> ExecutorDefinition:
    """dagster-celery's executor, configured for ``settings``."""
    try:
        from dagster_celery import celery_executor
    except ImportError as error:  # optional dependency: only Celery deployments install it
        raise ExecutorConfigurationError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install dagster-celery==0.29.27 ({error})"
        ) from error
    return celery_executor.configured(settings.executor_config(), name="b2cal_celery")


def executor_from_environment(environ: Mapping[str, str] | None = None) -> ExecutorDefinition:
    """The executor ``B2CAL_EXECUTOR`` selects (multiprocess when unset).

    ``multiprocess`` is Dagster's multi-or-in-process executor: multiprocess unless a run's config
    asks for ``in_process`` (what :func:`single_process_run_config` gives the sensors).
    """
    name = executor_name_from_environment(environ)
    if name == "celery":
        return celery_executor_definition(CelerySettings.from_environment(environ))
    if name == "in_process":
        return in_process_executor
    return multi_or_in_process_executor


IN_PROCESS_RUN_CONFIG: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}


def single_process_run_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run config for a run whose steps run one after another anyway: all of them in the run
    worker, no process start per step. Empty (the executor's own default) unless the executor is
    the default multiprocess one: Celery and in-process deployments keep theirs."""
    return IN_PROCESS_RUN_CONFIG if executor_name_from_environment(environ) == "multiprocess" else {}
