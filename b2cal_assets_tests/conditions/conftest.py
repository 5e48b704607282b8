"""Fixtures of the conditions-database tests: a fresh store per test, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from b2cal_assets.conditions.store import ConditionsStore


@pytest.fixture
def store(database_url: str, tmp_path) -> ConditionsStore:
    """A conditions store on a fresh platform database, payloads under the test's tmp_path."""
    return ConditionsStore(database_url, tmp_path / "payloads")
