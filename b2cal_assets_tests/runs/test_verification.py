import os

from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.records import read_record
from b2cal_assets.runs.verification import verify_run


def _record(root, run=1):
    return read_record(root / f"e0026/4S/r{run:05d}/runinfo.0026.{run:05d}.json")


def test_clean_run_passes_with_event_counts(incoming):
    result = verify_run(incoming, _record(incoming))
    assert result.passed, result.problems
    assert result.events_per_stream == {"hlt_mumu_2trk": 450, "hlt_bhabha": 600, "hlt_hadron": 450}


def test_corrupt_truncated_and_missing_files_name_file_and_check(tmp_path):
    for fault, run in (("corrupt-file", 1), ("truncated-file", 2), ("missing-file", 3)):
        generate(tmp_path, first_run=run, runs=1, events_per_run=600, faults=[f"{fault}:{run}"])
    checks = {run: {p.check for p in verify_run(tmp_path, _record(tmp_path, run)).problems} for run in (1, 2, 3)}
    assert "adler32" in checks[1]
    assert {"size", "adler32"} <= checks[2]
    assert checks[3] == {"exists"}
    reason = verify_run(tmp_path, _record(tmp_path, 2)).reason()
    assert "cdst.physics.0026.00002.HLT1" in reason and "size check failed" in reason and "re-transfer" in reason


def test_non_root_file_and_unreadable_file_are_problems_not_crashes(incoming):
    record = _record(incoming)
    (incoming / record.files[0].path).write_bytes(b"this is a log file, not ROOT\n")
    if os.geteuid() != 0:  # root can read anything; the non-ROOT case still applies
        os.chmod(incoming / record.files[1].path, 0)
    result = verify_run(incoming, record)
    assert not result.passed
    assert any(p.check == "root-format" and "not a ROOT file" in p.detail for p in result.problems)


def test_file_with_wrong_event_count_in_record_fails_events_check(incoming):
    import dataclasses

    record = _record(incoming)
    wrong = dataclasses.replace(record, files=(dataclasses.replace(record.files[0], events=record.files[0].events + 1),) + record.files[1:])
    problems = verify_run(incoming, wrong).problems
    assert [p.check for p in problems] == ["events"]
