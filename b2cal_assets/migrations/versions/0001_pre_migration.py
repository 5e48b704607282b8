"""The platform schema as it was before migrations (String(40) timestamps in runs and buckets).

A frozen copy of the table definitions of that time, never the live ones: later revisions
change those. Creates only the tables a database lacks, so a database made by the stores'
old ``create_all`` (all or some of the tables, no version table) is adopted as it is.

Revision ID: 0001_pre_migration
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_pre_migration"
down_revision = None
branch_labels = None
depends_on = None


def tables() -> sa.MetaData:
    metadata = sa.MetaData()
    # -- run registry
    sa.Table(
        "b2cal_runs",
        metadata,
        sa.Column("run_key", sa.String(16), primary_key=True),
        sa.Column("exp", sa.Integer, nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_type", sa.String(16), nullable=False),
        sa.Column("beam_energy", sa.String(16), nullable=False),
        sa.Column("magnet", sa.String(8), nullable=False),
        sa.Column("data_quality", sa.String(32), nullable=False),
        sa.Column("integrated_luminosity_pb", sa.Float, nullable=False),
        sa.Column("start_time", sa.String(40), nullable=False),
        sa.Column("end_time", sa.String(40), nullable=False),
        sa.Column("her_energy_gev", sa.Float, nullable=False),
        sa.Column("ler_energy_gev", sa.Float, nullable=False),
        sa.Column("events_per_stream", sa.Text, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("record_path", sa.Text, nullable=False),
        sa.Column("record_digest", sa.String(64), nullable=False),
        sa.Column("ingested_at", sa.String(40), nullable=False),
        sa.Column("dagster_run_id", sa.String(64), nullable=False),
        sa.Index("ix_b2cal_runs_exp_run", "exp", "run"),
        sa.Index("ix_b2cal_runs_status", "status"),
        sa.Index("ix_b2cal_runs_ingested_at", "ingested_at"),
    )
    sa.Table(
        "b2cal_run_tags",
        metadata,
        sa.Column("run_key", sa.String(16), sa.ForeignKey("b2cal_runs.run_key", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
        sa.Index("ix_b2cal_run_tags_tag", "tag"),
    )
    # -- buckets
    sa.Table(
        "b2cal_buckets",
        metadata,
        sa.Column("bucket_key", sa.String(16), primary_key=True),
        sa.Column("exp", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("opened_at", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40), nullable=True),
        sa.Column("close_reason", sa.Text, nullable=False),
        sa.Column("n_runs", sa.Integer, nullable=False),
        sa.Column("luminosity_pb", sa.Float, nullable=False),
        sa.Column("first_run", sa.Integer, nullable=True),
        sa.Column("last_run", sa.Integer, nullable=True),
        sa.Column("finished", sa.Boolean, nullable=False),
        sa.UniqueConstraint("exp", "number", name="uq_b2cal_buckets_exp_number"),
        sa.Index("ix_b2cal_buckets_active", "finished", "state"),
    )
    sa.Table(
        "b2cal_bucket_runs",
        metadata,
        sa.Column("run_key", sa.String(16), primary_key=True),
        sa.Column("bucket_key", sa.String(16), sa.ForeignKey("b2cal_buckets.bucket_key"), nullable=False),
        sa.Column("exp", sa.Integer, nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("luminosity_pb", sa.Float, nullable=False),
        sa.Column("assigned_at", sa.String(40), nullable=False),
        sa.Index("ix_b2cal_bucket_runs_bucket", "bucket_key"),
    )
    sa.Table(
        "b2cal_bucket_collector_outputs",
        metadata,
        sa.Column("calibration", sa.String(64), primary_key=True),
        sa.Column("bucket_key", sa.String(16), primary_key=True),
        sa.Column("run_key", sa.String(16), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("upstream_version", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Index("ix_b2cal_bucket_collector_outputs_bucket", "bucket_key"),
    )
    sa.Table(
        "b2cal_bucket_calibrations",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("calibration", sa.String(64), nullable=False),
        sa.Column("bucket_key", sa.String(16), sa.ForeignKey("b2cal_buckets.bucket_key"), nullable=False),
        sa.Column("bucket_version", sa.String(16), nullable=False),
        sa.Column("payloads", sa.Text, nullable=False),
        sa.Column("runs", sa.Text, nullable=False),
        sa.Column("dagster_run_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Index("ix_b2cal_bucket_calibrations_bucket", "bucket_key", "calibration"),
    )
    # -- conditions database
    sa.Table(
        "b2cal_cdb_global_tag",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('OPEN', 'TESTING', 'VALIDATED', 'PUBLISHED', 'RUNNING', 'INVALID')",
            name="b2cal_cdb_global_tag_state_known",
        ),
    )
    sa.Table(
        "b2cal_cdb_tag_state_change",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False, index=True),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "b2cal_cdb_payload",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("checksum", sa.String(32), nullable=False),
        sa.Column("file_name", sa.String(512), nullable=False, unique=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("channels", sa.Integer, nullable=False),
        sa.Column("produced_first_exp", sa.Integer, nullable=False),
        sa.Column("produced_first_run", sa.Integer, nullable=False),
        sa.Column("produced_final_exp", sa.Integer, nullable=False),
        sa.Column("produced_final_run", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "revision", name="b2cal_cdb_payload_name_revision_unique"),
        sa.CheckConstraint("revision >= 1", name="b2cal_cdb_payload_revision_positive"),
    )
    sa.Table(
        "b2cal_cdb_payload_iov",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False, index=True),
        sa.Column("payload_id", sa.Integer, sa.ForeignKey("b2cal_cdb_payload.id"), nullable=False, index=True),
        sa.Column("first_exp", sa.Integer, nullable=False),
        sa.Column("first_run", sa.Integer, nullable=False),
        sa.Column("final_exp", sa.Integer, nullable=False),
        sa.Column("final_run", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "b2cal_cdb_running_update",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("running_tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False),
        sa.Column("staging_tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False),
        sa.Column("valid_from_exp", sa.Integer, nullable=False),
        sa.Column("valid_from_run", sa.Integer, nullable=False),
        sa.Column("closed_iovs", sa.Integer, nullable=False),
        sa.Column("added_iovs", sa.Integer, nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )
    # -- accounts
    generations = sa.Table(
        "b2cal_accounts_generations",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("vo", sa.String(255), nullable=False),
        sa.Column("etag", sa.String(255)),
        sa.Column("account_count", sa.Integer, nullable=False),
        sa.Column("dn_count", sa.Integer, nullable=False),
        sa.Column("suspended_count", sa.Integer, nullable=False),
    )
    sa.Table(
        "b2cal_accounts_users",
        metadata,
        sa.Column("generation_id", sa.Integer, sa.ForeignKey(generations.c.id), primary_key=True),
        sa.Column("sub", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("email", sa.String(512)),
        sa.Column("suspended", sa.Boolean, nullable=False),
        sa.Column("dns_json", sa.Text, nullable=False),
        sa.Column("groups_json", sa.Text, nullable=False),
    )
    sa.Table(
        "b2cal_accounts_dns",
        metadata,
        sa.Column("generation_id", sa.Integer, sa.ForeignKey(generations.c.id), primary_key=True),
        sa.Column("dn", sa.String(2048), primary_key=True),
        sa.Column("sub", sa.String(255), nullable=False),
    )
    sa.Table(
        "b2cal_accounts_state",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation_id", sa.Integer, sa.ForeignKey(generations.c.id)),
        sa.Column("source", sa.String(1024)),
        sa.Column("vo", sa.String(255)),
        sa.Column("etag", sa.String(255)),
        sa.Column("last_good_sync_at", sa.DateTime(timezone=True)),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_reason", sa.String(64)),
        sa.Column("last_error_at", sa.DateTime(timezone=True)),
    )
    return metadata


def upgrade() -> None:
    bind = op.get_bind()
    metadata = tables()
    metadata.create_all(bind, checkfirst=True)
    # The accounts state row (sync status and the current generation) always exists.
    state = metadata.tables["b2cal_accounts_state"]
    if bind.execute(sa.select(state.c.id).where(state.c.id == 1)).first() is None:
        bind.execute(state.insert().values(id=1))


def downgrade() -> None:
    tables().drop_all(op.get_bind())
