"""Fixtures for the accounts tests: one real DiracX server per session, credentials for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2cal_assets.accounts.diracx_source import DiracxSettings
from b2cal_assets_tests.accounts.diracx_server import DiracxTestServer


@pytest.fixture(scope="session")
def diracx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiracxTestServer]:
    """diracx-routers 0.7.0 under uvicorn on a free loopback port (session-scoped: ~5 s to start)."""
    server = DiracxTestServer(tmp_path_factory.mktemp("diracx"))
    server.prepare()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def diracx_credentials(diracx_server: DiracxTestServer) -> Path:
    """A valid diracx-client credentials file, signed with the server's keys."""
    return diracx_server.mint_credentials(diracx_server.root / "credentials" / "sync.json")


@pytest.fixture
def diracx_settings(diracx_server: DiracxTestServer, diracx_credentials: Path) -> DiracxSettings:
    return DiracxSettings(url=diracx_server.url, credentials_path=diracx_credentials, vo="belle", timeout_seconds=10)


@pytest.fixture
def publish(diracx_server: DiracxTestServer, diracx_credentials: Path):  # type: ignore[no-untyped-def]
    """publish(users, groups, message, **vo_fields) -> ETag, once DiracX serves it."""

    def _publish(users: dict[str, Any], groups: dict[str, Any], message: str, **vo_fields: Any) -> str:
        vo_fields.setdefault("VOMSName", "belle")
        etag = diracx_server.set_registry(users, groups, message, **vo_fields)
        diracx_server.wait_served(etag, diracx_credentials)
        return etag

    return _publish
