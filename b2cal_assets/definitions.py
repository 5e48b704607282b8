"""The b2cal code location: every domain's definitions, merged, with shared resources.

Resources default to the embedded state directory (SQLite platform database, incoming root
under the state directory); environment variables override them (see ``config.py``).
"""

from __future__ import annotations

from dagster import Definitions

from b2cal_assets.resources import IncomingDataResource, PlatformDatabaseResource
from b2cal_assets.runs.definitions import runs_defs


def build_definitions(*, incoming_root: str | None = None, database_url: str | None = None) -> Definitions:
    """The full Definitions; arguments override the configured locations (demo, tests)."""
    incoming = IncomingDataResource(root=incoming_root) if incoming_root else IncomingDataResource()
    database = PlatformDatabaseResource(url=database_url) if database_url else PlatformDatabaseResource()
    return Definitions.merge(
        runs_defs,
        Definitions(resources={"incoming": incoming, "platform_db": database}),
    )


defs = build_definitions()
