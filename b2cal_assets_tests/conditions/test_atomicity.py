"""A calibration's write is all or nothing: failures and SIGKILL between steps leave no payload,
no IoV and (after orphan collection) no file behind."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from b2cal_assets.conditions import schema
from b2cal_assets.conditions.store import ADD_PAYLOADS_STEPS, ConditionsStore
from b2cal_assets_tests.conditions.helpers import entry_rows, new_payload


class InjectedFailure(RuntimeError):
    pass


def _row_counts(store: ConditionsStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        payloads = conn.execute(sa.select(sa.func.count()).select_from(schema.payload)).scalar_one()
        iovs = conn.execute(sa.select(sa.func.count()).select_from(schema.payload_iov)).scalar_one()
    return payloads, iovs


def _payload_files(store: ConditionsStore) -> list[Path]:
    return sorted(path for path in store.payload_dir.rglob("*") if path.is_file())


def _calibration_output() -> list:
    # Two payloads, so a failure after the first one proves the first is rolled back too.
    return [new_payload("BeamSpot", "26,12,-1,-1", seed=1), new_payload("CollisionBoostVector", "26,12,-1,-1", seed=2)]


# Each step of the first payload, and of the second one (before_commit happens once per write).
FAILURE_POINTS = [(step, 1) for step in ADD_PAYLOADS_STEPS] + [
    (step, 2) for step in ADD_PAYLOADS_STEPS if step != "before_commit"
]


@pytest.mark.parametrize(("failing_step", "occurrence"), FAILURE_POINTS)
def test_failure_mid_write_leaves_no_payload_no_iov_and_no_file(store, failing_step, occurrence):
    store.create_tag("staging")
    seen: list[str] = []

    def fail_at(step: str) -> None:
        seen.append(step)
        if step == failing_step and seen.count(step) == occurrence:
            raise InjectedFailure(step)

    with pytest.raises(InjectedFailure):
        store.add_payloads("staging", _calibration_output(), step_hook=fail_at)
    assert _row_counts(store) == (0, 0)
    assert entry_rows(store, "staging") == []
    assert _payload_files(store) == []
    # The next attempt starts again at revision 1: the failed one left no trace.
    stored = store.add_payloads("staging", _calibration_output())
    assert [(p.name, p.revision) for p in stored] == [("BeamSpot", 1), ("CollisionBoostVector", 1)]


def test_failure_in_a_rematerialisation_keeps_the_previous_revision_in_the_tag(store):
    store.create_tag("staging")
    store.add_payloads("staging", _calibration_output())
    before = _payload_files(store)

    def fail_before_commit(step: str) -> None:
        if step == "before_commit":
            raise InjectedFailure(step)

    with pytest.raises(InjectedFailure):
        store.add_payloads("staging", _calibration_output(), replace_overlapping=True, step_hook=fail_before_commit)
    assert entry_rows(store, "staging") == [("BeamSpot", 1, "26,12,-1,-1"), ("CollisionBoostVector", 1, "26,12,-1,-1")]
    assert _payload_files(store) == before
    assert store.read_payload("BeamSpot", 1) is not None


_WRITER = textwrap.dedent(
    """
    import sys, time
    from b2cal_assets.database import platform_database
    from b2cal_assets_tests.conditions.helpers import new_payload

    database_url, payload_dir, stop_step, stop_occurrence = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = platform_database(database_url).conditions(payload_dir)
    seen = []

    def pause_at(step):
        seen.append(step)
        if step == stop_step and seen.count(step) == stop_occurrence:
            print("PAUSED", step, flush=True)
            time.sleep(120)  # the test kills us here

    store.add_payloads(
        "staging",
        [new_payload("BeamSpot", "26,12,-1,-1", seed=1), new_payload("CollisionBoostVector", "26,12,-1,-1", seed=2)],
        step_hook=pause_at,
    )
    print("COMMITTED", flush=True)
    """
)


def _run_writer_and_kill(store: ConditionsStore, step: str, occurrence: int) -> None:
    repo_root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, store.database_url, str(store.payload_dir), step, str(occurrence)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=repo_root,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        assert line.strip() == f"PAUSED {step}", f"writer did not pause: {line!r} {process.stderr.read() if not ready else ''}"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [(step, 1) for step in ADD_PAYLOADS_STEPS] + [("payload_rows_inserted", 2)],
)
def test_sigkill_between_steps_leaves_no_payload_or_iov_and_orphans_are_collected(store, step, occurrence):
    store.create_tag("staging")
    _run_writer_and_kill(store, step, occurrence)

    assert _row_counts(store) == (0, 0)
    assert entry_rows(store, "staging") == []
    # A recent orphan is kept (it could belong to a writer about to commit) ...
    assert store.remove_orphan_files(older_than_seconds=3600) == []
    # ... and collected once older than the grace period.
    store.remove_orphan_files(older_than_seconds=0)
    assert _payload_files(store) == []
    # The database is not locked by the dead writer, and revisions restart where committed ones end.
    stored = store.add_payloads("staging", _calibration_output())
    assert [p.revision for p in stored] == [1, 1]


def test_orphan_collection_never_removes_committed_payload_files(store):
    store.create_tag("staging")
    store.add_payloads("staging", _calibration_output())
    files = _payload_files(store)
    stray = store.payload_dir / ".staging" / "left-by-a-killed-writer.root"
    stray.write_bytes(b"partial")
    assert store.remove_orphan_files(older_than_seconds=0) == [stray]
    assert _payload_files(store) == files
    assert store.read_payload("BeamSpot", 1) is not None
