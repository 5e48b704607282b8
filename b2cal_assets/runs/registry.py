"""The run registry: every ingested run with its metadata and verification status.

Later stages ask it which runs exist (by experiment and run range, data tag, quality) and
never use a quarantined run. It lives in the platform database (SQLite by default,
PostgreSQL in production); ingestion writes one row per run, replacing the row when a run
is re-ingested after a re-transfer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from b2cal_assets.database import UtcDateTime, utc_from_iso
from b2cal_assets.run_identity import ExpRun

STATUS_INGESTED = "ingested"
STATUS_QUARANTINED = "quarantined"

metadata = sa.MetaData()

runs_table = sa.Table(
    "b2cal_runs",
    metadata,
    sa.Column("run_key", sa.String(16), primary_key=True),
    sa.Column("exp", sa.Integer, nullable=False),
    sa.Column("run", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("run_type", sa.String(16), nullable=False),
    sa.Column("beam_energy", sa.String(16), nullable=False),
    sa.Column("magnet", sa.String(8), nullable=False),
    sa.Column("data_quality", sa.String(32), nullable=False),
    sa.Column("integrated_luminosity_pb", sa.Float, nullable=False),
    sa.Column("start_time", UtcDateTime, nullable=False),
    sa.Column("end_time", UtcDateTime, nullable=False),
    sa.Column("her_energy_gev", sa.Float, nullable=False),
    sa.Column("ler_energy_gev", sa.Float, nullable=False),
    sa.Column("events_per_stream", sa.Text, nullable=False),  # JSON {stream: events}
    sa.Column("files", sa.Text, nullable=False),  # JSON [{path, stream, events, size}]
    sa.Column("record_path", sa.Text, nullable=False),
    sa.Column("record_digest", sa.String(64), nullable=False),
    sa.Column("ingested_at", UtcDateTime, nullable=False),
    sa.Column("dagster_run_id", sa.String(64), nullable=False, default=""),
    sa.Index("ix_b2cal_runs_exp_run", "exp", "run"),
    sa.Index("ix_b2cal_runs_status", "status"),
    sa.Index("ix_b2cal_runs_ingested_at", "ingested_at"),
)

run_tags_table = sa.Table(
    "b2cal_run_tags",
    metadata,
    sa.Column("run_key", sa.String(16), sa.ForeignKey("b2cal_runs.run_key", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Index("ix_b2cal_run_tags_tag", "tag"),
)


@dataclass(frozen=True)
class RegisteredRun:
    """A run as the registry knows it (satisfies the calibration framework's RunMetadata)."""

    exp: int
    run: int
    status: str
    reason: str
    run_type: str
    beam_energy: str
    magnet: str
    data_quality: str
    data_tags: tuple[str, ...]
    integrated_luminosity_pb: float
    start_time: str
    end_time: str
    her_energy_gev: float
    ler_energy_gev: float
    events_per_stream: dict[str, int] = field(default_factory=dict)
    files: tuple[dict, ...] = ()
    record_path: str = ""
    record_digest: str = ""
    ingested_at: str = ""
    dagster_run_id: str = ""

    @property
    def key(self) -> ExpRun:
        return ExpRun(self.exp, self.run)

    @property
    def quarantined(self) -> bool:
        return self.status == STATUS_QUARANTINED

    def files_of_stream(self, stream: str) -> list[str]:
        return [f["path"] for f in self.files if f["stream"] == stream]


class RunRegistry:
    """Read and write run rows in the platform database (open it with ``platform_database(url).runs()``).

    Times are ISO 8601 text at this interface (as in the run records) and UTC timestamps in
    the table.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_run(self, run: RegisteredRun) -> None:
        """Insert or replace a run and its tags in one transaction."""
        key = str(run.key)
        row = {
            "run_key": key,
            "exp": run.exp,
            "run": run.run,
            "status": run.status,
            "reason": run.reason,
            "run_type": run.run_type,
            "beam_energy": run.beam_energy,
            "magnet": run.magnet,
            "data_quality": run.data_quality,
            "integrated_luminosity_pb": run.integrated_luminosity_pb,
            "start_time": utc_from_iso(run.start_time),
            "end_time": utc_from_iso(run.end_time),
            "her_energy_gev": run.her_energy_gev,
            "ler_energy_gev": run.ler_energy_gev,
            "events_per_stream": json.dumps(run.events_per_stream, sort_keys=True),
            "files": json.dumps(list(run.files)),
            "record_path": run.record_path,
            "record_digest": run.record_digest,
            "ingested_at": utc_from_iso(run.ingested_at) if run.ingested_at else datetime.now(timezone.utc),
            "dagster_run_id": run.dagster_run_id,
        }
        with self.engine.begin() as conn:
            conn.execute(run_tags_table.delete().where(run_tags_table.c.run_key == key))
            conn.execute(runs_table.delete().where(runs_table.c.run_key == key))
            conn.execute(runs_table.insert().values(**row))
            tags = sorted(set(run.data_tags))
            if tags:
                conn.execute(run_tags_table.insert(), [{"run_key": key, "tag": tag} for tag in tags])

    def get(self, key: ExpRun) -> RegisteredRun | None:
        found = self.query(exp=key.exp, first_run=key.run, last_run=key.run)
        return found[0] if found else None

    def query(
        self,
        *,
        exp: int | None = None,
        first_run: int | None = None,
        last_run: int | None = None,
        data_tag: str | None = None,
        data_quality: Sequence[str] | None = None,
        status: str | None = None,
        include_quarantined: bool = True,
    ) -> list[RegisteredRun]:
        """Runs matching every given criterion, ordered by (exp, run)."""
        statement = sa.select(runs_table)
        if exp is not None:
            statement = statement.where(runs_table.c.exp == exp)
        if first_run is not None:
            statement = statement.where(runs_table.c.run >= first_run)
        if last_run is not None:
            statement = statement.where(runs_table.c.run <= last_run)
        if data_tag is not None:
            tagged = sa.select(run_tags_table.c.run_key).where(run_tags_table.c.tag == data_tag)
            statement = statement.where(runs_table.c.run_key.in_(tagged))
        if data_quality:
            statement = statement.where(runs_table.c.data_quality.in_(list(data_quality)))
        if status is not None:
            statement = statement.where(runs_table.c.status == status)
        if not include_quarantined:
            statement = statement.where(runs_table.c.status != STATUS_QUARANTINED)
        statement = statement.order_by(runs_table.c.exp, runs_table.c.run)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
            keys = [row["run_key"] for row in rows]
            tags: dict[str, list[str]] = {key: [] for key in keys}
            if keys:
                tag_rows = conn.execute(
                    sa.select(run_tags_table).where(run_tags_table.c.run_key.in_(keys)).order_by(run_tags_table.c.tag)
                )
                for tag_row in tag_rows.mappings():
                    tags[tag_row["run_key"]].append(tag_row["tag"])
        return [self._from_row(row, tags[row["run_key"]]) for row in rows]

    def ingested_since(self, since: str | None, limit: int) -> list[RegisteredRun]:
        """Runs (re-)ingested at or after ``since`` (ISO time), oldest first: the bucket sensor's feed.

        ``>=`` rather than ``>`` so that runs sharing the cursor's timestamp are not lost; the
        caller ignores runs it has already assigned.
        """
        statement = sa.select(runs_table).order_by(runs_table.c.ingested_at, runs_table.c.run_key).limit(limit)
        if since:
            statement = statement.where(runs_table.c.ingested_at >= utc_from_iso(since))
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [self._from_row(row, []) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of runs per status."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs_table.c.status, sa.func.count()).group_by(runs_table.c.status))
            return {status: count for status, count in rows}

    @staticmethod
    def _from_row(row: sa.RowMapping, tags: list[str]) -> RegisteredRun:
        return RegisteredRun(
            exp=row["exp"],
            run=row["run"],
            status=row["status"],
            reason=row["reason"],
            run_type=row["run_type"],
            beam_energy=row["beam_energy"],
            magnet=row["magnet"],
            data_quality=row["data_quality"],
            data_tags=tuple(tags),
            integrated_luminosity_pb=row["integrated_luminosity_pb"],
            start_time=row["start_time"].isoformat(),
            end_time=row["end_time"].isoformat(),
            her_energy_gev=row["her_energy_gev"],
            ler_energy_gev=row["ler_energy_gev"],
            events_per_stream=json.loads(row["events_per_stream"]),
            files=tuple(json.loads(row["files"])),
            record_path=row["record_path"],
            record_digest=row["record_digest"],
            ingested_at=row["ingested_at"].isoformat(),
            dagster_run_id=row["dagster_run_id"],
        )
