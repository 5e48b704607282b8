"""Daemon-equivalent sensor ticks, in process: for the demo and for end-to-end tests.

What dagster-daemon does for a sensor tick, without a daemon: evaluate the sensor with
its cursor, add the requested dynamic partitions, skip run requests whose run_key this
sensor already launched (looked up in the instance's runs, as the daemon does), and
execute the remaining runs. The cursor is kept in a small JSON file so that a "restart"
(a new process) resumes where the last tick ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance, Definitions, RunRequest, RunsFilter, SensorResult, SkipReason, build_sensor_context
from dagster._core.storage.tags import (  # Private: the tags of a run over a partition range, not exported
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"


@dataclass
class TickOutcome:
    """What one tick did."""

    requested: int = 0
    launched: list[str] = field(default_factory=list)  # partition keys launched
    duplicates: int = 0  # requests skipped because their run_key already ran
    failed: list[str] = field(default_factory=list)  # partition keys whose run failed
    skip_reason: str | None = None


class CursorFile:
    """A sensor cursor persisted in a JSON file (survives a process restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, sensor_name: str) -> str | None:
        if not self.path.exists():
            return None
        return json.loads(self.path.read_text()).get(sensor_name)

    def save(self, sensor_name: str, cursor: str | None) -> None:
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        data[sensor_name] = cursor
        partial = self.path.with_name(self.path.name + ".part")
        partial.write_text(json.dumps(data))
        partial.replace(self.path)


def already_launched(instance: DagsterInstance, sensor_name: str, run_key: str) -> bool:
    runs = instance.get_runs(filters=RunsFilter(tags={SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: run_key}), limit=1)
    return bool(runs)


def _partition_label(request: RunRequest) -> str:
    """The partition a request targets: its key, or ``first...last`` for a partition-range run."""
    if request.partition_key is not None:
        return str(request.partition_key)
    start, end = request.tags.get(ASSET_PARTITION_RANGE_START_TAG), request.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    return f"{start}...{end}" if start else "None"


def run_sensor_tick(
    defs: Definitions,
    instance: DagsterInstance,
    sensor_name: str,
    cursors: CursorFile,
    on_run_done: Callable[[str, bool], None] | None = None,
    log_level: str = "INFO",
    on_requested: Callable[[int], None] | None = None,
) -> TickOutcome:
    """Evaluate one tick of ``sensor_name`` and execute the runs it requests."""
    sensor_def = defs.resolve_sensor_def(sensor_name)
    with build_sensor_context(
        instance=instance,
        cursor=cursors.load(sensor_name),
        sensor_name=sensor_name,
        definitions=defs,
        resources=dict(defs.resources or {}),
    ) as context:
        result = sensor_def(context)
    outcome = TickOutcome()
    if isinstance(result, SkipReason):
        outcome.skip_reason = result.skip_message
        return outcome
    if not isinstance(result, SensorResult):
        raise TypeError(f"sensor {sensor_name} returned {type(result).__name__}; b2cal sensors return SensorResult or SkipReason")
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
    if result.skip_reason:
        outcome.skip_reason = result.skip_reason.skip_message
    requests: list[RunRequest] = list(result.run_requests or [])
    outcome.requested = len(requests)
    if on_requested is not None:  # how many runs this tick will execute (progress bars size themselves)
        on_requested(sum(1 for r in requests if not (r.run_key and already_launched(instance, sensor_name, r.run_key))))
    for request in requests:
        if request.run_key and already_launched(instance, sensor_name, request.run_key):
            outcome.duplicates += 1
            continue
        tags = dict(request.tags)
        tags[SENSOR_NAME_TAG] = sensor_name
        if request.run_key:
            tags[RUN_KEY_TAG] = request.run_key
        if request.asset_selection is not None:
            # Sensors targeting assets: the daemon runs the selection in the implicit asset job.
            job = defs.resolve_implicit_global_asset_job_def()
            selection = {"asset_selection": list(request.asset_selection)}
        else:
            job = defs.resolve_job_def(request.job_name or sensor_def.job_name)
            selection = {}
        run_result = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=tags,
            **selection,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        label = _partition_label(request)
        outcome.launched.append(label)
        if not run_result.success:
            outcome.failed.append(label)
        if on_run_done:
            on_run_done(label, run_result.success)
    # Like the daemon, the cursor advances only once the tick's runs were submitted.
    cursors.save(sensor_name, result.cursor if result.cursor is not None else cursors.load(sensor_name))
    return outcome
