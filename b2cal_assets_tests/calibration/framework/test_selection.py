"""Run selection with the basf2 input data filters; quarantined runs never selected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.calibration.framework.selection import RunMetadata, select_runs
from b2cal_assets.calibration.framework.settings import INPUT_DATA_FILTERS, InvalidCalibrationSettingsError
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets_tests.calibration.framework.toys import make_settings


@dataclass(frozen=True)
class Run:
    exp: int = 26
    run: int = 1
    run_type: str = "physics"
    beam_energy: str = "4S"
    magnet: str = "On"
    data_quality: str = "Good"
    data_tags: Sequence[str] = ("mumu_tight_or_highm_calib", "hadron_calib")
    quarantined: bool = False


def select(runs: list[Run], filters: list[str]):
    settings = make_settings(input_data_filters={"hlt_mumu_2trk": filters})
    return select_runs(runs, settings, "hlt_mumu_2trk")


def selected_numbers(runs: list[Run], filters: list[str]) -> list[int]:
    return [run.run for run in select(runs, filters).selected]


def test_a_registry_row_like_object_satisfies_the_protocol() -> None:
    assert isinstance(Run(), RunMetadata)


def test_no_filters_select_every_run_that_is_not_quarantined() -> None:
    runs = [Run(run=2), Run(run=1, magnet="Off", run_type="cosmic"), Run(run=3, quarantined=True)]
    settings = make_settings(input_data_filters={})
    selection = select_runs(runs, settings, "hlt_mumu_2trk")
    assert [run.run for run in selection.selected] == [1, 2]
    assert selection.expruns == [ExpRun(26, 1), ExpRun(26, 2)]


def test_quarantined_runs_are_excluded_even_when_they_match() -> None:
    selection = select([Run(run=1, quarantined=True)], ["Good"])
    assert selection.selected == ()
    assert selection.reasons()[ExpRun(26, 1)] == (
        "quarantined: its files failed a check and must not be used until re-transferred",
    )


@pytest.mark.parametrize(
    ("field", "value", "required"),
    [
        ("magnet", "Off", "On"),
        ("beam_energy", "Continuum", "4S"),
        ("run_type", "cosmic", "physics"),
        ("data_quality", "Bad For Alignment", "Good"),
    ],
)
def test_each_category_filters_on_its_run_attribute(field: str, value: str, required: str) -> None:
    runs = [Run(run=1), Run(run=2, **{field: value})]
    assert selected_numbers(runs, [required]) == [1]
    assert selected_numbers(runs, [value]) == [2]


def test_data_tag_matches_any_of_the_runs_tags() -> None:
    runs = [Run(run=1, data_tags=("bhabha_all_calib",)), Run(run=2, data_tags=("hadron_calib", "random_calib"))]
    assert selected_numbers(runs, ["random_calib"]) == [2]


def test_positive_filters_of_one_category_are_alternatives() -> None:
    runs = [Run(run=1, beam_energy="4S"), Run(run=2, beam_energy="Continuum"), Run(run=3, beam_energy="Scan")]
    assert selected_numbers(runs, ["4S", "Continuum"]) == [1, 2]


def test_filters_of_different_categories_must_all_pass() -> None:
    runs = [Run(run=1), Run(run=2, magnet="Off"), Run(run=3, data_quality="Bad For Alignment")]
    assert selected_numbers(runs, ["On", "Good"]) == [1]


def test_not_excludes_matching_runs() -> None:
    runs = [Run(run=1, magnet="On"), Run(run=2, magnet="Off")]
    assert selected_numbers(runs, ["NOT On"]) == [2]


def test_not_data_tag_excludes_runs_carrying_the_tag() -> None:
    runs = [Run(run=1, data_tags=("hadron_calib",)), Run(run=2, data_tags=("bhabha_all_calib", "hadron_calib"))]
    assert selected_numbers(runs, ["hadron_calib", "NOT bhabha_all_calib"]) == [1]


def test_magnet_either_accepts_any_field() -> None:
    runs = [Run(run=1, magnet="On"), Run(run=2, magnet="Off")]
    assert selected_numbers(runs, ["Either"]) == [1, 2]


def test_good_or_recoverable_accepts_good_and_recoverable_runs() -> None:
    runs = [
        Run(run=1, data_quality="Good"),
        Run(run=2, data_quality="Recoverable"),
        Run(run=3, data_quality="Good Or Recoverable"),
        Run(run=4, data_quality="Bad For Alignment"),
    ]
    assert selected_numbers(runs, ["Good Or Recoverable"]) == [1, 2, 3]
    assert selected_numbers(runs, ["Good"]) == [1]


def test_offres_folder_name_counts_as_continuum() -> None:
    assert selected_numbers([Run(run=1, beam_energy="4S_offres")], ["Continuum"]) == [1]


def test_exclusion_reasons_name_the_category_the_value_and_the_requirement() -> None:
    runs = [Run(run=7, magnet="Off", data_tags=("bhabha_all_calib",), quarantined=True)]
    reasons = select(runs, ["On", "hadron_calib", "mumu_tight_or_highm_calib"]).reasons()[ExpRun(26, 7)]
    assert reasons[0].startswith("quarantined")
    assert "Magnet: run has magnet 'Off', the input requires On" in reasons
    assert (
        "Data Tag: run has data tags ['bhabha_all_calib'], the input requires one of "
        "['hadron_calib', 'mumu_tight_or_highm_calib']" in reasons
    )


def test_negation_reason_quotes_the_not_filter() -> None:
    reasons = select([Run(run=1, magnet="On")], ["NOT On"]).reasons()[ExpRun(26, 1)]
    assert reasons == ("Magnet: run has magnet 'On', the input excludes 'NOT On'",)


def test_within_restricts_to_the_bucket_iov() -> None:
    runs = [Run(exp=26, run=1), Run(exp=26, run=5), Run(exp=27, run=0)]
    settings = make_settings(input_data_filters={})
    selection = select_runs(runs, settings, "hlt_mumu_2trk", within=IoV(26, 2, 26, -1))
    assert selection.expruns == [ExpRun(26, 5)]
    assert selection.reasons()[ExpRun(27, 0)] == ("outside the requested IoV 26,2,26,-1",)


def test_selection_is_ordered_and_a_duplicate_run_is_kept_once() -> None:
    runs = [Run(exp=27, run=0), Run(exp=26, run=9), Run(exp=26, run=9, magnet="Off")]
    selection = select(runs, ["On"])
    assert selection.expruns == [ExpRun(26, 9), ExpRun(27, 0)]
    assert len(selection.excluded) == 1


def test_unknown_input_name_is_an_error() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="has no input named 'hlt_bhabha'"):
        select_runs([Run()], make_settings(), "hlt_bhabha")


FILTER_NAMES = sorted(name for names in INPUT_DATA_FILTERS.values() for name in names)

runs_strategy = st.builds(
    Run,
    exp=st.integers(20, 22),
    run=st.integers(0, 50),
    run_type=st.sampled_from(sorted(INPUT_DATA_FILTERS["Run Type"])),
    beam_energy=st.sampled_from(sorted(INPUT_DATA_FILTERS["Beam Energy"])),
    magnet=st.sampled_from(["On", "Off"]),
    data_quality=st.sampled_from(sorted(INPUT_DATA_FILTERS["Data Quality Tag"]) + ["Recoverable"]),
    data_tags=st.lists(st.sampled_from(sorted(INPUT_DATA_FILTERS["Data Tag"])), max_size=3).map(tuple),
    quarantined=st.booleans(),
)


@st.composite
def filter_lists(draw: st.DrawFn) -> list[str]:
    names = draw(st.lists(st.sampled_from(FILTER_NAMES), unique=True, max_size=5))
    return [f"NOT {name}" if name != "Either" and draw(st.booleans()) else name for name in names]


@given(st.lists(runs_strategy, max_size=12), filter_lists())
def test_every_run_is_either_selected_or_excluded_with_reasons(runs: list[Run], filters: list[str]) -> None:
    selection = select(runs, filters)
    assert not any(run.quarantined for run in selection.selected)
    assert len(selection.selected) + len(selection.excluded) == len(runs)
    assert all(excluded.reasons for excluded in selection.excluded)
    keys = [(run.exp, run.run) for run in selection.selected]
    assert keys == sorted(set(keys))


@given(st.lists(runs_strategy, max_size=12), filter_lists(), st.sampled_from(FILTER_NAMES))
def test_adding_a_negated_filter_never_adds_runs(runs: list[Run], filters: list[str], extra: str) -> None:
    if extra == "Either" or extra in filters or f"NOT {extra}" in filters:
        return
    before = {(run.exp, run.run) for run in select(runs, filters).selected}
    after = {(run.exp, run.run) for run in select(runs, [*filters, f"NOT {extra}"]).selected}
    assert after <= before


@given(st.lists(runs_strategy, max_size=12), filter_lists())
def test_unquarantining_never_removes_a_run(runs: list[Run], filters: list[str]) -> None:
    unique = list({(run.exp, run.run): run for run in runs}.values())
    before = {(r.exp, r.run) for r in select(unique, filters).selected}
    after = {(r.exp, r.run) for r in select([replace(r, quarantined=False) for r in unique], filters).selected}
    assert before <= after
