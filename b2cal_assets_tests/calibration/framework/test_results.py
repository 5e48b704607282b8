"""Algorithm result codes and the Algorithm protocol."""

from __future__ import annotations

import pytest

from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.conditions.iov import IoV
from b2cal_assets_tests.calibration.framework.toys import EventCountAlgorithm


def test_ok_and_iterate_count_as_success_like_caf() -> None:
    assert {code for code in AlgorithmResult if code.is_success} == {AlgorithmResult.ok, AlgorithmResult.iterate}


def test_result_codes_use_the_caf_names() -> None:
    assert [code.value for code in AlgorithmResult] == ["ok", "not_enough_data", "iterate", "failure"]


def test_outcome_defaults_to_no_payloads_and_the_empty_iov() -> None:
    outcome = AlgorithmOutcome(AlgorithmResult.not_enough_data, message="12 hits < 100")
    assert outcome.payloads == {} and outcome.iov == IoV.empty()


def test_outcome_result_must_be_a_result_code() -> None:
    with pytest.raises(TypeError, match="must be an AlgorithmResult"):
        AlgorithmOutcome("ok")  # type: ignore[arg-type]


def test_a_plain_class_with_execute_is_an_algorithm() -> None:
    assert isinstance(EventCountAlgorithm({}, 1), Algorithm)
