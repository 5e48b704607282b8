from datetime import datetime, timezone

from b2cal_assets.runs.journal import JOURNAL_DIR, append_arrival, read_new_entries, reindex_tree


def _at(day):
    return datetime(2026, 11, day, 12, tzinfo=timezone.utc)


def test_reader_returns_only_new_entries_from_its_offsets(tmp_path):
    for index in range(5):
        append_arrival(tmp_path, f"e0026/4S/r{index:05d}/runinfo.0026.{index:05d}.json", when=_at(1))
    first, _, offsets = read_new_entries(tmp_path, {}, max_entries=3)
    second, _, offsets = read_new_entries(tmp_path, offsets, max_entries=100)
    third, _, _ = read_new_entries(tmp_path, offsets, max_entries=100)
    assert [e.record_path[-10:] for e in first + second] == [f"{i:05d}.json" for i in range(5)]
    assert third == []


def test_a_half_written_line_is_left_for_the_next_read(tmp_path):
    append_arrival(tmp_path, "e0026/4S/r00001/runinfo.0026.00001.json", when=_at(1))
    journal = tmp_path / JOURNAL_DIR / "2026-11-01.log"
    with open(journal, "a") as handle:
        handle.write("2026-11-01T12:00:00+00:00 e0026/4S/r00002/runinfo.00")
    entries, _, offsets = read_new_entries(tmp_path, {}, 100)
    assert len(entries) == 1
    with open(journal, "a") as handle:
        handle.write("26.00002.json\n")
    entries, _, _ = read_new_entries(tmp_path, offsets, 100)
    assert [e.record_path for e in entries] == ["e0026/4S/r00002/runinfo.0026.00002.json"]


def test_reader_moves_on_to_later_days_and_forgets_closed_files(tmp_path):
    for day in range(1, 7):
        append_arrival(tmp_path, f"e0026/4S/r{day:05d}/runinfo.0026.{day:05d}.json", when=_at(day))
    entries, _, offsets = read_new_entries(tmp_path, {}, 100)
    assert len(entries) == 6
    assert sorted(offsets) == ["2026-11-04.log", "2026-11-05.log", "2026-11-06.log"]
    append_arrival(tmp_path, "e0026/4S/r00009/runinfo.0026.00009.json", when=_at(5))  # late writer
    entries, _, _ = read_new_entries(tmp_path, offsets, 100)
    assert [e.record_path[-10:] for e in entries] == ["00009.json"]


def test_malformed_lines_are_reported_not_fatal(tmp_path):
    (tmp_path / JOURNAL_DIR).mkdir()
    (tmp_path / JOURNAL_DIR / "2026-11-01.log").write_bytes(b"garbage\n\xff\xfe\n2026 e0026/4S/r00001/runinfo.0026.00001.json\n")
    entries, malformed, _ = read_new_entries(tmp_path, {}, 100)
    assert len(entries) == 1 and len(malformed) == 2


def test_reindex_journals_records_the_journal_lacks(generated_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(generated_root, root)
    shutil.rmtree(root / JOURNAL_DIR)
    assert len(reindex_tree(root)) == 3
    assert reindex_tree(root) == []
