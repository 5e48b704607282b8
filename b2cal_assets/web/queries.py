"""The review pages' reads: a :class:`~b2cal_assets.web.review.ReviewSource` over the platform
database (bucket store, conditions database, run registry tables) and the report directories.

Read-only, and in bulk: one query per kind of fact for a whole page of buckets (the overview
of 50 buckets x 4 calibrations costs five queries and the manifests of the closed buckets),
never one query per cell. The tables are the stores' own definitions, imported from them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from b2cal_assets.calibration import bucket_store as bs
from b2cal_assets.conditions import schema as cdb
from b2cal_assets.conditions.staging import parse_staging_tag
from b2cal_assets.runs import registry as rr

from .manifest import MANIFEST_NAME, ManifestError, ReviewManifest, read_manifest
from .review import (
    BUCKET_KEY,
    STAGING_PREFIX,
    BucketFacts,
    CalibrationInfo,
    ResultFacts,
    RunFacts,
    TagChange,
    TagFacts,
)

# A report rewritten meanwhile shows within this many seconds (saves a stat per cell and request).
MANIFEST_RECHECK_S = 5.0


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
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
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
        self._names = frozenset(c.name for c in self._calibrations)
        # (checked at, file mtime, manifest) by (bucket, calibration).
        self._manifests: dict[tuple[str, str], tuple[float, int, ReviewManifest | None]] = {}

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
        """The latest result per (bucket, calibration), for all ``buckets`` in one indexed query."""
        if not buckets:
            return {}
        t = bs.calibration_results_table
        rows: dict[tuple[str, str], Any] = {}
        with self.engine.connect() as conn:
            # Ordered by id: the last row of each (bucket, calibration) is its latest result.
            for row in conn.execute(sa.select(t).where(t.c.bucket_key.in_(list(buckets))).order_by(t.c.id)):
                rows[(row.bucket_key, row.calibration)] = row
        return {
            key: ResultFacts(
                calibration=row.calibration, bucket=row.bucket_key, bucket_version=row.bucket_version,
                dagster_run_id=row.dagster_run_id or "", created_at=_when(row.created_at),
                payloads=tuple(json.loads(row.payloads)), runs=tuple(json.loads(row.runs)),
            )
            for key, row in rows.items()
        }

    # -- global tags ---------------------------------------------------------------------------------

    def staging_tags(self, buckets: Sequence[str]) -> Mapping[str, TagFacts]:
        """The newest staging tag of each bucket, with its state history."""
        if not buckets:
            return {}
        g, h = cdb.global_tag, cdb.tag_state_change
        wanted = set(buckets)
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(g.name):
                return {}
            # One range scan of the unique name index covers every attempt (..._v2) of these
            # buckets: their keys sort together. Others in the range are dropped below.
            low, high = STAGING_PREFIX + min(buckets), STAGING_PREFIX + max(buckets) + "_w"
            rows = list(conn.execute(sa.select(g).where(g.c.name >= low, g.c.name < high)))
            newest: dict[str, tuple[int, Any]] = {}
            for row in rows:
                tag = parse_staging_tag(row.name)
                if tag is not None and tag.bucket in wanted and (tag.bucket not in newest or tag.attempt > newest[tag.bucket][0]):
                    newest[tag.bucket] = (tag.attempt, row)
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
            # Two ranges of the name index around the staging tags (thousands of them).
            outside = sa.or_(g.c.name < STAGING_PREFIX, g.c.name >= STAGING_PREFIX[:-1] + chr(ord(STAGING_PREFIX[-1]) + 1))
            tags = list(conn.execute(sa.select(g.c.id, g.c.name, g.c.state, g.c.updated_at).where(outside).order_by(g.c.name)))
            counts: dict[int, int] = {}
            if tags:
                statement = sa.select(i.c.tag_id, sa.func.count()).where(i.c.tag_id.in_([t.id for t in tags])).group_by(i.c.tag_id)
                counts = {tag_id: n for tag_id, n in conn.execute(statement)}
        return [TagFacts(t.name, t.state, _when(t.updated_at), int(counts.get(t.id, 0))) for t in tags]

    # -- manifests -----------------------------------------------------------------------------------

    def report_directory(self, bucket: str, calibration: str) -> Path | None:
        """``<reports_dir>/<bucket>/<calibration>`` for a well-formed bucket key and a known calibration, else None."""
        if calibration not in self._names or not BUCKET_KEY.match(bucket):
            return None
        return self.reports_dir / bucket / calibration

    def manifest(self, bucket: str, calibration: str) -> ReviewManifest | None:
        """The report's manifest, re-read when its file changed (checked at most every MANIFEST_RECHECK_S)."""
        now = time.monotonic()
        known = self._manifests.get((bucket, calibration))
        if known is not None and now - known[0] < MANIFEST_RECHECK_S:
            return known[2]
        directory = self.report_directory(bucket, calibration)
        if directory is None:
            return None
        try:
            mtime = os.stat(os.path.join(directory, MANIFEST_NAME)).st_mtime_ns
        except OSError:
            mtime = -1
        if known is not None and known[1] == mtime:
            manifest = known[2]
        elif mtime < 0:
            manifest = None
        else:
            try:
                manifest = read_manifest(directory)
            except ManifestError:
                manifest = None  # unreadable: shown as "report pending"; the report asset rewrites it
        if len(self._manifests) > 50_000:
            self._manifests.clear()
        self._manifests[(bucket, calibration)] = (now, mtime, manifest)
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
