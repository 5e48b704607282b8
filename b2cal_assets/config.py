"""Every setting of the platform, declared once: environment variable, type, default, meaning.

Everything has a default under one state directory, so the quickstart needs no
configuration; a deployment sets the variables below (one environment file shared by
``b2cal serve`` and the workers). Modules read a setting through its ``Setting`` object
(``config.RUNNING_TAG.get()``) or through the functions at the end of this module, never
through ``os.environ``; ``SETTINGS`` is the table ``b2cal config table`` prints and
docs/operations.md embeds (a test fails when they drift apart).

Pure Python: no Dagster, no SQLAlchemy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting holds a value that cannot be read; the message names it and what to write."""


def _flag(text: str) -> bool:
    # Only "1" turns a flag on: a typo must never switch on a guard-lowering setting.
    return text == "1"


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


_KIND_NAMES: dict[Callable[[str], object], str] = {
    str: "text", int: "integer", float: "number", Path: "path", _flag: "flag (1)", _csv: "list (a,b)",
}


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable.

    ``fallback`` is the default as text (parsed like a set value), None when the default is
    computed elsewhere (documented by ``default``) or absent. With ``empty_disables``, a
    variable set to the empty string means "off" (None) instead of the default.
    """

    env: str
    kind: Callable[[str], T]
    meaning: str
    read_by: str
    fallback: str | None = None
    default: str | None = None
    empty_disables: bool = False

    @property
    def kind_name(self) -> str:
        return _KIND_NAMES.get(self.kind, getattr(self.kind, "__name__", "text"))

    @property
    def default_text(self) -> str:
        if self.default is not None:
            return self.default
        return f"`{self.fallback}`" if self.fallback is not None else "unset"

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value as set, None when unset or blank."""
        env = os.environ if environ is None else environ
        text = env.get(self.env)
        return text if text is not None and text.strip() else None

    def get(self, environ: Mapping[str, str] | None = None) -> T | None:
        """The typed value: the set value, else the fallback, else None."""
        env = os.environ if environ is None else environ
        given = env.get(self.env)
        if given is None or not given.strip():
            if given is not None and self.empty_disables:
                return None
            text = self.fallback
        else:
            text = given.strip()
        if text is None:
            return None
        try:
            return self.kind(text)
        except (TypeError, ValueError) as error:
            raise SettingError(
                f"{self.env}={given!r} is not a valid {self.kind_name} ({error}); {self.meaning.rstrip('.')}"
            ) from None


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("B2CAL_HOME", Path, "state directory; every default path below lives in it (created on first use)",
      "everything", default="`$XDG_STATE_HOME/b2cal`, else `~/.local/state/b2cal`"),
    S("XDG_STATE_HOME", Path, "base of the default state directory when `B2CAL_HOME` is unset", "everything",
      default="`~/.local/state`"),
    S("DAGSTER_HOME", Path, "Dagster instance directory holding `dagster.yaml`", "Dagster, `b2cal serve`",
      default="unset (required by `b2cal serve` without `--demo`)"),
    S("B2CAL_DAGSTER_POSTGRES_URL", str, "Dagster storage (runs, event log, schedules); never a literal in the file",
      "`dagster.yaml`"),
    S("B2CAL_DATABASE_URL", str, "platform database (SQLAlchemy URL): run registry, buckets, conditions database, "
      "accounts, sign-offs; `--database-url` on every command", "every command, code location, workers",
      default="`sqlite:///<state>/b2cal.sqlite`"),
    S("B2CAL_INCOMING", Path, "incoming data root (runs, completion records, `_journal/`)",
      "new-run sensor, `b2cal runs reindex`", default="`<state>/incoming`"),
    S("B2CAL_WORK_DIR", Path, "collector outputs (`collector/<calibration>/<bucket>/<run>.npz`)", "collectors",
      default="`<state>/work`"),
    S("B2CAL_PAYLOAD_DIR", Path, "payload ROOT files of the conditions database", "calibrations, `b2cal conditions`",
      default="`<state>/payloads`"),
    S("B2CAL_REPORTS_DIR", Path, "validation figures and PDFs", "validation", default="`<state>/reports`"),
    S("B2CAL_BUCKET_MAX_RUNS", int, "close a bucket after N runs (empty: off)", "bucket scheduler",
      fallback="20", empty_disables=True),
    S("B2CAL_BUCKET_MAX_LUMI_PB", float, "close a bucket after L pb^-1 (empty: off)", "bucket scheduler",
      default="off", empty_disables=True),
    S("B2CAL_BUCKET_MAX_AGE_HOURS", float, "close a bucket after T hours open (empty: off)", "bucket scheduler",
      fallback="336", empty_disables=True),
    S("B2CAL_COLLECTOR_RUNS_PER_WAVE", int, "a wave's collectors of a bucket are split into at most this many runs "
      "collecting side by side (at least 5 of the bucket's runs each)", "bucket scheduler",
      default="the CPU count"),
    S("B2CAL_EXPERT_CONFIG", str, 'run-time overrides `{"<calibration>": {"<key>": value}}`', "calibrations",
      fallback="{}"),
    S("B2CAL_RUNNING_TAG", str, "global tag promoted payloads go to", "validation", fallback="prompt_running"),
    S("B2CAL_VALIDATION_WEBHOOK", str, "notification webhook (JSON POST)", "validation", default="unset (log only)"),
    S("B2CAL_APPROVER_ROLES", _csv, "roles allowed to sign off, comma-separated", "validation",
      default="unset (any authenticated user)"),
    S("B2CAL_DEMO_MODE", _flag, "`1` accepts sign-offs without a user (set by the demo; never in production)",
      "validation", default="unset (off)"),
    S("B2CAL_EXECUTOR", str, "step executor: `multiprocess`, `celery` or `in_process`", "code location",
      fallback="multiprocess"),
    S("B2CAL_CELERY_BROKER", str, "Celery broker URL; the path is the RabbitMQ vhost", "Celery runs and workers",
      fallback="pyamqp://guest:guest@127.0.0.1:5672//"),
    S("B2CAL_CELERY_BACKEND", str, "Celery result backend", "Celery runs and workers", fallback="rpc://"),
    S("DIRACX_URL", str, "DiracX server of the accounts sync", "`b2cal accounts sync`, `dirac_accounts` schedule"),
    S("DIRACX_CREDENTIALS_PATH", Path, "DiracX token file (from `dirac login`) of the sync account",
      "accounts sync", default="`~/.cache/diracx/credentials.json`"),
    S("DIRACX_CA_PATH", Path, "CA bundle for the DiracX server's certificate", "accounts sync",
      default="unset (system CAs)"),
    S("B2CAL_DIRAC_VO", str, "VO whose Registry section is synced", "accounts sync", fallback="belle"),
    S("B2CAL_ACCOUNTS_REGISTRY_YAML", Path, "import this DiracX Registry YAML instead of asking DiracX",
      "`dirac_accounts` schedule"),
    S("B2CAL_ACCOUNTS_MAX_AGE", str, "accounts older than this are stale (`3600`, `90m`, `2h`, `1d`)",
      "proxy, `b2cal accounts list`", fallback="1h"),
    S("B2CAL_ACCOUNTS_ON_STALE", str, "`deny` or `viewer`: every user's access once the accounts are stale",
      "proxy, `b2cal accounts list`", fallback="deny"),
    S("B2CAL_WEB_URL", str, "base URL of the review pages (proxy address + path prefix + `/b2cal`) for links in "
      "reports and notifications", "validation", default="unset (no links)"),
    S("B2CAL_WEB_SECRET", str, "key of the review pages' anti-forgery tokens; a secret (`secrets.env`); the same "
      "on every proxy behind one name", "proxy", default="unset (a random key per proxy process)"),
)
del S
BY_NAME: dict[str, Setting] = {setting.env: setting for setting in SETTINGS}

HOME = BY_NAME["B2CAL_HOME"]
XDG_STATE_HOME = BY_NAME["XDG_STATE_HOME"]
DAGSTER_HOME = BY_NAME["DAGSTER_HOME"]
DATABASE_URL = BY_NAME["B2CAL_DATABASE_URL"]
INCOMING = BY_NAME["B2CAL_INCOMING"]
WORK_DIR = BY_NAME["B2CAL_WORK_DIR"]
PAYLOAD_DIR = BY_NAME["B2CAL_PAYLOAD_DIR"]
REPORTS_DIR = BY_NAME["B2CAL_REPORTS_DIR"]
BUCKET_MAX_RUNS = BY_NAME["B2CAL_BUCKET_MAX_RUNS"]
BUCKET_MAX_LUMI_PB = BY_NAME["B2CAL_BUCKET_MAX_LUMI_PB"]
BUCKET_MAX_AGE_HOURS = BY_NAME["B2CAL_BUCKET_MAX_AGE_HOURS"]
COLLECTOR_RUNS_PER_WAVE = BY_NAME["B2CAL_COLLECTOR_RUNS_PER_WAVE"]
EXPERT_CONFIG = BY_NAME["B2CAL_EXPERT_CONFIG"]
RUNNING_TAG = BY_NAME["B2CAL_RUNNING_TAG"]
VALIDATION_WEBHOOK = BY_NAME["B2CAL_VALIDATION_WEBHOOK"]
APPROVER_ROLES = BY_NAME["B2CAL_APPROVER_ROLES"]
DEMO_MODE = BY_NAME["B2CAL_DEMO_MODE"]
EXECUTOR = BY_NAME["B2CAL_EXECUTOR"]
CELERY_BROKER = BY_NAME["B2CAL_CELERY_BROKER"]
CELERY_BACKEND = BY_NAME["B2CAL_CELERY_BACKEND"]
DIRACX_URL = BY_NAME["DIRACX_URL"]
DIRACX_CREDENTIALS_PATH = BY_NAME["DIRACX_CREDENTIALS_PATH"]
DIRACX_CA_PATH = BY_NAME["DIRACX_CA_PATH"]
DIRAC_VO = BY_NAME["B2CAL_DIRAC_VO"]
ACCOUNTS_REGISTRY_YAML = BY_NAME["B2CAL_ACCOUNTS_REGISTRY_YAML"]
ACCOUNTS_MAX_AGE = BY_NAME["B2CAL_ACCOUNTS_MAX_AGE"]
ACCOUNTS_ON_STALE = BY_NAME["B2CAL_ACCOUNTS_ON_STALE"]
WEB_URL = BY_NAME["B2CAL_WEB_URL"]
WEB_SECRET = BY_NAME["B2CAL_WEB_SECRET"]


def markdown_table() -> str:
    """The environment-variable table of docs/operations.md."""
    lines = ["| variable | type | default | read by | meaning |", "|---|---|---|---|---|"]
    for setting in SETTINGS:
        lines.append(
            f"| `{setting.env}` | {setting.kind_name} | {setting.default_text} | {setting.read_by} | {setting.meaning} |"
        )
    return "\n".join(lines) + "\n"


# --- derived values: each default is computed here and nowhere else ---------------------------


def state_dir(create: bool = True) -> Path:
    """The state directory (``B2CAL_HOME``), created on first use unless ``create`` is False."""
    path = HOME.get() or (XDG_STATE_HOME.get() or Path.home() / ".local" / "state") / "b2cal"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def default_database_url(create_state_dir: bool = True) -> str:
    return f"sqlite:///{state_dir(create_state_dir) / 'b2cal.sqlite'}"


def database_url(create_state_dir: bool = True) -> str:
    """SQLAlchemy URL of the platform database (``B2CAL_DATABASE_URL``, else the state directory's SQLite file).

    Read-only commands pass ``create_state_dir=False`` so that asking creates nothing.
    """
    return DATABASE_URL.get() or default_database_url(create_state_dir)


def _state_path(setting: Setting, name: str, create_state_dir: bool) -> Path:
    configured = setting.get()
    return Path(configured).resolve() if configured else state_dir(create_state_dir) / name


def incoming_root(create_state_dir: bool = True) -> Path:
    """The incoming-data root (run directories, completion records, arrival journal)."""
    return _state_path(INCOMING, "incoming", create_state_dir)


def payload_dir(create_state_dir: bool = True) -> Path:
    """Where payload ROOT files are stored (``B2CAL_PAYLOAD_DIR``, default ``<state>/payloads``)."""
    return _state_path(PAYLOAD_DIR, "payloads", create_state_dir)


def work_dir() -> Path:
    """Intermediate files: collector outputs (``B2CAL_WORK_DIR``, default ``<state>/work``)."""
    return _state_path(WORK_DIR, "work", True)


def reports_dir() -> Path:
    """Validation reports (``B2CAL_REPORTS_DIR``, default ``<state>/reports``)."""
    return _state_path(REPORTS_DIR, "reports", True)


def collector_runs_per_wave(environ: Mapping[str, str] | None = None) -> int:
    """How many runs a wave's collectors may be split into (``B2CAL_COLLECTOR_RUNS_PER_WAVE``,
    default the CPU count: with the multiprocess executor every run collects on this machine)."""
    value = COLLECTOR_RUNS_PER_WAVE.get(environ)
    if value is None:
        return max(1, os.cpu_count() or 1)
    if value < 1:
        raise SettingError(f"{COLLECTOR_RUNS_PER_WAVE.env}={value} must be at least 1; {COLLECTOR_RUNS_PER_WAVE.meaning}")
    return value


def bucket_policy_settings() -> dict[str, float | int | None]:
    """Bucket closing limits; an empty value disables a limit."""
    return {
        "max_runs": BUCKET_MAX_RUNS.get(),
        "max_luminosity_pb": BUCKET_MAX_LUMI_PB.get(),
        "max_age_hours": BUCKET_MAX_AGE_HOURS.get(),
    }
