"""Where the platform keeps its state, and how an operator overrides it.

Everything has a default under one state directory that the tool creates, so the
quickstart needs no configuration. Environment variables:

- ``B2CAL_HOME``: the state directory (default ``$XDG_STATE_HOME/b2cal`` or
  ``~/.local/state/b2cal``).
- ``B2CAL_DATABASE_URL``: the platform database (run registry, conditions database,
  accounts); default SQLite file ``<state>/b2cal.sqlite``; PostgreSQL in production.
- ``B2CAL_INCOMING``: the incoming-data root watched by the new-run sensor
  (default ``<state>/incoming``).
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The state directory, created on first use."""
    configured = os.environ.get("B2CAL_HOME")
    if configured:
        path = Path(configured)
    else:
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(xdg) / "b2cal"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def database_url() -> str:
    """SQLAlchemy URL of the platform database."""
    return os.environ.get("B2CAL_DATABASE_URL") or f"sqlite:///{state_dir() / 'b2cal.sqlite'}"


def incoming_root() -> Path:
    """The incoming-data root (run directories, completion records, arrival journal)."""
    configured = os.environ.get("B2CAL_INCOMING")
    return Path(configured).resolve() if configured else state_dir() / "incoming"
