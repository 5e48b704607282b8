"""Run-time expert_config overrides, as experts pass them (B2CAL_EXPERT_CONFIG)."""

import pytest
from dagster import Failure

from b2cal_assets.calibration.assets import _expert_config
from b2cal_assets.calibration.plugins import discover_calibrations
from b2cal_assets.resources import ExpertConfigOverridesResource

ECL = discover_calibrations()["ECLCrystalEnergy"]


def test_override_is_merged_over_the_calibration_defaults():
    overrides = ExpertConfigOverridesResource(expert_config_json='{"ECLCrystalEnergy": {"min_hits_per_crystal": 8}}')
    merged = _expert_config(ECL, overrides)
    assert merged["min_hits_per_crystal"] == 8
    assert merged["max_fraction_low_crystals"] == ECL.settings.expert_config["max_fraction_low_crystals"]


def test_no_override_keeps_the_defaults(monkeypatch):
    monkeypatch.delenv("B2CAL_EXPERT_CONFIG", raising=False)
    assert _expert_config(ECL, ExpertConfigOverridesResource()) == dict(ECL.settings.expert_config)


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"ECLCrystalEnergy": {"min_hits_per_crytsal": 8}}', "min_hits_per_crytsal"),
        ("{not json", "not valid JSON"),
        ('{"ECLCrystalEnergy": 3}', "must be a JSON object"),
    ],
)
def test_bad_override_fails_with_a_message_naming_the_problem(text, message):
    with pytest.raises(Failure, match=message):
        _expert_config(ECL, ExpertConfigOverridesResource(expert_config_json=text))
