"""Payload storage: revisions, md5 verification on read, IoVs in tags, supersession."""

from __future__ import annotations

import pytest

from b2cal_assets.conditions.errors import (
    InvalidPayloadError,
    OverlappingIoVError,
    PayloadChecksumError,
    PayloadFileMissingError,
    UnknownPayloadError,
)
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets.conditions.payloads import file_md5
from b2cal_assets.database import platform_database
from b2cal_assets_tests.conditions.helpers import entry_rows, make_constants, new_payload


def test_stored_payload_reads_back_identical_with_its_md5_recorded(store):
    store.create_tag("staging")
    (stored,) = store.add_payloads("staging", [new_payload("ECLCrystalEnergy", "26,12,-1,-1", seed=5, channels=8736)])
    path = store.payload_path(stored)
    assert stored.checksum == file_md5(path) and stored.channels == 8736
    assert store.read_payload("ECLCrystalEnergy", 1).equals(make_constants(8736, seed=5))
    constants, metadata = store.read_payload_with_metadata("ECLCrystalEnergy", 1)
    assert metadata["revision"] == 1 and metadata["iov"] == "26,12,-1,-1"
    assert store.payload("ECLCrystalEnergy", 1).produced_iov == IoV(26, 12, -1, -1)


def test_revisions_increase_per_name_and_every_revision_stays_readable(store):
    store.create_tag("a")
    store.create_tag("b")
    store.add_payloads("a", [new_payload("BeamSpot", "26,0,-1,-1", seed=1), new_payload("CDCTimeZeros", "26,0,-1,-1")])
    store.add_payloads("b", [new_payload("BeamSpot", "26,0,-1,-1", seed=2)])
    store.add_payloads("a", [new_payload("BeamSpot", "26,0,-1,-1", seed=3)], replace_overlapping=True)
    assert [p.revision for p in store.payload_revisions("BeamSpot")] == [1, 2, 3]
    assert [p.revision for p in store.payload_revisions("CDCTimeZeros")] == [1]
    for revision, seed in ((1, 1), (2, 2), (3, 3)):
        assert store.read_payload("BeamSpot", revision).equals(make_constants(seed=seed))
    files = {p.file_name for p in store.payload_revisions("BeamSpot")}
    assert len(files) == 3  # nothing overwritten


def test_rematerialisation_writes_a_new_revision_that_supersedes_the_old_in_the_tag(store):
    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,12,-1,-1", seed=1)])
    store.add_payloads("staging", [new_payload("BeamSpot", "26,12,-1,-1", seed=2)], replace_overlapping=True)
    assert entry_rows(store, "staging") == [("BeamSpot", 2, "26,12,-1,-1")]
    assert store.read_payload("BeamSpot", 1).equals(make_constants(seed=1))  # old revision still stored


def test_partial_supersession_cuts_the_old_iov_back_across_an_experiment_boundary(store):
    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,0,-1,-1")])
    store.add_payloads("staging", [new_payload("BeamSpot", "27,0,-1,-1")], replace_overlapping=True)
    assert entry_rows(store, "staging") == [("BeamSpot", 1, "26,0,26,-1"), ("BeamSpot", 2, "27,0,-1,-1")]


def test_overlapping_iovs_are_refused_without_replace_and_nothing_is_stored(store):
    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,0,-1,-1")])
    with pytest.raises(OverlappingIoVError, match=r"BeamSpot rev 1 26,0,-1,-1 vs new 26,50,26,60.*replace_overlapping"):
        store.add_payloads("staging", [new_payload("BeamSpot", "26,50,26,60")])
    assert [p.revision for p in store.payload_revisions("BeamSpot")] == [1]


def test_non_overlapping_iovs_of_the_same_name_coexist(store):
    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,0,26,10"), new_payload("BeamSpot", "26,11,-1,-1")])
    store.add_payloads("staging", [new_payload("CDCTimeZeros", "26,0,-1,-1")])
    assert entry_rows(store, "staging") == [
        ("BeamSpot", 1, "26,0,26,10"),
        ("BeamSpot", 2, "26,11,-1,-1"),
        ("CDCTimeZeros", 1, "26,0,-1,-1"),
    ]


def test_one_calibration_cannot_give_two_payloads_for_the_same_run(store):
    store.create_tag("staging")
    with pytest.raises(InvalidPayloadError, match="overlap"):
        store.add_payloads("staging", [new_payload("BeamSpot", "26,0,26,10"), new_payload("BeamSpot", "26,5,-1,-1")])


def test_empty_write_and_empty_iov_are_refused(store):
    store.create_tag("staging")
    with pytest.raises(InvalidPayloadError, match="at least one payload"):
        store.add_payloads("staging", [])
    with pytest.raises(InvalidPayloadError, match="empty"):
        store.add_payloads("staging", [new_payload("BeamSpot", "-1,-1,-1,-1")])


def test_reading_a_modified_payload_file_fails_the_md5_check(store):
    store.create_tag("staging")
    (stored,) = store.add_payloads("staging", [new_payload("BeamSpot", "26,0,-1,-1")])
    path = store.payload_dir / stored.file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PayloadChecksumError, match=f"md5 .* != recorded {stored.checksum}"):
        store.read_payload("BeamSpot", 1)


def test_reading_a_payload_whose_file_is_gone_says_so(store):
    store.create_tag("staging")
    (stored,) = store.add_payloads("staging", [new_payload("BeamSpot", "26,0,-1,-1")])
    (store.payload_dir / stored.file_name).unlink()
    with pytest.raises(PayloadFileMissingError, match="is missing"):
        store.read_payload("BeamSpot", 1)


def test_unknown_payload_revision_is_reported(store):
    with pytest.raises(UnknownPayloadError, match="BeamSpot revision 7"):
        store.read_payload("BeamSpot", 7)


def test_find_payload_returns_the_entry_valid_for_a_run(store):
    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,0,26,10"), new_payload("BeamSpot", "26,11,-1,-1")])
    assert store.find_payload("staging", "BeamSpot", ExpRun(26, 10)).revision == 1
    assert store.find_payload("staging", "BeamSpot", ExpRun(27, 3)).revision == 2
    assert store.find_payload("staging", "BeamSpot", ExpRun(25, 3)) is None
    assert store.find_payload("staging", "CDCTimeZeros", ExpRun(26, 3)) is None


def test_tables_are_created_on_first_use_and_reopening_keeps_the_data(store, database_url, tmp_path):

    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,0,-1,-1")])
    reopened = platform_database(database_url).conditions(tmp_path / "payloads")
    assert entry_rows(reopened, "staging") == [("BeamSpot", 1, "26,0,-1,-1")]


def test_concurrent_calibrations_get_distinct_revisions_of_a_shared_payload_name(store):
    from concurrent.futures import ThreadPoolExecutor

    writers = 4
    for index in range(writers):
        store.create_tag(f"staging_{index}")

    def write(index: int) -> int:
        (stored,) = store.add_payloads(f"staging_{index}", [new_payload("BeamSpot", "26,0,-1,-1", seed=index)])
        return stored.revision

    with ThreadPoolExecutor(writers) as pool:
        revisions = sorted(pool.map(write, range(writers)))
    assert revisions == [1, 2, 3, 4]
    for index in range(writers):
        (entry,) = store.tag_entries(f"staging_{index}")
        assert store.read_payload("BeamSpot", entry.revision).equals(make_constants(seed=index))
