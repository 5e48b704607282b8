"""Buckets: groups of consecutive runs calibrated together, and what to do next for each.

A bucket collects the ingested (not quarantined) runs of one experiment in arrival order
until its policy closes it: after N runs, after L pb^-1 of integrated luminosity, or when it
has been open for T. Prompt calibration re-runs a bucket's calibrations whenever a run
lands in the still-open bucket and once more when it closes, so experts see constants early
and the final ones are computed from the complete bucket.

``plan_bucket`` is the scheduler's whole decision, as a pure function: given the bucket's
runs, which collectors have run and which calibrations are up to date, it returns the next
collector and calibration steps whose inputs are ready, in dependency order. A calibration
is up to date when it ran on the bucket's current *version* (its run count and whether it
was closed), so a new run or the closing makes every calibration of the bucket due again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from b2cal_assets.calibration.framework.errors import CalibrationFrameworkError
from b2cal_assets.calibration.framework.settings import CalibrationSettings

_BUCKET_KEY = re.compile(r"^e(\d{4})\.b(\d{4})$")


class InvalidBucketPolicyError(CalibrationFrameworkError, ValueError):
    """A bucket policy with no way to close, or a negative limit."""


class InvalidBucketKeyError(CalibrationFrameworkError, ValueError):
    """A string is not a bucket key like e0026.b0001."""


def bucket_key(exp: int, number: int) -> str:
    """Bucket keys: ``e0026.b0001`` (the Dagster partition key of a bucket)."""
    return f"e{exp:04d}.b{number:04d}"


def parse_bucket_key(key: str) -> tuple[int, int]:
    match = _BUCKET_KEY.match(key)
    if not match:
        raise InvalidBucketKeyError(f"{key!r} is not a bucket key like e0026.b0001")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class BucketPolicy:
    """When an open bucket closes; any limit reached closes it. None disables a limit."""

    max_runs: int | None = 20
    max_luminosity_pb: float | None = None
    max_age: timedelta | None = timedelta(days=14)

    def __post_init__(self) -> None:
        if self.max_runs is None and self.max_luminosity_pb is None and self.max_age is None:
            raise InvalidBucketPolicyError("a bucket policy needs at least one of max_runs, max_luminosity_pb, max_age")
        if self.max_runs is not None and self.max_runs < 1:
            raise InvalidBucketPolicyError(f"max_runs must be at least 1, not {self.max_runs}")
        if self.max_luminosity_pb is not None and self.max_luminosity_pb <= 0:
            raise InvalidBucketPolicyError(f"max_luminosity_pb must be positive, not {self.max_luminosity_pb}")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise InvalidBucketPolicyError(f"max_age must be positive, not {self.max_age}")

    def close_reason(self, n_runs: int, luminosity_pb: float, opened_at: datetime, now: datetime) -> str | None:
        """Why the bucket must close now, or None while it stays open."""
        if self.max_runs is not None and n_runs >= self.max_runs:
            return f"{n_runs} runs >= {self.max_runs}"
        if self.max_luminosity_pb is not None and luminosity_pb >= self.max_luminosity_pb:
            return f"{luminosity_pb:.1f} pb^-1 >= {self.max_luminosity_pb:.1f} pb^-1"
        if self.max_age is not None and n_runs > 0 and now - opened_at >= self.max_age:
            return f"open for {now - opened_at} >= {self.max_age}"
        return None


@dataclass(frozen=True)
class BucketVersion:
    """What a calibration result was computed from: the run count and the closed flag."""

    n_runs: int
    closed: bool

    def __str__(self) -> str:
        return f"{self.n_runs}{'c' if self.closed else 'o'}"

    @classmethod
    def parse(cls, text: str) -> BucketVersion:
        return cls(int(text[:-1]), text[-1] == "c")


@dataclass(frozen=True)
class CollectStep:
    """Run the collectors of ``calibrations`` on one run of the bucket."""

    run_key: str
    calibrations: tuple[str, ...]


@dataclass(frozen=True)
class CalibrateStep:
    """Run the reduce step of ``calibrations`` over the bucket (their inputs are ready)."""

    calibrations: tuple[str, ...]


@dataclass(frozen=True)
class BucketPlan:
    collect: tuple[CollectStep, ...]
    calibrate: CalibrateStep | None
    waiting: tuple[str, ...]  # calibrations waiting on an upstream calibration

    @property
    def idle(self) -> bool:
        return not self.collect and self.calibrate is None


def upstream_version(settings: CalibrationSettings, versions: Mapping[str, BucketVersion | None]) -> str:
    """What a collector's upstream payloads were computed for: the bucket version of each
    calibration it depends on, in ``depends_on`` order ('' without dependencies).

    Recorded with each collector output, and compared by the scheduler with the version it
    expects, so both sides build the string here.
    """
    return ",".join(str(versions.get(dependency.name) or "") for dependency in settings.depends_on)


def plan_bucket(
    ordered_settings: Sequence[CalibrationSettings],
    bucket_runs: Sequence[str],
    version: BucketVersion,
    collected: Mapping[str, set[str]],
    calibrated: Mapping[str, BucketVersion | None],
) -> BucketPlan:
    """The next ready steps for one bucket.

    ``ordered_settings`` in dependency order; ``collected[c]`` the run keys whose collector
    output for calibration ``c`` exists; ``calibrated[c]`` the bucket version of the latest
    successful calibration ``c`` of this bucket. A calibration is ready when its upstream
    calibrations are up to date and its collectors ran on every run of the bucket.
    """
    up_to_date = {name for name, done in calibrated.items() if done == version}
    collect_by_run: dict[str, list[str]] = {}
    ready: list[str] = []
    waiting: list[str] = []
    for settings in ordered_settings:
        name = settings.name
        if name in up_to_date:
            continue
        upstream = [dependency.name for dependency in settings.depends_on]
        if any(dependency not in up_to_date for dependency in upstream):
            waiting.append(name)
            continue
        missing = [run for run in bucket_runs if run not in collected.get(name, set())]
        for run in missing:
            collect_by_run.setdefault(run, []).append(name)
        if not missing and bucket_runs:
            ready.append(name)
    collect = tuple(CollectStep(run, tuple(names)) for run, names in sorted(collect_by_run.items()))
    return BucketPlan(collect, CalibrateStep(tuple(ready)) if ready else None, tuple(waiting))


def contiguous_segments(run_keys: Iterable[str], position: Mapping[str, int]) -> list[list[str]]:
    """``run_keys`` split into runs adjacent in ``position`` (each run's index in the run partition set).

    A Dagster partition range covers every run between its two ends, so a bucket's runs can be
    collected as one range only where no other run (quarantined, another bucket's) lies between
    them. A run without a position gets a segment of its own.
    """
    segments: list[list[str]] = []
    for key in sorted(run_keys, key=lambda k: (position.get(k, -1), k)):
        previous = segments[-1][-1] if segments else None
        if previous is not None and key in position and previous in position and position[key] == position[previous] + 1:
            segments[-1].append(key)
        else:
            segments.append([key])
    return segments


# Below this many runs per collector run, splitting a wave costs more than it gains: a run
# worker's start (interpreter, code location, instance) costs a few seconds of CPU, about what
# collecting one run of 50k events costs.
MIN_RUNS_PER_COLLECTOR_RUN = 5


def collector_batches(segments: Sequence[Sequence[str]], parallel_runs: int) -> list[list[str]]:
    """A wave's contiguous ``segments`` cut into batches, one collector run each, so that up to
    ``parallel_runs`` runs collect side by side (one per core, or per Celery worker).

    One run per wave collects every run of it on one core while the other stands idle; cutting
    the range in ``parallel_runs`` contiguous parts of near-equal size keeps every core busy, as
    Dagster's multi-run backfill policy does with ``max_partitions_per_run``. Buckets with fewer
    than ``MIN_RUNS_PER_COLLECTOR_RUN`` runs per part stay whole. Segments are never joined (a
    partition range must not cover another bucket's runs), only cut.
    """
    if parallel_runs < 1:
        raise ValueError(f"parallel_runs must be at least 1, not {parallel_runs}")
    total = sum(len(segment) for segment in segments)
    parts = max(1, min(parallel_runs, total // MIN_RUNS_PER_COLLECTOR_RUN))
    largest = math.ceil(total / parts) if total else 0
    batches: list[list[str]] = []
    for segment in segments:
        if not segment:
            continue
        pieces = math.ceil(len(segment) / largest)
        size, extra = divmod(len(segment), pieces)
        start = 0
        for piece in range(pieces):
            end = start + size + (1 if piece < extra else 0)
            batches.append(list(segment[start:end]))
            start = end
    return batches


@dataclass(frozen=True)
class InFlightRun:
    """A scheduler run of a bucket still queued or running: the bucket version it was planned
    for and its calibration (None for a run that does not say, planned by an older scheduler)."""

    version: str
    calibration: str | None


@dataclass(frozen=True)
class InFlightVerdict:
    """Whether to wait for the bucket's runs in flight, or plan around the calibrations they hold."""

    wait: bool
    busy: frozenset[str] = frozenset()


def judge_in_flight(version: BucketVersion, runs: Iterable[InFlightRun]) -> InFlightVerdict:
    """How the scheduler treats a bucket's runs in flight.

    Runs of an older version (previews of the open bucket, planned before a run arrived or
    before it closed) hold the whole bucket: new steps would race their results, and previews
    coalesce onto the newest version instead of queueing one wave per arriving run. Runs of the
    current version hold only their own calibration: the others go on, so a calibration whose
    upstream is done (CollisionEnergy after BeamSpot) starts while a slower independent one
    (CDCTimeZero) still runs. A run that does not name its calibration holds the whole bucket.
    """
    runs = list(runs)
    if any(run.version != str(version) or run.calibration is None for run in runs):
        return InFlightVerdict(wait=True)
    return InFlightVerdict(wait=False, busy=frozenset(run.calibration for run in runs if run.calibration))
