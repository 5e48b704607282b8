"""ECLCrystalEnergy: one energy gain per ECL crystal (8736) from Bhabha electrons.

Physics. In e+e- -> e+e- the electron energy at a lab polar angle theta is fixed by two-body
kinematics, E(theta) = 2 E_HER E_LER / (E_HER + E_LER - (E_HER - E_LER) cos theta). The crystal
it hits contains on average a fraction ``containment`` of it; initial-state radiation lowers
the mean a little more (``mc_mean_energy_fraction``, from simulated Bhabha events, as basf2's
expected-energy payloads come from MC). So per cluster

    x = E_measured / (containment * mc_mean_energy_fraction * E(theta))

has mean equal to the crystal's gain. E(theta) scales with the collision energy of the run,
which moves by a few 1e-4 from run to run: it is taken from the CollisionEnergy payload of the
same bucket (hence ``depends_on``), since averaging the nominal energy over a bucket would bias
every gain by that amount (0.05 sigma of a typical crystal, visible over 8736 crystals). Clusters with x outside ``ratio_window`` (beam
background photons, ~30 MeV) are not Bhabha electrons and are dropped.

Estimate. gain = mean of x per crystal. Its uncertainty is gain * sqrt(v / n), where v is the
relative variance of x pooled over all crystals of the same theta ring (same electron energy,
hence same resolution): a per-crystal variance from ~10 hits would itself be too uncertain to
give trustworthy pulls.

Status flags (payload ``status``), never a silent fit:

* DEAD: the crystal has (almost) no Bhabha hits, ``n <= dead_fraction * ring median``, while
  its ring had enough hits (median >= ``dead_min_ring_median``) to tell; value NaN.
* NOT_ENOUGH_DATA: a live crystal with fewer than ``min_hits_per_crystal`` hits: its mean is
  reported if it has any hit, but must not be used (the acceptance edge, ring 0 at 12-14 deg,
  gets almost no Bhabha electrons within the HLT's |cos theta*| < 0.95).

Strategy: SequentialRunByRun. An execution answers not_enough_data while more than
``max_fraction_low_crystals`` of the live crystals are below ``min_hits_per_crystal``, so
low-statistics runs are merged with their neighbours until every payload is precise enough.

Payload ``ECLCrystalEnergy``: channel = crystal id 0-8735 (basf2 cellId - 1), value = gain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from b2cal_assets import detector
from b2cal_assets.calibration.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.settings import CalibrationSettings
from b2cal_assets.calibration.strategies import SequentialRunByRun
from b2cal_assets.calibrations import ecms
from b2cal_assets.calibrations.base import (
    Calibration,
    CalibrationInputError,
    CollectorOutput,
    MergingAlgorithm,
    files_of,
    flat,
    iterate_files,
    channel_truth_pulls,
    required_upstream,
    run_label,
)
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_NOT_ENOUGH_DATA, PayloadConstants

PAYLOAD = "ECLCrystalEnergy"
STREAM = "hlt_bhabha"
N_CRYSTALS = detector.ECL_N_CRYSTALS

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

SETTINGS = CalibrationSettings(
    name="ECLCrystalEnergy",
    expert_username="ecl_expert",
    subsystem="ecl",
    description="ECL crystal energy gains (8736) from the measured/expected energy of Bhabha electrons (hlt_bhabha)",
    input_data_formats=["cdst"],
    input_data_names=[STREAM],
    input_data_filters={STREAM: ["bhabha_all_calib", "physics", "Good Or Recoverable", "On"]},
    depends_on=[ecms.SETTINGS],
    expert_config={
        "max_iterations": 1,
        "min_hits_per_crystal": 20,
        "max_fraction_low_crystals": 0.01,  # of live crystals; the acceptance-edge ring is 0.55%
        "dead_fraction": 0.05,
        "dead_min_ring_median": 20,
        "ratio_window": [0.5, 1.5],
        "containment": 0.95,
        "mc_mean_energy_fraction": 0.998995,  # <E_deposited/E_elastic> lost to ISR, from MC
        "her_energy_gev": 7.0,
        "ler_energy_gev": 4.0,
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("ecl_cell", "ecl_energy", "ecl_theta")
_LAYOUT_KEYS = ("ratio_window", "containment", "mc_mean_energy_fraction", "her_energy_gev", "ler_energy_gev")


def collect(
    run: ExpRun,
    files: Mapping[str, Sequence[Path]],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> CollectorOutput:
    """Per crystal: hits n, sum of x and sum of x^2 (x = measured / expected energy)."""
    config = {**SETTINGS.expert_config, **expert_config}
    low, high = (float(v) for v in config["ratio_window"])
    scale = float(config["containment"]) * float(config["mc_mean_energy_fraction"])
    collision_energy = float(required_upstream(upstream, ecms.PAYLOAD, SETTINGS.name).value[0])
    # Both beams scaled alike: E(theta) is proportional to eCMS at a fixed boost.
    energy_scale = collision_energy / (2.0 * np.sqrt(float(config["her_energy_gev"]) * float(config["ler_energy_gev"])))
    her, ler = energy_scale * float(config["her_energy_gev"]), energy_scale * float(config["ler_energy_gev"])
    n = np.zeros(N_CRYSTALS)
    sum_x = np.zeros(N_CRYSTALS)
    sum_x2 = np.zeros(N_CRYSTALS)
    events = 0
    for batch in iterate_files(files_of(files, [STREAM], SETTINGS.name), _BRANCHES):
        events += len(batch)
        cell = flat(batch["ecl_cell"], np.int64)
        energy = flat(batch["ecl_energy"], np.float64)
        theta = flat(batch["ecl_theta"], np.float64)
        x = energy / (scale * detector.bhabha_lab_energy(theta, her, ler))
        good = (x > low) & (x < high) & (cell >= 0) & (cell < N_CRYSTALS)
        cell, x = cell[good], x[good]
        n += np.bincount(cell, minlength=N_CRYSTALS)
        sum_x += np.bincount(cell, x, minlength=N_CRYSTALS)
        sum_x2 += np.bincount(cell, x * x, minlength=N_CRYSTALS)
    layout = {key: config[key] for key in _LAYOUT_KEYS}
    return CollectorOutput(SETTINGS.name, {"n": n, "sum_x": sum_x, "sum_x2": sum_x2}, layout, {run_label(run): events})


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------

_RING, _ = detector.ecl_theta_phi_id(np.arange(N_CRYSTALS))
_N_RINGS = len(detector.ECL_RING_SIZES)


def _ring_median(values: np.ndarray) -> np.ndarray:
    """Per crystal: the median of ``values`` over its theta ring."""
    medians = np.array([np.median(values[_RING == ring]) for ring in range(_N_RINGS)])
    return medians[_RING]


def gains_from_sums(collected: CollectorOutput, config: Mapping[str, Any]) -> tuple[PayloadConstants, dict[str, Any]]:
    """Gains, errors and status flags; also the counts the not_enough_data decision needs."""
    n, sum_x, sum_x2 = collected["n"], collected["sum_x"], collected["sum_x2"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, sum_x / n, np.nan)
        # Within-crystal sum of squares of x / gain (relative), pooled per theta ring.
        relative_ss = np.where(n > 1, (sum_x2 - n * mean**2) / mean**2, 0.0)
    median = _ring_median(n)
    dead = (n <= float(config["dead_fraction"]) * median) & (median >= float(config["dead_min_ring_median"]))
    usable = (n > 1) & ~dead
    dof = np.bincount(_RING[usable], n[usable] - 1, minlength=_N_RINGS)
    ss = np.bincount(_RING[usable], relative_ss[usable], minlength=_N_RINGS)
    if np.any(dof == 0):
        # A ring without any crystal hit twice cannot give a resolution: borrow the detector-wide one.
        overall = ss.sum() / max(dof.sum(), 1)
        ring_variance = np.where(dof > 0, ss / np.maximum(dof, 1), overall)
    else:
        ring_variance = ss / dof
    with np.errstate(invalid="ignore", divide="ignore"):
        error = mean * np.sqrt(ring_variance[_RING] / n)
    low = ~dead & (n < int(config["min_hits_per_crystal"]))
    status = np.full(N_CRYSTALS, STATUS_GOOD, dtype=np.int32)
    status[low] = STATUS_NOT_ENOUGH_DATA
    status[dead] = STATUS_DEAD
    value = np.where(dead | (n == 0), np.nan, mean)
    error = np.where(np.isfinite(value), error, np.nan)
    summary = {
        "dead": int(dead.sum()),
        "low": int(low.sum()),
        "live": int((~dead).sum()),
        "median_hits": float(np.median(n)),
        "ring_resolution": np.sqrt(ring_variance).round(5).tolist(),
    }
    constants = PayloadConstants(
        value=value,
        error=error,
        status=status,
        attributes={
            "quantity": "gain = E_measured / E_expected (Bhabha)",
            "runs": dict(collected.runs),
            "dead_crystals": np.flatnonzero(dead).tolist(),
            "not_enough_data_crystals": int(low.sum()),
            "median_hits_per_crystal": summary["median_hits"],
            "relative_resolution_per_theta_ring": summary["ring_resolution"],
        },
    )
    return constants, summary


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], config: Mapping[str, Any]) -> AlgorithmOutcome:
    constants, summary = gains_from_sums(collected, config)
    labels = [run_label(r) for r in runs]
    fraction_low = summary["low"] / max(summary["live"], 1)
    if fraction_low > float(config["max_fraction_low_crystals"]):
        return AlgorithmOutcome(
            AlgorithmResult.not_enough_data,
            message=(
                f"runs {labels}: {summary['low']} of {summary['live']} live crystals ({fraction_low:.1%}) have fewer than "
                f"{config['min_hits_per_crystal']} Bhabha hits (allowed {float(config['max_fraction_low_crystals']):.1%}); "
                f"median {summary['median_hits']:.0f} hits per crystal"
            ),
        )
    message = f"{summary['dead']} dead crystals flagged; {summary['low']} crystals below {config['min_hits_per_crystal']} hits flagged"
    return AlgorithmOutcome(AlgorithmResult.ok, {PAYLOAD: constants}, message=message)


def make_algorithm(
    collected: Mapping[ExpRun, CollectorOutput],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> Algorithm:
    config = {**SETTINGS.expert_config, **expert_config}
    for key in ("min_hits_per_crystal", "max_fraction_low_crystals", "dead_fraction", "dead_min_ring_median"):
        if not isinstance(config[key], (int, float)) or isinstance(config[key], bool) or config[key] < 0:
            raise CalibrationInputError(f"{SETTINGS.name}: expert_config {key}={config[key]!r} must be a number >= 0")
    return MergingAlgorithm(SETTINGS.name, collected, lambda merged, runs: _calibrate(merged, runs, config))


# ---------------------------------------------------------------------------------------------
# Truth comparison (synthetic data only)
# ---------------------------------------------------------------------------------------------


def truth_pulls(
    constants: PayloadConstants | Mapping[str, PayloadConstants], truth_dir: Path, runs: Sequence[ExpRun]
) -> np.ndarray:
    """(gain - true gain) / error of the crystals with status good."""
    return channel_truth_pulls(constants, PAYLOAD, truth_dir, runs[0].exp, "ecl_crystals.csv", 3)


CALIBRATION = Calibration(
    settings=SETTINGS,
    strategy=SequentialRunByRun,
    collect=collect,
    merge=CollectorOutput.merge,
    make_algorithm=make_algorithm,
    truth_pulls=truth_pulls,
)
