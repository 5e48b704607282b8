"""The arrival journal: how the sensor finds new runs in O(new runs), not O(all runs).

Listing an incoming tree of 50,000 run directories on every tick costs seconds and grows
without bound. Instead the data flow, after writing a run's files and then its completion
record, appends one line to a per-day journal file::

    <incoming root>/_journal/2026-11-28.log
    2026-11-28T21:24:00.123456+00:00 e0026/4S/r00012/runinfo.0026.00012.json

Lines are appended with a single ``write`` on an ``O_APPEND`` descriptor, so concurrent
writers never interleave. A reader remembers a byte offset per journal file and only ever
consumes whole lines (a line still being written is left for the next read). Journal
files older than the newest few are considered closed.

For a site whose transfer system cannot append, ``b2cal runs reindex`` scans the tree once
and journals every record not yet journalled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

JOURNAL_DIR = "_journal"
JOURNAL_SUFFIX = ".log"
OPEN_JOURNAL_FILES = 3  # how many of the newest journal files may still grow


@dataclass(frozen=True)
class JournalEntry:
    """One arrival: where the record is, and when the data flow journalled it."""

    journalled_at: str
    record_path: str  # relative to the incoming root
    journal_file: str
    offset: int  # byte offset of the line in its journal file


@dataclass(frozen=True)
class MalformedJournalLine:
    journal_file: str
    offset: int
    text: str


def append_arrival(root: Path, record_relpath: str, when: datetime | None = None) -> None:
    """Journal that the run whose record is at ``record_relpath`` is complete."""
    when = when or datetime.now(timezone.utc)
    if "\n" in record_relpath or " " in record_relpath:
        raise ValueError(f"record path {record_relpath!r} must not contain spaces or newlines")
    folder = root / JOURNAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    line = f"{when.isoformat()} {record_relpath}\n".encode()
    descriptor = os.open(folder / f"{when.date().isoformat()}{JOURNAL_SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def journal_files(root: Path) -> list[str]:
    """Names of the journal files, oldest first (a listing of days, not of runs)."""
    folder = root / JOURNAL_DIR
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith(JOURNAL_SUFFIX))
    except FileNotFoundError:
        return []


def read_new_entries(
    root: Path, offsets: dict[str, int], max_entries: int
) -> tuple[list[JournalEntry], list[MalformedJournalLine], dict[str, int]]:
    """Entries appended since ``offsets`` (journal file -> byte offset), at most ``max_entries``.

    Returns the entries, the malformed lines skipped, and the new offsets, which keep only
    the newest ``OPEN_JOURNAL_FILES`` files (older ones are closed and never re-read).
    """
    names = journal_files(root)
    oldest_tracked = min(offsets) if offsets else None
    candidates = [name for name in names if oldest_tracked is None or name >= oldest_tracked]
    new_offsets = dict(offsets)
    entries: list[JournalEntry] = []
    malformed: list[MalformedJournalLine] = []
    for name in candidates:
        if len(entries) >= max_entries:
            break
        start = offsets.get(name, 0)
        path = root / JOURNAL_DIR / name
        with open(path, "rb") as handle:
            handle.seek(start)
            position = start
            while len(entries) < max_entries:
                line = handle.readline()
                if not line.endswith(b"\n"):
                    break  # end of file, or a line still being written
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                parts = text.split(" ")
                if len(parts) == 2 and parts[1] and not parts[1].startswith("/"):
                    entries.append(JournalEntry(parts[0], parts[1], name, position))
                elif text.strip():
                    malformed.append(MalformedJournalLine(name, position, text[:200]))
                position += len(line)
        new_offsets[name] = position
    keep = sorted(new_offsets)[-OPEN_JOURNAL_FILES:]
    return entries, malformed, {name: new_offsets[name] for name in keep}


def journalled_paths(root: Path) -> set[str]:
    """Every record path in every journal file (a full read: for reindexing only)."""
    paths: set[str] = set()
    for name in journal_files(root):
        with open(root / JOURNAL_DIR / name, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.rstrip("\n").split(" ")
                if len(parts) == 2:
                    paths.add(parts[1])
    return paths


def reindex_tree(root: Path) -> list[str]:
    """Journal completion records present in the tree but absent from the journal.

    A full scan (O(all runs)), for sites whose transfer system cannot append to the journal
    and for recovery; the sensor itself never scans.
    """
    known = journalled_paths(root)
    added = []
    for record in sorted(root.glob("e[0-9][0-9][0-9][0-9]/*/r[0-9][0-9][0-9][0-9][0-9]/runinfo.*.json")):
        relative = record.relative_to(root).as_posix()
        if relative not in known:
            append_arrival(root, relative)
            added.append(relative)
    return added
