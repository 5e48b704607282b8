"""Tables of the conditions database in the platform database (prefix ``b2cal_cdb_``).

* ``b2cal_cdb_global_tag``: one row per global tag and its current state.
* ``b2cal_cdb_tag_state_change``: every state change, for the audit trail.
* ``b2cal_cdb_payload``: one immutable row per (name, revision) with the md5 and the file
  (relative to the payload directory), plus the IoV the calibration produced it for.
* ``b2cal_cdb_payload_iov``: the content of the tags: (tag, payload, IoV) rows.
* ``b2cal_cdb_running_update``: one row per running-tag update applied.

IoV bounds are stored as four integers with the usual -1 convention, never as a string, so
queries and constraints can use them.
"""

from __future__ import annotations

import sqlalchemy as sa

from b2cal_assets.database import UtcDateTime

metadata = sa.MetaData()

global_tag = sa.Table(
    "b2cal_cdb_global_tag",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(
        "state IN ('OPEN', 'TESTING', 'VALIDATED', 'PUBLISHED', 'RUNNING', 'INVALID')",
        name="b2cal_cdb_global_tag_state_known",
    ),
)

tag_state_change = sa.Table(
    "b2cal_cdb_tag_state_change",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False, index=True),
    sa.Column("from_state", sa.String(16), nullable=True),  # NULL for the creation
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)

payload = sa.Table(
    "b2cal_cdb_payload",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("checksum", sa.String(32), nullable=False),  # md5 hex of the ROOT file
    sa.Column("file_name", sa.String(512), nullable=False, unique=True),  # relative to the payload directory
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("channels", sa.Integer, nullable=False),
    # The IoV the calibration produced this payload for; tags may use it with other IoVs.
    sa.Column("produced_first_exp", sa.Integer, nullable=False),
    sa.Column("produced_first_run", sa.Integer, nullable=False),
    sa.Column("produced_final_exp", sa.Integer, nullable=False),
    sa.Column("produced_final_run", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The database, not only the code, guarantees a revision is never reused.
    sa.UniqueConstraint("name", "revision", name="b2cal_cdb_payload_name_revision_unique"),
    sa.CheckConstraint("revision >= 1", name="b2cal_cdb_payload_revision_positive"),
)

payload_iov = sa.Table(
    "b2cal_cdb_payload_iov",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False, index=True),
    sa.Column("payload_id", sa.Integer, sa.ForeignKey("b2cal_cdb_payload.id"), nullable=False, index=True),
    sa.Column("first_exp", sa.Integer, nullable=False),
    sa.Column("first_run", sa.Integer, nullable=False),
    sa.Column("final_exp", sa.Integer, nullable=False),
    sa.Column("final_run", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

running_update = sa.Table(
    "b2cal_cdb_running_update",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("running_tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False),
    sa.Column("staging_tag_id", sa.Integer, sa.ForeignKey("b2cal_cdb_global_tag.id"), nullable=False),
    sa.Column("valid_from_exp", sa.Integer, nullable=False),
    sa.Column("valid_from_run", sa.Integer, nullable=False),
    sa.Column("closed_iovs", sa.Integer, nullable=False),
    sa.Column("added_iovs", sa.Integer, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)
