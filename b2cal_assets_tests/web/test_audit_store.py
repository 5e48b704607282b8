"""The proxy's audit lines in the platform database: written in batches by the logging handler,
read back with filters by the admin page."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from b2cal_assets.database import dispose_engine, platform_database
from b2cal_assets.proxy.audit_store import AUDIT_LOGGER, AuditQuery, AuditStore, attach_audit_store


@pytest.fixture
def store(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    yield platform_database(url).audit()  # the table comes from the migrations, as in production
    dispose_engine(url)


def line(user: str, decision: str, minutes_ago: int, what: str = "mutation launchRun") -> str:
    when = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    return json.dumps({"time": when.isoformat(), "peer": "127.0.0.1", "dn": f"/CN={user}", "user": user, "roles": "viewer",
                       "method": "POST", "path": "/graphql", "what": what, "decision": decision, "why": f"{user} {decision}", "status": 403})


def test_audit_lines_logged_by_the_proxy_land_in_the_table(store: AuditStore):
    handler = attach_audit_store(store)
    logger = logging.getLogger(AUDIT_LOGGER)
    try:
        logger.info(line("alice", "allow", 30))
        logger.warning(line("bob", "deny", 10))
        logger.warning(line("bob", "deny", 5, what="GET /b2cal/admin/audit"))
        logger.debug("allow bob GET query Q (plain read)")  # not an audit record
        handler.flush()
    finally:
        handler.close()
    rows, total = store.query(AuditQuery())
    assert total == 3 and [r.user for r in rows] == ["bob", "bob", "alice"]  # newest first
    rows, total = store.query(AuditQuery(user="bob", decision="deny", since=datetime.now(timezone.utc) - timedelta(minutes=7)))
    assert total == 1 and rows[0].operation == "GET /b2cal/admin/audit" and rows[0].reason == "bob deny" and rows[0].status == 403
    assert store.query(AuditQuery(user="/CN=alice"))[1] == 1


@pytest.mark.parametrize("query, word", [({"decision": "maybe"}, "decision"), ({"limit": "0"}, "limit"), ({"since": "yesterday"}, "since")])
def test_bad_audit_filters_name_the_parameter(query, word):
    with pytest.raises(ValueError, match=word):
        AuditQuery.from_query(query)
