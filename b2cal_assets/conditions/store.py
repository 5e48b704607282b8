"""The conditions database: payloads, global tags and their IoVs, in the platform database.

Payload files live in a payload directory, one sub-directory per payload name:
``<payload_dir>/<Name>/rev_<revision>_<md5>.root``. A file is only ever created under a name
that did not exist (``os.link`` refuses to replace), so nothing is ever overwritten.

Atomicity of a calibration's write (``add_payloads``), in crash order:

1. each payload file is written and fsynced under ``<payload_dir>/.staging/<random>.root``;
2. it is hard-linked to its final name (never replacing a file) and the staging name removed;
3. the payload and IoV rows are inserted, all payloads of the call in ONE transaction;
4. the transaction commits.

A failure or kill before 4 rolls the database back (the server or SQLite discards the
uncommitted transaction), so no payload row and no IoV is left. The invariant readers rely on
is "every committed payload row has its file", which holds because files are placed before the
commit. What a kill can leave behind is unreferenced files (staging files, or final files whose
rows never committed); an in-process failure deletes them at once, and
``remove_orphan_files`` collects those of killed processes after a grace period (so it never
races a writer that is between steps 2 and 4).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from b2cal_assets.conditions import schema
from b2cal_assets.conditions.errors import (
    ConditionsError,
    InvalidPayloadError,
    InvalidTagNameError,
    OverlappingIoVError,
    PayloadChecksumError,
    PayloadFileMissingError,
    TagExistsError,
    UnknownPayloadError,
    UnknownTagError,
)
from b2cal_assets.conditions.iov import ExpRun, IoV, find_overlaps
from b2cal_assets.conditions.payloads import (
    PayloadConstants,
    file_md5,
    read_payload_file,
    validate_payload_name,
    write_payload_file,
)
from b2cal_assets.conditions.tags import (
    TagState,
    check_content_editable,
    check_transition,
    check_usable_for_processing,
)

__all__ = [
    "ADD_PAYLOADS_STEPS",
    "ConditionsError",  # re-exported: callers catch every refusal of this module with it
    "ConditionsStore",
    "GlobalTag",
    "NewPayload",
    "StoredPayload",
    "TagEntry",
    "TagStateChange",
    "describe_entry",
]

TAG_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

# Steps reported to ``add_payloads(step_hook=...)``, in order; tests kill or fail the writer there.
ADD_PAYLOADS_STEPS = ("payload_file_written", "payload_file_placed", "payload_rows_inserted", "before_commit")

STAGING_DIR_NAME = ".staging"
_WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class NewPayload:
    """A payload a calibration wants to store: its name, the IoV to give it in the tag, its constants."""

    name: str
    iov: IoV
    constants: PayloadConstants


@dataclass(frozen=True)
class StoredPayload:
    """An immutable stored payload (name, revision) and its file."""

    payload_id: int
    name: str
    revision: int
    checksum: str
    file_name: str  # relative to the payload directory
    size_bytes: int
    channels: int
    produced_iov: IoV  # the IoV the calibration produced it for
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class TagEntry:
    """One (payload, IoV) of a global tag."""

    iov_id: int
    tag: str
    payload: StoredPayload
    iov: IoV

    @property
    def name(self) -> str:
        return self.payload.name

    @property
    def revision(self) -> int:
        return self.payload.revision

    @property
    def checksum(self) -> str:
        return self.payload.checksum


@dataclass(frozen=True)
class GlobalTag:
    """A global tag and its current state."""

    tag_id: int
    name: str
    state: TagState
    description: str
    created_at: datetime
    updated_at: datetime
    iov_count: int = 0


@dataclass(frozen=True)
class TagStateChange:
    """One entry of a tag's state history (``from_state`` is None for the creation)."""

    from_state: TagState | None
    to_state: TagState
    reason: str
    changed_at: datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iov_of(row: Any, prefix: str = "") -> IoV:
    return IoV(
        getattr(row, f"{prefix}first_exp"),
        getattr(row, f"{prefix}first_run"),
        getattr(row, f"{prefix}final_exp"),
        getattr(row, f"{prefix}final_run"),
    )


def iov_columns(iov: IoV, prefix: str = "") -> dict[str, int]:
    return {
        f"{prefix}first_exp": iov.first_exp,
        f"{prefix}first_run": iov.first_run,
        f"{prefix}final_exp": iov.final_exp,
        f"{prefix}final_run": iov.final_run,
    }


def _stored_payload(row: Any) -> StoredPayload:
    return StoredPayload(
        payload_id=row.id,
        name=row.name,
        revision=row.revision,
        checksum=row.checksum,
        file_name=row.file_name,
        size_bytes=row.size_bytes,
        channels=row.channels,
        produced_iov=_iov_of(row, "produced_"),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _entry_sort_key(entry: TagEntry) -> tuple[Any, ...]:
    return (entry.name, entry.iov.sort_key(), entry.revision)


def _fsync_directory(directory: Path) -> None:
    # A rename/link is durable only once its directory entry is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ConditionsStore:
    """Payloads, global tags and IoVs in the platform database, with the payload files under
    ``payload_dir`` (created on first use). Open it with ``platform_database(url).conditions(payload_dir)``."""

    def __init__(self, engine: Engine, payload_dir: Path | str) -> None:
        self.engine = engine
        self.payload_dir = Path(payload_dir).resolve()
        self.payload_dir.mkdir(parents=True, exist_ok=True)

    @property
    def database_url(self) -> str:
        """The database URL with its password (for handing to a subprocess of the same deployment)."""
        return self.engine.url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"ConditionsStore({url!r}, payload_dir={str(self.payload_dir)!r})"

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, committed on normal exit and rolled back on any exception.

        On SQLite the transaction takes the write lock at once (BEGIN IMMEDIATE): a deferred
        transaction that read first could not upgrade to writing after another writer
        committed, and would fail instead of waiting. PostgreSQL writers serialise on the tag
        rows they lock (``lock_tag``).
        """
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    def lock_tag(self, conn: Connection, name: str) -> GlobalTag:
        """The tag ``name``, locked until the end of the transaction ``conn`` (FOR UPDATE)."""
        row = conn.execute(
            sa.select(schema.global_tag).where(schema.global_tag.c.name == name).with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownTagError(name)
        return self._global_tag(row)

    @staticmethod
    def _global_tag(row: Any, iov_count: int = 0) -> GlobalTag:
        return GlobalTag(
            tag_id=row.id,
            name=row.name,
            state=TagState(row.state),
            description=row.description,
            created_at=row.created_at,
            updated_at=row.updated_at,
            iov_count=iov_count,
        )

    # -- global tags ----------------------------------------------------------------------

    def create_tag(self, name: str, description: str = "") -> GlobalTag:
        """Create an empty OPEN global tag. Raises TagExistsError if the name is taken."""
        if not isinstance(name, str) or not TAG_NAME_PATTERN.match(name):
            raise InvalidTagNameError(
                f"global tag name {name!r} is invalid: use up to 128 letters, digits, '_', '.', '-', "
                "starting with a letter or digit (e.g. staging_prompt_e0026_b0003)"
            )
        now = utc_now()
        try:
            with self.transaction() as conn:
                tag_id = conn.execute(
                    schema.global_tag.insert().values(
                        name=name, state=TagState.OPEN.value, description=description, created_at=now, updated_at=now
                    )
                ).inserted_primary_key[0]
                conn.execute(
                    schema.tag_state_change.insert().values(
                        tag_id=tag_id, from_state=None, to_state=TagState.OPEN.value, reason="created", changed_at=now
                    )
                )
        except sa.exc.IntegrityError as error:
            raise TagExistsError(name) from error
        return self.tag(name)

    def tag(self, name: str) -> GlobalTag:
        """The global tag ``name`` with its number of IoVs. Raises UnknownTagError."""
        for tag in self._tags(sa.select(schema.global_tag).where(schema.global_tag.c.name == name)):
            return tag
        raise UnknownTagError(name)

    def tags(self) -> list[GlobalTag]:
        """All global tags, by name."""
        return self._tags(sa.select(schema.global_tag).order_by(schema.global_tag.c.name))

    def _tags(self, query: sa.Select[Any]) -> list[GlobalTag]:
        counts = (
            sa.select(schema.payload_iov.c.tag_id, sa.func.count().label("iov_count"))
            .group_by(schema.payload_iov.c.tag_id)
            .subquery()
        )
        tag_rows = query.subquery()
        joined = sa.select(tag_rows, sa.func.coalesce(counts.c.iov_count, 0).label("iov_count")).select_from(
            tag_rows.outerjoin(counts, counts.c.tag_id == tag_rows.c.id)
        ).order_by(tag_rows.c.name)
        with self.engine.connect() as conn:
            return [self._global_tag(row, row.iov_count) for row in conn.execute(joined)]

    def set_tag_state(self, name: str, state: TagState | str, *, reason: str = "") -> GlobalTag:
        """Move tag ``name`` to ``state`` if the transition table allows it (TagTransitionError if not)."""
        requested = TagState(state)
        with self.transaction() as conn:
            tag = self.lock_tag(conn, name)
            check_transition(name, tag.state, requested)
            now = utc_now()
            conn.execute(
                schema.global_tag.update()
                .where(schema.global_tag.c.id == tag.tag_id)
                .values(state=requested.value, updated_at=now)
            )
            conn.execute(
                schema.tag_state_change.insert().values(
                    tag_id=tag.tag_id, from_state=tag.state.value, to_state=requested.value, reason=reason, changed_at=now
                )
            )
        return self.tag(name)

    def tag_history(self, name: str) -> list[TagStateChange]:
        """Every state the tag went through, oldest first."""
        tag = self.tag(name)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.tag_state_change)
                .where(schema.tag_state_change.c.tag_id == tag.tag_id)
                .order_by(schema.tag_state_change.c.id)
            )
            return [
                TagStateChange(
                    from_state=TagState(row.from_state) if row.from_state else None,
                    to_state=TagState(row.to_state),
                    reason=row.reason,
                    changed_at=row.changed_at,
                )
                for row in rows
            ]

    # -- tag content ----------------------------------------------------------------------

    def entries_in(self, conn: Connection, tag: GlobalTag) -> list[TagEntry]:
        """The (payload, IoV) entries of ``tag`` read through ``conn``, by name then IoV."""
        query = (
            sa.select(
                schema.payload_iov.c.id.label("iov_id"),
                schema.payload_iov.c.first_exp,
                schema.payload_iov.c.first_run,
                schema.payload_iov.c.final_exp,
                schema.payload_iov.c.final_run,
                schema.payload,
            )
            .select_from(schema.payload_iov.join(schema.payload, schema.payload.c.id == schema.payload_iov.c.payload_id))
            .where(schema.payload_iov.c.tag_id == tag.tag_id)
        )
        entries = [
            TagEntry(iov_id=row.iov_id, tag=tag.name, payload=_stored_payload(row), iov=_iov_of(row))
            for row in conn.execute(query)
        ]
        return sorted(entries, key=_entry_sort_key)

    def tag_entries(self, name: str) -> list[TagEntry]:
        """The content of tag ``name`` whatever its state (for inspection and export)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schema.global_tag).where(schema.global_tag.c.name == name)).one_or_none()
            if row is None:
                raise UnknownTagError(name)
            return self.entries_in(conn, self._global_tag(row))

    def entries_for_processing(self, name: str) -> list[TagEntry]:
        """The content of tag ``name`` for processing; refuses OPEN and INVALID tags (TagNotUsableError)."""
        tag = self.tag(name)
        check_usable_for_processing(name, tag.state)
        return self.tag_entries(name)

    def find_payload(self, tag: str, name: str, run: ExpRun) -> TagEntry | None:
        """The entry of payload ``name`` valid for ``run`` in ``tag`` (highest revision if several), or None.

        No state check: a downstream calibration reads the upstream payloads of its bucket
        from the staging tag while that tag is still OPEN.
        """
        matching = [entry for entry in self.tag_entries(tag) if entry.name == name and entry.iov.contains(run)]
        return max(matching, key=lambda entry: entry.revision) if matching else None

    # -- payloads -------------------------------------------------------------------------

    def payload(self, name: str, revision: int) -> StoredPayload:
        """The stored payload (name, revision). Raises UnknownPayloadError."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.payload).where(schema.payload.c.name == name, schema.payload.c.revision == revision)
            ).one_or_none()
        if row is None:
            raise UnknownPayloadError(name, revision)
        return _stored_payload(row)

    def payload_revisions(self, name: str) -> list[StoredPayload]:
        """All revisions of payload ``name``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.payload).where(schema.payload.c.name == name).order_by(schema.payload.c.revision)
            )
            return [_stored_payload(row) for row in rows]

    def payload_path(self, payload: StoredPayload, *, verify: bool = True) -> Path:
        """Absolute path of the payload's file; with ``verify`` its md5 is checked against the record."""
        path = self.payload_dir / payload.file_name
        if not path.is_file():
            raise PayloadFileMissingError(payload.name, payload.revision, str(path))
        if verify:
            found = file_md5(path)
            if found != payload.checksum:
                raise PayloadChecksumError(payload.name, payload.revision, str(path), payload.checksum, found)
        return path

    def read_payload(self, name: str, revision: int) -> PayloadConstants:
        """The constants of payload (name, revision), after verifying the file's md5."""
        return self.read_payload_with_metadata(name, revision)[0]

    def read_payload_with_metadata(self, name: str, revision: int) -> tuple[PayloadConstants, dict[str, Any]]:
        """The constants and the file's metadata (name, revision, produced IoV, attributes)."""
        stored = self.payload(name, revision)
        return read_payload_file(self.payload_path(stored, verify=True))

    def add_payloads(
        self,
        tag: str,
        payloads: Sequence[NewPayload],
        *,
        replace_overlapping: bool = False,
        created_by: str = "",
        step_hook: Callable[[str], None] | None = None,
    ) -> list[StoredPayload]:
        """Store a calibration's payloads as new revisions and add their IoVs to the OPEN tag ``tag``,
        all or nothing.

        Each payload gets the next revision of its name. IoVs overlapping IoVs of the same name
        already in the tag are refused (OverlappingIoVError) unless ``replace_overlapping``, in
        which case the old IoVs are cut back or removed from the tag (their payloads stay stored):
        that is how a re-materialised calibration supersedes its previous output.

        ``step_hook`` is called with each name of ADD_PAYLOADS_STEPS as the write progresses
        (tests use it to fail or kill the writer between steps).
        """
        payloads = list(payloads)
        self._check_new_payloads(payloads)
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            placed: list[Path] = []
            try:
                return self._add_payloads_once(tag, payloads, replace_overlapping, created_by, step_hook, placed)
            except sa.exc.IntegrityError:
                # Another writer took the same revision of a shared payload name: retry with the next one.
                self._discard_unreferenced(placed)
                if attempt == _WRITE_ATTEMPTS:
                    raise
            except BaseException:
                self._discard_unreferenced(placed)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _check_new_payloads(payloads: list[NewPayload]) -> None:
        if not payloads:
            raise InvalidPayloadError("add_payloads needs at least one payload; a calibration that produced nothing should fail instead")
        by_name: dict[str, list[IoV]] = {}
        for new in payloads:
            validate_payload_name(new.name)
            if not isinstance(new.constants, PayloadConstants):
                raise InvalidPayloadError(f"payload {new.name}: constants must be a PayloadConstants")
            if not isinstance(new.iov, IoV) or new.iov.is_empty:
                raise InvalidPayloadError(f"payload {new.name}: IoV {new.iov} is empty; give the runs it is valid for")
            by_name.setdefault(new.name, []).append(new.iov)
        for name, iovs in by_name.items():
            overlaps = find_overlaps(iovs)
            if overlaps:
                pairs = ", ".join(f"{first} and {second}" for first, second in overlaps)
                raise InvalidPayloadError(
                    f"payload {name}: the IoVs of one calibration overlap ({pairs}); each run may have one payload"
                )

    def _add_payloads_once(
        self,
        tag_name: str,
        payloads: list[NewPayload],
        replace_overlapping: bool,
        created_by: str,
        step_hook: Callable[[str], None] | None,
        placed: list[Path],
    ) -> list[StoredPayload]:
        def step(name: str) -> None:
            if step_hook is not None:
                step_hook(name)

        staging_dir = self.payload_dir / STAGING_DIR_NAME
        staging_dir.mkdir(parents=True, exist_ok=True)
        stored: list[StoredPayload] = []
        with self.transaction() as conn:
            tag = self.lock_tag(conn, tag_name)
            check_content_editable(tag_name, tag.state)
            self._lock_payload_names(conn, {new.name for new in payloads})
            superseded = self._superseded_entries(conn, tag, payloads, replace_overlapping)
            for new in payloads:
                revision = self._next_revision(conn, new.name)
                now = utc_now()
                temporary = staging_dir / f"{uuid.uuid4().hex}.root"
                try:
                    write_payload_file(
                        temporary,
                        new.constants,
                        {
                            "payload": new.name,
                            "revision": revision,
                            "iov": str(new.iov),
                            "created_by": created_by,
                            "created_at": now.isoformat(),
                        },
                    )
                    step("payload_file_written")
                    checksum = file_md5(temporary)
                    size_bytes = temporary.stat().st_size
                    file_name = f"{new.name}/rev_{revision}_{checksum}.root"
                    final = self.payload_dir / file_name
                    final.parent.mkdir(exist_ok=True)
                    # link, not rename: it refuses to replace an existing file.
                    os.link(temporary, final)
                    placed.append(final)
                finally:
                    temporary.unlink(missing_ok=True)
                _fsync_directory(final.parent)
                step("payload_file_placed")
                payload_id = conn.execute(
                    schema.payload.insert().values(
                        name=new.name,
                        revision=revision,
                        checksum=checksum,
                        file_name=file_name,
                        size_bytes=size_bytes,
                        channels=len(new.constants),
                        created_by=created_by,
                        created_at=now,
                        **iov_columns(new.iov, "produced_"),
                    )
                ).inserted_primary_key[0]
                conn.execute(
                    schema.payload_iov.insert().values(
                        tag_id=tag.tag_id, payload_id=payload_id, created_at=now, **iov_columns(new.iov)
                    )
                )
                step("payload_rows_inserted")
                stored.append(
                    StoredPayload(
                        payload_id=payload_id,
                        name=new.name,
                        revision=revision,
                        checksum=checksum,
                        file_name=file_name,
                        size_bytes=size_bytes,
                        channels=len(new.constants),
                        produced_iov=new.iov,
                        created_by=created_by,
                        created_at=now,
                    )
                )
            self._cut_back(conn, tag, superseded, payloads)
            self._touch(conn, tag)
            step("before_commit")
        return stored

    def _superseded_entries(
        self, conn: Connection, tag: GlobalTag, payloads: list[NewPayload], replace_overlapping: bool
    ) -> list[TagEntry]:
        new_names = {new.name for new in payloads}
        existing = [entry for entry in self.entries_in(conn, tag) if entry.name in new_names]
        overlapping = [
            entry
            for entry in existing
            if any(new.name == entry.name and new.iov.overlaps(entry.iov) for new in payloads)
        ]
        if overlapping and not replace_overlapping:
            conflicts = [
                f"{entry.name} rev {entry.revision} {entry.iov} vs new {new.iov}"
                for entry in overlapping
                for new in payloads
                if new.name == entry.name and new.iov.overlaps(entry.iov)
            ]
            raise OverlappingIoVError(tag.name, conflicts)
        return overlapping

    def _cut_back(self, conn: Connection, tag: GlobalTag, superseded: list[TagEntry], payloads: list[NewPayload]) -> None:
        """Replace each superseded entry by what remains of its IoV outside the new IoVs."""
        now = utc_now()
        for entry in superseded:
            remaining = [entry.iov]
            for new in payloads:
                if new.name == entry.name:
                    remaining = [piece for part in remaining for piece in part.subtract(new.iov)]
            conn.execute(schema.payload_iov.delete().where(schema.payload_iov.c.id == entry.iov_id))
            for piece in remaining:
                conn.execute(
                    schema.payload_iov.insert().values(
                        tag_id=tag.tag_id, payload_id=entry.payload.payload_id, created_at=now, **iov_columns(piece)
                    )
                )

    def _lock_payload_names(self, conn: Connection, names: set[str]) -> None:
        """Serialise revision allocation per payload name until the transaction ends.

        PostgreSQL only (SQLite's BEGIN IMMEDIATE already serialises writers). Without it two
        calibrations writing the same name into different tags would both pick max+1 and one
        would fail on the unique constraint. Sorted order: two writers never wait on each other
        crosswise.
        """
        if self.engine.dialect.name != "postgresql":
            return
        for name in sorted(names):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"b2cal_cdb_payload:{name}"))))

    @staticmethod
    def _next_revision(conn: Connection, name: str) -> int:
        # Includes rows inserted earlier in this transaction; the unique constraint catches
        # a concurrent writer of the same name (add_payloads then retries).
        latest = conn.execute(
            sa.select(sa.func.max(schema.payload.c.revision)).where(schema.payload.c.name == name)
        ).scalar_one()
        return 1 if latest is None else latest + 1

    @staticmethod
    def _touch(conn: Connection, tag: GlobalTag) -> None:
        conn.execute(schema.global_tag.update().where(schema.global_tag.c.id == tag.tag_id).values(updated_at=utc_now()))

    def _referenced_file_names(self, file_names: Iterable[str] | None = None) -> set[str]:
        query = sa.select(schema.payload.c.file_name)
        if file_names is not None:
            query = query.where(schema.payload.c.file_name.in_(list(file_names)))
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def _discard_unreferenced(self, placed: list[Path]) -> None:
        """Delete files placed by a write that did not commit.

        Checked against the database rather than assumed: if the COMMIT reached the server but
        its acknowledgement was lost, the rows exist and their files must stay.
        """
        if not placed:
            return
        try:
            referenced = self._referenced_file_names(str(path.relative_to(self.payload_dir)) for path in placed)
        except sa.exc.SQLAlchemyError:
            return  # database unreachable: leave the files to remove_orphan_files
        for path in placed:
            if str(path.relative_to(self.payload_dir)) not in referenced:
                path.unlink(missing_ok=True)

    def remove_orphan_files(self, *, older_than_seconds: float = 3600.0) -> list[Path]:
        """Delete payload-directory files no payload row references, left by killed writers.

        Only files older than ``older_than_seconds`` are touched, so a writer that placed its
        files and has not committed yet is never robbed of them. Returns the removed paths.
        """
        referenced = self._referenced_file_names()
        cutoff = utc_now().timestamp() - older_than_seconds
        removed: list[Path] = []
        candidates = set(self.payload_dir.glob("*/*.root")) | set(self.payload_dir.glob(f"{STAGING_DIR_NAME}/*"))
        for path in sorted(candidates):
            relative = str(path.relative_to(self.payload_dir))
            if relative in referenced or not path.is_file():
                continue
            if path.stat().st_mtime > cutoff:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed


def describe_entry(entry: TagEntry) -> str:
    """``BeamSpot rev 3 26,12,-1,-1`` for messages."""
    return f"{entry.name} rev {entry.revision} {entry.iov}"

