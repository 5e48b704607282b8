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


def payload_dir() -> Path:
    """Where payload ROOT files are stored (``B2CAL_PAYLOAD_DIR``, default ``<state>/payloads``)."""
    configured = os.environ.get("B2CAL_PAYLOAD_DIR")
    return Path(configured).resolve() if configured else state_dir() / "payloads"


def work_dir() -> Path:
    """Intermediate files: collector outputs (``B2CAL_WORK_DIR``, default ``<state>/work``)."""
    configured = os.environ.get("B2CAL_WORK_DIR")
    return Path(configured).resolve() if configured else state_dir() / "work"


def bucket_policy_settings() -> dict[str, float | int | None]:
    """Bucket closing limits from the environment; an empty value disables a limit.

    ``B2CAL_BUCKET_MAX_RUNS`` (default 20), ``B2CAL_BUCKET_MAX_LUMI_PB`` (default none),
    ``B2CAL_BUCKET_MAX_AGE_HOURS`` (default 336, two weeks).
    """

    def read(name: str, default: str, kind: type) -> float | int | None:
        text = os.environ.get(name, default).strip()
        return kind(text) if text else None

    return {
        "max_runs": read("B2CAL_BUCKET_MAX_RUNS", "20", int),
        "max_luminosity_pb": read("B2CAL_BUCKET_MAX_LUMI_PB", "", float),
        "max_age_hours": read("B2CAL_BUCKET_MAX_AGE_HOURS", "336", float),
    }
