"""The review pages' reads: a :class:`~b2cal_assets.web.review.ReviewSource` over the platform
database (bucket store, conditions database, run registry tables) and the report directories.

Read-only, and in bulk: one query per kind of fact for a whole page of buckets (the overview
of 50 buckets x 4 calibrations costs five queries and the manifests of the closed buckets),
never one query per cell. The tables are the stores' own definitions, imported from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from b2cal_assets.calibration import bucket_store as bs
from b2cal_assets.conditions import schema as cdb
from b2cal_assets.runs import registry as rr

from .manifest import ManifestError, ReviewManifest, read_manifest
from .review import (
    BUCKET_KEY,
    STAGING_PREFIX,
    BucketFacts,
    CalibrationInfo,
    ResultFacts,
    RunFacts,
    TagChange,
    TagFacts,
    staging_attempt,
)


def _when(value: Any) -> datetime | None:
    """Stored times are ISO text in some tables and DateTime in others: an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    return None


def reports_dir_from_env() -> Path:
    """Where the report assets write (as ValidationResource: B2CAL_REPORTS_DIR, else <state>/reports)."""
    from b2cal_assets import config

    return config.reports_dir()


def running_tag_from_env() -> str:
    from b2cal_assets import config

    return config.RUNNING_TAG.get()


class StoreReviewSource:
    """Facts for the pages from the platform database at ``engine`` and ``reports_dir``."""

    def __init__(self, engine: Engine, reports_dir: Path, calibrations: Sequence[CalibrationInfo]) -> None:
        self.engine = engine
        self.reports_dir = Path(reports_dir)
        self._calibrations = tuple(calibrations)
        # Manifests by (bucket, calibration), kept while the file's mtime is unchanged.
        self._manifests: dict[tuple[str, str], tuple[int, ReviewManifest | None]] = {}

    def calibrations(self) -> Sequence[CalibrationInfo]:
        return self._calibrations

    # -- buckets ----------------------------------------------------------------------------------

    @staticmethod
    def _bucket(row: Any) -> BucketFacts:
        return BucketFacts(
            key=row.bucket_key, exp=row.exp, number=row.number, closed=row.state == bs.STATE_CLOSED, opened_at=_when(row.opened_at),
            closed_at=_when(row.closed_at), n_runs=row.n_runs, luminosity_pb=float(row.luminosity_pb or 0.0), first_run=row.first_run,
            last_run=row.last_run, close_reason=row.close_reason or "",
        )

    def experiments(self) -> Sequence[int]:
        t = bs.buckets_table
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.select(t.c.exp).distinct().order_by(t.c.exp.desc()))]

    def count_buckets(self, exp: int | None) -> int:
        t = bs.buckets_table
        statement = sa.select(sa.func.count()).select_from(t)
        if exp is not None:
            statement = statement.where(t.c.exp == exp)
        with self.engine.connect() as conn:
            return int(conn.execute(statement).scalar() or 0)

    def buckets(self, exp: int | None, offset: int, limit: int | None) -> Sequence[BucketFacts]:
        t = bs.buckets_table
        statement = sa.select(t).order_by(t.c.exp.desc(), t.c.number.desc()).offset(offset)
        if exp is not None:
            statement = statement.where(t.c.exp == exp)
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as conn:
            return [self._bucket(row) for row in conn.execute(statement)]

    def bucket(self, key: str) -> BucketFacts | None:
        t = bs.buckets_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.bucket_key == key)).first()
        return self._bucket(row) if row is not None else None

    def bucket_runs(self, bucket: str) -> Sequence[str]:
        t = bs.bucket_runs_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.run_key).where(t.c.bucket_key == bucket).order_by(t.c.exp, t.c.run))
            return [row.run_key for row in rows]

    # -- calibration results -----------------------------------------------------------------------

    def latest_results(self, buckets: Sequence[str]) -> Mapping[tuple[str, str], ResultFacts]:
        """The latest result per (bucket, calibration), for all ``buckets`` in one query."""
        if not buckets:
            return {}
        t = bs.calibration_results_table
        newest = (
            sa.select(sa.func.max(t.c.id).label("id")).where(t.c.bucket_key.in_(list(buckets))).group_by(t.c.bucket_key, t.c.calibration)
        ).subquery()
        statement = sa.select(t).join(newest, t.c.id == newest.c.id)
        results: dict[tuple[str, str], ResultFacts] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(statement):
                results[(row.bucket_key, row.calibration)] = ResultFacts(
                    calibration=row.calibration, bucket=row.bucket_key, bucket_version=row.bucket_version,
                    dagster_run_id=row.dagster_run_id or "", created_at=_when(row.created_at),
                    payloads=tuple(json.loads(row.payloads)), runs=tuple(json.loads(row.runs)),
                )
        return results

    # -- global tags ---------------------------------------------------------------------------------

    def staging_tags(self, buckets: Sequence[str]) -> Mapping[str, TagFacts]:
        """The newest staging tag of each bucket, with its state history."""
        if not buckets:
            return {}
        g, h = cdb.global_tag, cdb.tag_state_change
        wanted = set(buckets)
        names = [STAGING_PREFIX + b for b in buckets]
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(g.name):
                return {}
            # Exact names, and the _v<n> attempts of the same buckets (few; filtered below).
            condition = g.c.name.in_(names)
            if len(buckets) <= 50:
                condition = sa.or_(condition, *[g.c.name.like(f"{STAGING_PREFIX}{b}\\_v%", escape="\\") for b in buckets])
            else:
                condition = sa.or_(condition, g.c.name.like(f"{STAGING_PREFIX}%\\_v%", escape="\\"))
            rows = list(conn.execute(sa.select(g).where(condition)))
            newest: dict[str, tuple[int, Any]] = {}
            for row in rows:
                bucket = row.name[len(STAGING_PREFIX):].split("_v")[0]
                attempt = staging_attempt(row.name, bucket) if bucket in wanted else None
                if attempt is not None and (bucket not in newest or attempt > newest[bucket][0]):
                    newest[bucket] = (attempt, row)
            ids = [row.id for _, row in newest.values()]
            history: dict[int, list[TagChange]] = {}
            if ids:
                for change in conn.execute(sa.select(h).where(h.c.tag_id.in_(ids)).order_by(h.c.id)):
                    history.setdefault(change.tag_id, []).append(
                        TagChange(change.from_state, change.to_state, change.reason or "", _when(change.changed_at)))
        return {
            bucket: TagFacts(row.name, row.state, _when(row.updated_at), 0, tuple(history.get(row.id, ())))
            for bucket, (_, row) in newest.items()
        }

    def global_tags(self) -> Sequence[TagFacts]:
        """Every tag that is not a bucket's staging tag (running, published, hand-made), with IoV counts."""
        g, i = cdb.global_tag, cdb.payload_iov
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(g.name):
                return []
            counts = sa.select(i.c.tag_id, sa.func.count().label("n")).group_by(i.c.tag_id).subquery()
            statement = (sa.select(g, counts.c.n).outerjoin(counts, counts.c.tag_id == g.c.id)
                         .where(sa.not_(g.c.name.like(f"{STAGING_PREFIX}%"))).order_by(g.c.name))
            return [TagFacts(row.name, row.state, _when(row.updated_at), int(row.n or 0)) for row in conn.execute(statement)]

    # -- manifests -----------------------------------------------------------------------------------

    def report_directory(self, bucket: str, calibration: str) -> Path | None:
        """``<reports_dir>/<bucket>/<calibration>`` for a well-formed bucket key and a known calibration, else None."""
        if not BUCKET_KEY.match(bucket) or calibration not in {c.name for c in self._calibrations}:
            return None
        return self.reports_dir / bucket / calibration

    def manifest(self, bucket: str, calibration: str) -> ReviewManifest | None:
        directory = self.report_directory(bucket, calibration)
        if directory is None:
            return None
        try:
            mtime = (directory / "review.json").stat().st_mtime_ns
        except OSError:
            return None
        known = self._manifests.get((bucket, calibration))
        if known is not None and known[0] == mtime:
            return known[1]
        try:
            manifest = read_manifest(directory)
        except ManifestError:
            manifest = None  # unreadable: shown as "report pending"; the report asset rewrites it
        if len(self._manifests) > 20_000:
            self._manifests.clear()
        self._manifests[(bucket, calibration)] = (mtime, manifest)
        return manifest

    # -- runs ----------------------------------------------------------------------------------------

    def runs(self, run_keys: Sequence[str]) -> Sequence[RunFacts]:
        if not run_keys:
            return []
        t, tags = rr.runs_table, rr.run_tags_table
        with self.engine.connect() as conn:
            rows = list(conn.execute(sa.select(t.c.run_key, t.c.status, t.c.reason, t.c.data_quality, t.c.run_type,
                                               t.c.integrated_luminosity_pb, t.c.events_per_stream).where(t.c.run_key.in_(list(run_keys)))))
            tagged: dict[str, list[str]] = {}
            for row in conn.execute(sa.select(tags).where(tags.c.run_key.in_(list(run_keys)))):
                tagged.setdefault(row.run_key, []).append(row.tag)
        facts = []
        for row in rows:
            try:
                events = sum(int(v) for v in json.loads(row.events_per_stream).values())
            except (ValueError, TypeError, AttributeError):
                events = 0
            facts.append(RunFacts(row.run_key, row.status, row.reason or "", row.data_quality, row.run_type,
                                  float(row.integrated_luminosity_pb or 0.0), events, tuple(sorted(tagged.get(row.run_key, ())))))
        return facts
