"""The b2cal code location: every domain's definitions, merged, with shared resources.

Resources default to the embedded state directory (SQLite platform database, incoming root
under the state directory); environment variables override them (see ``config.py``).
"""

from __future__ import annotations

import json

from dagster import Definitions, ExecutorDefinition

# Import the modules, not their Definitions objects: dagster's module loader refuses a module
# holding more than one Definitions at top level (`-m b2cal_assets.definitions`).
from b2cal_assets.accounts import definitions as accounts_definitions
from b2cal_assets.calibration.definitions import build_calibration_definitions
from b2cal_assets.calibration.plugins import discover_calibrations
from b2cal_assets.operations.executors import executor_from_environment
from b2cal_assets.resources import (
    BucketPolicyResource,
    CalibrationStorageResource,
    ExpertConfigOverridesResource,
    IncomingDataResource,
    PlatformDatabaseResource,
)
from b2cal_assets.runs import definitions as runs_definitions
from b2cal_assets.validation.definitions import build_validation_definitions
from b2cal_assets.validation.resources import ValidationResource


def build_definitions(
    *,
    incoming_root: str | None = None,
    database_url: str | None = None,
    work_dir: str | None = None,
    payload_dir: str | None = None,
    bucket_policy: BucketPolicyResource | None = None,
    expert_config: dict[str, dict] | None = None,
    executor: ExecutorDefinition | None = None,
) -> Definitions:
    """The full Definitions; arguments override the configured locations (demo, tests).

    The executor is ``executor`` or the one ``B2CAL_EXECUTOR`` selects (multiprocess by
    default, ``celery`` to run steps on Celery workers): one code location for every deployment.
    """
    incoming = IncomingDataResource(root=incoming_root) if incoming_root else IncomingDataResource()
    database = PlatformDatabaseResource(url=database_url) if database_url else PlatformDatabaseResource()
    storage = CalibrationStorageResource(
        **{k: v for k, v in {"work_dir": work_dir, "payload_dir": payload_dir}.items() if v is not None}
    )
    return Definitions.merge(
        runs_definitions.runs_defs,
        accounts_definitions.accounts_defs,
        build_calibration_definitions(),
        build_validation_definitions(discover_calibrations()),
        Definitions(
            executor=executor or executor_from_environment(),
            resources={
                "incoming": incoming,
                "platform_db": database,
                "calibration_storage": storage,
                "bucket_policy": bucket_policy or BucketPolicyResource(),
                "expert_config_overrides": (
                    ExpertConfigOverridesResource(expert_config_json=json.dumps(expert_config))
                    if expert_config is not None
                    else ExpertConfigOverridesResource()
                ),
                "validation": ValidationResource(),
            }
        ),
    )


defs = build_definitions()
