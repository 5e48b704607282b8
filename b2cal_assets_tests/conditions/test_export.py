"""Export of a global tag as a basf2 local database."""

from __future__ import annotations

import pytest

from b2cal_assets.conditions.errors import LocalDatabaseExportError, PayloadChecksumError
from b2cal_assets.conditions.export import export_local_database
from b2cal_assets.conditions.payloads import file_md5, read_payload_file
from b2cal_assets.conditions.tags import TagState
from b2cal_assets_tests.conditions.helpers import make_constants, make_tag, new_payload


def _fill(store):
    make_tag(
        store,
        "staging",
        TagState.OPEN,
        [new_payload("BeamSpot", "26,12,26,20", seed=1), new_payload("BeamSpot", "26,21,-1,-1", seed=2),
         new_payload("CDCTimeZeros", "26,12,-1,-1", seed=3)],
    )


def test_export_writes_database_txt_lines_and_dbstore_files(store, tmp_path):
    _fill(store)
    result = export_local_database(store, "staging", tmp_path / "localdb")
    assert (tmp_path / "localdb" / "database.txt").read_text() == (
        "dbstore/BeamSpot 1 26,12,26,20\ndbstore/BeamSpot 2 26,21,-1,-1\ndbstore/CDCTimeZeros 1 26,12,-1,-1\n"
    )
    assert sorted(path.name for path in (tmp_path / "localdb").iterdir()) == [
        "database.txt",
        "dbstore_BeamSpot_rev_1.root",
        "dbstore_BeamSpot_rev_2.root",
        "dbstore_CDCTimeZeros_rev_1.root",
    ]
    assert result.tag_state is TagState.OPEN and len(result.lines) == 3


def test_exported_files_are_byte_identical_to_the_stored_payloads(store, tmp_path):
    _fill(store)
    export_local_database(store, "staging", tmp_path / "localdb")
    stored = store.payload("CDCTimeZeros", 1)
    exported = tmp_path / "localdb" / "dbstore_CDCTimeZeros_rev_1.root"
    assert file_md5(exported) == stored.checksum
    assert read_payload_file(exported)[0].equals(make_constants(seed=3))


def test_a_revision_used_by_several_iovs_is_written_once(store, tmp_path):
    make_tag(store, "running", TagState.OPEN, [new_payload("BeamSpot", "0,0,-1,-1")])
    store.add_payloads("running", [new_payload("BeamSpot", "27,0,-1,-1")], replace_overlapping=True)
    export = export_local_database(store, "running", tmp_path / "out")
    assert export.lines == ("dbstore/BeamSpot 1 0,0,26,-1", "dbstore/BeamSpot 2 27,0,-1,-1")
    assert len(export.files) == 2


def test_export_refuses_an_existing_local_database_unless_overwrite(store, tmp_path):
    _fill(store)
    export_local_database(store, "staging", tmp_path / "out")
    with pytest.raises(LocalDatabaseExportError, match="already exists"):
        export_local_database(store, "staging", tmp_path / "out")
    export_local_database(store, "staging", tmp_path / "out", overwrite=True)


def test_export_refuses_a_corrupted_payload_and_writes_no_database_txt(store, tmp_path):
    _fill(store)
    path = store.payload_dir / store.payload("CDCTimeZeros", 1).file_name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PayloadChecksumError):
        export_local_database(store, "staging", tmp_path / "out")
    assert not (tmp_path / "out" / "database.txt").exists()


def test_empty_tag_exports_an_empty_database_txt(store, tmp_path):
    store.create_tag("empty")
    export_local_database(store, "empty", tmp_path / "out")
    assert (tmp_path / "out" / "database.txt").read_text() == ""
