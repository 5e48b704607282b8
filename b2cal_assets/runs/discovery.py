"""Finding complete runs for the new-run sensor, one bounded batch per tick.

Pure logic behind the Dagster sensor: read the arrival journal from the cursor, read each
new completion record, make cheap checks on its files, and return the runs ready for
ingestion plus everything worth reporting. Bad input never raises out of ``discover``:
a garbled record, a record listing missing files, an unreadable directory or a non-ROOT
file is reported once with its reason. Records that cannot be read yet (permissions, a
directory still being created) are retried on later ticks for ``retry_for``, silently,
then reported again when given up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from b2cal_assets.run_identity import ExpRun
from b2cal_assets.runs.errors import RunsError
from b2cal_assets.runs.journal import read_new_entries
from b2cal_assets.runs.naming import RECORD_NAME_TEMPLATE
from b2cal_assets.runs.records import RunRecord, RunRecordError, read_record
from b2cal_assets.runs.verification import FileProblem, check_file_presence

CURSOR_VERSION = 1
MAX_RETRY_ENTRIES = 1000
DEFAULT_RETRY_FOR = timedelta(hours=24)


class InvalidCursorError(RunsError, ValueError):
    """The sensor cursor cannot be decoded (reset it deliberately, never silently)."""


@dataclass
class RetryEntry:
    since: str
    reason: str
    attempts: int = 1


@dataclass
class DiscoveryCursor:
    """Where the sensor is: journal offsets plus records waiting to be readable."""

    journal_offsets: dict[str, int] = field(default_factory=dict)
    retry: dict[str, RetryEntry] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "journal_offsets": self.journal_offsets,
                "retry": {path: vars(entry) for path, entry in self.retry.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> DiscoveryCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("version") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('version')!r}")
            return cls(
                journal_offsets={str(k): int(v) for k, v in data["journal_offsets"].items()},
                retry={str(k): RetryEntry(**v) for k, v in data["retry"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidCursorError(
                f"sensor cursor {text[:80]!r} is not a b2cal discovery cursor ({error}); reset the sensor cursor "
                "in the UI: run keys make a rescan safe, nothing is ingested twice"
            ) from None


@dataclass(frozen=True)
class ReadyRun:
    """A complete run to ingest."""

    record: RunRecord
    record_path: str
    digest: str
    file_problems: tuple[FileProblem, ...] = ()

    @property
    def key(self) -> ExpRun:
        return self.record.key

    @property
    def run_key(self) -> str:
        """Dagster run_key: a re-delivered, corrected record (new digest) is ingested again."""
        return f"{self.record.key}@{self.digest[:16]}"


@dataclass(frozen=True)
class DiscoveryReport:
    kind: str  # garbled-record, unreadable-record, gave-up, file-problem, malformed-journal-line, retry-overflow
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.reason}"


@dataclass
class DiscoveryResult:
    ready: list[ReadyRun]
    reports: list[DiscoveryReport]
    cursor: DiscoveryCursor
    journal_entries_read: int


def _expected_key_from_path(record_path: str) -> ExpRun | None:
    name = PurePosixPath(record_path).name
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "runinfo" and parts[3] == "json" and parts[1].isdigit() and parts[2].isdigit():
        return ExpRun(int(parts[1]), int(parts[2]))
    return None


def _load(root: Path, record_path: str) -> RunRecord:
    record = read_record(root / record_path)
    expected = _expected_key_from_path(record_path)
    if expected is not None and expected != record.key:
        raise RunRecordError(f"{record_path}: the record describes run {record.key} but its name says {expected}")
    if expected is None:
        raise RunRecordError(
            f"{record_path}: not a completion record name (expected {RECORD_NAME_TEMPLATE.format(exp=record.exp, run=record.run)})"
        )
    return record


def discover(
    root: Path,
    cursor: DiscoveryCursor,
    *,
    max_runs: int,
    now: datetime | None = None,
    retry_for: timedelta = DEFAULT_RETRY_FOR,
) -> DiscoveryResult:
    """One tick's worth of discovery: at most ``max_runs`` journal entries plus the retries."""
    now = now or datetime.now(timezone.utc)
    reports: list[DiscoveryReport] = []
    ready: list[ReadyRun] = []
    seen: set[tuple[str, str]] = set()
    retry = dict(cursor.retry)

    def consider(record_path: str, retrying: RetryEntry | None) -> None:
        try:
            record = _load(root, record_path)
        except OSError as error:
            reason = f"cannot read the record ({type(error).__name__}: {error.strerror or error})"
            if retrying is None:
                if len(retry) >= MAX_RETRY_ENTRIES:
                    reports.append(DiscoveryReport("retry-overflow", record_path, reason + "; too many unreadable records, not retried"))
                    return
                retry[record_path] = RetryEntry(now.isoformat(), reason)
                reports.append(DiscoveryReport("unreadable-record", record_path, reason + f"; retrying for {retry_for}"))
            elif now - datetime.fromisoformat(retrying.since) > retry_for:
                del retry[record_path]
                reports.append(DiscoveryReport("gave-up", record_path, f"{reason}; unreadable since {retrying.since}, given up"))
            else:
                retry[record_path] = RetryEntry(retrying.since, reason, retrying.attempts + 1)
            return
        except RunRecordError as error:
            retry.pop(record_path, None)
            reports.append(DiscoveryReport("garbled-record", record_path, str(error)))
            return
        retry.pop(record_path, None)
        digest = record.digest()
        if (str(record.key), digest) in seen:
            return
        seen.add((str(record.key), digest))
        problems = tuple(p for p in (check_file_presence(root, f) for f in record.files) if p is not None)
        for problem in problems:
            reports.append(DiscoveryReport("file-problem", str(record.key), f"{problem}; ingestion will quarantine the run"))
        ready.append(ReadyRun(record, record_path, digest, problems))

    for record_path, entry in list(cursor.retry.items()):
        consider(record_path, entry)
    entries, malformed, offsets = read_new_entries(root, cursor.journal_offsets, max_runs)
    for line in malformed:
        reports.append(DiscoveryReport("malformed-journal-line", f"{line.journal_file}@{line.offset}", f"ignored: {line.text!r}"))
    for entry in entries:
        consider(entry.record_path, None)
    return DiscoveryResult(ready, reports, DiscoveryCursor(offsets, retry), len(entries))
