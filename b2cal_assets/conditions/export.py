"""Export a global tag as a basf2 local database (what basf2 reads as a testing-payloads path).

Layout of ``out_dir``::

    database.txt                      one line per IoV: dbstore/<Name> <revision> <e1>,<r1>,<e2>,<r2>
    dbstore_<Name>_rev_<revision>.root

Payload files are verified against their recorded md5 before and after copying.
``database.txt`` is written last and renamed into place, so a directory whose export failed
half-way has no ``database.txt`` and cannot be mistaken for a complete local database.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from b2cal_assets.conditions.errors import LocalDatabaseExportError, PayloadChecksumError
from b2cal_assets.conditions.payloads import file_md5
from b2cal_assets.conditions.store import ConditionsStore, TagEntry
from b2cal_assets.conditions.tags import TagState

__all__ = ["DATABASE_FILE", "LocalDatabase", "database_line", "export_local_database", "local_payload_file_name"]

DATABASE_FILE = "database.txt"


@dataclass(frozen=True)
class LocalDatabase:
    """The result of an export: where it is, what it holds, and the tag's state at export time."""

    directory: Path
    tag: str
    tag_state: TagState
    lines: tuple[str, ...]
    files: tuple[Path, ...]


def local_payload_file_name(name: str, revision: int) -> str:
    """``dbstore_BeamSpot_rev_3.root``: the file name basf2 looks for in a local database."""
    return f"dbstore_{name}_rev_{revision}.root"


def database_line(entry: TagEntry) -> str:
    """``dbstore/BeamSpot 3 26,12,26,-1``."""
    return f"dbstore/{entry.name} {entry.revision} {entry.iov}"


def export_local_database(store: ConditionsStore, tag: str, out_dir: Path | str, *, overwrite: bool = False) -> LocalDatabase:
    """Write tag ``tag`` as a basf2 local database in ``out_dir`` (created if missing).

    Any state may be exported (testing an OPEN staging tag locally is what local databases are
    for); the state is returned so callers can warn. Refuses a directory that already holds a
    ``database.txt`` unless ``overwrite``, because basf2 would mix old and new lines.
    """
    out_dir = Path(out_dir)
    tag_info = store.tag(tag)
    entries = store.tag_entries(tag)
    database_file = out_dir / DATABASE_FILE
    if database_file.exists() and not overwrite:
        raise LocalDatabaseExportError(
            f"{database_file} already exists; export into an empty directory, or overwrite it "
            "(overwrite=True, CLI --force)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    files: list[Path] = []
    copied: set[tuple[str, int]] = set()
    for entry in entries:
        key = (entry.name, entry.revision)
        if key in copied:
            continue  # one file per revision, however many IoVs use it
        copied.add(key)
        source = store.payload_path(entry.payload, verify=True)
        target = out_dir / local_payload_file_name(entry.name, entry.revision)
        shutil.copyfile(source, target)
        copied_md5 = file_md5(target)
        if copied_md5 != entry.checksum:
            target.unlink(missing_ok=True)
            raise PayloadChecksumError(entry.name, entry.revision, str(target), entry.checksum, copied_md5)
        files.append(target)

    lines = tuple(database_line(entry) for entry in entries)
    temporary = out_dir / f".{DATABASE_FILE}.tmp"
    temporary.write_text("".join(f"{line}\n" for line in lines))
    os.replace(temporary, database_file)
    return LocalDatabase(directory=out_dir, tag=tag, tag_state=tag_info.state, lines=lines, files=tuple(files))
