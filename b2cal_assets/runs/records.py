"""The per-run completion record (what a DAQ end-of-run record gives), and its checks.

The record is JSON, written last beside the run's files, so its presence marks the run
complete. Its file list carries size, event count and adler32 checksum per file, the
grid storage convention, so ingestion can verify every byte that arrived.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from b2cal_assets.run_identity import ExpRun
from b2cal_assets.runs.errors import RunsError
from b2cal_assets.runs.naming import STREAMS

RECORD_SCHEMA = "b2cal.run-record/1"
RUN_TYPES = ("physics", "cosmic", "beam", "debug", "null")
BEAM_ENERGIES = ("4S", "Continuum", "Scan", "No Beam", "4S_offres")
MAGNET_STATES = ("On", "Off")
DATA_QUALITY_TAGS = ("Good", "Recoverable", "Bad For Alignment", "Bad")
_ADLER32 = re.compile(r"^[0-9a-f]{8}$")


class RunRecordError(RunsError, ValueError):
    """A completion record is unreadable or inconsistent; the message says which field."""


@dataclass(frozen=True)
class RecordedFile:
    """One file of a run as the data flow recorded it."""

    path: str  # relative to the incoming root, POSIX separators
    stream: str
    format: str
    size: int
    events: int
    adler32: str  # 8 lower-case hex digits


@dataclass(frozen=True)
class RunRecord:
    """End-of-run record of one run."""

    exp: int
    run: int
    start_time: str  # ISO 8601, UTC
    end_time: str
    integrated_luminosity_pb: float
    run_type: str
    beam_energy: str
    magnet: str
    data_quality: str
    data_tags: tuple[str, ...]
    her_energy_gev: float
    ler_energy_gev: float
    files: tuple[RecordedFile, ...]
    schema: str = RECORD_SCHEMA
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> ExpRun:
        return ExpRun(self.exp, self.run)

    def events_per_stream(self) -> dict[str, int]:
        counts = {stream: 0 for stream in STREAMS}
        for recorded in self.files:
            counts[recorded.stream] = counts.get(recorded.stream, 0) + recorded.events
        return counts

    def to_json(self) -> str:
        data = asdict(self)
        data["data_tags"] = list(self.data_tags)
        data["files"] = [asdict(f) for f in self.files]
        return json.dumps(data, indent=1, sort_keys=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON: a re-delivered, corrected record gets a new digest."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _require(data: dict, name: str, kind: type | tuple[type, ...], where: str):  # type: ignore[no-untyped-def]
    if name not in data:
        raise RunRecordError(f"{where}: field {name!r} is missing")
    value = data[name]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise RunRecordError(f"{where}: field {name!r} is {type(value).__name__}, expected {kind}")
    return value


def _check_choice(value: str, allowed: tuple[str, ...], name: str, where: str) -> str:
    if value not in allowed:
        raise RunRecordError(f"{where}: {name} {value!r} is not one of {', '.join(allowed)}")
    return value


def parse_record(text: str, where: str = "run record") -> RunRecord:
    """Parse and validate a record; raises RunRecordError naming the field at fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunRecordError(f"{where}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{where}: expected a JSON object, found {type(data).__name__}")
    schema = data.get("schema")
    if schema != RECORD_SCHEMA:
        raise RunRecordError(f"{where}: schema {schema!r} is not {RECORD_SCHEMA!r}")
    exp = _require(data, "exp", int, where)
    run = _require(data, "run", int, where)
    try:
        ExpRun(exp, run)
    except ValueError as error:
        raise RunRecordError(f"{where}: {error}") from None
    for name in ("start_time", "end_time"):
        try:
            datetime.fromisoformat(_require(data, name, str, where))
        except ValueError:
            raise RunRecordError(f"{where}: {name} {data[name]!r} is not an ISO 8601 time") from None
    lumi = float(_require(data, "integrated_luminosity_pb", (int, float), where))
    if lumi < 0:
        raise RunRecordError(f"{where}: integrated luminosity {lumi} pb^-1 is negative")
    tags = _require(data, "data_tags", list, where)
    if not all(isinstance(tag, str) for tag in tags):
        raise RunRecordError(f"{where}: data_tags must be a list of strings")
    raw_files = _require(data, "files", list, where)
    if not raw_files:
        raise RunRecordError(f"{where}: the file list is empty")
    files = []
    for index, raw in enumerate(raw_files):
        at = f"{where}: files[{index}]"
        if not isinstance(raw, dict):
            raise RunRecordError(f"{at} is not an object")
        path = _require(raw, "path", str, at)
        if path.startswith("/") or ".." in Path(path).parts:
            raise RunRecordError(f"{at}: path {path!r} must be relative to the incoming root, without '..'")
        checksum = _require(raw, "adler32", str, at).lower()
        if not _ADLER32.match(checksum):
            raise RunRecordError(f"{at}: adler32 {checksum!r} is not 8 hex digits")
        size = _require(raw, "size", int, at)
        events = _require(raw, "events", int, at)
        if size < 0 or events < 0:
            raise RunRecordError(f"{at}: size and events must be non-negative")
        files.append(
            RecordedFile(path, _require(raw, "stream", str, at), _require(raw, "format", str, at), size, events, checksum)
        )
    return RunRecord(
        exp=exp,
        run=run,
        start_time=data["start_time"],
        end_time=data["end_time"],
        integrated_luminosity_pb=lumi,
        run_type=_check_choice(_require(data, "run_type", str, where), RUN_TYPES, "run_type", where),
        beam_energy=_check_choice(_require(data, "beam_energy", str, where), BEAM_ENERGIES, "beam_energy", where),
        magnet=_check_choice(_require(data, "magnet", str, where), MAGNET_STATES, "magnet", where),
        data_quality=_check_choice(_require(data, "data_quality", str, where), DATA_QUALITY_TAGS, "data_quality", where),
        data_tags=tuple(tags),
        her_energy_gev=float(_require(data, "her_energy_gev", (int, float), where)),
        ler_energy_gev=float(_require(data, "ler_energy_gev", (int, float), where)),
        files=tuple(files),
        extra=data.get("extra", {}) if isinstance(data.get("extra", {}), dict) else {},
    )


def read_record(path: Path) -> RunRecord:
    """Read a record file; OSError (missing, unreadable) and RunRecordError propagate."""
    return parse_record(path.read_text(encoding="utf-8"), where=str(path))
