"""Buckets, their runs, and what has been collected and calibrated, in the platform database.

Tables (prefixed ``b2cal_bucket``): buckets, the run -> bucket assignment (a run belongs to
exactly one bucket), collector outputs per (calibration, bucket, run) and calibration results
per (calibration, bucket, version). The scheduler reads only active buckets, so a tick never
touches the history of closed, finished buckets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from b2cal_assets.calibration.framework.buckets import BucketPolicy, BucketVersion, bucket_key
from b2cal_assets.database import UtcDateTime

STATE_OPEN = "open"
STATE_CLOSED = "closed"

metadata = sa.MetaData()

buckets_table = sa.Table(
    "b2cal_buckets",
    metadata,
    sa.Column("bucket_key", sa.String(16), primary_key=True),
    sa.Column("exp", sa.Integer, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.Column("close_reason", sa.Text, nullable=False, default=""),
    sa.Column("n_runs", sa.Integer, nullable=False, default=0),
    sa.Column("luminosity_pb", sa.Float, nullable=False, default=0.0),
    sa.Column("first_run", sa.Integer, nullable=True),
    sa.Column("last_run", sa.Integer, nullable=True),
    sa.Column("finished", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("exp", "number", name="uq_b2cal_buckets_exp_number"),
    sa.Index("ix_b2cal_buckets_active", "finished", "state"),
)

bucket_runs_table = sa.Table(
    "b2cal_bucket_runs",
    metadata,
    sa.Column("run_key", sa.String(16), primary_key=True),
    sa.Column("bucket_key", sa.String(16), sa.ForeignKey("b2cal_buckets.bucket_key"), nullable=False),
    sa.Column("exp", sa.Integer, nullable=False),
    sa.Column("run", sa.Integer, nullable=False),
    sa.Column("luminosity_pb", sa.Float, nullable=False),
    sa.Column("assigned_at", UtcDateTime, nullable=False),
    sa.Index("ix_b2cal_bucket_runs_bucket", "bucket_key"),
)

collector_outputs_table = sa.Table(
    "b2cal_bucket_collector_outputs",
    metadata,
    sa.Column("calibration", sa.String(64), primary_key=True),
    sa.Column("bucket_key", sa.String(16), primary_key=True),
    sa.Column("run_key", sa.String(16), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("upstream_version", sa.String(16), nullable=False),  # bucket version of the upstream payloads used
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_b2cal_bucket_collector_outputs_bucket", "bucket_key"),
)

calibration_results_table = sa.Table(
    "b2cal_bucket_calibrations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("calibration", sa.String(64), nullable=False),
    sa.Column("bucket_key", sa.String(16), sa.ForeignKey("b2cal_buckets.bucket_key"), nullable=False),
    sa.Column("bucket_version", sa.String(16), nullable=False),
    sa.Column("payloads", sa.Text, nullable=False),  # JSON [{name, revision, iov}]
    sa.Column("runs", sa.Text, nullable=False),  # JSON [run keys used]
    sa.Column("dagster_run_id", sa.String(64), nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_b2cal_bucket_calibrations_bucket", "bucket_key", "calibration"),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Bucket:
    key: str
    exp: int
    number: int
    state: str
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str
    n_runs: int
    luminosity_pb: float
    first_run: int | None
    last_run: int | None
    finished: bool

    @property
    def closed(self) -> bool:
        return self.state == STATE_CLOSED

    @property
    def version(self) -> BucketVersion:
        return BucketVersion(self.n_runs, self.closed)


@dataclass(frozen=True)
class AssignmentReport:
    """What an assignment pass did (for the sensor's log and the tests)."""

    assigned: list[tuple[str, str]]  # (run key, bucket key)
    opened: list[str]
    closed: list[tuple[str, str]]  # (bucket key, reason)
    late: list[str]  # runs that arrived after the bucket covering them closed


@dataclass(frozen=True)
class CandidateRun:
    """The facts assignment needs about an ingested run."""

    key: str
    exp: int
    run: int
    luminosity_pb: float


class BucketStore:
    """Buckets and their results in the platform database (open it with ``platform_database(url).buckets()``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- assignment -------------------------------------------------------------------------------

    def assign(self, runs: Sequence[CandidateRun], policy: BucketPolicy, now: datetime | None = None) -> AssignmentReport:
        """Put new runs into the open bucket of their experiment, opening and closing buckets by policy.

        Runs already assigned are ignored (re-ingestion is not a new run); a run older than the
        last run of a closed bucket of its experiment is reported as late and left out, because
        adding it would change constants that may already be in review.
        """
        now = now or datetime.now(timezone.utc)
        report = AssignmentReport([], [], [], [])
        with self.engine.begin() as conn:
            known = {
                row.run_key
                for row in conn.execute(
                    sa.select(bucket_runs_table.c.run_key).where(bucket_runs_table.c.run_key.in_([r.key for r in runs]))
                )
            } if runs else set()
            for run in sorted(runs, key=lambda r: (r.exp, r.run)):
                if run.key in known:
                    continue
                known.add(run.key)
                last_closed = conn.execute(
                    sa.select(sa.func.max(buckets_table.c.last_run)).where(
                        buckets_table.c.exp == run.exp, buckets_table.c.state == STATE_CLOSED
                    )
                ).scalar()
                if last_closed is not None and run.run <= last_closed:
                    report.late.append(run.key)
                    continue
                bucket = self._open_bucket(conn, run.exp, now, report)
                conn.execute(
                    bucket_runs_table.insert().values(
                        run_key=run.key, bucket_key=bucket.key, exp=run.exp, run=run.run,
                        luminosity_pb=run.luminosity_pb, assigned_at=now,
                    )
                )
                n_runs, lumi = bucket.n_runs + 1, bucket.luminosity_pb + run.luminosity_pb
                conn.execute(
                    buckets_table.update().where(buckets_table.c.bucket_key == bucket.key).values(
                        n_runs=n_runs, luminosity_pb=lumi, finished=False,
                        first_run=min(run.run, bucket.first_run if bucket.first_run is not None else run.run),
                        last_run=max(run.run, bucket.last_run if bucket.last_run is not None else run.run),
                    )
                )
                report.assigned.append((run.key, bucket.key))
                reason = policy.close_reason(n_runs, lumi, bucket.opened_at, now)
                if reason:
                    self._close(conn, bucket.key, reason, now)
                    report.closed.append((bucket.key, reason))
            for bucket in self._buckets(conn, buckets_table.c.state == STATE_OPEN):
                reason = policy.close_reason(bucket.n_runs, bucket.luminosity_pb, bucket.opened_at, now)
                if reason:
                    self._close(conn, bucket.key, reason, now)
                    report.closed.append((bucket.key, reason))
        return report

    def close(self, key: str, reason: str, now: datetime | None = None) -> None:
        """Close a bucket by hand (an expert decides the bucket is complete)."""
        with self.engine.begin() as conn:
            self._close(conn, key, reason, now or datetime.now(timezone.utc))

    def _open_bucket(self, conn: sa.Connection, exp: int, now: datetime, report: AssignmentReport) -> Bucket:
        found = self._buckets(conn, (buckets_table.c.exp == exp) & (buckets_table.c.state == STATE_OPEN))
        if found:
            return found[0]
        number = (conn.execute(sa.select(sa.func.max(buckets_table.c.number)).where(buckets_table.c.exp == exp)).scalar() or 0) + 1
        key = bucket_key(exp, number)
        conn.execute(
            buckets_table.insert().values(
                bucket_key=key, exp=exp, number=number, state=STATE_OPEN, opened_at=now,
                close_reason="", n_runs=0, luminosity_pb=0.0, finished=False,
            )
        )
        report.opened.append(key)
        return self._buckets(conn, buckets_table.c.bucket_key == key)[0]

    @staticmethod
    def _close(conn: sa.Connection, key: str, reason: str, now: datetime) -> None:
        conn.execute(
            buckets_table.update()
            .where(buckets_table.c.bucket_key == key, buckets_table.c.state == STATE_OPEN)
            .values(state=STATE_CLOSED, closed_at=now, close_reason=reason, finished=False)
        )

    # -- reading ------------------------------------------------------------------------------------

    @staticmethod
    def _buckets(conn: sa.Connection, where) -> list[Bucket]:  # type: ignore[no-untyped-def]
        rows = conn.execute(sa.select(buckets_table).where(where).order_by(buckets_table.c.exp, buckets_table.c.number))
        return [
            Bucket(
                key=r.bucket_key, exp=r.exp, number=r.number, state=r.state, opened_at=r.opened_at, closed_at=r.closed_at,
                close_reason=r.close_reason, n_runs=r.n_runs, luminosity_pb=r.luminosity_pb, first_run=r.first_run,
                last_run=r.last_run, finished=bool(r.finished),
            )
            for r in rows
        ]

    def bucket(self, key: str) -> Bucket | None:
        with self.engine.connect() as conn:
            found = self._buckets(conn, buckets_table.c.bucket_key == key)
        return found[0] if found else None

    def buckets(self) -> list[Bucket]:
        with self.engine.connect() as conn:
            return self._buckets(conn, sa.true())

    def active_buckets(self) -> list[Bucket]:
        """Buckets still open, or closed with calibrations still due."""
        with self.engine.connect() as conn:
            return self._buckets(conn, buckets_table.c.finished == sa.false())

    def mark_finished(self, key: str, version: BucketVersion) -> None:
        """A closed bucket whose calibrations are all up to date leaves the scheduler's view."""
        with self.engine.begin() as conn:
            conn.execute(
                buckets_table.update()
                .where(buckets_table.c.bucket_key == key, buckets_table.c.state == STATE_CLOSED, buckets_table.c.n_runs == version.n_runs)
                .values(finished=True)
            )

    def runs_of(self, key: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(bucket_runs_table.c.run_key).where(bucket_runs_table.c.bucket_key == key).order_by(bucket_runs_table.c.exp, bucket_runs_table.c.run)
            )
            return [row.run_key for row in rows]

    def bucket_of(self, run_key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(bucket_runs_table.c.bucket_key).where(bucket_runs_table.c.run_key == run_key)).scalar()

    # -- collector outputs and calibration results --------------------------------------------------

    def record_collector_output(self, calibration: str, bucket: str, run_key: str, path: str, events: int, upstream_version: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                collector_outputs_table.delete().where(
                    collector_outputs_table.c.calibration == calibration,
                    collector_outputs_table.c.bucket_key == bucket,
                    collector_outputs_table.c.run_key == run_key,
                )
            )
            conn.execute(
                collector_outputs_table.insert().values(
                    calibration=calibration, bucket_key=bucket, run_key=run_key, path=path, events=events,
                    upstream_version=upstream_version, created_at=_now(),
                )
            )

    def collector_outputs(self, bucket: str) -> dict[str, dict[str, tuple[str, str]]]:
        """calibration -> run key -> (path, upstream version)."""
        result: dict[str, dict[str, tuple[str, str]]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(collector_outputs_table).where(collector_outputs_table.c.bucket_key == bucket))
            for row in rows:
                result.setdefault(row.calibration, {})[row.run_key] = (row.path, row.upstream_version)
        return result

    def record_calibration(
        self, calibration: str, bucket: str, version: BucketVersion, payloads: list[dict], runs: list[str], dagster_run_id: str = ""
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                calibration_results_table.insert().values(
                    calibration=calibration, bucket_key=bucket, bucket_version=str(version), payloads=json.dumps(payloads),
                    runs=json.dumps(runs), dagster_run_id=dagster_run_id, created_at=_now(),
                )
            )

    def latest_calibration(self, bucket: str, calibration: str) -> dict | None:
        """The latest successful result: bucket version, payloads [{name, revision, iov, runs, md5}], runs used."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(calibration_results_table)
                .where(calibration_results_table.c.bucket_key == bucket, calibration_results_table.c.calibration == calibration)
                .order_by(calibration_results_table.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return {
            "bucket_version": row.bucket_version,
            "payloads": json.loads(row.payloads),
            "runs": json.loads(row.runs),
            "dagster_run_id": row.dagster_run_id,
            "created_at": row.created_at,
        }

    def calibrated_versions(self, bucket: str) -> dict[str, BucketVersion]:
        """calibration -> bucket version of its latest successful result."""
        latest: dict[str, BucketVersion] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(calibration_results_table.c.calibration, calibration_results_table.c.bucket_version)
                .where(calibration_results_table.c.bucket_key == bucket)
                .order_by(calibration_results_table.c.id)
            )
            for row in rows:
                latest[row.calibration] = BucketVersion.parse(row.bucket_version)
        return latest
