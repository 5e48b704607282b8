"""How soon the daemon picks work up: sensor intervals and queue priorities.

Sensor intervals. Dagster's sensor daemon evaluates the sensors once per 5 s loop and skips a
sensor whose previous tick began less than its ``minimum_interval_seconds`` ago. A tick begins
a few milliseconds after its loop does, so a 5 s interval skipped a loop every few ticks
(measured on the production stack: ticks 5, 5, 5, 5, 10 s apart), and each skip delayed a
hand-off between a bucket's waves by 5 s more. The sensors that hand work on (new runs ->
ingestion, ingested runs -> collectors -> calibrations, results -> reports and the TESTING
freeze) therefore ask for 1 s: every loop of the daemon, which stays the floor.

Queue priorities (QueuedRunCoordinator: higher ``dagster/priority`` first). When the shipped run
limits are reached, the daemon dequeues the highest priority first, then the oldest. An arriving
run's ingestion goes first: everything downstream waits for it, and it is short. Validation
reports go last: no calibration waits for them, and drawing is CPU-bound. Collectors and
calibrations keep the default (0).
"""

from __future__ import annotations

HANDOFF_SENSOR_INTERVAL_SECONDS = 1

PRIORITY_TAG = "dagster/priority"  # Dagster's own tag (not exported by the public API)
INGESTION_PRIORITY = 1
REPORT_PRIORITY = -1


def priority_tags(priority: int) -> dict[str, str]:
    """The run tag giving a run ``priority`` in the queue."""
    return {PRIORITY_TAG: str(priority)}
