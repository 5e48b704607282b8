"""The proxy's audit table ``b2cal_proxy_audit`` under migrations.

Before this revision the table was made by the audit store itself (``create_all`` on every
start of the proxy), so a database may already hold it, with rows: it is adopted as it is
(same columns; the timestamps were always written as UTC). A frozen copy of the table
definition, never the live one. Downgrading drops the table and its rows.

Revision ID: 0003_proxy_audit
Revises: 0002_utc_timestamps
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_proxy_audit"
down_revision = "0002_utc_timestamps"
branch_labels = None
depends_on = None


def tables() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "b2cal_proxy_audit",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(128), nullable=True),
        sa.Column("dn", sa.Text, nullable=True),
        sa.Column("roles", sa.Text, nullable=True),
        sa.Column("peer", sa.String(64), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("path", sa.Text, nullable=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Index("ix_b2cal_proxy_audit_time", "time"),
        sa.Index("ix_b2cal_proxy_audit_user_time", "user", "time"),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    tables().drop_all(op.get_bind(), checkfirst=True)
