"""Where a run stands in the daemon's queue (QueuedRunCoordinator: higher ``dagster/priority`` first).

When the shipped run limits are reached, the daemon dequeues the highest priority first, then
the oldest. An arriving run's ingestion goes first: everything downstream waits for it, and it
is short. Validation reports go last: no calibration waits for them, and drawing is CPU-bound.
Collectors and calibrations keep the default (0).
"""

from __future__ import annotations

PRIORITY_TAG = "dagster/priority"  # Dagster's own tag (not exported by the public API)
INGESTION_PRIORITY = 1
REPORT_PRIORITY = -1


def priority_tags(priority: int) -> dict[str, str]:
    """The run tag giving a run ``priority`` in the queue."""
    return {PRIORITY_TAG: str(priority)}
