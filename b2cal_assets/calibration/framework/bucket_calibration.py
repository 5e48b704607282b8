"""The pure steps of one prompt calibration of a bucket, in the order the calibration asset runs them.

1. :func:`choose_runs`: which runs of the bucket feed the calibration (the union over its
   inputs of :func:`~b2cal_assets.calibration.framework.selection.select_runs`), and why the
   others do not;
2. :func:`collector_output_files`: the collector output of every chosen run, or a refusal
   naming the runs whose collectors have not run;
3. :func:`prompt_iov`: the IoV asked for (open-ended from the first chosen run);
4. :func:`describe_failure`: what an operator reads when the algorithm did not succeed;
5. :func:`payload_summary` and :func:`payload_table`: what was written, as stored in the bucket
   table and shown in the asset's metadata.

The Dagster asset (``calibration/assets.py``) only reads the stores, calls these in order,
writes the payloads and turns the refusals into a ``Failure``. No Dagster, no database here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from b2cal_assets.calibration.framework.errors import CalibrationFrameworkError
from b2cal_assets.calibration.framework.runner import CalibrationOutcome
from b2cal_assets.calibration.framework.selection import RunMetadata, select_runs
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.calibration.framework.strategies import PayloadIoV
from b2cal_assets.conditions.iov import ExpRun, IoV

__all__ = [
    "BucketRuns",
    "CalibrationFailure",
    "MissingCollectorOutputError",
    "NoRunPassesFiltersError",
    "StoredPayloadLike",
    "choose_runs",
    "collector_output_files",
    "describe_failure",
    "payload_summary",
    "payload_table",
    "prompt_iov",
]


class NoRunPassesFiltersError(CalibrationFrameworkError, ValueError):
    """No run of the bucket passes the calibration's input filters."""


class MissingCollectorOutputError(CalibrationFrameworkError, LookupError):
    """A chosen run has no collector output yet: the collectors must run first."""


@dataclass(frozen=True)
class BucketRuns:
    """The runs a calibration uses for one bucket, and why each other run is left out."""

    used: tuple[ExpRun, ...]  # (exp, run) order
    excluded: dict[str, list[str]]  # run label -> reasons, for the asset's metadata

    @property
    def labels(self) -> list[str]:
        return [run.format() for run in self.used]


def choose_runs(name: str, bucket: str, settings: CalibrationSettings, runs: Sequence[RunMetadata]) -> BucketRuns:
    """The runs of ``bucket`` that feed calibration ``name``: a run counts when any input takes it."""
    selected: set[ExpRun] | None = None
    excluded: dict[str, list[str]] = {}
    for input_name in settings.input_data_names:
        selection = select_runs(runs, settings, input_name)
        selected = set(selection.expruns) if selected is None else selected | set(selection.expruns)
        for run, reasons in selection.reasons().items():
            excluded.setdefault(run.format(), []).extend(reasons)
    used = tuple(sorted(selected or set()))
    if not used:
        raise NoRunPassesFiltersError(f"{name}: no run of bucket {bucket} passes the input filters: {json.dumps(excluded)}")
    return BucketRuns(used, excluded)


def collector_output_files(name: str, bucket: str, used: Sequence[ExpRun], outputs: Mapping[str, Sequence[Any]]) -> dict[ExpRun, str]:
    """Run -> collector output file, from the bucket table's ``run label -> (path, ...)`` rows."""
    missing = [run.format() for run in used if run.format() not in outputs]
    if missing:
        raise MissingCollectorOutputError(
            f"{name}: collector output missing for runs {missing} of bucket {bucket}; materialise the collectors first"
        )
    return {run: outputs[run.format()][0] for run in used}


def prompt_iov(used: Sequence[ExpRun]) -> IoV:
    """Prompt payloads are open-ended from the bucket's first run (a later bucket cuts them back)."""
    first = used[0]
    return IoV(first.exp, first.run, -1, -1)


@dataclass(frozen=True)
class CalibrationFailure:
    """What the operator reads when a calibration did not succeed on a bucket."""

    description: str
    result: str
    messages: list[str]  # the algorithm's last messages (at most 10)


def describe_failure(name: str, bucket: str, outcome: CalibrationOutcome) -> CalibrationFailure:
    """The failure text of an unsuccessful ``outcome``: result, passes and the last algorithm message."""
    attempts = outcome.final.attempts if outcome.final else ()
    reasons = [a.outcome.message for a in attempts if a.outcome.message]
    description = (
        f"{name} failed on bucket {bucket} after {len(outcome.iterations)} iteration(s): "
        f"{outcome.result.value}: {reasons[-1] if reasons else 'no message'}; nothing was written to the staging tag"
    )
    return CalibrationFailure(description, outcome.result.value, reasons[-10:])


class StoredPayloadLike(Protocol):
    """The conditions store's StoredPayload, as far as the summary needs it."""

    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def checksum(self) -> str: ...


def payload_summary(stored: Sequence[StoredPayloadLike], payloads: Sequence[PayloadIoV]) -> list[dict[str, Any]]:
    """One row per written payload (name, revision, IoV, runs, md5); the bucket table keeps it as JSON."""
    return [
        {"name": s.name, "revision": s.revision, "iov": str(p.iov), "runs": [r.format() for r in p.runs], "md5": s.checksum}
        for s, p in zip(stored, payloads)
    ]


def payload_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a markdown table for the asset's metadata."""
    rows = "\n".join(f"| {s['name']} | {s['revision']} | {s['iov']} | {', '.join(s['runs'])} |" for s in summary)
    return "| payload | revision | IoV | runs |\n|---|---|---|---|\n" + rows
