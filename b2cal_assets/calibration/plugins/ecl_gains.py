"""ECLCrystalEnergy: one energy gain per ECL crystal (8736), relative to its theta ring, from
Bhabha electrons.

Physics. In e+e- -> e+e- the electron energy at a lab direction (theta, phi) is fixed by
two-body kinematics of the two beams; with SuperKEKB's 83 mrad crossing angle the e+e- system
moves along x as well as z, so E depends on phi too (by about 3.5 % at 90 degrees):

    E(theta, phi) = s / (2 (E_tot - P . n))     (detector.elastic_lab_energy)

scaled by the bucket's measured collision energy (CollisionEnergy payload, hence
``depends_on``). The crystal an electron hits contains only part of its shower: the rest
leaks into the neighbours and out of the back. That containment depends on theta (crystal
geometry, depth) and on where in the crystal the electron enters, and is not known to this
calibration. Per cluster

    x = E_measured / E(theta, phi)    has mean  gain_c * f(ring)

with f(ring) the mean contained fraction, common to the crystals of one theta ring (same
geometry, same electron energy, same position spread). So the calibration measures the gain
relative to its ring: value = mean(x)_c / S_ring, S_ring the mean of mean(x) over the ring's good
crystals. The absolute scale of each ring (f times the ring's average gain) comes from the
MC-expected energies of a full simulation (basf2's eclee5x5), not from here. Clusters with x
outside ``ratio_window`` (leakage into neighbours, beam background) are not the electron's
crystal and are dropped from the mean.

Estimate. Uncertainty of mean(x)_c: sqrt(v / n) with v the relative variance of x pooled over
the theta ring (same resolution and position spread): a per-crystal variance from ~10 hits
would itself be too uncertain to give trustworthy pulls; the ring scale's error is added.

Status flags (payload ``status``), never a silent fit:

* DEAD: a Poisson test on *all* hits of the crystal (electrons, leakage from its neighbours and
  beam background, about 5x the electron hits): P(N <= n | mu) < ``dead_p_value``, with the
  expectation mu the median over its ring of the crystals that have hits, so dead crystals cannot
  drag it down. A crystal whose ring expects too few hits to tell (e^-mu >= dead_p_value) and
  has none is NOT_ENOUGH_DATA, never called alive.
* HOT: the same Poisson test from above, against the same expectation (the ring median of
  the crystals that have hits, which a few hot crystals cannot pull up): more than
  ``hot_factor`` times the expectation and P(N >= n | mu) < ``hot_p_value``. A noisy crystal
  fires on its own at any energy; its hits are not showers, so its gain is not reported
  (value NaN). The factor keeps genuine crystal-to-crystal rate differences (position in the
  ring, leakage) from being flagged at high statistics, where the Poisson test alone would.
* NOT_ENOUGH_DATA: a live crystal with fewer than ``min_hits_per_crystal`` electron hits: its
  mean is reported if it has any hit, but must not be used.

Strategy: SequentialRunByRun. An execution answers not_enough_data while more than
``max_fraction_low_crystals`` of the live crystals are below ``min_hits_per_crystal``, so
low-statistics runs are merged with their neighbours until every payload is precise enough.

Payload ``ECLCrystalEnergy``: channel = crystal id 0-8735 (basf2 cellId - 1), value = gain
relative to the theta-ring average of the good crystals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from b2cal_assets import detector
from b2cal_assets.calibration.framework.contract import (
    Calibration,
    CalibrationInputError,
    CollectorOutput,
    MergingAlgorithm,
    ValidationLimits,
    files_of,
    flat,
    iterate_files,
    payload_of,
    required_upstream,
    truth_folder,
)
from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.calibration.framework.strategies import SequentialRunByRun
from b2cal_assets.calibration.plugins import ecms
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT, STATUS_NOT_ENOUGH_DATA, PayloadConstants

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
        # One-sided Poisson p-value for DEAD: 1e-6 keeps the expected false flags over 8736
        # crystals below 0.01 per payload.
        "dead_p_value": 1e-6,
        # HOT: more than hot_factor x the ring's expectation and P(N >= n) < hot_p_value (same
        # false-flag rate as DEAD).
        "hot_factor": 3.0,
        "hot_p_value": 1e-6,
        "ratio_window": [0.5, 1.5],
        # SuperKEKB design beams (the machine's, not the generator's): kinematics only.
        "her_energy_gev": detector.HER_ENERGY_GEV,
        "ler_energy_gev": detector.LER_ENERGY_GEV,
        "crossing_angle_rad": detector.CROSSING_ANGLE_RAD,
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("ecl_cell", "ecl_energy", "ecl_theta", "ecl_phi")
_LAYOUT_KEYS = ("ratio_window", "her_energy_gev", "ler_energy_gev", "crossing_angle_rad")


def collect(
    run: ExpRun,
    files: Mapping[str, Sequence[Path]],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> CollectorOutput:
    """Per crystal: electron hits n, sum of x and of x^2 (x = measured / expected energy), and
    all hits (any energy) for the dead-crystal test."""
    config = {**SETTINGS.expert_config, **expert_config}
    low, high = (float(v) for v in config["ratio_window"])
    crossing = float(config["crossing_angle_rad"])
    collision_energy = float(required_upstream(upstream, ecms.PAYLOAD, SETTINGS.name).value[0])
    # Both beams scaled alike: E(theta) is proportional to eCMS at a fixed boost.
    beams = detector.beam_four_momenta(float(config["her_energy_gev"]), float(config["ler_energy_gev"]), crossing)
    total = beams[0] + beams[1]
    energy_scale = collision_energy / math.sqrt(total[0] ** 2 - total[1:] @ total[1:])
    her, ler = energy_scale * float(config["her_energy_gev"]), energy_scale * float(config["ler_energy_gev"])
    n = np.zeros(N_CRYSTALS)
    sum_x = np.zeros(N_CRYSTALS)
    sum_x2 = np.zeros(N_CRYSTALS)
    n_all = np.zeros(N_CRYSTALS)
    events = 0
    for batch in iterate_files(files_of(files, [STREAM], SETTINGS.name), _BRANCHES):
        events += len(batch)
        cell = flat(batch["ecl_cell"], np.int64)
        energy = flat(batch["ecl_energy"], np.float64)
        theta = flat(batch["ecl_theta"], np.float64)
        phi = flat(batch["ecl_phi"], np.float64)
        in_range = (cell >= 0) & (cell < N_CRYSTALS)
        n_all += np.bincount(cell[in_range], minlength=N_CRYSTALS)
        x = energy / detector.elastic_lab_energy(theta, phi, her, ler, crossing)
        good = (x > low) & (x < high) & in_range
        cell, x = cell[good], x[good]
        n += np.bincount(cell, minlength=N_CRYSTALS)
        sum_x += np.bincount(cell, x, minlength=N_CRYSTALS)
        sum_x2 += np.bincount(cell, x * x, minlength=N_CRYSTALS)
    layout = {key: config[key] for key in _LAYOUT_KEYS}
    return CollectorOutput(SETTINGS.name, {"n": n, "sum_x": sum_x, "sum_x2": sum_x2, "n_all": n_all}, layout, {run.format(): events})


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------

_RING, _ = detector.ecl_theta_phi_id(np.arange(N_CRYSTALS))
_N_RINGS = len(detector.ECL_RING_SIZES)


def poisson_cdf(k: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """P(N <= k) for Poisson means ``mu`` (k small: summed term by term in log space)."""
    k = np.asarray(k, dtype=np.int64)
    mu = np.maximum(np.asarray(mu, dtype=float), 1e-300)
    total = np.zeros(k.shape)
    log_term = -mu  # log P(N = 0)
    for i in range(int(k.max(initial=0)) + 1):
        if i:
            log_term = log_term + np.log(mu) - math.log(i)
        total += np.where(i <= k, np.exp(log_term), 0.0)
    return np.minimum(total, 1.0)


def poisson_log_sf(k: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """log P(N >= k) for Poisson means ``mu`` < ``k``: the tail summed from its first term, the
    ratio of successive terms mu / (k + j) being below one (log space: no underflow)."""
    k = np.asarray(k, dtype=float)
    mu = np.maximum(np.asarray(mu, dtype=float), 1e-300)
    log_first = -mu + k * np.log(mu) - np.array([math.lgamma(x + 1.0) for x in k.ravel()]).reshape(k.shape)
    total = np.ones(k.shape)
    term = np.ones(k.shape)
    for j in range(1, 10_000):
        term = term * mu / (k + j)
        total += term
        if not np.any(term > 1e-17 * total):
            break
    return log_first + np.log(total)


def ring_expectation(n_all: np.ndarray) -> np.ndarray:
    """Per crystal: the median hit count of the crystals of its ring that have hits (dead
    crystals cannot drag it down, a few hot ones cannot pull it up)."""
    expected = np.zeros(N_CRYSTALS)
    for ring in range(_N_RINGS):
        members = _RING == ring
        hits = n_all[members]
        expected[members] = np.median(hits[hits > 0]) if (hits > 0).any() else 0.0
    return expected


def hot_crystals(n_all: np.ndarray, factor: float, p_value: float) -> np.ndarray:
    """Crystals with more than ``factor`` times their ring's expectation and a Poisson
    probability below ``p_value`` of that many hits or more."""
    expected = ring_expectation(n_all)
    candidates = np.flatnonzero(n_all > np.maximum(factor, 1.0) * expected)
    hot = np.zeros(N_CRYSTALS, dtype=bool)
    hot[candidates] = poisson_log_sf(n_all[candidates], expected[candidates]) < math.log(p_value)
    return hot


def dead_crystals(n_all: np.ndarray, p_value: float) -> tuple[np.ndarray, np.ndarray]:
    """(dead, undecided): Poisson test of every crystal's hit count against the median of the
    crystals of its ring that have hits; undecided = no hit where the ring expects too few."""
    expected = ring_expectation(n_all)
    candidates = n_all < 0.5 * expected  # only these can be far enough below to test
    p = np.ones(N_CRYSTALS)
    p[candidates] = poisson_cdf(n_all[candidates], expected[candidates])
    decidable = np.exp(-expected) < p_value
    dead = decidable & (p < p_value)
    return dead, ~decidable & (n_all == 0)


def gains_from_sums(collected: CollectorOutput, config: Mapping[str, Any]) -> tuple[PayloadConstants, dict[str, Any]]:
    """Relative gains, errors and status flags; also the counts the not_enough_data decision needs."""
    n, sum_x, sum_x2 = collected["n"], collected["sum_x"], collected["sum_x2"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, sum_x / n, np.nan)
        # Within-crystal sum of squares of x / gain (relative), pooled per theta ring.
        relative_ss = np.where(n > 1, (sum_x2 - n * mean**2) / mean**2, 0.0)
    dead, undecided = dead_crystals(collected["n_all"], float(config["dead_p_value"]))
    hot = hot_crystals(collected["n_all"], float(config["hot_factor"]), float(config["hot_p_value"]))
    bad = dead | hot
    usable = (n > 1) & ~bad
    dof = np.bincount(_RING[usable], n[usable] - 1, minlength=_N_RINGS)
    ss = np.bincount(_RING[usable], relative_ss[usable], minlength=_N_RINGS)
    if np.any(dof == 0):
        # A ring without any crystal hit twice cannot give a resolution: borrow the detector-wide one.
        overall = ss.sum() / max(dof.sum(), 1)
        ring_variance = np.where(dof > 0, ss / np.maximum(dof, 1), overall)
    else:
        ring_variance = ss / dof
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_error = mean * np.sqrt(ring_variance[_RING] / n)
    low = ~bad & ((n < int(config["min_hits_per_crystal"])) | undecided)
    good = ~bad & ~low & np.isfinite(mean)
    # Ring scale: plain mean of the good crystals' means (the truth comparison uses the same set).
    members = np.bincount(_RING[good], minlength=_N_RINGS)
    scale = np.bincount(_RING[good], mean[good], minlength=_N_RINGS) / np.maximum(members, 1)
    scale_var = np.bincount(_RING[good], mean_error[good] ** 2, minlength=_N_RINGS) / np.maximum(members, 1) ** 2
    ring_scale = np.where(members > 0, scale, np.nan)[_RING]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = mean / ring_scale
        error = np.sqrt((mean_error / ring_scale) ** 2 + (value**2) * scale_var[_RING] / ring_scale**2)
    status = np.full(N_CRYSTALS, STATUS_GOOD, dtype=np.int32)
    status[low] = STATUS_NOT_ENOUGH_DATA
    status[dead] = STATUS_DEAD
    status[hot] = STATUS_HOT
    value = np.where(bad | (n == 0), np.nan, value)
    error = np.where(np.isfinite(value), error, np.nan)
    summary = {
        "dead": int(dead.sum()),
        "hot": int(hot.sum()),
        "low": int(low.sum()),
        "live": int((~bad).sum()),
        "median_hits": float(np.median(n)),
        "ring_resolution": np.sqrt(ring_variance).round(5).tolist(),
    }
    constants = PayloadConstants(
        value=value,
        error=error,
        status=status,
        attributes={
            "units": "1",
            "quantity": "gain relative to the mean of the good crystals of its theta ring (Bhabha E_measured / E_expected)",
            "runs": dict(collected.runs),
            "dead_crystals": np.flatnonzero(dead).tolist(),
            "hot_crystals": np.flatnonzero(hot).tolist(),
            "not_enough_data_crystals": int(low.sum()),
            "median_hits_per_crystal": summary["median_hits"],
            "relative_resolution_per_theta_ring": summary["ring_resolution"],
            # mean(x) of the ring = containment x average gain: watched over time, not a constant.
            "ring_response": np.where(members > 0, scale, np.nan).round(5).tolist(),
        },
    )
    return constants, summary


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], config: Mapping[str, Any]) -> AlgorithmOutcome:
    constants, summary = gains_from_sums(collected, config)
    labels = [r.format() for r in runs]
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
    message = f"{summary['dead']} dead and {summary['hot']} hot crystals flagged; {summary['low']} crystals below {config['min_hits_per_crystal']} hits flagged"
    return AlgorithmOutcome(AlgorithmResult.ok, {PAYLOAD: constants}, message=message)


def make_algorithm(
    collected: Mapping[ExpRun, CollectorOutput],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> Algorithm:
    config = {**SETTINGS.expert_config, **expert_config}
    for key in ("min_hits_per_crystal", "max_fraction_low_crystals", "dead_p_value", "hot_factor", "hot_p_value"):
        if not isinstance(config[key], (int, float)) or isinstance(config[key], bool) or config[key] < 0:
            raise CalibrationInputError(f"{SETTINGS.name}: expert_config {key}={config[key]!r} must be a number >= 0")
    return MergingAlgorithm(SETTINGS.name, collected, lambda merged, runs: _calibrate(merged, runs, config))


# ---------------------------------------------------------------------------------------------
# Truth comparison (synthetic data only)
# ---------------------------------------------------------------------------------------------


def truth_pulls(
    constants: PayloadConstants | Mapping[str, PayloadConstants], truth_dir: Path, runs: Sequence[ExpRun]
) -> np.ndarray:
    """(gain - true relative gain) / error of the crystals with status good; the truth is each
    true gain over the mean true gain of the same good crystals of its ring."""
    payload = payload_of(constants, PAYLOAD)
    good = payload.status == STATUS_GOOD
    table = np.loadtxt(truth_folder(truth_dir, runs[0].exp) / "ecl_crystals.csv", delimiter=",", skiprows=1)
    true_gain = table[:, 3]
    channel = payload.channel[good]
    ring = _RING[channel]
    ring_mean = np.bincount(ring, true_gain[channel], minlength=_N_RINGS) / np.maximum(np.bincount(ring, minlength=_N_RINGS), 1)
    return (payload.value[good] - true_gain[channel] / ring_mean[ring]) / payload.error[good]


def figures(payloads: Sequence[Any], last_run: int) -> list[tuple[str, str, Any]]:
    """The report's crystal map of the last IoV's gains."""
    return [("ecl_crystal_map", "ECL crystal map of relative gains", fig_crystal_map(payloads[-1]))]


def fig_crystal_map(payload: Any) -> Any:
    """Relative gains on a (theta id, phi id) grid; rings with fewer crystals are stretched over
    144 columns. Dead crystals red, hot magenta (not a viridis colour), crystals without enough data white (all in the legend)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from b2cal_assets.validation.figures import new_figure

    c = payload.constants
    theta_id, phi_id = detector.ecl_theta_phi_id(c.channel)
    grid = np.full((_N_RINGS, 144), np.nan)
    dead = np.zeros((_N_RINGS, 144), dtype=bool)
    hot = np.zeros((_N_RINGS, 144), dtype=bool)
    for ring in range(_N_RINGS):
        size = int(detector.ECL_RING_SIZES[ring])
        in_ring = theta_id == ring
        columns = (np.arange(144) * size) // 144  # phi id shown in each of the 144 columns
        values = np.full(size, np.nan)
        flags = np.zeros(size, dtype=bool)
        hot_flags = np.zeros(size, dtype=bool)
        values[phi_id[in_ring]] = np.where(c.status[in_ring] == STATUS_GOOD, c.value[in_ring], np.nan)
        flags[phi_id[in_ring]] = c.status[in_ring] == STATUS_DEAD
        hot_flags[phi_id[in_ring]] = c.status[in_ring] == STATUS_HOT
        grid[ring] = values[columns]
        dead[ring] = flags[columns]
        hot[ring] = hot_flags[columns]
    fig, ax = new_figure(figsize=(9, 4.8))
    image = ax.imshow(grid.T, origin="lower", aspect="auto", cmap="viridis", vmin=0.85, vmax=1.15, interpolation="nearest")
    n_dead = int((c.status == STATUS_DEAD).sum())
    n_hot = int((c.status == STATUS_HOT).sum())
    n_low = int((c.status == STATUS_NOT_ENOUGH_DATA).sum())
    if dead.any():
        ax.imshow(np.where(dead.T, 1.0, np.nan), origin="lower", aspect="auto", cmap=ListedColormap(["red"]), vmin=0, vmax=1, interpolation="nearest")
    if hot.any():
        ax.imshow(np.where(hot.T, 1.0, np.nan), origin="lower", aspect="auto", cmap=ListedColormap(["magenta"]), vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="gain relative to the ring mean (dimensionless)")
    ax.legend(
        handles=[Patch(color="red", label=f"dead ({n_dead})"), Patch(color="magenta", label=f"hot ({n_hot})"), Patch(facecolor="white", edgecolor="0.5", label=f"not enough data ({n_low})")],
        loc="upper right",
        fontsize=7,
        framealpha=0.9,
    )
    ax.set_xlabel("theta id (ring, 0 = forward)")
    ax.set_ylabel("phi id (scaled to 144 columns)")
    ax.set_title(f"ECL relative crystal gains, rev {payload.revision}, IoV {payload.iov}", fontsize=10)
    return fig


VALIDATION = ValidationLimits(
    description="ECL crystal gains: dead crystals, precision, range, stability",
    limits={
        "median_error_max": 0.03,
        "max_not_enough_data_fraction": 0.05,
        "range": {"*": [0.5, 1.5]},
        "change_sigmas": 5.0,
        "change_abs": {"*": 0.02},
        "max_changed_fraction": 0.002,
        # 44 crystals: more means a board or crate is off and must be understood first.
        "max_dead_fraction": 0.005,
        # 4 crystals: a noisy crystal is masked by the ECL group; more hint at a noisy board.
        "max_hot_fraction": 0.0005,
    },
)


CALIBRATION = Calibration(
    settings=SETTINGS,
    strategy=SequentialRunByRun,
    collect=collect,
    merge=CollectorOutput.merge,
    make_algorithm=make_algorithm,
    truth_pulls=truth_pulls,
    validation=VALIDATION,
    figures=figures,
)
