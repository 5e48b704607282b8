"""The pure steps of one bucket's calibration: run choice, collector outputs, IoV, failure text, summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from b2cal_assets.calibration.framework.bucket_calibration import (
    MissingCollectorOutputError,
    NoRunPassesFiltersError,
    choose_runs,
    collector_output_files,
    describe_failure,
    payload_summary,
    payload_table,
    prompt_iov,
)
from b2cal_assets.calibration.framework.runner import run_calibration
from b2cal_assets.calibration.framework.strategies import PayloadIoV, SingleIOV
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets_tests.calibration.framework.toys import EventCountAlgorithm, make_settings


@dataclass(frozen=True)
class Run:
    exp: int = 26
    run: int = 1
    run_type: str = "physics"
    beam_energy: str = "4S"
    magnet: str = "On"
    data_quality: str = "Good"
    data_tags: Sequence[str] = ("mumu_tight_or_highm_calib",)
    quarantined: bool = False


@dataclass(frozen=True)
class Stored:
    name: str
    revision: int
    checksum: str


TWO_INPUTS = make_settings(
    input_data_names=["hlt_mumu_2trk", "hlt_bhabha"],
    input_data_filters={"hlt_mumu_2trk": ["mumu_tight_or_highm_calib"], "hlt_bhabha": ["bhabha_all_calib"]},
)


def test_a_run_taken_by_any_input_is_used_and_the_reasons_of_each_input_are_kept() -> None:
    runs = [Run(run=3, data_tags=("bhabha_all_calib",)), Run(run=1), Run(run=2, data_tags=())]
    chosen = choose_runs("BeamSpot", "e0026.b0001", TWO_INPUTS, runs)
    assert chosen.used == (ExpRun(26, 1), ExpRun(26, 3))
    assert chosen.labels == ["e0026.r00001", "e0026.r00003"]
    # run 2 is refused by both inputs, run 1 by the bhabha input only, run 3 by the mumu input only
    assert sorted(chosen.excluded) == ["e0026.r00001", "e0026.r00002", "e0026.r00003"]
    assert len(chosen.excluded["e0026.r00002"]) == 2


def test_no_usable_run_is_refused_with_every_reason() -> None:
    with pytest.raises(NoRunPassesFiltersError) as refused:
        choose_runs("BeamSpot", "e0026.b0001", make_settings(), [Run(run=4, quarantined=True)])
    message = str(refused.value)
    assert message.startswith("BeamSpot: no run of bucket e0026.b0001 passes the input filters: ")
    assert "e0026.r00004" in json.loads(message.split("filters: ", 1)[1])


def test_collector_outputs_of_every_used_run_or_a_refusal_naming_the_missing() -> None:
    used = [ExpRun(26, 1), ExpRun(26, 2)]
    rows = {"e0026.r00001": ("/c/1.npz", 10), "e0026.r00002": ("/c/2.npz", 20), "e0026.r00009": ("/c/9.npz", 1)}
    assert collector_output_files("BeamSpot", "e0026.b0001", used, rows) == {ExpRun(26, 1): "/c/1.npz", ExpRun(26, 2): "/c/2.npz"}
    with pytest.raises(MissingCollectorOutputError, match=r"runs \['e0026.r00002'\] of bucket e0026.b0001; materialise the collectors first"):
        collector_output_files("BeamSpot", "e0026.b0001", used, {"e0026.r00001": ("/c/1.npz", 10)})


def test_the_prompt_iov_is_open_ended_from_the_first_used_run() -> None:
    assert prompt_iov([ExpRun(26, 5), ExpRun(26, 9)]) == IoV(26, 5, -1, -1)


def test_a_failure_says_result_passes_and_the_last_algorithm_message() -> None:
    runs = [ExpRun(26, 1)]
    algorithm = EventCountAlgorithm({ExpRun(26, 1): 10}, min_events=1, fail_on=frozenset(runs))
    outcome = run_calibration(make_settings(), algorithm, SingleIOV(), runs, prompt_iov(runs))
    failure = describe_failure("BeamSpot", "e0026.b0001", outcome)
    assert failure.description == (
        "BeamSpot failed on bucket e0026.b0001 after 1 iteration(s): failure: bad run; nothing was written to the staging tag"
    )
    assert failure.result == "failure"
    assert failure.messages == ["bad run"]


def test_summary_rows_and_markdown_table() -> None:
    payloads = [PayloadIoV("BeamSpot", IoV(26, 1, -1, -1), object(), (ExpRun(26, 1), ExpRun(26, 2)))]
    summary = payload_summary([Stored("BeamSpot", 3, "abc")], payloads)
    assert summary == [{"name": "BeamSpot", "revision": 3, "iov": str(IoV(26, 1, -1, -1)), "runs": ["e0026.r00001", "e0026.r00002"], "md5": "abc"}]
    table = payload_table(summary)
    assert table.splitlines() == [
        "| payload | revision | IoV | runs |",
        "|---|---|---|---|",
        f"| BeamSpot | 3 | {IoV(26, 1, -1, -1)} | e0026.r00001, e0026.r00002 |",
    ]
