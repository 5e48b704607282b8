"""The four calibrations on generated data: truth recovered within the stated uncertainties,
low-statistics runs merged, dead crystals / hot wires flagged, collector outputs round-trip.

One bucket of 12 runs x 20k events (seed 5, the generator's default realistic model) with the faults dead-crystals, hot-wires,
low-statistics (run 7: 3% of the events) and beam-spot-jump (from run 7 on) is generated once
per session, and the four calibrations run once over it in dependency order. The ECL hit
thresholds are lowered for this bucket (about 8 Bhabha hits per crystal, a real bucket has
hundreds); everything else runs with the default expert_config.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from b2cal_assets.calibration.framework import AlgorithmResult, run_calibration, topological_order
from b2cal_assets.calibration.framework.contract import CalibrationInputError, CollectorOutput, CollectorOutputError, pull_summary
from b2cal_assets.calibration.framework.runner import CalibrationOutcome
from b2cal_assets.calibration.plugins import beam_spot, cdc_t0, discover_calibrations, ecl_gains, ecms
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT, PayloadConstants
from b2cal_assets.runs.generator import DEAD_CRYSTALS, HOT_WIRES, generate

# The session bucket (12 realistic runs, four calibrations with the per-superlayer edge-shape
# fit) takes ~1 min on the shared 2 cores (was ~5 min before the edge-shape fit's speed-up);
# the generous timeout is for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

N_RUNS = 12
LOW_STATISTICS_RUN = 7  # the middle run: where generate() puts single-run faults
RUNTIME_CONFIG = {ecl_gains.SETTINGS.name: {"min_hits_per_crystal": 5, "max_fraction_low_crystals": 0.02}}
BUCKET_IOV = IoV(26, 1, -1, -1)


@dataclass
class Bucket:
    root: Path
    files: dict[ExpRun, dict[str, list[Path]]]
    collected: dict[str, dict[ExpRun, CollectorOutput]]
    outcomes: dict[str, CalibrationOutcome]


def _files_by_run(root: Path) -> dict[ExpRun, dict[str, list[Path]]]:
    files: dict[ExpRun, dict[str, list[Path]]] = {}
    for record in sorted(root.rglob("runinfo.*.json")):
        data = json.loads(record.read_text())
        streams: dict[str, list[Path]] = defaultdict(list)
        for entry in data["files"]:
            streams[entry["stream"]].append(root / entry["path"])
        files[ExpRun(data["exp"], data["run"])] = dict(streams)
    return files


def _payload_for(outcome: CalibrationOutcome, run: ExpRun) -> dict[str, PayloadConstants]:
    return {p.name: p.constants for p in outcome.payloads() if p.iov.contains(run)}


@pytest.fixture(scope="session")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Bucket:
    root = tmp_path_factory.mktemp("calibration_bucket")
    generate(root, runs=N_RUNS, events_per_run=20_000, seed=5, faults=["dead-crystals", "hot-wires", "low-statistics", "beam-spot-jump"])
    files = _files_by_run(root)
    calibrations = discover_calibrations()
    collected: dict[str, dict[ExpRun, CollectorOutput]] = {}
    outcomes: dict[str, CalibrationOutcome] = {}
    for settings in topological_order([c.settings for c in calibrations.values()]):
        calibration = calibrations[settings.name]
        config = RUNTIME_CONFIG.get(settings.name, {})
        outputs = {}
        for run, streams in files.items():
            # Upstream constants valid for this run, from the calibrations already done.
            upstream = {name: c for dep in settings.depends_on_names for name, c in _payload_for(outcomes[dep], run).items()}
            outputs[run] = calibration.collect(run, streams, upstream, {**settings.expert_config, **config})
        algorithm = calibration.make_algorithm(outputs, {}, {**settings.expert_config, **config})
        outcomes[settings.name] = run_calibration(settings, algorithm, calibration.strategy(), list(outputs), BUCKET_IOV, config)
        collected[settings.name] = outputs
    return Bucket(root, files, collected, outcomes)


def _pulls(bucket: Bucket, name: str) -> np.ndarray:
    calibration = discover_calibrations()[name]
    outcome = bucket.outcomes[name]
    assert outcome.succeeded, outcome.message
    return np.concatenate([calibration.truth_pulls(p.constants, bucket.root, p.runs) for p in outcome.payloads()])


def _assert_pulls_are_standard_normal(pulls: np.ndarray, minimum: int) -> None:
    """Mean 0 +- 0.1 and width 1 +- 0.1 (issue 19), beyond their statistical errors: the
    calibrations measure what the generator's realism model hides from them (edge shape per
    superlayer, containment, ISR exponent), so a residual of a few hundredths of a sigma over
    14,000 wires is expected and allowed, a bias of a tenth is not."""
    summary = pull_summary(pulls)
    assert summary["n"] >= minimum
    assert summary["fraction_within_3"] >= 0.99, summary
    assert abs(summary["mean"]) < 0.1 + 2 * summary["mean_error"], summary
    assert abs(summary["width"] - 1.0) < 0.1 + 2 * summary["width_error"], summary


# -- discovery ------------------------------------------------------------------------------------


def test_discovery_finds_the_four_calibrations_in_dependency_order() -> None:
    calibrations = discover_calibrations()
    assert set(calibrations) == {"BeamSpot", "CollisionEnergy", "ECLCrystalEnergy", "CDCTimeZero"}
    order = [s.name for s in topological_order([c.settings for c in calibrations.values()])]
    assert order.index("BeamSpot") < order.index("CollisionEnergy") < order.index("ECLCrystalEnergy")
    assert {c.settings.subsystem for c in calibrations.values()} == {"beam", "ecl", "cdc"}


# -- truth recovered ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "minimum"),
    [("BeamSpot", 9 * (N_RUNS - 1)), ("CollisionEnergy", N_RUNS - 1), ("ECLCrystalEnergy", 8000), ("CDCTimeZero", 14000)],
)
def test_pulls_against_truth_are_standard_normal(bucket: Bucket, name: str, minimum: int) -> None:
    _assert_pulls_are_standard_normal(_pulls(bucket, name), minimum)


def test_summarise_against_truth_reports_pull_figures(bucket: Bucket) -> None:
    payload = bucket.outcomes["CDCTimeZero"].payloads()[0]
    summary = cdc_t0.CALIBRATION.summarise_against_truth(payload.constants, bucket.root / "truth", payload.runs)
    assert set(summary) == {"n", "fraction_within_3", "mean", "mean_error", "width", "width_error"}
    assert summary["n"] > 14000


def test_beam_spot_jump_is_measured_between_runs(bucket: Bucket) -> None:
    before = _payload_for(bucket.outcomes["BeamSpot"], ExpRun(26, LOW_STATISTICS_RUN - 1))["BeamSpot"]
    after = _payload_for(bucket.outcomes["BeamSpot"], ExpRun(26, LOW_STATISTICS_RUN + 1))["BeamSpot"]
    truth = json.loads((bucket.root / "truth/e0026/runs.json").read_text())
    true_dz = truth[str(LOW_STATISTICS_RUN + 1)]["beam_spot_cm"][2] - truth[str(LOW_STATISTICS_RUN - 1)]["beam_spot_cm"][2]
    dz, dz_error = after.value[2] - before.value[2], np.hypot(after.error[2], before.error[2])
    assert abs(dz) > 5 * dz_error  # the 500 um jump is seen
    assert abs(dz - true_dz) < 3 * dz_error


def test_beam_spot_vertical_size_is_reported_as_unresolved_with_an_upper_limit(bucket: Bucket) -> None:
    payload = bucket.outcomes["BeamSpot"].payloads()[0].constants
    assert payload.attributes["y_size_resolved"] is False
    assert 0 < payload.attributes["sigma_y_upper_limit_95_cm"] < 0.0005  # < 5 um; truth is 0.3 um


# -- low statistics -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["BeamSpot", "CollisionEnergy"])
def test_low_statistics_run_is_merged_with_the_next_run(bucket: Bucket, name: str) -> None:
    outcome = bucket.outcomes[name]
    runs_of_payloads = [tuple(r.run for r in p.runs) for p in outcome.payloads()]
    assert (LOW_STATISTICS_RUN, LOW_STATISTICS_RUN + 1) in runs_of_payloads
    assert outcome.final is not None and outcome.final.gaps() == []


def test_ecl_gains_merge_runs_until_every_crystal_has_enough_hits(bucket: Bucket) -> None:
    outcome = bucket.outcomes["ECLCrystalEnergy"]
    attempts = outcome.final.attempts
    assert attempts[0].result is AlgorithmResult.not_enough_data
    assert "Bhabha hits" in attempts[0].outcome.message
    assert all(len(p.runs) > 1 for p in outcome.payloads())
    assert outcome.final.gaps() == []


def test_ecl_algorithm_says_not_enough_data_for_one_run(bucket: Bucket) -> None:
    collected = bucket.collected["ECLCrystalEnergy"]
    algorithm = ecl_gains.make_algorithm(collected, {}, {})
    result = algorithm.execute([ExpRun(26, 1)], 0, None)
    assert result.result is AlgorithmResult.not_enough_data


# -- flagged channels -----------------------------------------------------------------------------


def test_dead_crystals_are_flagged_not_fitted(bucket: Bucket) -> None:
    payload = bucket.outcomes["ECLCrystalEnergy"].payloads()[0].constants
    dead = np.flatnonzero(payload.status == STATUS_DEAD)
    assert set(dead) == set(DEAD_CRYSTALS.tolist())
    assert np.all(np.isnan(payload.value[dead]))


def test_no_crystal_is_flagged_hot_on_realistic_data_without_hot_crystals(bucket: Bucket) -> None:
    # Realistic generator: leakage, endcap-heavy background, a dead board; no noisy crystal.
    for payload in bucket.outcomes["ECLCrystalEnergy"].payloads():
        assert not np.any(payload.constants.status == STATUS_HOT), payload.constants.attributes["hot_crystals"]


def test_hot_wires_are_flagged_not_fitted(bucket: Bucket) -> None:
    payload = bucket.outcomes["CDCTimeZero"].payloads()[0].constants
    hot = np.flatnonzero(payload.status == STATUS_HOT)
    assert set(hot) == set(HOT_WIRES.tolist())
    assert np.all(np.isnan(payload.value[hot]))


def test_wire_without_hits_is_flagged_dead(bucket: Bucket) -> None:
    merged = CollectorOutput.merge(list(bucket.collected["CDCTimeZero"].values()))
    merged.arrays["histogram"][123] = 0
    merged.arrays["sideband"][123] = 0
    algorithm = cdc_t0.make_algorithm({ExpRun(26, 1): merged}, {}, {})
    payload = algorithm.execute([ExpRun(26, 1)], 0, None).payloads["CDCTimeZero"]
    assert payload.status[123] == STATUS_DEAD
    assert np.isnan(payload.value[123])
    assert payload.status[124] == STATUS_GOOD


# -- collector outputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(discover_calibrations()))  # every plug-in found, a new one included
def test_collector_output_survives_save_and_load(bucket: Bucket, name: str, tmp_path: Path) -> None:
    output = bucket.collected[name][ExpRun(26, 1)]
    loaded = CollectorOutput.load(output.save(tmp_path / "run.npz"))
    assert (loaded.calibration, loaded.layout, loaded.runs) == (output.calibration, output.layout, output.runs)
    assert set(loaded.arrays) == set(output.arrays)
    for key, value in output.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], value)


def test_merging_two_runs_equals_collecting_their_files_together(bucket: Bucket) -> None:
    runs = [ExpRun(26, 1), ExpRun(26, 2)]
    merged = beam_spot.CALIBRATION.merge([bucket.collected["BeamSpot"][run] for run in runs])
    together = beam_spot.collect(runs[0], {"hlt_mumu_2trk": [f for run in runs for f in bucket.files[run]["hlt_mumu_2trk"]]}, {}, {})
    for key in together.arrays:
        np.testing.assert_allclose(merged.arrays[key], together.arrays[key], rtol=1e-12, atol=1e-18)
    assert merged.n_events == together.n_events
    assert set(merged.runs) == {"e0026.r00001", "e0026.r00002"}


def test_merge_refuses_a_run_twice(bucket: Bucket) -> None:
    output = bucket.collected["CDCTimeZero"][ExpRun(26, 1)]
    with pytest.raises(CollectorOutputError, match="more than one collector output"):
        CollectorOutput.merge([output, output])


def test_merge_refuses_outputs_filled_with_different_binning(bucket: Bucket) -> None:
    one = bucket.collected["CollisionEnergy"][ExpRun(26, 1)]
    other = CollectorOutput(one.calibration, one.arrays, {**one.layout, "n_bins": 1}, {"e0026.r00099": 1})
    with pytest.raises(CollectorOutputError, match="different layouts"):
        CollectorOutput.merge([one, other])


def test_load_refuses_a_file_that_is_not_a_collector_output(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(CollectorOutputError, match="re-run the collector"):
        CollectorOutput.load(path)


# -- inputs ---------------------------------------------------------------------------------------


def test_collision_energy_collector_needs_the_beam_spot(bucket: Bucket) -> None:
    with pytest.raises(CalibrationInputError, match="BeamSpot"):
        ecms.collect(ExpRun(26, 1), bucket.files[ExpRun(26, 1)], {}, {})


def test_collector_refuses_a_missing_input_stream() -> None:
    with pytest.raises(CalibrationInputError, match="hlt_hadron"):
        cdc_t0.collect(ExpRun(26, 1), {"hlt_mumu_2trk": []}, {}, {})
