"""Fixtures of the conditions-database tests: a fresh store per test, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from b2cal_assets.conditions.store import ConditionsStore
from b2cal_assets.database import platform_database


@pytest.fixture
def store(database_url: str, tmp_path) -> ConditionsStore:
    """A conditions store on a fresh platform database, payloads under the test's tmp_path."""
    return platform_database(database_url).conditions(tmp_path / "payloads")
