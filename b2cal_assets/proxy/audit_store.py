"""The proxy's audit lines, also kept in the platform database (table ``b2cal_proxy_audit``).

The proxy logs every decision that is not a plain read as one JSON line on the logger
``b2cal.proxy.audit`` (see ``server._audit``). :func:`attach_audit_store` adds a logging
handler that parses those lines and inserts them, in batches, from a background thread: the
request path only appends to a queue, and a slow or unavailable database costs no request
any time (lines that cannot be written are counted and reported in the log, never retried
forever). The admin pages (``/b2cal/admin/audit``) read them with :meth:`AuditStore.query`.

The log stream stays the primary record (ship it to the site's log system); the table keeps
what the admin pages filter, for :data:`RETENTION_DAYS` days (older rows are deleted by the
writer once an hour).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from b2cal_assets.database import UtcDateTime

log = logging.getLogger("b2cal.proxy")
AUDIT_LOGGER = "b2cal.proxy.audit"
RETENTION_DAYS = 180
BATCH = 500
FLUSH_INTERVAL_S = 0.5
QUEUE_LIMIT = 100_000  # lines waiting; beyond, lines are dropped from the table (not from the log) and counted

metadata = sa.MetaData()

audit_table = sa.Table(
    "b2cal_proxy_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("user", sa.String(128), nullable=True),
    sa.Column("dn", sa.Text, nullable=True),
    sa.Column("roles", sa.Text, nullable=True),
    sa.Column("peer", sa.String(64), nullable=True),
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("path", sa.Text, nullable=True),
    sa.Column("operation", sa.Text, nullable=False, default=""),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Index("ix_b2cal_proxy_audit_time", "time"),
    sa.Index("ix_b2cal_proxy_audit_user_time", "user", "time"),
)


@dataclass(frozen=True)
class AuditRow:
    time: datetime
    user: str | None
    dn: str | None
    roles: str | None
    method: str | None
    path: str | None
    operation: str
    decision: str
    reason: str
    status: int | None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _parse_time(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r}: give an ISO time, e.g. 2026-11-29T07:00") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit page."""

    user: str | None = None
    decision: str | None = None  # allow / deny
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200
    offset: int = 0

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> AuditQuery:
        """From the page's query string; ValueError naming the bad parameter."""
        decision = query.get("decision") or None
        if decision not in (None, "allow", "deny"):
            raise ValueError(f"decision={decision!r}: allow or deny")
        limit = query.get("limit") or "200"
        offset = query.get("offset") or "0"
        if not limit.isdigit() or not 1 <= int(limit) <= 2000:
            raise ValueError(f"limit={limit!r}: 1 to 2000")
        if not offset.isdigit():
            raise ValueError(f"offset={offset!r}: a row number")
        return cls(
            user=(query.get("user") or "").strip() or None, decision=decision,
            since=_parse_time(query["since"], "since") if query.get("since") else None,
            until=_parse_time(query["until"], "until") if query.get("until") else None,
            limit=int(limit), offset=int(offset),
        )


class AuditStore:
    """Audit rows in the platform database at ``engine``.

    Like every store it never creates its table: ``platform_database(url).audit()`` hands it
    out after the schema is at the newest migration (revision 0003 made this table).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, records: list[Mapping[str, Any]]) -> int:
        """Insert parsed audit records (the JSON objects the proxy logs); returns rows written."""
        rows = []
        for record in records:
            try:
                when = _aware(datetime.fromisoformat(str(record.get("time"))))
            except ValueError:
                when = datetime.now(timezone.utc)
            status = record.get("status")
            rows.append({
                "time": when, "user": record.get("user"), "dn": record.get("dn"), "roles": record.get("roles"),
                "peer": record.get("peer"), "method": record.get("method"), "path": record.get("path"),
                "operation": str(record.get("what") or "")[:4000], "decision": str(record.get("decision") or "")[:8],
                "reason": str(record.get("why") or "")[:4000], "status": status if isinstance(status, int) else None,
            })
        if rows:
            with self.engine.begin() as conn:
                conn.execute(audit_table.insert(), rows)
        return len(rows)

    def query(self, q: AuditQuery) -> tuple[list[AuditRow], int]:
        """Rows matching ``q``, newest first, and how many match in all."""
        t = audit_table
        conditions = []
        if q.user:
            conditions.append(sa.or_(t.c.user == q.user, t.c.dn == q.user))
        if q.decision:
            conditions.append(t.c.decision == q.decision)
        if q.since:
            conditions.append(t.c.time >= q.since)
        if q.until:
            conditions.append(t.c.time <= q.until)
        where = sa.and_(sa.true(), *conditions)
        with self.engine.connect() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(t).where(where)).scalar() or 0)
            result = conn.execute(sa.select(t).where(where).order_by(t.c.time.desc(), t.c.id.desc()).limit(q.limit).offset(q.offset))
            rows = [AuditRow(_aware(r.time), r.user, r.dn, r.roles, r.method, r.path, r.operation, r.decision, r.reason, r.status)
                    for r in result]
        return rows, total

    def delete_before(self, when: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(audit_table.delete().where(audit_table.c.time < when)).rowcount or 0


class AuditStoreHandler(logging.Handler):
    """Queues the proxy's audit lines and writes them to an :class:`AuditStore` in a thread."""

    def __init__(self, store: AuditStore) -> None:
        super().__init__(logging.INFO)
        self.store = store
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._dropped = 0
        self._idle = threading.Event()
        self._idle.set()
        self._pruned_at = float("-inf")
        self._thread = threading.Thread(target=self._run, name="b2cal-audit-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = json.loads(record.getMessage())
        except ValueError:
            return  # debug one-liners for plain reads are not audit records
        if not isinstance(data, dict) or "decision" not in data:
            return
        try:
            self._idle.clear()
            self._queue.put_nowait(data)
        except queue.Full:
            self._dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + FLUSH_INTERVAL_S
            while len(batch) < BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._write(batch)
                    return
                batch.append(item)
            self._write(batch)
            if self._queue.empty():
                self._idle.set()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.store.add(batch)
            if time.monotonic() - self._pruned_at > 3600:
                self._pruned_at = time.monotonic()
                self.store.delete_before(datetime.now(timezone.utc) - timedelta(days=RETENTION_DAYS))
        except sa.exc.SQLAlchemyError as error:
            self._dropped += len(batch)
            log.error("audit lines not written to the platform database (%d lost from the table so far; the log has them): %s",
                      self._dropped, str(error).splitlines()[0])
        if self._dropped and self._queue.empty():
            log.warning("%d audit line(s) were not kept in the audit table (queue full or database errors)", self._dropped)
            self._dropped = 0

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until the queued lines are written (the admin page reads its own latest lines)."""
        self._idle.wait(timeout)

    def close(self) -> None:
        logging.getLogger(AUDIT_LOGGER).removeHandler(self)
        self._queue.put(None)
        self._thread.join(5)
        super().close()


def attach_audit_store(store: AuditStore) -> AuditStoreHandler:
    """Copy every audit line of this process into ``store`` (returns the handler; ``close`` detaches)."""
    logger = logging.getLogger(AUDIT_LOGGER)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        # Allow and deny lines are INFO/WARNING; without this an unconfigured root (WARNING) drops allows.
        logger.setLevel(logging.INFO)
    handler = AuditStoreHandler(store)
    logger.addHandler(handler)
    return handler
