"""A test-only job whose one step blocks on its first attempt: to kill a Celery worker mid-step.

Each attempt records ``<attempt>-<pid>`` in the attempts directory; the first attempt then waits
(until the test kills its worker); later attempts finish at once. The step is idempotent, as
the platform's steps must be on Celery (acks_late redelivers a step whose worker died).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dagster import Definitions, MaterializeResult, asset

from b2cal_assets.operations.executors import CelerySettings, celery_executor_definition

FIRST_ATTEMPT_WAIT_S = 300  # the test kills the worker long before; a bound so nothing hangs forever


def gated_definitions(broker: str, attempts_dir: str) -> Definitions:
    attempts = Path(attempts_dir)

    @asset
    def gated_step() -> MaterializeResult:
        attempts.mkdir(parents=True, exist_ok=True)
        attempt = len(list(attempts.iterdir())) + 1
        (attempts / f"{attempt}-{os.getpid()}").write_text("")
        if attempt == 1:
            time.sleep(FIRST_ATTEMPT_WAIT_S)
        return MaterializeResult(metadata={"attempt": attempt, "pid": os.getpid()})

    executor = celery_executor_definition(CelerySettings(broker=broker))
    return Definitions(assets=[gated_step], executor=executor)
