import json

import pytest

from b2cal_assets.run_identity import ExpRun, InvalidRunError
from b2cal_assets.runs.naming import record_path, skim_file_path
from b2cal_assets.runs.records import RunRecordError, parse_record, read_record


def _valid(incoming):
    return json.loads(next(incoming.rglob("runinfo.*.json")).read_text())


def test_run_key_round_trip_and_rejects_bad_keys():
    assert str(ExpRun(26, 12)) == "e0026.r00012"
    assert ExpRun.parse("e0026.r00012") == ExpRun(26, 12)
    for bad in ("e26.r12", "e0026_r00012", "", "e0026.r000123"):
        with pytest.raises(InvalidRunError):
            ExpRun.parse(bad)


def test_paths_follow_belle2_naming():
    key = ExpRun(26, 12)
    assert str(skim_file_path(key, "4S", "hlt_mumu_2trk", 0)) == (
        "e0026/4S/r00012/skim/hlt_mumu_2trk/cdst/sub00/cdst.physics.0026.00012.HLT1.f00000.root"
    )
    assert str(record_path(key, "4S")) == "e0026/4S/r00012/runinfo.0026.00012.json"


def test_record_round_trips_through_json(generated_root):
    path = next(generated_root.rglob("runinfo.*.json"))
    record = read_record(path)
    assert parse_record(record.to_json()) == record
    assert record.digest() == parse_record(record.to_json()).digest()


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.pop("exp"), "field 'exp' is missing"),
        (lambda d: d.update(run="12"), "field 'run' is str"),
        (lambda d: d.update(exp=True), "field 'exp' is bool"),
        (lambda d: d.update(beam_energy="5S"), "beam_energy '5S' is not one of"),
        (lambda d: d.update(start_time="yesterday"), "start_time 'yesterday' is not an ISO 8601 time"),
        (lambda d: d.update(files=[]), "the file list is empty"),
        (lambda d: d["files"][0].update(adler32="xyz"), "adler32 'xyz' is not 8 hex digits"),
        (lambda d: d["files"][0].update(path="/etc/passwd"), "must be relative"),
        (lambda d: d["files"][0].update(path="e0026/../../x.root"), "without '..'"),
        (lambda d: d.update(integrated_luminosity_pb=-1), "negative"),
        (lambda d: d.update(schema="other/2"), "schema 'other/2'"),
    ],
)
def test_invalid_records_name_the_field_at_fault(generated_root, mutate, message):
    data = _valid(generated_root)
    mutate(data)
    with pytest.raises(RunRecordError, match=message.replace("(", r"\(")):
        parse_record(json.dumps(data))


def test_garbled_json_is_a_record_error_with_position():
    with pytest.raises(RunRecordError, match="not valid JSON"):
        parse_record('{"exp": 26,')
    with pytest.raises(RunRecordError, match="expected a JSON object"):
        parse_record("[1, 2]")
