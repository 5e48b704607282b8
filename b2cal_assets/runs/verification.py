"""Verification of a run's files against its completion record.

Every file must exist, have the recorded size and adler32, open as ROOT, hold the TTree
with the expected branches and the recorded number of events. All failures are collected
(not only the first) so the quarantine reason names every file and check at fault.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from b2cal_assets.fileformat import EXPECTED_BRANCHES, TREE_NAME, adler32_of
from b2cal_assets.runs.records import RecordedFile, RunRecord

# uproot (with awkward, half a second) is imported by verify_file, the one check that opens
# a file: the sensor's cheap checks and every other process loading the code location skip it.

ROOT_MAGIC = b"root"


@dataclass(frozen=True)
class FileProblem:
    """One failed check of one file."""

    path: str
    check: str  # exists, readable, size, adler32, root-format, tree, branches, events
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.check} check failed: {self.detail}"


@dataclass
class RunVerification:
    """Outcome of verifying one run: problems (empty when good) and what was read."""

    record: RunRecord
    problems: list[FileProblem] = field(default_factory=list)
    events_per_stream: dict[str, int] = field(default_factory=dict)
    branches: tuple[str, ...] = ()
    bytes_verified: int = 0

    @property
    def passed(self) -> bool:
        return not self.problems

    def reason(self) -> str:
        """The quarantine reason: every failed check, with what to do about it."""
        lines = [str(problem) for problem in self.problems]
        return "; ".join(lines) + "; the run is quarantined: re-transfer the file(s) and re-materialise the partition"


def check_file_presence(root: Path, recorded: RecordedFile) -> FileProblem | None:
    """Cheap checks for the sensor: the file exists, is readable and starts like a ROOT file."""
    path = root / recorded.path
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        return FileProblem(recorded.path, "exists", "the file listed in the run record is missing")
    except PermissionError:
        return FileProblem(recorded.path, "readable", "permission denied")
    except IsADirectoryError:
        return FileProblem(recorded.path, "exists", "is a directory, not a file")
    if magic != ROOT_MAGIC:
        return FileProblem(recorded.path, "root-format", f"starts with {magic!r}, not a ROOT file")
    return None


def verify_file(root: Path, recorded: RecordedFile) -> tuple[list[FileProblem], int, tuple[str, ...]]:
    """All checks on one file; returns (problems, events read, branch names)."""
    import uproot

    presence = check_file_presence(root, recorded)
    if presence is not None:
        return [presence], 0, ()
    path = root / recorded.path
    problems = []
    size = os.stat(path).st_size
    if size != recorded.size:
        problems.append(FileProblem(recorded.path, "size", f"{size} bytes on disk != {recorded.size} in the record"))
    checksum = adler32_of(path)
    if checksum != recorded.adler32:
        problems.append(FileProblem(recorded.path, "adler32", f"{checksum} on disk != {recorded.adler32} in the record"))
    try:
        with uproot.open(path) as handle:
            if TREE_NAME not in handle:
                problems.append(FileProblem(recorded.path, "tree", f"no TTree {TREE_NAME!r} in the file"))
                return problems, 0, ()
            tree = handle[TREE_NAME]
            events = int(tree.num_entries)
            branches = tuple(tree.keys())
    except Exception as error:  # noqa: BLE001 - uproot raises many types for damaged files
        problems.append(FileProblem(recorded.path, "root-format", f"cannot be read as ROOT: {type(error).__name__}: {str(error)[:160]}"))
        return problems, 0, ()
    missing = sorted(set(EXPECTED_BRANCHES) - set(branches))
    if missing:
        problems.append(FileProblem(recorded.path, "branches", f"missing branches {', '.join(missing)}"))
    if events != recorded.events:
        problems.append(FileProblem(recorded.path, "events", f"{events} events in the file != {recorded.events} in the record"))
    return problems, events, branches


def verify_run(root: Path, record: RunRecord) -> RunVerification:
    """Verify every file of a run (never raises for bad data: problems are returned)."""
    result = RunVerification(record)
    branches: set[str] = set()
    for recorded in record.files:
        problems, events, file_branches = verify_file(root, recorded)
        result.problems.extend(problems)
        result.events_per_stream[recorded.stream] = result.events_per_stream.get(recorded.stream, 0) + events
        branches.update(file_branches)
        if not problems:
            result.bytes_verified += recorded.size
    result.branches = tuple(sorted(branches))
    return result
