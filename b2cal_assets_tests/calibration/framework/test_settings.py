"""CalibrationSettings validation, dependency ordering and expert_config merging."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.calibration.framework.settings import (
    DEFAULT_MAX_ITERATIONS,
    CalibrationSettings,
    DependencyCycleError,
    InvalidCalibrationSettingsError,
    InvalidExpertConfigError,
    merge_expert_config,
    parse_filter,
    topological_order,
)
from b2cal_assets_tests.calibration.framework.toys import make_settings


def test_valid_settings_keep_basf2_field_shapes() -> None:
    settings = make_settings(input_data_formats=["CDST", "raw"])
    assert settings.input_data_formats == frozenset({"cdst", "raw"})
    assert settings.input_data_names == frozenset({"hlt_mumu_2trk"})
    assert settings.input_data_filters["hlt_mumu_2trk"] == ("mumu_tight_or_highm_calib", "physics", "Good", "On")
    assert settings.depends_on == ()
    assert settings.produced_payloads == ("BeamSpot",)
    assert settings.max_iterations == 3


def test_to_dict_is_json_with_dependencies_by_name() -> None:
    upstream = make_settings("BeamSpot")
    downstream = make_settings("eCMS", depends_on=[upstream], produced_payloads=["CollisionBoostVector"])
    data = json.loads(downstream.json_dumps())
    assert data["depends_on"] == ["BeamSpot"]
    assert data["input_data_formats"] == ["cdst"]
    assert "depends_on=['BeamSpot']" in repr(downstream)


def test_name_longer_than_64_characters_is_rejected() -> None:
    make_settings("a" * 64)
    with pytest.raises(InvalidCalibrationSettingsError, match="65 characters long; shorten it to at most 64"):
        make_settings("a" * 65)


@pytest.mark.parametrize("name", ["", "beam spot", "1st", "ecl/gains"])
def test_name_must_be_an_identifier(name: str) -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="name"):
        make_settings(name)


def test_unknown_subsystem_lists_the_known_ones() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match=r"subsystem 'bpm' is unknown; use one of \['alignment'"):
        make_settings(subsystem="bpm")


@pytest.mark.parametrize("field_name", ["expert_username", "description"])
def test_empty_expert_and_description_are_rejected(field_name: str) -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match=f"{field_name} must be a non-empty string"):
        make_settings(**{field_name: "  "})


def test_input_data_formats_must_be_non_empty() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="input_data_formats is empty"):
        make_settings(input_data_formats=[])


def test_input_data_formats_must_be_belle2_formats() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match=r"contains \['root'\], which is not a Belle II data format"):
        make_settings(input_data_formats=["cdst", "root"])


def test_a_single_format_string_is_one_format() -> None:
    assert make_settings(input_data_formats="raw").input_data_formats == frozenset({"raw"})


def test_input_data_names_are_required() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="input_data_names is empty"):
        make_settings(input_data_names=[], input_data_filters={})


def test_no_filters_is_allowed_and_means_no_requirement() -> None:
    settings = make_settings(input_data_filters=None)
    assert settings.input_data_filters == {}
    assert settings.filters_for("hlt_mumu_2trk") == ()


def test_filter_keys_must_equal_input_names() -> None:
    with pytest.raises(
        InvalidCalibrationSettingsError, match=r"no filters for inputs \['hlt_bhabha'\]; filters for unknown inputs \['bhabha'\]"
    ):
        make_settings(
            input_data_names=["hlt_mumu_2trk", "hlt_bhabha"],
            input_data_filters={"hlt_mumu_2trk": ["Good"], "bhabha": ["Good"]},
        )


def test_unknown_filter_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="unknown filter 'hadron_calb'. Did you mean 'hadron_calib'"):
        make_settings(input_data_filters={"hlt_mumu_2trk": ["hadron_calb"]})


def test_negated_unknown_filter_is_rejected_too() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="unknown filter 'Sideways'"):
        make_settings(input_data_filters={"hlt_mumu_2trk": ["NOT Sideways"]})


def test_filter_value_must_be_a_list_not_a_string() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match=r"is the string 'Good'; it must be a list"):
        make_settings(input_data_filters={"hlt_mumu_2trk": "Good"})


def test_requiring_and_excluding_the_same_filter_is_rejected() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match=r"both requires and excludes \['On'\]"):
        make_settings(input_data_filters={"hlt_mumu_2trk": ["On", "NOT On"]})


def test_not_either_is_rejected_because_it_excludes_everything() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="'NOT Either', which excludes every run"):
        make_settings(input_data_filters={"hlt_mumu_2trk": ["NOT Either"]})


def test_not_prefix_negates() -> None:
    assert parse_filter("NOT On") == (True, "On")
    assert parse_filter("Good Or Recoverable") == (False, "Good Or Recoverable")
    assert parse_filter("NOTHING") == (False, "NOTHING")  # only "NOT " with a space negates


def test_expert_config_must_be_json_serialisable() -> None:
    import datetime

    with pytest.raises(InvalidCalibrationSettingsError, match="expert_config is not JSON-serialisable"):
        make_settings(expert_config={"since": datetime.date(2024, 1, 1)})
    with pytest.raises(InvalidCalibrationSettingsError, match="expert_config is not JSON-serialisable"):
        make_settings(expert_config={"cut": float("nan")})


def test_expert_config_must_be_a_dict() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="expert_config must be a dict"):
        make_settings(expert_config=[("a", 1)])


def test_expert_config_is_copied_so_later_edits_do_not_leak_in() -> None:
    config = {"max_iterations": 2, "cuts": {"pt": 0.5}}
    settings = make_settings(expert_config=config)
    config["cuts"]["pt"] = 9.0
    assert settings.expert_config["cuts"]["pt"] == 0.5


@pytest.mark.parametrize("bad", [0, -1, "3", 2.5, True])
def test_invalid_max_iterations_is_rejected_at_declaration(bad: object) -> None:
    with pytest.raises(InvalidExpertConfigError, match="max_iterations"):
        make_settings(expert_config={"max_iterations": bad})


def test_max_iterations_defaults_when_not_configured() -> None:
    assert make_settings(expert_config={}).max_iterations == DEFAULT_MAX_ITERATIONS


def test_produced_payloads_are_required_identifiers_without_duplicates() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="produced_payloads is empty"):
        make_settings(produced_payloads=[])
    with pytest.raises(InvalidCalibrationSettingsError, match="payload names are identifiers"):
        make_settings(produced_payloads=["Beam Spot"])
    with pytest.raises(InvalidCalibrationSettingsError, match=r"lists \['BeamSpot'\] more than once"):
        make_settings(produced_payloads=["BeamSpot", "BeamSpot"])


def test_depends_on_must_hold_settings_objects() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="import their settings"):
        make_settings("eCMS", depends_on=["BeamSpot"])


def test_depending_on_a_calibration_of_the_same_name_is_a_cycle() -> None:
    with pytest.raises(DependencyCycleError, match="BeamSpot -> BeamSpot"):
        make_settings("BeamSpot", depends_on=[make_settings("BeamSpot")])


def test_filters_for_unknown_input_names_the_inputs() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match=r"has no input named 'hlt_bhabha'; its inputs are \['hlt_mumu_2trk'\]"):
        make_settings().filters_for("hlt_bhabha")


# -- dependency graph --------------------------------------------------------------------------


def test_topological_order_puts_upstream_first_and_includes_unlisted_dependencies() -> None:
    beamspot = make_settings("BeamSpot")
    ecms = make_settings("eCMS", depends_on=[beamspot], produced_payloads=["CollisionBoostVector"])
    ecl = make_settings("ECLGains", subsystem="ecl", produced_payloads=["ECLCrystalEnergy"])
    order = topological_order([ecms, ecl])
    names = [settings.name for settings in order]
    assert names == ["BeamSpot", "ECLGains", "eCMS"]


def test_topological_order_handles_a_diamond_once_per_calibration() -> None:
    a = make_settings("A")
    b = make_settings("B", depends_on=[a])
    c = make_settings("C", depends_on=[a])
    d = make_settings("D", depends_on=[b, c])
    assert [s.name for s in topological_order([d, a])] == ["A", "B", "C", "D"]


def test_two_different_calibrations_with_one_name_are_rejected() -> None:
    with pytest.raises(InvalidCalibrationSettingsError, match="names must be unique"):
        topological_order([make_settings("BeamSpot"), make_settings("BeamSpot", subsystem="cdc")])


def test_the_same_settings_imported_twice_is_one_calibration() -> None:
    assert len(topological_order([make_settings("BeamSpot"), make_settings("BeamSpot")])) == 1


def test_cycle_over_several_calibrations_is_reported_with_its_path() -> None:
    # Settings are immutable, so a cycle can only appear by mutation (e.g. objects patched at
    # load time); the order computation must still refuse it rather than loop.
    a = make_settings("A")
    b = make_settings("B", depends_on=[a])
    c = make_settings("C", depends_on=[b])
    object.__setattr__(a, "depends_on", (c,))
    with pytest.raises(DependencyCycleError, match="A -> C -> B -> A") as info:
        topological_order([a])
    assert info.value.cycle == ("A", "C", "B", "A")


@st.composite
def dags(draw: st.DrawFn) -> list[CalibrationSettings]:
    count = draw(st.integers(1, 8))
    created: list[CalibrationSettings] = []
    for index in range(count):
        upstream = draw(st.lists(st.sampled_from(created), unique_by=lambda s: s.name, max_size=3)) if created else []
        created.append(make_settings(f"Cal{index}", depends_on=upstream))
    return created


@given(dags(), st.randoms())
def test_topological_order_respects_every_edge_whatever_the_input_order(settings_list, rng) -> None:
    shuffled = list(settings_list)
    rng.shuffle(shuffled)
    order = topological_order(shuffled)
    position = {settings.name: index for index, settings in enumerate(order)}
    assert set(position) == {settings.name for settings in settings_list}
    for settings in settings_list:
        for upstream in settings.depends_on:
            assert position[upstream.name] < position[settings.name]
    assert [s.name for s in topological_order(settings_list)] == [s.name for s in order]


# -- expert_config merge -----------------------------------------------------------------------


def test_runtime_config_overrides_defaults_and_leaves_the_settings_untouched() -> None:
    settings = make_settings(expert_config={"min_events": 5000, "boundaries": [[26, 0]], "backend": {"queue": "s", "mem": 2}})
    merged = merge_expert_config(settings, {"min_events": 100, "boundaries": [[26, 5]], "backend": {"queue": "l"}})
    assert merged == {"min_events": 100, "boundaries": [[26, 5]], "backend": {"queue": "l", "mem": 2}}
    assert settings.expert_config["min_events"] == 5000


def test_misspelt_runtime_key_is_refused_with_a_suggestion() -> None:
    settings = make_settings()
    with pytest.raises(InvalidExpertConfigError, match="'min_event'.*Did you mean 'min_events'"):
        merge_expert_config(settings, {"min_event": 10})
    assert merge_expert_config(settings, {"min_event": 10}, allow_new_keys=True)["min_event"] == 10


def test_max_iterations_can_always_be_set_at_run_time() -> None:
    settings = make_settings(expert_config={})
    assert merge_expert_config(settings, {"max_iterations": 7}) == {"max_iterations": 7}


def test_runtime_config_must_be_json() -> None:
    with pytest.raises(InvalidExpertConfigError, match="not JSON-serialisable"):
        merge_expert_config(make_settings(), {"min_events": {1, 2}})


VALUES = st.integers(-5, 5) | st.booleans() | st.sampled_from(["x", "y"]) | st.lists(st.integers(0, 3), max_size=2)


@given(st.fixed_dictionaries({"a": VALUES, "b": VALUES, "c": VALUES}), st.dictionaries(st.sampled_from("abc"), VALUES))
def test_merge_is_a_key_wise_override(defaults: dict, runtime: dict) -> None:
    settings = make_settings(expert_config=defaults)
    merged = merge_expert_config(settings, runtime)
    assert merged == {key: runtime.get(key, defaults[key]) for key in defaults}
