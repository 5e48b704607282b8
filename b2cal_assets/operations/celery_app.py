"""The Celery app of b2cal workers: ``celery -A b2cal_assets.operations.celery_app worker``.

Same broker, backend and delivery settings as the runs that submit steps (``B2CAL_CELERY_*``,
see ``executors.py``). Recommended worker options: ``--pool solo`` (the step runs in the
worker process itself, so one worker process = one step at a time and a lost worker is a lost
broker connection, which returns its unacknowledged step to the queue); start more workers
for more parallelism. Workers need the same environment as the code location
(``B2CAL_DATABASE_URL``, ``B2CAL_INCOMING``, ``B2CAL_WORK_DIR``, ``B2CAL_PAYLOAD_DIR``) and must
see the same files and the same Dagster instance storage.
"""

from __future__ import annotations

from dagster._core.execution.retries import RetryMode  # Private: CeleryExecutor's constructor takes a RetryMode
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from b2cal_assets.operations.executors import CelerySettings

settings = CelerySettings.from_environment()

# Built exactly as the submitting run builds its app (dagster_celery.core_execution_loop), so
# both sides declare the queue identically.
app = make_app(
    CeleryExecutor(
        retries=RetryMode(RetryMode.DISABLED),
        broker=settings.broker,
        backend=settings.backend,
        config_source=settings.config_source(),
    ).app_args()
)

execute_plan = create_task(app)
