"""Payload files: constants round trip through ROOT files, md5, validation of the constants."""

from __future__ import annotations

import json

import numpy as np
import pytest
import uproot

from b2cal_assets.conditions.errors import InvalidPayloadError
from b2cal_assets.conditions.payloads import (
    PayloadConstants,
    file_md5,
    read_payload_file,
    validate_payload_name,
    write_payload_file,
)
from b2cal_assets_tests.conditions.helpers import make_constants


def test_payload_file_round_trip_keeps_values_errors_channels_status_and_attributes(tmp_path):
    constants = make_constants(8736, seed=3)
    path = tmp_path / "payload.root"
    write_payload_file(path, constants, {"payload": "ECLCrystalEnergy", "revision": 1})
    read, metadata = read_payload_file(path)
    assert read.equals(constants)
    assert np.isnan(read.value[3]) and read.status[3] == 1
    assert metadata["payload"] == "ECLCrystalEnergy" and metadata["attributes"] == {"unit": "GeV", "seed": 3}


def test_payload_file_is_a_plain_ttree_readable_without_b2cal(tmp_path):
    path = tmp_path / "payload.root"
    write_payload_file(path, make_constants(5), {"payload": "BeamSpot"})
    with uproot.open(path) as root_file:
        assert root_file.classname_of("constants") == "TTree"
        assert set(root_file["constants"].keys()) == {"channel", "value", "error", "status"}
        assert json.loads(str(root_file["metadata"]))["payload"] == "BeamSpot"


def test_md5_changes_when_one_byte_changes(tmp_path):
    path = tmp_path / "payload.root"
    write_payload_file(path, make_constants(5), {})
    before = file_md5(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert file_md5(path) != before and len(before) == 32


def test_default_channels_are_numbered_from_zero_and_all_good():
    constants = PayloadConstants(value=[1.0, 2.0], error=[0.1, 0.2])
    assert constants.channel.tolist() == [0, 1] and constants.status.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": [1.0, 2.0], "error": [0.1]}, "equal length"),
        ({"value": [[1.0]], "error": [[0.1]]}, "1-D"),
        ({"value": [1.0], "error": [-0.1]}, "negative uncertainty"),
        ({"value": [1.0, 2.0], "error": [0.1, 0.1], "channel": [1, 1]}, "unique"),
        ({"value": [1.0], "error": [0.1], "status": [0, 0]}, "one entry per channel"),
        ({"value": [1.0], "error": [0.1], "channel": [0.5]}, "integers"),
        ({"value": [1.0], "error": [0.1], "attributes": {"bad": object()}}, "JSON"),
    ],
)
def test_invalid_constants_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(InvalidPayloadError, match=message):
        PayloadConstants(**kwargs)


@pytest.mark.parametrize("name", ["", "1BeamSpot", "Beam Spot", "dbstore/BeamSpot", "a" * 129, "Beam-Spot"])
def test_payload_names_that_break_paths_or_database_txt_are_refused(name):
    with pytest.raises(InvalidPayloadError, match="payload name"):
        validate_payload_name(name)


def test_basf2_style_payload_names_are_accepted():
    for name in ("BeamSpot", "CollisionBoostVector", "ECLCrystalEnergy", "CDCTimeZeros", "a_1"):
        validate_payload_name(name)
